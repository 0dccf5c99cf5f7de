"""torchvision `mobilenet_v2`, `mobilenet_v3_large`, `mobilenet_v3_small` → our `MobileNet`.

torchvision is not needed: the state dict (a .pth file, a dict, or the torchvision model itself)
is read directly. Conventions kept: symmetric ("torch") padding; BatchNorm epsilon 1e-5 and
momentum 0.1 for V2, 1e-3 and 0.01 for V3; ImageNet mean/std input; dropout 0.2.

torchvision's module layout (the naming table below):
  V2: features.0 = Conv2dNormActivation(conv .0, bn .1); features.i.conv = [expand (.0.0/.0.1),]
      depthwise (.k.0/.k.1), project conv (.k+1), project bn (.k+2); features.18 = last 1×1 conv;
      classifier.1 = Linear.
  V3: features.i.block = [expand,] depthwise, [SqueezeExcitation fc1/fc2,] project, each a
      Conv2dNormActivation; classifier.0 = Linear (1280/1024), classifier.3 = Linear.
"""

from __future__ import annotations

import functools
from typing import Any

from ..config import ModelConfig
from ..models import MobileNet
from .imagenet import IMAGENET_MEAN, IMAGENET_STD, converted_extra, preprocessing
from .slots import (
    Slot,
    WeightMismatch,
    check_all_used,
    first_success,
    is_last_conv,
    load_slots,
    source_config,
    width_candidates,
)
from .statedict import file_stem, read_state_dict, slot_reader, weight_keys

MODELS = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
BN = {"mobilenet_v2": (1e-5, 0.1), "mobilenet_v3_large": (1e-3, 0.01), "mobilenet_v3_small": (1e-3, 0.01)}
# The published files (torchvision's IMAGENET1K_V1/V2 weights) and their evaluation resize: the
# "V2" recipe weights were evaluated after resizing to 232, not 256.
RESIZE_BY_FILE = {
    "mobilenet_v2-b0353104.pth": 256,
    "mobilenet_v2-7ebf99e0.pth": 232,
    "mobilenet_v3_large-8738ca79.pth": 256,
    "mobilenet_v3_large-5c1a4163.pth": 232,
    "mobilenet_v3_small-047dcff4.pth": 256,
}


def detect_model(state: dict) -> str | None:
    """Which torchvision MobileNet a state dict is, from its module layout."""
    if "features.1.conv.0.0.weight" in state:
        return "mobilenet_v2"
    if "features.1.block.0.0.weight" in state:
        # Large has 15 bottlenecks + the last conv (features.16), Small 11 (features.12).
        return "mobilenet_v3_large" if "features.16.0.weight" in state else "mobilenet_v3_small"
    return None


def torchvision_module_name(name: str, config: ModelConfig, slot: Slot) -> str:
    """The torchvision module that holds our `slot` (without the .weight/.bias suffix)."""
    if slot.part == "fc":
        return "classifier.1" if name == "mobilenet_v2" else "classifier.3"
    if slot.part == "hidden":
        return "classifier.0"
    unit = "1" if slot.op == "norm" else "0"  # Conv2dNormActivation: conv .0, norm .1
    if slot.block == 0 or is_last_conv(config, slot):
        return f"features.{slot.block}.{unit}"
    assert slot.block is not None  # only the classifier's slots (handled above) have no block
    block = config.blocks[slot.block]
    order = (
        (["expand"] if block.has_expansion else [])
        + ["dw"]
        + (["se"] if block.se_channels else [])
        + ["project"]
    )
    if name == "mobilenet_v2":
        base = f"features.{slot.block}.conv"
        if slot.part == "project":  # a bare conv then a bare BatchNorm, not a Conv2dNormActivation
            position = order.index("project") + (1 if slot.op == "norm" else 0)
            return f"{base}.{position}"
        return f"{base}.{order.index(slot.part)}.{unit}"
    base = f"features.{slot.block}.block"
    if slot.part.startswith("se_"):
        return f"{base}.{order.index('se')}.{'fc1' if slot.part == 'se_reduce' else 'fc2'}"
    return f"{base}.{order.index(slot.part)}.{unit}"


def from_torchvision(
    source: Any, name: str | None = None, width_mult: float | None = None, resize: int | None = None
) -> MobileNet:
    """A torchvision MobileNetV2/V3 (state dict, .pth file or the model) as our `MobileNet`, in eval mode.

    name, width_mult: what you expect it to be (read from the weights when None); a mismatch
    raises `WeightMismatch` naming the first layer that does not fit and both shapes.
    resize: the evaluation resize before the 224 crop (default: 232 for torchvision's "V2 recipe"
    files recognized by name, else 256).
    """
    state, label, path = read_state_dict(source, "torchvision")
    detected = detect_model(state)
    name = name or detected
    if name is None:
        keys = weight_keys(state)
        raise WeightMismatch(
            f"{label} is not a torchvision mobilenet_v2/v3 state dict (its keys begin {', '.join(keys[:3])})"
        )
    if name not in MODELS:
        raise ValueError(f"torchvision has no {name} weights to convert; it has {', '.join(MODELS)}")
    if resize is None:
        resize = RESIZE_BY_FILE.get(file_stem(path), 256)
    classifier_bias = state.get("classifier.1.bias" if name == "mobilenet_v2" else "classifier.3.bias")
    num_classes = None if classifier_bias is None else int(classifier_bias.shape[0])
    bn_eps, bn_momentum = BN[name]
    extra = converted_extra(
        {"library": "torchvision", "model": name, "file": path},
        preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, crop_fraction=224 / resize),
        num_classes,
    )

    def convert(width: float) -> MobileNet:
        config = source_config(
            name,
            width_mult=width,
            num_classes=num_classes,
            resolution=224,
            padding="torch",
            bn_eps=bn_eps,
            bn_momentum=bn_momentum,
            dropout=0.2,
            extra=extra,
        )
        model = MobileNet(config)
        used: set[str] = set()
        load_slots(
            model,
            slot_reader(state, lambda slot: torchvision_module_name(name, config, slot), config, label, used),
            label,
        )
        check_all_used(weight_keys(state), used, label, config)
        return model.eval()

    if width_mult is not None:
        widths = [width_mult]
    else:  # torchvision scales the stem: 32·α (V2), 16·α (V3), rounded to 8
        stem = state.get("features.0.0.weight")
        estimate = None if stem is None else stem.shape[0] / (32 if name == "mobilenet_v2" else 16)
        widths = width_candidates(estimate, (1.0, 0.5, 0.75, 1.4, 0.35))
    return first_success([functools.partial(convert, w) for w in widths])


__all__ = ["detect_model", "from_torchvision", "torchvision_module_name"]
