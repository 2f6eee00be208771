"""Run the fused Triton generator under the interpreter on the CPU and print how far it is from the eager
reference (max abs difference) as JSON. Run as a script by test_fastpaths.py: TRITON_INTERPRET must be set
before Triton is imported, so this runs in its own process."""

import json
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cxrsr.inference.fused import FusedGenerator  # noqa: E402
from cxrsr.models import Generator, GeneratorConfig  # noqa: E402
from cxrsr.weights import load_generator  # noqa: E402


def random_generator(scale: int) -> Generator:
    torch.manual_seed(scale)
    g = Generator(GeneratorConfig(scale=scale, channels=16, blocks=2))
    for m in g.modules():  # non-trivial BatchNorm statistics and PReLU slopes, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
        if isinstance(m, torch.nn.PReLU):
            m.weight.data.uniform_(-0.3, 0.5)
        if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            m.bias.data.uniform_(-0.1, 0.1)
    return g.eval()


def main() -> None:
    what = sys.argv[1]
    result = {}
    if what == "random":
        x = torch.rand(2, 3, 5, 9)  # batch 2; several programs per row at 16-pixel blocks
        for scale in (2, 4):
            g = random_generator(scale)
            with torch.no_grad():
                ref = g(x)
            out = FusedGenerator(g, torch.device("cpu"), torch.float32, block_w=16)(x)
            result[f"x{scale}"] = {"shape_ok": tuple(out.shape) == tuple(ref.shape),
                                   "max_abs": float((out - ref).abs().max())}
    elif what == "upscaler":  # the triton backend of Upscaler equals the torch backend: sys.argv[2] = weights
        from cxrsr import Upscaler

        image = np.random.default_rng(0).integers(0, 65536, (7, 11), dtype=np.uint16)
        fused = Upscaler.from_pretrained(sys.argv[2], device="cpu", backend="triton").upscale(image)
        plain = Upscaler.from_pretrained(sys.argv[2], device="cpu").upscale(image)
        result["upscaler"] = {"shape_ok": fused.shape == plain.shape == (28, 44) and fused.dtype == np.uint16,
                              "max_abs": float(np.abs(fused.astype(float) - plain.astype(float)).max())}
    else:  # the upstream weights on a real chest X-ray crop: sys.argv[2] = weights, sys.argv[3] = .npy crop
        g, _ = load_generator(sys.argv[2])
        crop = np.load(sys.argv[3])
        x = torch.from_numpy(crop)[None, None].expand(1, 3, -1, -1).contiguous()
        with torch.no_grad():
            ref = g(x)
        for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            out = FusedGenerator(g, torch.device("cpu"), dtype, block_w=32)(x)
            result[name] = {"shape_ok": tuple(out.shape) == tuple(ref.shape),
                            "max_abs": float((out - ref).abs().max()),
                            "rms": float((out - ref).pow(2).mean().sqrt())}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
