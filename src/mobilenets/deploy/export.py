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

import contextlib
import dataclasses
import importlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import check_finite, load_checkpoint
from ..costs.reference import AnyModel
from ..data import (
    ImageFolder,
    list_images,  # noqa: F401  (the scanner lives in data/; importable here for callers)
    preprocess_image,
)
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..factory import create_model
from ..fuse import fuse_bn
from ..models import MobileNet
from ..zoo import list_models

FORMATS = ("onnx",)
MIN_OPSET = 18
DEFAULT_OPSET = 18
MAX_OPSET = 21  # the highest checked with this exporter and ONNX Runtime 1.32
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# IMAGENET_MEAN/STD: used when a model carries no preprocessing of its own (zoo models).


# --------------------------------------------------------------------------------------------
# Where a model comes from
# --------------------------------------------------------------------------------------------
@dataclass
class ModelSource:
    """A model ready for export or benchmarking, with what is needed to feed it images."""

    model: AnyModel  # eval mode, unfused: the reference every exported form is compared with
    label: str  # the checkpoint path or the zoo name
    preprocessing: dict  # {"size": int, "mean": [3], "std": [3]}
    class_names: list[str] | None = None
    from_checkpoint: bool = False
    split: dict | None = None  # the checkpoint's validation split: exported files carry it for eval


def load_source(spec: str, model_options: dict | None = None, seed: int = 0) -> ModelSource:
    """A checkpoint path, or a zoo name (built with random weights from `seed`, which is enough to
    time it or to check an export)."""
    model_options = model_options or {}
    if spec in list_models():
        torch.manual_seed(seed)
        model = create_model(spec, **model_options).eval()
        return ModelSource(model, spec, default_preprocessing(model))
    if model_options:
        flags = ", ".join(sorted(model_options))
        raise ValueError(f"model options ({flags}) apply to zoo model names, not to the checkpoint {spec}")
    if not Path(spec).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {spec} (and it is not a zoo model: {', '.join(list_models())})"
        )
    checkpoint = load_checkpoint(spec)
    model = checkpoint.model.eval()
    check_finite(model, f"cannot export {spec}")
    if not model.has_classifier:
        raise ValueError(
            f"{spec} holds a feature extractor (features_only or num_classes=0); export needs a classifier"
        )
    preprocessing = {**default_preprocessing(model), **(checkpoint.preprocessing or {})}
    return ModelSource(
        model,
        spec,
        preprocessing,
        checkpoint.class_names,
        from_checkpoint=True,
        split=checkpoint.metadata.get("split"),
    )


