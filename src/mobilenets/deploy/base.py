"""What every deploy backend shares, whichever file it writes.

- the model a command was given (`ModelSource`, `load_source`: a zoo name or a checkpoint, with the
  preprocessing its images need, `default_preprocessing` when it carries none), and the images it
  reads (`load_images`, `labels_for_model`);
- the optional packages of each path, imported through one `require` that names the `pip install`
  that fixes a missing one, and the silencing of tools that talk (`quiet_tools`,
  `native_output_silenced`, unless `mobilenets -v`);
- the PyTorch reference every exported form is compared with (`run_torch`), feeding a runner in
  batches (`run_in_batches`, `run_images`) and comparing predictions (`compare_predictions`);
- what the torch.export runtimes (ExecuTorch, LiteRT) lower from: `DeployableClassifier`, the
  traced input with its dynamic batch, and PT2E int8 quantization (`quantize_pt2e`).

The backends (export.py for ONNX, openvino.py, executorch.py, tflite.py, web.py) import these from
here, never from each other (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import check_finite, load_checkpoint
from ..costs.reference import AnyModel
from ..data import ImageFolder, preprocess_image
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..factory import create_model
from ..fuse import fuse_bn
from ..models import MobileNet
from ..zoo import list_models

VERBOSE_ENV = "MOBILENETS_VERBOSE"  # `mobilenets -v` sets it: native libraries may speak


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


# --------------------------------------------------------------------------------------------
# Optional packages, and tools that talk
# --------------------------------------------------------------------------------------------
class MissingPackage(ValueError):
    """An optional package a path needs is not installed (one line naming the fix, exit code 2)."""


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


# --------------------------------------------------------------------------------------------
# Running a model, and comparing it with PyTorch
# --------------------------------------------------------------------------------------------
@torch.inference_mode()
def run_torch(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The PyTorch reference: `model`'s outputs for N×C×H×W `images`, `batch_size` at a time."""
    return run_in_batches(lambda batch: model(torch.from_numpy(batch)).numpy(), images, batch_size, pad=False)


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


def run_images(
    run_batch: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    input_shape: tuple,
    path: Path,
    max_batch: int,
) -> np.ndarray:
    """Logits of float32 N×C×H×W `images` through a runner's `run_batch`, for a file whose input is
    `input_shape`: N images at a time, the last batch padded, where N is fixed; up to `max_batch` at a
    time where it is None (any batch). Images of another shape are refused with one line."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(input_shape[1:]):
        raise ValueError(
            f"{path} takes N×{'×'.join(map(str, input_shape[1:]))} images; got shape {images.shape}"
        )
    fixed = input_shape[0]
    return run_in_batches(run_batch, images, fixed or max_batch, pad=fixed is not None)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


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


# --------------------------------------------------------------------------------------------
# What the torch.export runtimes (ExecuTorch, LiteRT) lower
# --------------------------------------------------------------------------------------------
# The largest batch an export declares for its dynamic batch dimension (runners split larger
# ones). ExecuTorch 1.5.1 plans less: its .pte files took 15 images at most (measured).
MAX_DYNAMIC_BATCH = 64
CALIBRATION_BATCH = 32  # at most MAX_DYNAMIC_BATCH


class DeployableClassifier(nn.Module):
    """A classifier `MobileNet` with BatchNorm folded and a head every mobile delegate takes whole:
    the global average pool keeps its spatial dimensions (`mean(keepdim=True)`, XNNPACK's global
    average pooling) and a reshape to (-1, channels) feeds the linear layers: `flatten` would
    record the batch as a symbolic size, which neither XNNPACK's reshape nor litert-torch's
    lowering accepts with a dynamic batch. Same arithmetic as `model.head` in eval mode (dropout
    is the identity there)."""

    def __init__(self, model: MobileNet):
        super().__init__()
        if not model.has_classifier:
            raise ValueError(
                "export needs a classifier; this is a feature extractor (features_only or num_classes=0)"
            )
        fused = fuse_bn(model)  # a copy, in eval mode
        head = fused.head
        assert head is not None  # the copy's, checked above
        self.features = fused.features
        self.hidden = head.hidden
        self.hidden_act = head.hidden_act
        self.fc = head.fc
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3), keepdim=True)
        x = x.view(-1, x.shape[1])
        if self.hidden is not None and self.hidden_act is not None:  # (both, or neither)
            x = self.hidden_act(self.hidden(x))
        return self.fc(x)


def quiet_converter():
    """Exporters, quantizers and lowerings log to the root logger and warn about their internals."""
    return quiet_tools("")


def traced_input(model: MobileNet, batch_size: int, resolution: int | None) -> tuple[torch.Tensor, tuple]:
    """An example batch of `batch_size` images to trace, and a dynamic batch dimension (any batch
    from 1 to max(batch_size, MAX_DYNAMIC_BATCH)) for exports that take one. Tracing a dynamic
    batch needs at least two images (torch.export turns a dimension seen at size 1 into the
    constant 1): `with_dynamic_batch` gives them."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    resolution = resolution or model.config.resolution
    example = torch.randn(
        batch_size,
        model.config.in_channels,
        resolution,
        resolution,
        generator=torch.Generator().manual_seed(0),
    )
    return example, ({0: torch.export.Dim("batch", min=1, max=max(batch_size, MAX_DYNAMIC_BATCH))},)


def with_dynamic_batch(example: torch.Tensor) -> torch.Tensor:
    return example if len(example) > 1 else torch.cat([example, example])


def check_calibration(calibration: np.ndarray | None, example: torch.Tensor) -> np.ndarray:
    if calibration is None or len(calibration) == 0:
        raise ValueError(
            "int8 export needs calibration images (N×C×H×W float32, preprocessed as the "
            "model expects; e.g. --calibration FOLDER)"
        )
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or calibration.shape[1:] != tuple(example.shape[1:]):
        raise ValueError(
            f"calibration images must be N×{'×'.join(map(str, example.shape[1:]))}; "
            f"got shape {calibration.shape}"
        )
    return calibration


def calibrate(prepared: Callable[[torch.Tensor], object], calibration: np.ndarray) -> None:
    """Run the observers of a PT2E-prepared module over every calibration image."""
    with torch.no_grad():
        for start in range(0, len(calibration), CALIBRATION_BATCH):
            prepared(torch.from_numpy(calibration[start : start + CALIBRATION_BATCH]))


def quantize_pt2e(
    module: nn.Module,
    quantizer: Any,
    example: torch.Tensor,
    dynamic_shapes: tuple | None,
    calibration: np.ndarray | None,
    fold_quantize: bool = True,
) -> nn.Module:
    """PT2E static quantization of `module` with `quantizer`, calibrated on `calibration` (checked
    first: N images shaped like `example`): a module whose graph carries quantize/dequantize pairs,
    for a backend to lower."""
    calibration = check_calibration(calibration, example)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # Captured with a dynamic batch, so that calibration batches need not be the file's batch.
    captured = torch.export.export(module, (with_dynamic_batch(example),), dynamic_shapes=dynamic_shapes)
    prepared = prepare_pt2e(captured.module(), quantizer)
    calibrate(prepared, calibration)
    return convert_pt2e(prepared, fold_quantize=fold_quantize)
