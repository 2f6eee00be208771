import builtins
import os
import pickle
import shlex
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from cxrsr.cli import main
from cxrsr.models import Generator, GeneratorConfig
from cxrsr.weights import WeightsError, convert_checkpoint, load_generator, resolve_weights, save_generator


def _as_batch(lr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(lr.astype(np.float32) / 255)[None, None].expand(1, 3, *lr.shape).contiguous()


def test_convert_writes_safetensors_with_metadata(upstream_weights, tmp_path):
    out = convert_checkpoint(upstream_weights, tmp_path / "up.safetensors")
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["scale"] == "4" and meta["channels"] == "64" and meta["in_channels"] == "3"
    assert meta["source"] == upstream_weights.name
    model, meta2 = load_generator(out)
    ref, _ = load_generator(upstream_weights)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_cli_convert(upstream_weights, tmp_path):
    out = tmp_path / "w.safetensors"
    assert main(["convert", str(upstream_weights), str(out), "--source", "upstream v0.1"]) == 0
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["source"] == "upstream v0.1"
    assert main(["convert", str(upstream_weights), str(out)]) == 1  # exists, no --overwrite


def test_spandrel_loads_cxrsr_weights_and_agrees(upstream_weights, lr_xray, tmp_path):
    spandrel = pytest.importorskip("spandrel")
    model, _ = load_generator(upstream_weights)
    path = save_generator(model, tmp_path / "cxrsr.safetensors")
    desc = spandrel.ModelLoader().load_from_file(str(path))
    assert desc.architecture.id == "SwiftSRGAN" and desc.scale == 4
    x = _as_batch(lr_xray)
    with torch.no_grad():
        ours = model(x)
        theirs = desc.model.eval()(x)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_upstream_checkpoint_output_equals_spandrel(upstream_weights, lr_xray, tmp_path):
    spandrel = pytest.importorskip("spandrel")
    same_file = tmp_path / "swift_srgan_4x.pth"  # spandrel reads .pth, not .pth.tar: same bytes, new name
    shutil.copyfile(upstream_weights, same_file)
    desc = spandrel.ModelLoader().load_from_file(str(same_file))
    model, _ = load_generator(upstream_weights)
    x = _as_batch(lr_xray)
    with torch.no_grad():
        assert (model(x) - desc.model.eval()(x)).abs().max().item() < 1e-5


def test_other_scales_round_trip_through_spandrel(tmp_path):
    spandrel = pytest.importorskip("spandrel")
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(scale=2, channels=16, blocks=3)).eval()
    desc = spandrel.ModelLoader().load_from_file(str(save_generator(model, tmp_path / "x2.safetensors")))
    assert desc.scale == 2
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert (model(x) - desc.model.eval()(x)).abs().max().item() < 1e-5


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_pickles_with_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _Evil()}, f)
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_generator(path)


def test_non_generator_weights_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError, match="not a Swift-SRGAN generator"):
        load_generator(path)


def test_unknown_name_and_missing_file():
    with pytest.raises(WeightsError, match="unknown weights name"):
        resolve_weights("no-such-model")
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights("missing/file.safetensors")


# --------------------------------------------------------------------------------- hostile weights files

KEY = "residual.0.block1.cnn.pointwise.weight"  # shape [8, 8, 1, 1] in the small generator below


@pytest.fixture
def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in Generator(GeneratorConfig(channels=8, blocks=1)).state_dict().items()}


