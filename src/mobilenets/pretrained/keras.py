"""Keras applications `MobileNet`, `MobileNetV2`, `MobileNetV3Large/Small` → our `MobileNet`.

Sources: an in-memory `keras.Model`, a `.keras` archive, a Keras 3 `.weights.h5`, or a legacy
`.h5` (a whole model saved by `model.save("x.h5")`, or weights only as Keras 2 saved them, which
is what the published ImageNet files are). Files are read with h5py and zipfile: converting needs
neither Keras nor TensorFlow.

What the conversion has to get right, and where it is done:
- layouts: Keras kernels are (kh, kw, in, out), depthwise (kh, kw, in, multiplier); `_to_ours`.
- padding: Keras pads strided depthwise layers with a fixed ZeroPadding2D (see
  `layers.keras_padding`); MobileNet always, V2/V3 when built without a fixed input size. The
  converted model gets padding="keras" then, and "same" (TensorFlow's, what the weights were
  trained with) when the Keras model had a fixed input size, where the two agree. `_padding_for`.
- BatchNorm epsilon 1e-3 and momentum 0.99 (V1) / 0.999 (V2, V3), i.e. 0.01 / 0.001 here.
- activation: MobileNet uses ReLU6 where the paper says ReLU.
- input: every Keras MobileNet expects RGB scaled to [-1, 1] (`preprocess_input` mode "tf"; V3's
  built-in Rescaling(1/127.5, -1) does it inside the model). The converted model takes the scaled
  input, and records it as mean = std = 0.5 on 0..1 RGB.
- layer names: Keras 3 names are used, with the tf.keras 2 names of the published V2/V3 files
  ("Conv/BatchNorm", "Logits", ...) as aliases.
"""

from __future__ import annotations

import functools
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..models import MobileNet
from .imagenet import INCEPTION_MEAN, INCEPTION_STD, converted_extra, preprocessing
from .slots import (
    SLOT_TENSORS,
    Slot,
    SlotReader,
    SourceTensor,
    WeightMismatch,
    check_all_used,
    describe,
    first_success,
    is_last_conv,
    load_slots,
    source_config,
    width_candidates,
)

KERAS_CLASSES = {
    "mobilenet_v1": "MobileNet",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_large": "MobileNetV3Large",
    "mobilenet_v3_small": "MobileNetV3Small",
}
# Widths Keras publishes ImageNet weights for; tried after the estimate from channel counts.
PUBLISHED_WIDTHS = {
    "mobilenet_v1": (0.25, 0.5, 0.75, 1.0),
    "mobilenet_v2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    "mobilenet_v3_large": (0.75, 1.0),
    "mobilenet_v3_small": (0.75, 1.0),
}
BN_EPS = 1e-3  # Keras BatchNormalization default, and what V2/V3 set explicitly
BN_MOMENTUM = {
    "mobilenet_v1": 0.01,
    "mobilenet_v2": 0.001,
    "mobilenet_v3_large": 0.001,
    "mobilenet_v3_small": 0.001,
}
DROPOUT = {"mobilenet_v1": 1e-3, "mobilenet_v2": 0.0, "mobilenet_v3_large": 0.2, "mobilenet_v3_small": 0.2}
# The Keras weights of each slot op, in the order Keras stores them.
KERAS_WEIGHTS = {
    "conv": ("kernel",),
    "depthwise": ("depthwise_kernel",),
    "norm": ("gamma", "beta", "moving_mean", "moving_variance"),
    "se": ("kernel", "bias"),
    "linear": ("kernel", "bias"),
}


# --------------------------------------------------------------------------------------------
# Reading: every source becomes layer name → weights in Keras order
# --------------------------------------------------------------------------------------------
@dataclass
class KerasWeights:
    source: str  # for messages: "keras file PATH" or "keras.Model 'name'"
    layers: dict[str, list[np.ndarray]]  # layer name → its weights, in Keras order (empty: none)
    config: dict | None = None  # the Functional model's config, when the source has one
    path: str | None = None

    def layer_configs(self) -> list[dict]:
        """[{"class_name": ..., "name": ..., "config": {...}}] for each layer, [] without a config."""
        if not self.config:
            return []
        inner = self.config.get("config", self.config)
        layers = inner.get("layers", []) if isinstance(inner, dict) else []
        return [
            {
                "class_name": layer.get("class_name"),
                "name": layer.get("name") or layer["config"].get("name"),
                "config": layer.get("config", {}),
            }
            for layer in layers
        ]


