"""The CPU training speed-ups change how gradients are computed, not what they are; and a training stretch
records its compute and never ends below where it started."""

import json

import pytest
import torch
from torch import nn

from cxrsr.models import Generator, GeneratorConfig
from cxrsr.training import export_generator, train
from cxrsr.training.depthwise import FastDepthwiseConv2d, restore_depthwise, use_fast_depthwise
from cxrsr.weights import load_generator

from test_training import small_config


@pytest.mark.parametrize("channels,kernel,side,channels_last,bias", [
    (4, 3, 11, False, True), (16, 9, 24, True, True), (8, 5, 17, True, False), (64, 9, 32, True, True),
])
def test_reformulated_depthwise_gradients_match_autograd(channels, kernel, side, channels_last, bias):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ref = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=bias).to(memory_format=fmt)
    fast = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=bias)
    fast.load_state_dict(ref.state_dict())
    fast.to(memory_format=fmt)
    assert use_fast_depthwise(fast, min_kernel=1, min_channels=1) == 1 and type(fast) is FastDepthwiseConv2d
    x = torch.randn(3, channels, side, side + 3).to(memory_format=fmt)
    grad = torch.randn(3, channels, side, side + 3)
    results = []
    for conv in (ref, fast):
        xi = x.clone().requires_grad_(True)
        out = conv(xi)
        out.backward(grad)
        results.append((out, xi.grad, conv.weight.grad, conv.bias.grad if bias else None))
    (out_r, gx_r, gw_r, gb_r), (out_f, gx_f, gw_f, gb_f) = results
    assert torch.equal(out_r, out_f)
    torch.testing.assert_close(gx_f, gx_r, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw_f, gw_r, rtol=1e-4, atol=1e-3)
    if bias:
        torch.testing.assert_close(gb_f, gb_r, rtol=1e-4, atol=1e-3)


def test_fast_depthwise_switches_the_large_layer_only_and_keeps_the_model():
    torch.manual_seed(0)
    g = Generator().eval()
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        before = g(x)
    keys = list(g.state_dict())
    assert use_fast_depthwise(g) == 1  # the final 9x9 at 64 channels; not the first 9x9 on 3 channels
    assert type(g.final_conv.depthwise) is FastDepthwiseConv2d and type(g.initial.cnn.depthwise) is nn.Conv2d
    assert list(g.state_dict()) == keys
    with torch.no_grad():
        assert torch.equal(g(x), before)
    restore_depthwise(g)
    assert not any(type(m) is FastDepthwiseConv2d for m in g.modules())