def default_preprocessing(model: AnyModel) -> dict:
    return {"size": model.config.resolution, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


# --------------------------------------------------------------------------------------------
# Images (calibration and evaluation)
# --------------------------------------------------------------------------------------------
def load_images(paths: list[Path], preprocessing: dict, label: str = "reading images") -> np.ndarray:
    """Each file through the checkpoint's evaluation pipeline (`data.preprocess_image`, the same
    one `eval` and `predict` use), as an N×3×size×size float32 array (a progress bar on a terminal)."""
    from tqdm import tqdm

    if not paths:
        return np.empty((0, 3, int(preprocessing["size"]), int(preprocessing["size"])), dtype=np.float32)
    files = tqdm(paths, desc=label, unit="image", file=sys.stderr, disable=None, leave=False)
    return np.concatenate([preprocess_image(path, preprocessing).numpy() for path in files])


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


class MissingPackage(ValueError):
    """An optional package a path needs is not installed (one line naming the fix, exit code 2)."""


VERBOSE_ENV = "MOBILENETS_VERBOSE"  # `mobilenets -v` sets it: native libraries may speak


@contextlib.contextmanager
def native_output_silenced():
    """Native libraries (ExecuTorch's runtime, LiteRT's interpreter and converter, absl, torchao's
    loader) write log lines straight to file descriptors 1 and 2, past Python's sys.stdout and
    sys.stderr; for the length of the block both descriptors point at a scratch file that is then
    dropped, unless $MOBILENETS_VERBOSE is 1 (`mobilenets -v`)."""
    if os.environ.get(VERBOSE_ENV) == "1":
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for descriptor in saved:
            os.close(descriptor)


def require(package: str, extra: str, user: str) -> None:
    """Import `package` or fail with one line: `user` needs it, `pip install 'mobilenets[extra]'`."""
    try:
        with native_output_silenced():  # some log as they load (absl, torchao's optional kernels)
            importlib.import_module(package)
    except ImportError:
        raise MissingPackage(
            f"{user} needs the Python package {package!r}, which is not installed: "
            f"pip install 'mobilenets[{extra}]'"
        ) from None


@contextlib.contextmanager
def quiet_tools(logger_name: str = "torch.onnx") -> Iterator[None]:
    """The dynamo exporter logs about optional torchvision ops and warns about internals, nncf draws
    progress bars, ExecuTorch's and LiteRT's lowerings log to the root logger (logger_name "");
    none of it concerns our users, and `bench --format json` needs a clean stdout."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), native_output_silenced():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


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


def run_in_batches(
    call: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch_size: int, pad: bool
) -> np.ndarray:
    """`call` on consecutive batches of `images`; with `pad` (a file whose batch is fixed) the last
    batch is filled up with zeros to `batch_size` and the padding's outputs are dropped."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    if len(images) == 0:
        return np.zeros((0, 0), np.float32)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        missing = batch_size - len(batch)
        if pad and missing:
            batch = np.concatenate([batch, np.zeros((missing, *batch.shape[1:]), np.float32)])
        outputs.append(np.asarray(call(batch), dtype=np.float32)[: batch_size - missing if pad else None])
    return np.concatenate(outputs)


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


@torch.inference_mode()
def run_torch(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate(
        [
            model(torch.from_numpy(images[i : i + batch_size])).numpy()
            for i in range(0, len(images), batch_size)
        ]
    )


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


@dataclass
class Agreement:
    """How an int8 (or any) model's predictions compare with the float model's."""

    images: int
    top1_agreement: float  # share of images where both predict the same class
    float_accuracy: float | None = None  # on labelled images
    quantized_accuracy: float | None = None

    @property
    def accuracy_drop(self) -> float | None:
        if self.float_accuracy is None or self.quantized_accuracy is None:  # (set together)
            return None
        return self.float_accuracy - self.quantized_accuracy


def compare_predictions(
    float_logits: np.ndarray, quantized_logits: np.ndarray, labels: np.ndarray | None = None
) -> Agreement:
    float_top1, quantized_top1 = float_logits.argmax(1), quantized_logits.argmax(1)
    agreement = Agreement(len(float_top1), float((float_top1 == quantized_top1).mean()))
    if labels is not None:
        agreement.float_accuracy = float((float_top1 == labels).mean())
        agreement.quantized_accuracy = float((quantized_top1 == labels).mean())
    return agreement


def labels_for_model(
    folder: ImageFolder, class_names: list[str] | None, num_classes: int | None
) -> np.ndarray | None:
    """The folder's labels as the model's class indices, or None when they cannot be matched.

    Folder classes are matched by name when the checkpoint names its classes, else by sorted order
    (what a class-per-folder trainer produces) when the counts agree.
    """
    if folder.labels is None or folder.class_names is None:  # (None together: an unlabelled folder)
        return None
    if class_names:
        index = {name: i for i, name in enumerate(class_names)}
        if not set(folder.class_names) <= set(index):
            return None
        mapping = [index[name] for name in folder.class_names]
    elif num_classes is not None and len(folder.class_names) == num_classes:
        mapping = list(range(num_classes))
    else:
        return None
    return np.asarray([mapping[label] for label in folder.labels])