def read_keras(source: Any) -> KerasWeights:
    """The weights (and config, when there is one) of a keras.Model or a .keras/.h5 file."""
    if hasattr(source, "layers") and hasattr(source, "get_config"):
        return _read_model(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no Keras file at {path}")
    label = f"keras file {path}"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "model.weights.h5" not in names:
                raise ValueError(
                    f"{path} is a zip archive but not a .keras model (no model.weights.h5; "
                    f"it holds {', '.join(names[:5])})"
                )
            config = json.loads(archive.read("config.json")) if "config.json" in names else None
            data = archive.read("model.weights.h5")
        with _open_h5(io.BytesIO(data), path) as handle:
            layers = _read_keras3_layers(handle)
        return KerasWeights(label, layers, config, str(path))
    with _open_h5(path, path) as handle:
        if "layer_names" in handle.attrs:  # Keras 2 save_weights: the published files
            return KerasWeights(label, _read_legacy_layers(handle), None, str(path))
        if "model_weights" in handle:  # model.save("x.h5"): legacy whole-model file
            raw = handle.attrs.get("model_config")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else None
            return KerasWeights(label, _read_legacy_layers(handle["model_weights"]), config, str(path))
        if "layers" in handle:  # Keras 3 .weights.h5
            return KerasWeights(label, _read_keras3_layers(handle), None, str(path))
    raise ValueError(
        f"{path} is an HDF5 file but not a Keras model or weights file "
        f"(no layer_names, model_weights or layers in it)"
    )


def _open_h5(file: Any, path: Path) -> Any:  # an h5py.File (h5py has no type information)
    try:
        import h5py
    except ImportError:
        raise ValueError("reading Keras .h5/.keras files needs h5py: pip install h5py") from None
    try:
        return h5py.File(file, "r")
    except OSError as error:
        raise ValueError(f"{path} is not an HDF5 file or .keras archive ({error})") from None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _read_legacy_layers(group: Any) -> dict[str, list[np.ndarray]]:
    # Each layer group lists its weights' full names ("conv1/kernel:0"; tf.keras V3 layer names
    # contain "/", which h5py resolves as nested groups).
    layers = {}
    for name in map(_text, group.attrs["layer_names"]):
        try:
            layer = group[name]
            layers[name] = [np.asarray(layer[_text(w)]) for w in layer.attrs.get("weight_names", [])]
        except KeyError:  # h5py's message is about HDF5 internals, not the file's inconsistency
            raise ValueError(
                f"{group.file.filename}: layer {name!r} (or one of its weights) is listed in "
                f"layer_names but missing from the file; the file is damaged or incomplete"
            ) from None
    return layers


def _read_keras3_layers(handle: Any) -> dict[str, list[np.ndarray]]:
    # Keras 3 stores layers/<object name>/vars/<0, 1, ...>; the layer's own name is the "name"
    # attribute of its vars group (recent versions) or the group's key (older ones).
    layers = {}

    def visit(name: str, item: Any) -> None:
        if name.endswith("/vars"):  # (a top-level "vars" holds the model's own, none here)
            key = name[: -len("/vars")].rsplit("/", 1)[-1]
            layer_name = _text(item.attrs.get("name", key))
            layers[layer_name] = [np.asarray(item[k]) for k in sorted(item.keys(), key=int)]

    handle.visititems(visit)
    return layers


def _read_model(model: Any) -> KerasWeights:
    import keras  # only reached with a keras.Model in hand

    layers: dict[str, list[np.ndarray]] = {}

    def visit(container: Any) -> None:
        for layer in container.layers:
            if isinstance(layer, keras.Model):  # e.g. the MobileNet inside a user's Sequential
                visit(layer)
            else:
                layers[layer.name] = [np.asarray(w) for w in layer.get_weights()]

    visit(model)
    return KerasWeights(f"keras.Model {model.name!r}", layers, model.get_config())


# --------------------------------------------------------------------------------------------
# Which Keras model it is
# --------------------------------------------------------------------------------------------
def detect_family(weights: KerasWeights) -> str | None:
    """Our model name for the Keras application these layers come from, or None."""
    names = set(weights.layers)
    if "conv_dw_1" in names:
        return "mobilenet_v1"
    if "block_1_expand" in names or "bn_Conv1" in names:
        return "mobilenet_v2"
    if {"expanded_conv_1_expand", "expanded_conv_1/expand"} & names:
        large = any(n.startswith(("expanded_conv_14_", "expanded_conv_14/")) for n in names)
        return "mobilenet_v3_large" if large else "mobilenet_v3_small"
    return None


def _classifier_layer(weights: KerasWeights, family: str) -> str | None:
    candidates = {"mobilenet_v1": ("conv_preds",), "mobilenet_v2": ("predictions", "Logits")}.get(
        family, ("logits", "Logits")
    )
    return next((n for n in candidates if weights.layers.get(n)), None)


def _width_estimate(weights: KerasWeights, family: str) -> float | None:
    # The last bottleneck/pointwise layer: int(1024·α) for V1; make_divisible(c·α) for V2/V3.
    last, paper = {
        "mobilenet_v1": (("conv_pw_13",), 1024),
        "mobilenet_v2": (("block_16_project",), 320),
        "mobilenet_v3_large": (("expanded_conv_14_project", "expanded_conv_14/project"), 160),
        "mobilenet_v3_small": (("expanded_conv_10_project", "expanded_conv_10/project"), 96),
    }[family]
    kernel = next((weights.layers[n][0] for n in last if weights.layers.get(n)), None)
    return None if kernel is None else kernel.shape[-1] / paper


def _input_size(weights: KerasWeights) -> tuple[int | None, int | None] | None:
    """(height, width) of the Keras model's input layer (None where it takes any size), or None
    when the source has no config."""
    for layer in weights.layer_configs():
        if layer["class_name"] == "InputLayer":
            shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
            if shape and len(shape) == 4:
                channels_first = shape[1] in (1, 3) and shape[3] not in (1, 3)
                return (shape[2], shape[3]) if channels_first else (shape[1], shape[2])
    return None


def _rescaling(weights: KerasWeights) -> tuple[float, float] | None:
    """(scale, offset) of a Rescaling layer in the model (MobileNetV3's include_preprocessing)."""
    for layer in weights.layer_configs():
        if layer["class_name"] == "Rescaling":
            return float(layer["config"]["scale"]), float(layer["config"].get("offset", 0.0))
    return None


def _padding_for(family: str, input_size: tuple | None) -> tuple[str, str]:
    """(padding mode, why) that reproduces the Keras model at every input size it accepts."""
    if family == "mobilenet_v1":
        return "keras", "Keras MobileNet pads strided depthwise layers bottom/right only, at every input size"
    if input_size is not None and None in input_size:
        return (
            "keras",
            "built without a fixed input size, so Keras fixed its depthwise padding for even sizes",
        )
    return "same", (
        "built for a fixed input size, where Keras's padding equals TensorFlow 'same'"
        if input_size
        else "weights only; TensorFlow 'same', which the weights were trained with"
    )


# --------------------------------------------------------------------------------------------
# Naming: our slot → the Keras layer (Keras 3 name first, then tf.keras 2 aliases)
# --------------------------------------------------------------------------------------------
def keras_layer_names(family: str, config: ModelConfig, slot: Slot) -> tuple[str, ...]:
    norm = slot.op == "norm"
    if family == "mobilenet_v1":
        if slot.part == "fc":
            return ("conv_preds",)
        base = "conv1" if slot.block == 0 else f"conv_{slot.part}_{slot.block}"
        return (base + ("_bn" if norm else ""),)
    if family == "mobilenet_v2":
        if slot.part == "fc":
            return ("predictions", "Logits")
        if slot.block == 0:
            return ("bn_Conv1",) if norm else ("Conv1",)
        if is_last_conv(config, slot):
            return ("Conv_1_bn",) if norm else ("Conv_1",)
        assert slot.block is not None  # only the classifier's slots (handled above) have no block
        prefix = "expanded_conv_" if slot.block == 1 else f"block_{slot.block - 1}_"
        layer = {"expand": "expand", "dw": "depthwise", "project": "project"}[slot.part]
        return (f"{prefix}{layer}{'_BN' if norm else ''}",)
    # MobileNetV3
    head = {"hidden": ("conv_2", "Conv_2"), "fc": ("logits", "Logits")}
    if slot.part in head:
        return head[slot.part]
    if slot.block == 0:
        return ("conv_bn", "Conv/BatchNorm") if norm else ("conv", "Conv")
    if is_last_conv(config, slot):
        return ("conv_1_bn", "Conv_1/BatchNorm") if norm else ("conv_1", "Conv_1")
    assert slot.block is not None  # only the head's slots (handled above) have no block
    block_id = slot.block - 1
    new, old = (
        ("expanded_conv_", "expanded_conv/")
        if block_id == 0
        else (f"expanded_conv_{block_id}_", f"expanded_conv_{block_id}/")
    )
    layer = {
        "expand": "expand",
        "dw": "depthwise",
        "project": "project",
        "se_reduce": "squeeze_excite_conv",
        "se_expand": "squeeze_excite_conv_1",
    }[slot.part]
    old_layer = {"se_reduce": "squeeze_excite/Conv", "se_expand": "squeeze_excite/Conv_1"}.get(
        slot.part, layer
    )
    if norm:
        return (f"{new}{layer}_bn", f"{old}{old_layer}/BatchNorm")
    return (f"{new}{layer}", f"{old}{old_layer}")


def _to_ours(op: str, index: int, array: np.ndarray) -> torch.Tensor:
    """One Keras weight in PyTorch layout. Arrays of an unexpected rank are passed through as they
    are, so that the shape check reports them."""
    tensor = torch.from_numpy(np.array(array, dtype=np.float32))
    if index > 0 or op == "norm":
        return tensor  # biases and BatchNorm vectors need no change
    if op in ("conv", "se") and tensor.dim() == 4:  # (kh, kw, in, out) → (out, in, kh, kw)
        return tensor.permute(3, 2, 0, 1).contiguous()
    if op == "depthwise" and tensor.dim() == 4:
        # (kh, kw, in, multiplier) → (in·multiplier, 1, kh, kw); Keras's output channel c·m + j is
        # PyTorch's grouped-convolution channel c·m + j too.
        kh, kw, channels, multiplier = tensor.shape
        return tensor.reshape(kh, kw, channels * multiplier).permute(2, 0, 1).unsqueeze(1).contiguous()
    if op == "linear":
        if tensor.dim() == 4 and tensor.shape[:2] == (1, 1):  # a 1×1 Conv2D used as the classifier
            tensor = tensor[0, 0]
        if tensor.dim() == 2:  # (in, out) → (out, in)
            return tensor.t().contiguous()
    return tensor


def _slot_reader(weights: KerasWeights, family: str, config: ModelConfig, used: set[str]) -> SlotReader:
    ours = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3}

    def read_slot(slot: Slot) -> dict[str, SourceTensor]:
        candidates = keras_layer_names(family, config, slot)
        name = next((n for n in candidates if n in weights.layers), None)
        if name is None:
            raise WeightMismatch(
                f"{weights.source} has no layer {candidates[0]!r} for {slot.path} of "
                f"{describe(config)}; {_layer_summary(weights)}"
            )
        arrays = weights.layers[name]
        expected = KERAS_WEIGHTS[slot.op]
        if len(arrays) != len(expected):
            raise WeightMismatch(
                f"{weights.source}: layer {name!r} holds {len(arrays)} weights but {slot.path} of "
                f"{describe(config)} needs {len(expected)} ({', '.join(expected)})"
            )
        used.add(name)
        return {
            tensor_name: SourceTensor(
                f"{name}/{expected[ours[tensor_name]]}",
                _to_ours(slot.op, ours[tensor_name], arrays[ours[tensor_name]]),
                tuple(arrays[ours[tensor_name]].shape),
            )
            for tensor_name in SLOT_TENSORS[slot.op]
        }

    return read_slot


