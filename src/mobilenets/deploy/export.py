"""From a checkpoint (or a zoo model) to a deployable ONNX file: BN folding, export, int8
quantization, and the checks that the deployed model still computes what the PyTorch one does.

    mobilenets export CHECKPOINT --format onnx [--opset N] [--dynamic-batch] [--fp16]
    mobilenets export CHECKPOINT --int8 --calibration FOLDER [--calibration-images N]

Exporter: `torch.onnx.export(dynamo=True)` (torch.export + onnxscript). On these models it gives
the cleaner graph: one `Conv` per convolution (depthwise ones with group = channels), single
`HardSwish` / `HardSigmoid` nodes, TensorFlow "same" padding folded into the Conv's `pads`, and no
Identity/Constant/Shape clutter. The TorchScript exporter (`dynamo=False`) adds 37 Identity nodes
to MobileNetV3-Small and, for "same" padding, ~290 Shape/Gather/Cast/Pad/... nodes that recompute
the padding at run time. The dynamo exporter emits opset 18 at the lowest (ONNX's version
converter cannot take its ReduceMean below 18), so MIN_OPSET is 18; HardSwish (opset ≥ 14) and
HardSigmoid (≥ 6) are native ops there.

int8: static post-training quantization with ONNX Runtime's tools, QDQ format. See
`INT8_SETTINGS` and docs/deployment.md for which settings keep MobileNets accurate.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..costs.reference import AnyModel
from ..fuse import fuse_bn
from ..models import MobileNet
from .base import quiet_tools, run_in_batches, run_torch

FORMATS = ("onnx",)
MIN_OPSET = 18
DEFAULT_OPSET = 18
MAX_OPSET = 21  # the highest checked with this exporter and ONNX Runtime 1.32
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


# --------------------------------------------------------------------------------------------
# ONNX export and validation
# --------------------------------------------------------------------------------------------
class _Float16Body(nn.Module):
    """float32 in and out, float16 inside: callers keep feeding float32 images."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def check_opset(opset: int) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET} (the dynamo exporter emits "
            f"opset {MIN_OPSET} at the lowest); got {opset!r}"
        )


def export_onnx(
    model: AnyModel,
    path: str | os.PathLike,
    *,
    resolution: int | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    fp16: bool = False,
    batch_size: int = 1,
) -> Path:
    """Fold BatchNorm, export `model` to ONNX at `path`, check it with onnx.checker.

    The input is `input` (N×C×H×W float32, N fixed to batch_size unless dynamic_batch), the output
    `logits`. With fp16 the weights and activations are float16 but inputs and outputs stay float32.
    """
    import onnx

    check_opset(opset)
    if not model.has_classifier:
        raise ValueError(
            "export needs a classifier; this is a feature extractor (features_only or num_classes=0)"
        )
    resolution = resolution or model.config.resolution
    deployable: nn.Module = fuse_bn(model)  # a copy; the exporter would fold BN too, but this is explicit
    if fp16:
        deployable = _Float16Body(deployable)
    example = torch.randn(batch_size, model.config.in_channels, resolution, resolution)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_tools():
        program = torch.onnx.export(
            deployable,
            (example,),
            dynamo=True,
            opset_version=opset,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes,
        )
    assert program is not None  # the dynamo exporter always returns its program
    program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return path


@dataclass
class GraphSummary:
    opset: int
    op_counts: dict[str, int]
    depthwise_convs: int  # Conv nodes with group == input channels > 1
    batch_dim: int | str  # a number, or the name of a dynamic dimension


def summarize_graph(path: str | os.PathLike) -> GraphSummary:
    import onnx

    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    weights = {init.name: init for init in graph.initializer}
    depthwise = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "QLinearConv"):
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        # For QDQ graphs the weight arrives through DequantizeLinear; its input name leads back.
        weight = weights.get(node.input[1] if node.op_type == "Conv" else node.input[3])
        if group > 1 and (weight is None or weight.dims[1] == 1):
            depthwise += 1
    opset = next(o.version for o in graph_model.opset_import if o.domain in ("", "ai.onnx"))
    dim = graph.input[0].type.tensor_type.shape.dim[0]
    return GraphSummary(
        opset,
        dict(Counter(n.op_type for n in graph.node)),
        depthwise,
        f"dynamic ({dim.dim_param})" if dim.dim_param else dim.dim_value,
    )