class _RunsCode:
    """Unpickling this calls ``function(argument)``, as a checkpoint carrying code would."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return (self.function, (self.argument,))


def _payload(kind: str, marker) -> _RunsCode:
    if kind == "os.system":
        return _RunsCode(os.system, f"touch {shlex.quote(str(marker))}")
    return _RunsCode(builtins.exec, f"open({str(marker)!r}, 'w').close()")


def _code_checkpoint(folder, state, container: str, kind: str):
    path = folder / "evil.pth"
    obj = {"model": {**state, "extra": _payload(kind, folder / "MARKER")}}
    if container == "pickle":
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    else:
        torch.save(obj, path)
    return path


def _saved(path, obj):
    if path.suffix == ".safetensors":
        save_file(obj, str(path))
    else:
        torch.save(obj, path)
    return path


def _bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def _truncated(cut):
    """A real safetensors file cut at ``cut(size, header_length)`` bytes."""

    def write(folder, state):
        whole = _saved(folder / "whole.safetensors", state).read_bytes()
        header_length = int.from_bytes(whole[:8], "little")
        return _bytes(folder / "cut.safetensors", whole[: cut(len(whole), header_length)])

    return write


def _resnet18(folder, suffix):
    torchvision = pytest.importorskip("torchvision")
    state = {k: v.contiguous() for k, v in torchvision.models.resnet18(weights=None).state_dict().items()}
    return _saved(folder / f"resnet18{suffix}", state)


_ESRGAN = {
    "conv_first.weight": torch.zeros(64, 3, 3, 3),
    "conv_first.bias": torch.zeros(64),
    "body.0.rdb1.conv1.weight": torch.zeros(32, 64, 3, 3),
    "body.0.rdb1.conv1.bias": torch.zeros(32),
    "conv_last.weight": torch.zeros(3, 64, 3, 3),
}
_NOT_SWIFT = "not a Swift-SRGAN generator"
_UNREADABLE = "cannot read weights"
_NOT_FINITE = f"weights contain NaN or infinite values (tensor '{KEY}')"

# id -> (writer(folder, small generator state) -> path, words the one-line message must contain)
_CASES = {
    "code-in-pickle-os.system": (
        lambda d, s: _code_checkpoint(d, s, "pickle", "os.system"),
        "arbitrary pickled code is refused",
    ),
    "code-in-pickle-exec": (lambda d, s: _code_checkpoint(d, s, "pickle", "exec"), "arbitrary pickled code is refused"),
    "code-in-torch-zip-os.system": (
        lambda d, s: _code_checkpoint(d, s, "torch.save", "os.system"),
        "arbitrary pickled code is refused",
    ),
    "code-in-torch-zip-exec": (
        lambda d, s: _code_checkpoint(d, s, "torch.save", "exec"),
        "arbitrary pickled code is refused",
    ),
    "code-in-file-named-safetensors": (
        lambda d, s: _code_checkpoint(d, s, "torch.save", "exec").rename(d / "evil.safetensors"),
        _UNREADABLE,
    ),
    "wrong-shape-safetensors": (
        lambda d, s: _saved(d / "w.safetensors", {**s, KEY: torch.zeros(8, 8, 3, 3)}),
        f"tensor '{KEY}' has shape [8, 8, 3, 3], expected [8, 8, 1, 1]",
    ),
    "wrong-shape-pth": (
        lambda d, s: _saved(d / "w.pth", {**s, KEY: torch.zeros(4, 8, 1, 1)}),
        f"tensor '{KEY}' has shape [4, 8, 1, 1], expected [8, 8, 1, 1]",
    ),
    "inconsistent-channels-pth": (
        lambda d, s: _saved(d / "w.pth", {**s, "initial.cnn.pointwise.weight": torch.zeros(2048, 3, 1, 1)}),
        "tensor 'initial.cnn.pointwise.bias' has shape [8], expected [2048]",
    ),
    "scalar-for-a-conv-weight": (
        lambda d, s: _saved(d / "w.pth", {**s, "initial.cnn.depthwise.weight": torch.tensor(1.0)}),
        _NOT_SWIFT,
    ),
    "missing-tensor": (
        lambda d, s: _saved(d / "w.safetensors", {k: v for k, v in s.items() if k != KEY}),
        f"missing tensor '{KEY}'",
    ),
    "extra-tensor": (
        lambda d, s: _saved(d / "w.pth", {**s, "head.weight": torch.zeros(2)}),
        "unexpected tensor 'head.weight'",
    ),
    "huge-block-index": (
        lambda d, s: _saved(d / "w.pth", {**s, "upsampler.4096.weight": torch.zeros(1)}),
        "block index larger than the number of tensors",
    ),
    "nan-pth": (
        lambda d, s: _saved(d / "w.pth", {**s, KEY: s[KEY].index_fill(0, torch.tensor([3]), float("nan"))}),
        _NOT_FINITE,
    ),
    "inf-safetensors": (
        lambda d, s: _saved(d / "w.safetensors", {**s, KEY: s[KEY].index_fill(0, torch.tensor([0]), float("inf"))}),
        _NOT_FINITE,
    ),
    "minus-inf-fp16-pth": (
        lambda d, s: _saved(d / "w.pth", {**s, KEY: s[KEY].half().index_fill(1, torch.tensor([0]), -float("inf"))}),
        _NOT_FINITE,
    ),
    "truncated-in-header-length": (_truncated(lambda size, header: 4), _UNREADABLE),
    "truncated-in-json-header": (_truncated(lambda size, header: 8 + header // 2), _UNREADABLE),
    "truncated-at-tensor-data": (_truncated(lambda size, header: 8 + header), _UNREADABLE),
    "truncated-in-tensor-data": (_truncated(lambda size, header: 8 + header + (size - 8 - header) // 2), _UNREADABLE),
    "truncated-last-byte": (_truncated(lambda size, header: size - 1), _UNREADABLE),
    "resnet18-pth": (lambda d, s: _resnet18(d, ".pth"), _NOT_SWIFT),
    "resnet18-safetensors": (lambda d, s: _resnet18(d, ".safetensors"), _NOT_SWIFT),
    "esrgan-pth": (lambda d, s: _saved(d / "esrgan.pth", {"params_ema": _ESRGAN}), _NOT_SWIFT),
    "esrgan-safetensors": (lambda d, s: _saved(d / "esrgan.safetensors", _ESRGAN), _NOT_SWIFT),
    "list-payload": (lambda d, s: _saved(d / "w.pth", [1, 2, 3]), "no tensor state dict found"),
    "int-payload": (lambda d, s: _saved(d / "w.pth", 7), "no tensor state dict found"),
    "dict-of-lists": (
        lambda d, s: _saved(d / "w.pth", {k: v.tolist() for k, v in s.items()}),
        "no tensor state dict found",
    ),
    "non-string-keys": (lambda d, s: _saved(d / "w.pth", dict(enumerate(s.values()))), "no tensor state dict found"),
    "random-bytes-safetensors": (
        lambda d, s: _bytes(d / "w.safetensors", np.random.default_rng(0).bytes(4096)),
        _UNREADABLE,
    ),
    "random-bytes-pth": (lambda d, s: _bytes(d / "w.pth", np.random.default_rng(1).bytes(4096)), _UNREADABLE),
    "integer-dtype-safetensors": (
        lambda d, s: _saved(d / "w.safetensors", {**s, KEY: s[KEY].to(torch.int32)}),
        f"tensor '{KEY}' has dtype torch.int32, expected a floating-point dtype",
    ),
    "integer-dtype-pth": (
        lambda d, s: _saved(d / "w.pth", {**s, KEY: s[KEY].to(torch.int64)}),
        f"tensor '{KEY}' has dtype torch.int64, expected a floating-point dtype",
    ),
    "bool-dtype-pth": (
        lambda d, s: _saved(d / "w.pth", {**s, KEY: s[KEY] > 0}),
        f"tensor '{KEY}' has dtype torch.bool, expected a floating-point dtype",
    ),
    "sparse-tensor-pth": (
        lambda d, s: _saved(d / "w.pth", {**s, KEY: s[KEY].to_sparse()}),
        f"tensor '{KEY}' is not a plain dense tensor",
    ),
    "empty-safetensors": (lambda d, s: _bytes(d / "w.safetensors", b""), "weights file is empty"),
    "empty-pth": (lambda d, s: _bytes(d / "w.pth", b""), "weights file is empty"),
    "empty-pth.tar": (lambda d, s: _bytes(d / "w.pth.tar", b""), "weights file is empty"),
    "empty-pt": (lambda d, s: _bytes(d / "w.pt", b""), "weights file is empty"),
}


def _hostile_file(case: str, tmp_path, state):
    if "os.system" in case and sys.platform == "win32":
        pytest.skip("the payload uses touch")
    folder = tmp_path / "weights"
    folder.mkdir()
    write, words = _CASES[case]
    return write(folder, state), words, folder / "MARKER"


@pytest.mark.parametrize("case", list(_CASES))
def test_hostile_weights_get_a_one_line_refusal(case, tmp_path, small_state):
    path, words, marker = _hostile_file(case, tmp_path, small_state)
    with pytest.raises(WeightsError) as info:  # any other exception type fails the test
        load_generator(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and words in message, message
    assert not marker.exists(), "code in the weights file was executed"


@pytest.mark.parametrize("container", ["pickle", "torch.save"])
@pytest.mark.parametrize("kind", ["exec", "os.system"])
def test_code_payloads_in_the_hostile_files_are_live(container, kind, tmp_path, small_state):
    """Guards the test above: an unrestricted load of the same file does run its code."""
    if kind == "os.system" and sys.platform == "win32":
        pytest.skip("the payload uses touch")
    path = _code_checkpoint(tmp_path, small_state, container, kind)
    with pytest.raises(WeightsError):
        load_generator(path)
    assert not (tmp_path / "MARKER").exists()
    if container == "pickle":
        with open(path, "rb") as f:
            pickle.load(f)
    else:
        torch.load(path, weights_only=False)
    assert (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("name", ["w.safetensors", "w.pth", "w.pth.tar"])
@pytest.mark.parametrize("layout", ["plain", "wrapped", "fp16"])
def test_valid_small_generators_still_load(name, layout, tmp_path, small_state):
    state = small_state
    if layout == "fp16":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    if layout == "wrapped":  # DataParallel prefix, and the upstream {"model": ...} layout where pickled
        state = {f"module.{k}": v for k, v in state.items()}
        state = state if name.endswith(".safetensors") else {"model": state, "epoch": 3}
    model, _ = load_generator(_saved(tmp_path / name, state))
    assert model.config == GeneratorConfig(channels=8, blocks=1)
    for k, v in small_state.items():
        assert torch.allclose(model.state_dict()[k], v.to(model.state_dict()[k].dtype), atol=1e-3), k


@pytest.mark.parametrize(
    "case",
    [
        "code-in-pickle-os.system",
        "code-in-torch-zip-exec",
        "nan-pth",
        "wrong-shape-safetensors",
        "truncated-in-json-header",
        "esrgan-safetensors",
        "int-payload",
        "empty-pth",
    ],
)
def test_cli_refuses_hostile_weights_in_one_line(case, tmp_path, small_state, capsys, recwarn):
    path, _, marker = _hostile_file(case, tmp_path, small_state)
    image = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(image)
    out = tmp_path / "out"
    assert main(["upscale", str(image), "-o", str(out), "--weights", str(path)]) == 1
    assert not out.exists() or not any(out.iterdir())
    assert not marker.exists()
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("cxrsr: error: ") and str(path) in err, err
    assert not [str(w.message) for w in recwarn], "a warning would add lines to the error output"