def test_fast_depthwise_under_bf16_autocast_keeps_fp32_gradients():
    conv = nn.Conv2d(16, 16, 9, padding=4, groups=16)
    use_fast_depthwise(conv, min_channels=1)
    x = torch.randn(2, 16, 20, 20, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert conv.weight.grad.dtype == torch.float32 and conv.bias.grad.dtype == torch.float32
    assert torch.isfinite(conv.weight.grad).all() and x.grad.shape == x.shape


def test_cosine_schedule_validated_start_and_compute_carried_over_stretches(nih_train_list, upstream_weights,
                                                                            tmp_path):
    """A stretch scores its starting weights first (best.pt can only improve on them), decays the learning
    rate to lr_min, and its exported weights carry the compute of every stretch before it."""
    common = {"optim.schedule": '"cosine"', "optim.lr_g": 1e-4, "optim.lr_min": 1e-6, "optim.freeze_bn": "true",
              "run.val_every": 3, "optim.ema_decay": 0.9}
    first = small_config(tmp_path / "a", nih_train_list, upstream_weights, **{"run.steps_pretrain": 3, **common})
    summary = train(first, progress=False)
    assert summary["history"][0]["step"] == 0 and summary["history"][-1]["step"] == 3
    assert summary["best_val_psnr"] >= summary["history"][0]["val_psnr"]
    lrs = [json.loads(line)["lr/generator"] for line in (tmp_path / "a" / "metrics.jsonl").open()
           if "lr/generator" in line]
    assert lrs[-1] == pytest.approx(1e-6) and lrs[0] < 1e-4
    exported = export_generator(tmp_path / "a", tmp_path / "a.safetensors")
    _, meta = load_generator(exported)
    assert int(meta["total_steps"]) == 3 and int(meta["total_samples"]) == 3 * 4
    assert float(meta["total_cpu_hours"]) > 0 and len(json.loads(meta["training_stretches"])) == 1

    second = small_config(tmp_path / "b", nih_train_list, exported, **{"run.steps_pretrain": 2, **common})
    summary_b = train(second, progress=False)
    # the new stretch starts where the last one stopped: its step-0 score is the exported model's
    assert summary_b["history"][0]["val_psnr"] == pytest.approx(summary["best_val_psnr"], abs=1e-6)
    _, meta_b = load_generator(export_generator(tmp_path / "b", tmp_path / "b.safetensors"))
    stretches = json.loads(meta_b["training_stretches"])
    assert [s["steps"] for s in stretches] == [3, 2] and int(meta_b["total_steps"]) == 5
    assert stretches[1]["init"] == "a.safetensors"
    assert float(meta_b["val_psnr"]) >= summary["best_val_psnr"] - 1e-4


def test_a_resumed_stretch_keeps_the_compute_record_it_started_from(nih_train_list, upstream_weights, tmp_path):
    """Resuming re-reads run.init, which may name a newer file by then (a shipped model re-exported from this
    very run): the exported record still holds the stretches the run really started from."""
    common = {"optim.schedule": '"constant"', "optim.freeze_bn": "true", "run.val_every": 2, "optim.ema_decay": 0.9}
    train(small_config(tmp_path / "a", nih_train_list, upstream_weights, **{"run.steps_pretrain": 2, **common}),
          progress=False)
    start = export_generator(tmp_path / "a", tmp_path / "start.safetensors")
    train(small_config(tmp_path / "b", nih_train_list, start, **{"run.steps_pretrain": 2, **common}), progress=False)
    export_generator(tmp_path / "b", start)  # the start's name now holds a 2 + 2 step record
    train(small_config(tmp_path / "b", nih_train_list, start, **{"run.steps_pretrain": 3, **common}),
          resume=True, progress=False)
    _, meta = load_generator(export_generator(tmp_path / "b", tmp_path / "b.safetensors", checkpoint="last.pt"))
    assert [s["steps"] for s in json.loads(meta["training_stretches"])] == [2, 3]
    assert int(meta["total_steps"]) == 5


def test_folded_frozen_batchnorm_gives_the_same_outputs_and_gradients():
    import copy

    from cxrsr.training.frozen_bn import FoldedBNConvBlock, fold_frozen_batchnorm

    torch.manual_seed(0)
    ref = Generator(GeneratorConfig(channels=16, blocks=3)).train()
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics and affine away from their initial values, frozen
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
            m.eval()
    folded = copy.deepcopy(ref)
    assert fold_frozen_batchnorm(folded) == 3 * 2 + 1  # two per residual block and the conv block
    assert any(type(m) is FoldedBNConvBlock for m in folded.modules())
    assert list(folded.state_dict()) == list(ref.state_dict())
    x, target = torch.rand(2, 3, 10, 12), torch.rand(2, 3, 40, 48)
    grads = []
    for model in (ref, folded):
        out = model(x)
        ((out - target) ** 2).mean().backward()
        grads.append((out.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-5, atol=1e-6)
    assert grads[0][1].keys() == grads[1][1].keys()
    for name, g in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][name], g, rtol=1e-3, atol=1e-6, msg=name)
    folded.train()  # BatchNorm in training mode: the plain block again, batch statistics used
    for m in folded.modules():
        m.train()
    ref.train()
    torch.testing.assert_close(folded(x), ref(x))


def test_cosine_schedule_warms_up_then_decays_to_lr_min():
    from cxrsr.training import load_config
    from cxrsr.training.loop import _scheduler

    cfg = load_config(None, ['optim.schedule="cosine"', "optim.lr_g=1e-3", "optim.lr_min=1e-5",
                             "optim.warmup_steps=4"])
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = _scheduler(opt, cfg, 20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:4] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4])  # linear warm-up
    assert max(lrs) <= 1e-3 and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # then only down
    assert lrs[-1] == pytest.approx(1e-5)
