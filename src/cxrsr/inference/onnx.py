"""ONNX export of the generator (dynamic batch, height and width) and an ONNX Runtime runner."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..models import Generator
from .optimize import fold_batchnorm

OPSET = 17


def export_onnx(model: Generator, path: str | Path | None = None, opset: int = OPSET) -> bytes:
    """Export the (BatchNorm-folded) generator to ONNX with dynamic N, H, W; PixelShuffle becomes
    DepthToSpace. Writes ``path`` when given and returns the serialised model."""
    net = fold_batchnorm(model).float().eval()
    dummy = torch.rand(1, model.config.in_channels, 32, 32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            net, dummy, buffer, input_names=["lr"], output_names=["sr"], opset_version=opset,
            dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"},
                          "sr": {0: "batch", 2: "out_height", 3: "out_width"}},
            dynamo=False,
        )
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


class OnnxRunner:
    """Runs an exported generator with ONNX Runtime on the CPU (or CUDA when its provider is installed)."""

    def __init__(self, model: bytes | str | Path, threads: int | None = None, cuda: bool = False) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeError("the ONNX backend needs onnxruntime: pip install 'cxrsr[onnx]'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        self.in_channels = shape[1] if isinstance(shape[1], int) else 3

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