def _layer_summary(weights: KerasWeights) -> str:
    named = [n for n, arrays in weights.layers.items() if arrays]
    family = detect_family(weights)
    what = f"it holds a Keras {KERAS_CLASSES[family]}" if family else "it is not a Keras MobileNet"
    return f"{what} (layers {', '.join(named[:4])}{', ...' if len(named) > 4 else ''})"


# --------------------------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------------------------
# Keras publishes weights-only MobileNet/V2 files per input size, the size only in the file name
# (keras/src/applications/mobilenet*.py): mobilenet_1_0_128_tf.h5, ..._kernels_1.0_128_no_top.h5.
PUBLISHED_NAME_SIZE = re.compile(
    r"^(?:mobilenet_\d_\d+_(\d+)_tf|mobilenet_v2_weights_tf_dim_ordering_tf_kernels_"
    r"[\d.]+_(\d+))(?:_no_top)?\.h5$"
)


def _published_resolution(path: str | None) -> int | None:
    found = PUBLISHED_NAME_SIZE.match(Path(path).name) if path else None
    return int(found.group(1) or found.group(2)) if found else None


def from_keras(
    source: Any,
    name: str | None = None,
    width_mult: float | None = None,
    depth_multiplier: int | None = None,
    minimalistic: bool | None = None,
    resolution: int | None = None,
) -> MobileNet:
    """A Keras applications MobileNet (a keras.Model or a .keras/.h5 file) as our `MobileNet`, in
    eval mode, computing the same outputs (see the module docstring for the conventions kept).

    name, width_mult, depth_multiplier, minimalistic: what you expect the source to be; what is
    left None is read from the weights. A source that does not fit raises `WeightMismatch`
    (a ValueError) naming the first layer that does not and both shapes.
    resolution: the nominal input size recorded in the config (default: the Keras model's fixed
    input size, else 224); the model runs at any size ≥ 32.
    """
    weights = read_keras(source)
    family = detect_family(weights)
    name = name or family
    if name is None:
        raise WeightMismatch(
            f"{weights.source} is not a Keras MobileNet, MobileNetV2 or MobileNetV3 (no layer "
            f"conv_dw_1, block_1_expand or expanded_conv_1_expand); {_layer_summary(weights)}"
        )
    if name not in KERAS_CLASSES:
        raise ValueError(f"Keras applications have no {name}; they have {', '.join(KERAS_CLASSES)}")
    if name != "mobilenet_v1" and depth_multiplier not in (None, 1):
        raise ValueError(f"depth_multiplier applies to mobilenet_v1 only, not {name}")
    if not name.startswith("mobilenet_v3") and minimalistic:
        raise ValueError(f"minimalistic applies to mobilenet_v3_large/small only, not {name}")

    classifier = _classifier_layer(weights, name)
    num_classes = None if classifier is None else int(weights.layers[classifier][-1].shape[0])
    if name == "mobilenet_v1" and depth_multiplier is None and weights.layers.get("conv_dw_1"):
        depth_multiplier = int(weights.layers["conv_dw_1"][0].shape[-1])
    if name.startswith("mobilenet_v3") and minimalistic is None:
        minimalistic = not any("squeeze_excite" in n for n, arrays in weights.layers.items() if arrays)
    input_size = _input_size(weights)
    if resolution is None:
        # the model's input size where it is fixed and square
        side = input_size[0] if input_size is not None and input_size[0] == input_size[1] else None
        resolution = side if side is not None else (_published_resolution(weights.path) or 224)
    padding, padding_why = _padding_for(name, input_size)
    rescaling = _rescaling(weights)
    if rescaling is None:
        mean, std = INCEPTION_MEAN, INCEPTION_STD
        note = "Keras 'tf' preprocessing: RGB scaled to [-1, 1] (x / 127.5 - 1)"
    else:  # y = x·scale + offset on 0..255  ⇔  (x/255 - mean) / std
        scale, offset = rescaling
        std_value = 1.0 / (255.0 * scale)
        mean, std = (-offset * std_value,) * 3, (std_value,) * 3
        note = f"the Keras model's own Rescaling(scale={scale:g}, offset={offset:g}) on 0..255 RGB"
    source = {
        "library": "keras",
        "model": KERAS_CLASSES[name],
        "file": weights.path,
        "input_size": list(input_size) if input_size else None,
        "padding": padding_why,
        "built_in_preprocessing": rescaling is not None,
    }
    extra = converted_extra(source, preprocessing(resolution, mean, std, note=note), num_classes)

    def convert(width: float) -> MobileNet:
        config = source_config(
            name,
            width_mult=width,
            num_classes=num_classes,
            resolution=resolution,
            padding=padding,
            bn_eps=BN_EPS,
            bn_momentum=BN_MOMENTUM[name],
            dropout=DROPOUT[name],
            extra=extra,
            activation="relu6",
            depth_multiplier=depth_multiplier or 1,
            minimalistic=bool(minimalistic),
        )
        model = MobileNet(config)
        used: set[str] = set()
        load_slots(model, _slot_reader(weights, name, config, used), weights.source)
        check_all_used([n for n, arrays in weights.layers.items() if arrays], used, weights.source, config)
        return model.eval()

    widths = (
        [width_mult]
        if width_mult is not None
        else width_candidates(_width_estimate(weights, name), PUBLISHED_WIDTHS[name])
    )
    return first_success([functools.partial(convert, w) for w in widths])


__all__ = ["KerasWeights", "detect_family", "from_keras", "keras_layer_names", "read_keras"]