def ort_session(
    path: str | os.PathLike, threads: int | None = None, optimization: str = "all", spinning: bool = True
) -> Any:  # an onnxruntime.InferenceSession (onnxruntime has no type information)
    """An ONNX Runtime CPU session: the settings every measurement in this library uses.

    optimization "all" includes the layout transforms (NCHWc blocking for float convolutions,
    NHWC for int8 QLinearConv) that make ONNX Runtime fast on x86. spinning=False makes idle
    worker threads sleep instead of busy-waiting for the next op: slower by a little on an idle
    machine, much faster when other processes compete for the cores (docs/benchmarks.md).
    """
    import onnxruntime as ort

    levels = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise ValueError(f"optimization must be one of {', '.join(levels)}; got {optimization!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # a MobileNet is a chain: nothing runs in parallel between ops
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(session: Any, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits for `images`, in batches (the file's own batch when it is fixed)."""
    fixed = session.get_inputs()[0].shape[0]
    return run_in_batches(
        lambda batch: session.run(None, {INPUT_NAME: batch})[0],
        images,
        fixed if isinstance(fixed, int) else batch_size,
        pad=isinstance(fixed, int),
    )


class OnnxRunner:
    """ONNX Runtime on the CPU through `ort_session` (threads sleep when idle): float32 N×C×H×W
    normalized images in, float32 logits out, any N."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.session = ort_session(path, threads=threads, spinning=False)
        batch, *image = self.session.get_inputs()[0].shape
        self.input_shape = (batch if isinstance(batch, int) else None, *image)

    def run(self, images: np.ndarray) -> np.ndarray:
        return run_session(self.session, images, batch_size=max(len(images), 1))


ONNX_PRECISIONS = ("f32", "f16", "int8")


def export_onnx_model(
    model: MobileNet,
    path: str | os.PathLike,
    *,
    precision: str = "f32",
    calibration: np.ndarray | None = None,
    batch_size: int | None = 1,
    resolution: int | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """The ONNX file of one precision (the runtime registry's entry point; `export_onnx` and
    `quantize_int8` are the steps). batch_size None: any batch."""
    if precision not in ONNX_PRECISIONS:
        raise ValueError(f"ONNX precision must be one of {', '.join(ONNX_PRECISIONS)}; got {precision!r}")
    options: dict[str, Any] = dict(
        resolution=resolution, opset=opset, dynamic_batch=batch_size is None, batch_size=batch_size or 1
    )
    if precision != "int8":
        return export_onnx(model, path, fp16=precision == "f16", **options)
    if calibration is None:
        raise ValueError("ONNX int8 needs calibration images (--calibration DATA)")
    with tempfile.TemporaryDirectory() as tmp:
        float_path = export_onnx(model, Path(tmp) / "float.onnx", **options)
        return quantize_int8(float_path, path, calibration, INT8_DEFAULT)


@dataclass
class Parity:
    max_abs_diff: float
    max_abs_output: float
    top1_agreement: float

    @property
    def relative(self) -> float:
        return self.max_abs_diff / max(self.max_abs_output, 1e-12)


def compare_with_torch(path: str | os.PathLike, model: AnyModel, images: np.ndarray) -> Parity:
    """ONNX Runtime's outputs for `path` against the (unfused, float32) PyTorch model's."""
    expected = run_torch(model.eval(), images)
    actual = run_session(ort_session(path), images)
    return Parity(
        float(np.abs(actual - expected).max()),
        float(np.abs(expected).max()),
        float((actual.argmax(1) == expected.argmax(1)).mean()),
    )


# --------------------------------------------------------------------------------------------
# int8 quantization
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Int8Setting:
    """One way of calling ONNX Runtime's `quantize_static`; INT8_SETTINGS names the ones we measured."""

    quant_format: str = "qdq"  # "qdq" (QuantizeLinear/DequantizeLinear pairs) or "qoperator" (QLinearConv...)
    per_channel: bool = True  # one weight scale per output channel
    activations: str = "uint8"  # "uint8" or "int8"
    calibration: str = "minmax"  # "minmax", "entropy" or "percentile"
    keep_float: str = "none"  # convolutions left in float: "none", "first_conv", "depthwise"
    # 7-bit weights where u8·s8 products could overflow on CPUs without VNNI: "none", "first_conv", "all"
    reduce_range: str = "first_conv"

    def describe(self) -> str:
        parts = [
            self.quant_format.upper(),
            "per-channel" if self.per_channel else "per-tensor",
            f"{self.activations} activations",
            f"{self.calibration} calibration",
        ]
        if self.keep_float != "none":
            parts.append(f"{self.keep_float} kept float")
        if self.reduce_range != "none":
            where = "" if self.reduce_range == "all" else f" on {self.reduce_range}"
            parts.append(f"reduced range{where}")
        return ", ".join(parts)


# The default is the one that works on MobileNets (docs/benchmarks.md has every setting measured):
# - per-channel weights: folding BatchNorm can leave one depthwise channel with weights 1,000×
#   larger than its neighbours' (a channel whose BN variance collapsed); one per-tensor scale then
#   rounds every other channel to a few levels and the model drops to chance. Per-channel scales
#   are immune, and cost nothing measurable in speed;
# - uint8 activations × int8 weights: the u8·s8 VNNI instruction ONNX Runtime's x86 kernels use;
# - QDQ: ONNX Runtime fuses each DequantizeLinear → Conv → QuantizeLinear into an NHWC QLinearConv
#   and the quantizer drops the Relu/Clip (ReLU6 included) into the output's quantization range;
# - 7-bit weights on the first convolution only: on CPUs without VNNI (AVX2, e.g. AMD Zen 2/3)
#   ONNX Runtime sums pairs of u8·s8 products in 16 bits with saturation. The first convolution
#   is the one layer whose uint8 input spans the whole range (normalized pixels, zero point ~128,
#   not ReLU outputs near zero), and it overflows: on the shipped CIFAR-10 model full-range
#   weights agreed with float32 on 92.58% of the validation images, 98.54% with this layer's
#   weights at 7 bits (98.12% with every layer at 7 bits). It costs one bit on 27·C weights and
#   no time; ONNX Runtime's documentation recommends reduced range on non-VNNI CPUs;
# - min-max calibration: percentile agreed 0.2-0.4 points more often on our CIFAR-10 models,
#   but ONNX Runtime's histogram calibrators keep every calibration activation in memory
#   (MobileNetV1 at 224: 20 MB per image, 10 GB for 512 images).
INT8_DEFAULT = Int8Setting()
INT8_SETTINGS: dict[str, Int8Setting] = {
    "default": INT8_DEFAULT,
    "float-first-conv": dataclasses.replace(INT8_DEFAULT, keep_float="first_conv"),
    "per-tensor": dataclasses.replace(INT8_DEFAULT, per_channel=False),
    "qoperator": dataclasses.replace(INT8_DEFAULT, quant_format="qoperator"),
    "int8-activations": dataclasses.replace(INT8_DEFAULT, activations="int8"),
    "percentile": dataclasses.replace(INT8_DEFAULT, calibration="percentile"),
    "entropy": dataclasses.replace(INT8_DEFAULT, calibration="entropy"),
    "reduce-range": dataclasses.replace(INT8_DEFAULT, reduce_range="all"),
    "full-range": dataclasses.replace(INT8_DEFAULT, reduce_range="none"),  # the default before 2026-11
    # Slower, and ONNX Runtime's WeightBiasQuantization optimizer re-quantizes the float depthwise
    # weights per tensor (onnxruntime#24537), which breaks it where per-tensor breaks.
    "float-depthwise": dataclasses.replace(INT8_DEFAULT, keep_float="depthwise"),
}


class _ArrayReader:
    """Feeds calibration images to ONNX Runtime in batches (CalibrationDataReader protocol)."""

    def __init__(self, images: np.ndarray, batch_size: int):
        self.batches = iter([images[i : i + batch_size] for i in range(0, len(images), batch_size)])

    def get_next(self) -> dict | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:  # part of the protocol; calibration reads once
        pass


def _nodes_kept_float(path: Path, keep_float: str) -> list[str]:
    import onnx

    graph = onnx.load(str(path)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if keep_float == "first_conv":
        return [convs[0].name] if convs else []
    if keep_float == "depthwise":
        return [n.name for n in convs if next((a.i for a in n.attribute if a.name == "group"), 1) > 1]
    return []


def quantize_int8(
    float_path: str | os.PathLike,
    output: str | os.PathLike,
    calibration: np.ndarray,
    setting: Int8Setting = INT8_DEFAULT,
) -> Path:
    """Static int8 quantization of the float ONNX model at `float_path`, calibrated on
    `calibration` (N×3×H×W float32, preprocessed as the model expects)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    choices = {
        "quant_format": ("qdq", "qoperator"),
        "activations": ("uint8", "int8"),
        "calibration": ("minmax", "entropy", "percentile"),
        "keep_float": ("none", "first_conv", "depthwise"),
        "reduce_range": ("none", "first_conv", "all"),
    }
    for name, allowed in choices.items():
        if getattr(setting, name) not in allowed:
            raise ValueError(
                f"Int8Setting.{name} must be one of {', '.join(allowed)}; got {getattr(setting, name)!r}"
            )
    if len(calibration) == 0:
        raise ValueError("int8 quantization needs at least one calibration image")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    batch_dim = onnx.load(str(float_path)).graph.input[0].type.tensor_type.shape.dim[0]
    batch_size = batch_dim.dim_value or 32
    with tempfile.TemporaryDirectory() as tmp:
        # Shape inference and constant folding first, as ONNX Runtime recommends before quantizing.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        overrides = {}
        if setting.reduce_range == "first_conv" and setting.keep_float != "first_conv":
            convs = [n for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
            overrides = {convs[0].input[1]: [{"reduce_range": True}]} if convs else {}
        quantize_static(
            str(prepared),
            str(output),
            _ArrayReader(calibration, batch_size),
            quant_format=QuantFormat.QDQ if setting.quant_format == "qdq" else QuantFormat.QOperator,
            per_channel=setting.per_channel,
            reduce_range=setting.reduce_range == "all",
            activation_type=QuantType.QUInt8 if setting.activations == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[setting.calibration],
            nodes_to_exclude=_nodes_kept_float(prepared, setting.keep_float),
            extra_options={"TensorQuantOverrides": overrides} if overrides else {},
        )
    return output
