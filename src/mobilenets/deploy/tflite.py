"""LiteRT (formerly TensorFlow Lite) export through litert-torch, with no TensorFlow, and a runner
for the .tflite files on the `ai-edge-litert` interpreter: the seed's phone path.

    export_tflite(model, "model.tflite")                                   # float32
    export_tflite(model, "model_int8.tflite", int8=True, calibration=images)
    TfliteRunner("model.tflite").run(images)                               # logits

The exported module is `base.DeployableClassifier` (BatchNorm folded, a head delegates take whole, and
a reshape litert-torch lowers with a dynamic batch, which `flatten` is not).
litert-torch lowers the NCHW PyTorch graph to LiteRT's NHWC ops with a transpose at the input and
none inside the network, so the file takes the same N×C×H×W float32 images as every other format.

int8: litert-torch's PT2E quantizer, static, int8 weights with per-channel symmetric scales and
int8 activations calibrated on `calibration`, lowered to integer LiteRT kernels. A file whose input
or output tensor is itself int8 (LiteRT's "full-integer" interface) is handled by the runner: it
quantizes the images with the input tensor's scale and zero point and dequantizes the logits.

Both packages are optional: `pip install 'mobilenets[tflite]'`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..models import MobileNet
from .base import (
    MAX_DYNAMIC_BATCH,
    DeployableClassifier,
    first_line,
    native_output_silenced,
    quantize_pt2e,
    quiet_converter,
    require,
    run_images,
    traced_input,
    with_dynamic_batch,
)


def export_tflite(
    model: MobileNet,
    path: str | os.PathLike,
    *,
    int8: bool = False,
    calibration: np.ndarray | None = None,
    batch_size: int = 1,
    resolution: int | None = None,
) -> Path:
    """Fold BatchNorm, convert `model` with litert-torch, write the LiteRT flatbuffer to `path`.

    The input is N×C×H×W float32 at `resolution` (default: the model's), N dynamic (the file's
    batch dimension is -1) except for models with explicit padding ("same"/"keras"), whose N is
    `batch_size` (the runner pads and splits), the output
    the logits. With int8, PT2E static int8 quantization calibrated on `calibration`.
    """
    require("litert_torch", "tflite", "LiteRT export")
    import litert_torch

    module: torch.nn.Module = DeployableClassifier(model)
    example, dynamic_batch = traced_input(model, batch_size, resolution)
    # litert-torch cannot lower an explicit pad (TensorFlow "same"/"keras" padding) over a symbolic
    # batch dimension (its jax pad rejects it): such models get the fixed batch `batch_size`.
    fixed_batch = model.config.padding != "torch"
    dynamic_shapes = None if fixed_batch else dynamic_batch
    traced = example if fixed_batch else with_dynamic_batch(example)
    config = None
    with quiet_converter():
        if int8:
            from litert_torch.quantize import pt2e_quantizer
            from litert_torch.quantize.quant_config import QuantConfig

            quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
                pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
            )
            # litert-torch folds the quantize ops itself (its own tests convert with fold_quantize=False)
            module = quantize_pt2e(
                module,
                quantizer,
                example,
                dynamic_shapes,
                calibration,
                fold_quantize=False,
            )
            config = QuantConfig(pt2e_quantizer=quantizer)
        converted = litert_torch.convert(
            module, (traced,), quant_config=config, dynamic_shapes=dynamic_shapes
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        converted.export(str(path))
    return path


class TfliteRunner:
    """Runs a .tflite classifier with the ai-edge-litert interpreter (its XNNPACK delegate).

    `input_shape` is (N, C, H, W) with N None when the file takes any batch; `run` takes any number
    of float32 images (normalized, N×C×H×W) and returns float32 logits, quantizing and
    dequantizing when the file's input or output tensor is integer.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        require("ai_edge_litert", "tflite", "LiteRT")
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no LiteRT model at {self.path}")
        try:
            with native_output_silenced():  # the interpreter announces its XNNPACK delegate
                self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as error:
            raise ValueError(
                f"{self.path} is not a valid LiteRT model ({first_line(error)}); "
                "export it again: mobilenets export CHECKPOINT --format tflite"
            ) from None
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0]["shape"]) != 4:
            raise ValueError(
                f"{self.path} does not hold a classifier taking N×C×H×W images and returning "
                "logits; export it with: mobilenets export CHECKPOINT --format tflite"
            )
        self.input, self.output = inputs[0], outputs[0]
        shape = tuple(int(size) for size in self.input["shape"])
        self.dynamic = int(self.input["shape_signature"][0]) == -1
        self.input_shape = ((None,) if self.dynamic else (shape[0],)) + shape[1:]
        self._allocated_batch = shape[0]

    def run(self, images: np.ndarray) -> np.ndarray:
        return run_images(self._run_batch, images, self.input_shape, self.path, MAX_DYNAMIC_BATCH)

    def _run_batch(self, batch: np.ndarray) -> np.ndarray:
        if self.dynamic and len(batch) != self._allocated_batch:
            self.interpreter.resize_tensor_input(self.input["index"], list(batch.shape))
            self.interpreter.allocate_tensors()
            self._allocated_batch = len(batch)
        self.interpreter.set_tensor(self.input["index"], quantize(batch, self.input))
        self.interpreter.invoke()
        return dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)


def quantize(values: np.ndarray, tensor: dict) -> np.ndarray:
    """`values` in the tensor's type: unchanged for a float tensor; for an integer one
    round(x / scale) + zero_point, saturated to the type's range."""
    dtype = np.dtype(tensor["dtype"])
    if dtype.kind == "f":
        return values.astype(dtype, copy=False)
    scale, zero_point = tensor["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, tensor: dict) -> np.ndarray:
    if np.dtype(tensor["dtype"]).kind == "f":
        return values.astype(np.float32, copy=True)
    scale, zero_point = tensor["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
