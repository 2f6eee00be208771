"""The Upscaler: a Swift-SRGAN generator plus everything needed to apply it to real images."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..io import InputFileError, array_to_pil, check_array, pil_to_array, read_image
from ..models import Generator
from ..weights import load_generator, resolve_weights
from .allocator import tune_cpu_allocator
from .consistency import DEFAULT_STEPS, back_project
from .device import resolve_device, resolve_precision
from .optimize import fold_batchnorm
from .tiling import auto_tile_size, upscale_tiled

log = logging.getLogger(__name__)

#: Tiling defaults in input pixels: blended overlap between tile cores, and context around each core that
#: is computed and cropped (see tiling.py for the measurement behind them).
DEFAULT_OVERLAP = 16
#: torch: PyTorch (BatchNorm folded; channels-last on the CPU). onnx: ONNX Runtime, fp32. triton: the fused
#: kernels of fused.py (CUDA).
BACKENDS = ("torch", "onnx", "triton")
DEFAULT_PAD = 24


class Upscaler:
    """Upscale images with a Swift-SRGAN generator.

    Input and output are the same kind: a numpy array (uint8, uint16 or float) comes back as an array of the
    same dtype, a PIL image as a PIL image of the same mode. A path is read (PNG, JPEG, TIFF, DICOM) and the
    upscaled pixels are returned as an array. Grey images are replicated to the model's three channels and
    the output averaged back to grey; 16-bit images keep their value range. The network's output is then
    back-projected onto the input (``consistency`` steps, see consistency.py), so that downscaled by the
    protocol's bicubic it gives back the input.

    On the CPU, constructing an Upscaler raises glibc's malloc thresholds for the whole process (large
    blocks are reused instead of memory-mapped anew; the process keeps its peak memory until it exits):
    ``tune_allocator=False`` or ``CXRSR_CPU_ALLOCATOR=system`` declines it (see inference/allocator.py).
    """

    def __init__(
        self,
        model: Generator,
        device: str | torch.device = "auto",
        precision: str = "auto",
        tile: int | str | None = "auto",
        overlap: int = DEFAULT_OVERLAP,
        pad: int = DEFAULT_PAD,
        weights_name: str = "custom",
        metadata: dict[str, str] | None = None,
        backend: str = "torch",
        tune_allocator: bool = True,
        consistency: int = DEFAULT_STEPS,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        if isinstance(consistency, bool) or not isinstance(consistency, int) or consistency < 0:
            raise ValueError(f"consistency must be a whole number of steps, 0 or more; got {consistency!r}")
        self.backend = backend
        #: Back-projection steps applied to every output (consistency.py); 0 returns the network's output.
        self.consistency = consistency
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        if backend == "onnx" and self.dtype != torch.float32:
            raise ValueError("the ONNX backend runs in fp32 only")
        # Fast path, same function: BatchNorm folded into the convolutions, and on the CPU the channels-last
        # layout (oneDNN), twice as fast there as the default layout (benchmarks/RESULTS.md). On CUDA the
        # project's reference measurements on one H100 put eager fp16 channels-last (86 img/s) below eager
        # fp32 (131 img/s), so CUDA keeps the default layout until `cxrsr bench` there says otherwise.
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        if self.device.type == "cpu" and tune_allocator:
            # Activations stay on the heap instead of being memory-mapped and faulted in again on every
            # layer: 2.5x on a 2-core CPU, same numbers (allocator.py explains it and how to decline it).
            tune_cpu_allocator()
        self.model = fold_batchnorm(model).to(self.device, self.dtype, memory_format=self.memory_format)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.runner = None
        if backend == "onnx":
            from .onnx import OnnxRunner, export_onnx

            self.runner = OnnxRunner(export_onnx(model), cuda=self.device.type == "cuda")
        self.fused = None
        if backend == "triton":
            from .fused import FusedGenerator

            self.fused = FusedGenerator(model, self.device, self.dtype)  # ValueError without CUDA or Triton
        if tile not in ("auto", None) and (not isinstance(tile, int) or tile < 16):
            raise ValueError(f"tile must be 'auto', None or an integer >= 16, got {tile!r}")
        self.tile = tile
        self.overlap = overlap
        self.pad = pad
        self.weights_name = weights_name
        self.metadata = metadata or {}

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        tile: int | str | None = "auto",
        backend: str = "torch",
        tune_allocator: bool = True,
        consistency: int = DEFAULT_STEPS,
    ) -> "Upscaler":
        """Load shipped weights by name (default: the package's default weights) or a weights file by path
        (.safetensors, or an upstream .pth / .pth.tar read with ``weights_only=True``). ``backend='onnx'``
        runs the network with ONNX Runtime (exported in memory), ``backend='triton'`` with fused kernels.
        ``consistency`` back-projection steps make the output agree with the input when downscaled by the
        protocol's bicubic (consistency.py); 0 returns the network's output unchanged."""
        path = resolve_weights(name_or_path)
        model, metadata = load_generator(path)
        name = str(name_or_path) if name_or_path is not None else path.stem
        return cls(model, device=device, precision=precision, tile=tile, weights_name=name, metadata=metadata,
                   backend=backend, tune_allocator=tune_allocator, consistency=consistency)

    @property
    def scale(self) -> int:
        return self.model.config.scale

    # ----------------------------------------------------------------------------------------- public API

    @overload
    def upscale(self, image: np.ndarray) -> np.ndarray: ...
    @overload
    def upscale(self, image: Image.Image) -> Image.Image: ...
    @overload
    def upscale(self, image: str | Path) -> np.ndarray: ...

    def upscale(self, image: Any, tile: int | str | None = None) -> Any:
        """Upscale an array, a PIL image or an image file by ``self.scale``; see the class docstring."""
        if isinstance(image, np.ndarray):
            return self.upscale_array(image, tile=tile)
        if isinstance(image, Image.Image):
            result = self.upscale_array(pil_to_array(image), tile=tile)
            out = array_to_pil(result)
            return out.convert(image.mode) if out.mode != image.mode and image.mode in ("1", "P", "PA", "CMYK", "YCbCr") else out
        if isinstance(image, (str, Path)):
            return self.upscale_array(read_image(image).array, tile=tile)
        raise TypeError(f"expected a numpy array, a PIL image or a path, got {type(image).__name__}")

    def upscale_array(
        self,
        array: np.ndarray,
        tile: int | str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Upscale (H, W) or (H, W, C) with C in 1-4; returns the same dtype and channel layout at scale x."""
        check_array(array)
        if array.dtype == np.bool_ or array.dtype.kind not in "uif":
            raise InputFileError("<array>", f"unsupported dtype {array.dtype}")
        squeeze = array.ndim == 2
        a = array[:, :, None] if squeeze else array
        channels = a.shape[2]
        has_alpha = channels in (2, 4)
        colour, alpha = (a[:, :, :-1], a[:, :, -1]) if has_alpha else (a, None)

        lo, hi = _value_range(colour)
        unit = _to_unit(colour, lo, hi)
        grey = unit.shape[2] == 1 or _is_grey(unit)
        sr = self._upscale_unit(unit[:, :, :1] if grey else unit, tile=tile, progress=progress)
        if grey and colour.shape[2] > 1:
            sr = np.repeat(sr, colour.shape[2], axis=2)
        result = _from_unit(sr, lo, hi, colour.dtype)
        if alpha is not None:
            alo, ahi = _value_range(alpha[:, :, None])
            a_up = _resize_bicubic(_to_unit(alpha[:, :, None], alo, ahi), self.scale)
            result = np.concatenate([result, _from_unit(a_up, alo, ahi, alpha.dtype)], axis=2)
        return result[:, :, 0] if squeeze else result

    # ------------------------------------------------------------------------------------------ internals

    def _upscale_unit(self, unit: np.ndarray, tile: int | str | None, progress=None) -> np.ndarray:
        """(H, W, C) float32 in [0, 1] with C = 1 (grey) or 3 (RGB) -> (sH, sW, C) float32 in [0, 1]."""
        h, w, c = unit.shape
        model_in = self.model.config.in_channels
        x = torch.from_numpy(np.ascontiguousarray(unit.transpose(2, 0, 1)))
        if c != model_in:
            if c == 1:
                x = x.expand(model_in, h, w)
            else:  # an RGB image for a single-channel model: use its luminance
                x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
        grey_out = c == 1

        def forward(batch: torch.Tensor) -> torch.Tensor:
            out = self._forward(batch)
            return out.mean(dim=1, keepdim=True) if grey_out and out.shape[1] != 1 else out

        tile = self.tile if tile is None else tile
        if tile == "auto":
            tile = auto_tile_size(self.device, self.model.config.channels, self.scale, self.dtype, self.pad)
        if tile is None or (h <= tile and w <= tile):
            out = forward(x.unsqueeze(0))[0].numpy()
            if progress is not None:
                progress(1, 1)
        else:
            out = upscale_tiled(forward, x, self.scale, 1 if grey_out else out_channels(self.model), tile,
                                self.overlap, self.pad, progress)
        np.clip(out, 0.0, 1.0, out=out)
        if self.consistency:
            back_project(out, x[: out.shape[0]].numpy(), self.scale, self.consistency)
        return out.transpose(1, 2, 0)

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the generator on a float32 CPU batch; returns float32 on the CPU. A half-precision result
        with non-finite values is recomputed in fp32 rather than returned black or broken."""
        if self.runner is not None:
            return torch.from_numpy(self.runner(batch.numpy()))
        x = batch.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        out = self.fused(x) if self.fused is not None else self.model(x)
        if self.dtype != torch.float32 and not torch.isfinite(out).all():
            log.warning("non-finite values in %s output; recomputing this tile in fp32", self.dtype)
            out = self.model.float()(x.float())
            self.model.to(self.dtype)
        return out.float().cpu()


def out_channels(model: Generator) -> int:
    return model.config.in_channels


def _value_range(a: np.ndarray) -> tuple[float, float]:
    """The values mapped to 0 and 1: the full range for uint8, the image's own range for 16-bit and other
    integers (so a 12-bit image in uint16 keeps its range), [0, 1] for floats already in it."""
    if a.dtype == np.uint8:
        return 0.0, 255.0
    lo, hi = float(a.min()), float(a.max())
    if a.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return lo, hi


def _to_unit(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.float32)
    return ((a.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)


def _from_unit(unit: np.ndarray, lo: float, hi: float, dtype: np.dtype) -> np.ndarray:
    """Map [0, 1] back to [lo, hi] in ``dtype``. float32 is exact enough for integers up to 16 bits and
    halves the peak memory of a 12000 x 12000 output compared with float64."""
    work = np.float64 if np.dtype(dtype) == np.float64 or np.dtype(dtype).itemsize > 2 else np.float32
    values = unit.astype(work, copy=True)
    values *= hi - lo
    values += lo
    if np.dtype(dtype).kind in "ui":
        np.rint(values, out=values)
    np.clip(values, lo, hi, out=values)
    return values.astype(dtype, copy=False)


def _is_grey(unit: np.ndarray) -> bool:
    """RGB whose three channels are equal (a grey image saved as RGB)."""
    return unit.shape[2] == 3 and np.array_equal(unit[:, :, 0], unit[:, :, 1]) and np.array_equal(unit[:, :, 0], unit[:, :, 2])


def _resize_bicubic(unit: np.ndarray, scale: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(unit.transpose(2, 0, 1))).unsqueeze(0)
    up = F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False)
    return up[0].clamp(0, 1).numpy().transpose(1, 2, 0)
