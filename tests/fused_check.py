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
from cxrsr.weights import load_generator  # noqa: E402
from random_models import random_generator  # noqa: E402  (beside this script)


def main() -> None:
    what = sys.argv[1]
    result = {}
    if what == "random":
        x = torch.rand(2, 3, 5, 9)  # batch 2; several programs per row at 16-pixel blocks
        for scale in (2, 4):
            g = random_generator(scale, blocks=2, seed=scale, slopes_and_biases=True)
            with torch.no_grad():
                ref = g(x)
            out = FusedGenerator(g, torch.device("cpu"), torch.float32, block_w=16)(x)
            result[f"x{scale}"] = {"shape_ok": tuple(out.shape) == tuple(ref.shape),
                                   "max_abs": float((out - ref).abs().max())}
    elif what == "settings":  # every launch setting the autotuner may pick computes the same function
        from cxrsr.inference.fused import SEARCH_SPACE

        g = random_generator(4, blocks=1, seed=7, slopes_and_biases=True)
        x = torch.rand(1, 3, 2, 20)  # rows 20, 40 and 80 pixels wide: programs of 32 to 128 pixels all occur
        with torch.no_grad():
            ref = g(x)
        for bw, bco in sorted({(bw, bco) for bw, bco, _ in SEARCH_SPACE}):
            out = FusedGenerator(g, torch.device("cpu"), torch.float32, block_w=bw, block_co=bco, num_warps=8)(x)
            result[f"{bw}x{bco}"] = {"shape_ok": tuple(out.shape) == tuple(ref.shape),
                                     "max_abs": float((out - ref).abs().max())}
    elif what == "autotune":  # the autotuner's path: pruning, the per-shape key, the grid from its choice
        from cxrsr.inference.fused import tuned_settings

        g = random_generator(2, blocks=1, seed=3, slopes_and_biases=True)
        x = torch.rand(2, 3, 3, 20)
        with torch.no_grad():
            ref = g(x)
        fused = FusedGenerator(g, torch.device("cpu"), torch.float32, tune=True)
        out = fused(x)
        result["autotune"] = {"shape_ok": tuple(out.shape) == tuple(ref.shape),
                              "max_abs": float((out - ref).abs().max()), "settings": tuned_settings()}
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
