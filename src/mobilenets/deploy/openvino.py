"""OpenVINO: export to its IR (`.xml` graph + `.bin` weights) and run it on the CPU.

    mobilenets export CHECKPOINT --format openvino [--precision f32|bf16|int8 --calibration DATA]

The IR is converted from the project's ONNX export (`export.export_onnx`: BatchNorm folded, "same"
padding static), so OpenVINO sees the graph every other path was checked on. Weights are saved in
float32 (`save_model` would compress them to float16 by default, which costs parity).

Precisions:
- f32: the IR as converted; the runner forces INFERENCE_PRECISION_HINT=f32, because on CPUs with
  AMX or AVX-512 BF16 OpenVINO's default is bf16 (its logits differ from PyTorch's by up to 0.4).
- bf16: the same float32 IR; bf16 is a compile-time choice of OpenVINO, so the sidecar records it and
  the runner asks for it. On a CPU without bf16 support OpenVINO silently runs float32: the runner
  reads back what it got (`precision_in_effect`) so that nobody reports float32 figures as bf16.
- int8: post-training quantization with nncf (`nncf.quantize`, min-max statistics over the
  calibration images, per-channel symmetric weights, its default "performance" preset), the same
  calibration images the ONNX Runtime int8 path uses.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..models import MobileNet
from .base import quiet_tools, run_in_batches
from .export import export_onnx

PRECISIONS = ("f32", "bf16", "int8")
HINTS = {"f32": "f32", "bf16": "bf16", "int8": "f32"}  # int8 layers run int8; the rest in f32


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin can run natively here, e.g. ['FP32', 'INT8', 'BF16', ...]."""
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def supports_bf16() -> bool:
    return "BF16" in cpu_capabilities()


def export_openvino(
    model: MobileNet,
    path: str | os.PathLike,
    *,
    precision: str = "f32",
    calibration: np.ndarray | None = None,
    batch_size: int | None = None,
    resolution: int | None = None,
) -> Path:
    """Write `model` as an OpenVINO IR at `path` (.xml, with its .bin beside it).

    batch_size None: any batch (the runner compiles one static shape per batch it is given).
    """
    import openvino as ov

    if precision not in PRECISIONS:
        raise ValueError(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "int8" and (calibration is None or len(calibration) == 0):
        raise ValueError("OpenVINO int8 needs calibration images (--calibration DATA)")
    path = Path(path)
    resolution = resolution or model.config.resolution
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(
            model,
            Path(tmp) / "model.onnx",
            resolution=resolution,
            dynamic_batch=batch_size is None,
            batch_size=batch_size or 1,
        )
        converted = ov.convert_model(str(onnx_path))
    if precision == "int8":
        assert calibration is not None  # checked above
        converted = _quantize(converted, calibration, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(converted, str(path), compress_to_fp16=False)
    return path


def _quantize(model: Any, calibration: np.ndarray, batch_size: int | None) -> Any:  # openvino.Model
    import nncf

    # A file of fixed batch takes only full batches; one of any batch takes the images 32 at a time.
    step = batch_size or 32
    usable = len(calibration) - len(calibration) % step if batch_size else len(calibration)
    if usable == 0:
        raise ValueError(
            f"OpenVINO int8 at batch {step} needs at least {step} calibration images; got {len(calibration)}"
        )
    batches = [calibration[i : i + step] for i in range(0, usable, step)]
    nncf.set_log_level(logging.ERROR)
    with quiet_tools():
        return nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))


class OpenVINORunner:
    """Runs an IR on OpenVINO's CPU plugin: float32 N×C×H×W normalized images in, float32 logits out."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, precision: str = "f32"):
        import openvino as ov

        if precision not in PRECISIONS:
            raise ValueError(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        shape = self.model.inputs[0].get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else None for d in shape)
        self.config: dict[str, str | int] = {
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
        }  # one stream: the measurement every runtime gets
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.requested_precision = precision
        self._compiled: dict[int, object] = {}
        # What OpenVINO chose, not what was asked: a CPU without bf16 runs a bf16 request in f32.
        hint = self._compile(self.input_shape[0] or 1).get_property("INFERENCE_PRECISION_HINT").to_string()
        self.precision_in_effect = "int8" if precision == "int8" else hint

    def _compile(self, batch: int) -> Any:  # an openvino.CompiledModel
        """One static shape per batch size: OpenVINO's CPU kernels are fastest on static shapes."""
        if batch not in self._compiled:
            model = self.model
            if self.input_shape[0] is None:
                model = self.model.clone()
                model.reshape({0: [batch, *self.input_shape[1:]]})
            self._compiled[batch] = self.core.compile_model(model, "CPU", self.config)
        return self._compiled[batch]

    def run(self, images: np.ndarray) -> np.ndarray:
        fixed = self.input_shape[0]
        batch = fixed or max(len(images), 1)
        compiled = self._compile(batch)
        return run_in_batches(lambda chunk: compiled(chunk)[0], images, batch, pad=fixed is not None)
