"""timm `mobilenetv1_*`, `mobilenetv2_*` and `mobilenetv3_*` (incl. `tf_` ports) → our `MobileNet`.

timm is not needed: the state dict (.pth, .safetensors, dict or the timm model) is read directly.
A timm state dict does not say whether it is one of timm's TensorFlow ports (`tf_*`: padding
"same", BatchNorm epsilon 1e-3, inputs in [-1, 1]) or trained in timm (padding "torch", epsilon
1e-5, ImageNet mean/std): the timm model name says it, so the converter takes it (or reads it from
a file name such as tf_mobilenetv3_large_100-427764d5.pth) and refuses to guess.

Supported (the architecture is one of ours):
  mobilenetv1_100, mobilenetv1_125;
  mobilenetv2_035, _050, _075, _100, _140;
  mobilenetv3_large_075, _100; mobilenetv3_small_050, _075, _100;
  tf_mobilenetv3_large_075, _100, tf_mobilenetv3_large_minimal_100,
  tf_mobilenetv3_small_075, _100, tf_mobilenetv3_small_minimal_100.
Not supported (UNSUPPORTED below says why): mobilenetv1_100h, mobilenetv2_110d/_120d,
mobilenetv3_large_150d, mobilenetv3_rw, mobilenetv4_*.

timm's module layout (EfficientNet / MobileNetV3 classes): conv_stem + bn1; blocks.<stage>.<i>
as DepthwiseSeparableConv (conv_dw/bn1, [se], conv_pw/bn2), InvertedResidual (conv_pw/bn1,
conv_dw/bn2, [se.conv_reduce/conv_expand], conv_pwl/bn3) or ConvBnAct (conv/bn1); then V2's
conv_head/bn2, V3's conv_head (1×1 with bias, after pooling); classifier.
"""

from __future__ import annotations

import re
from typing import Any

from ..config import ModelConfig
from ..models import MobileNet
from .imagenet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    converted_extra,
    preprocessing,
)
from .slots import Slot, WeightMismatch, check_all_used, is_last_conv, load_slots, source_config
from .statedict import file_stem, read_state_dict, slot_reader, weight_keys

# Blocks per stage in timm's arch definitions, after the stem; V3's last stage is the 1×1 conv.
STAGES = {
    "mobilenet_v1": (1, 2, 2, 6, 2),
    "mobilenet_v2": (1, 2, 3, 4, 3, 3, 1),
    "mobilenet_v3_large": (1, 2, 3, 4, 2, 3, 1),
    "mobilenet_v3_small": (1, 2, 3, 2, 3, 1),
}
FAMILIES = {
    "mobilenetv1": "mobilenet_v1",
    "mobilenetv2": "mobilenet_v2",
    "mobilenetv3_large": "mobilenet_v3_large",
    "mobilenetv3_small": "mobilenet_v3_small",
}
UNSUPPORTED = {
    "mobilenetv1_100h": "adds a 1×1 head convolution after the body, which our MobileNetV1 does not have",
    "mobilenetv2_110d": "has more blocks per stage (depth multiplier 1.1) than the paper's MobileNetV2",
    "mobilenetv2_120d": "has more blocks per stage (depth multiplier 1.2) than the paper's MobileNetV2",
    "mobilenetv3_large_150d": "has more blocks per stage (depth multiplier 1.2) than the paper's MobileNetV3",
    "mobilenetv3_rw": "is timm's early re-implementation: no skip in its first block and no head bias",
}
NAME_PATTERN = re.compile(
    r"^(?P<tf>tf_)?(?P<family>mobilenetv1|mobilenetv2|mobilenetv3_large|mobilenetv3_small)"
    r"(?P<minimal>_minimal)?_(?P<width>\d{3})$"
)
FILE_NAME_PATTERN = re.compile(
    r"^((?:tf_)?mobilenetv[123](?:_large|_small)?(?:_minimal)?_\d{3}[a-z]?)(?![0-9])"
)


def parse_timm_name(timm_name: str) -> tuple[str, float, bool, bool]:
    """(our model name, width_mult, minimalistic, is a TensorFlow port) of a timm model name,
    with or without its pretrained tag ("mobilenetv3_large_100.ra_in1k")."""
    base = timm_name.split(".", 1)[0]
    if base in UNSUPPORTED or base.startswith("mobilenetv4"):
        why = UNSUPPORTED.get(base, "is MobileNetV4, a different architecture")
        raise ValueError(f"timm model {base!r} cannot be converted: it {why}")
    match = NAME_PATTERN.match(base)
    if not match:
        raise ValueError(
            f"{timm_name!r} is not a timm MobileNet name this converter knows, such as "
            f"'mobilenetv2_100', 'mobilenetv3_large_100' or 'tf_mobilenetv3_small_minimal_100'"
        )
    name = FAMILIES[match["family"]]
    minimal = bool(match["minimal"])
    if minimal and not name.startswith("mobilenet_v3"):
        raise ValueError(f"timm model {base!r}: only MobileNetV3 has minimal variants")
    return name, int(match["width"]) / 100, minimal, bool(match["tf"])


def timm_name_from_file(path: str | None) -> str | None:
    """The timm model name at the start of a published file's name, e.g. "mobilenetv2_100" from
    mobilenetv2_100_ra-b33bc2c4.pth; None if the name does not tell (HF's model.safetensors)."""
    match = FILE_NAME_PATTERN.match(file_stem(path))
    return match.group(1) if match else None


def _block_positions(name: str) -> list[str]:
    return [f"blocks.{stage}.{i}" for stage, count in enumerate(STAGES[name]) for i in range(count)]


def timm_module_name(name: str, config: ModelConfig, slot: Slot) -> str:
    """The timm module that holds our `slot` (without the .weight/.bias suffix)."""
    if slot.part == "fc":
        return "classifier"
    if slot.part == "hidden":
        return "conv_head"  # V3: a 1×1 convolution with bias after pooling
    norm = slot.op == "norm"
    if slot.block == 0:
        return "bn1" if norm else "conv_stem"
    if is_last_conv(config, slot) and name == "mobilenet_v2":
        return "bn2" if norm else "conv_head"
    assert slot.block is not None  # only the head's slots (handled above) have no block
    block = _block_positions(name)[slot.block - 1]
    if is_last_conv(config, slot):  # V3's ConvBnAct stage
        return f"{block}.{'bn1' if norm else 'conv'}"
    if slot.part.startswith("se_"):
        return f"{block}.se.{'conv_reduce' if slot.part == 'se_reduce' else 'conv_expand'}"
    ours = config.blocks[slot.block]
    if ours.kind == "separable" or not ours.has_expansion:  # DepthwiseSeparableConv
        layers = {"dw": ("conv_dw", "bn1"), "pw": ("conv_pw", "bn2"), "project": ("conv_pw", "bn2")}
    else:  # InvertedResidual
        layers = {"expand": ("conv_pw", "bn1"), "dw": ("conv_dw", "bn2"), "project": ("conv_pwl", "bn3")}
    conv, bn = layers[slot.part]
    return f"{block}.{bn if norm else conv}"


# Per published timm weights (the tag after the dot): evaluation preprocessing from timm's
# pretrained configs. Anything else: ImageNet (or, for tf_ ports, Inception) mean/std at crop 0.875.
TIMM_PREPROCESSING: dict[str, dict[str, Any]] = {
    "ra4_e3600_r224_in1k": dict(
        mean=INCEPTION_MEAN, std=INCEPTION_STD, crop_fraction=0.95, interpolation="bicubic"
    ),
    "miil_in21k_ft_in1k": dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_fraction=0.875),
    "ra_in1k": dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic"),
    "lamb_in1k": dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic"),
}


def from_timm(source: Any, timm_name: str | None = None, name: str | None = None) -> MobileNet:
    """A timm MobileNet (state dict, .pth/.safetensors file or the timm model) as our `MobileNet`,
    in eval mode.

    timm_name: the timm model name ("tf_mobilenetv3_large_100", optionally with its tag
    ".in1k"); read from the file name when that is one of timm's published names. It fixes the
    architecture, width and conventions; `name` (ours) is checked against it when given.
    """
    state, label, path = read_state_dict(source, "timm")
    if timm_name is None and isinstance(getattr(source, "pretrained_cfg", None), dict):  # a timm model
        architecture, tag = source.pretrained_cfg.get("architecture"), source.pretrained_cfg.get("tag")
        timm_name = f"{architecture}.{tag}" if architecture and tag else architecture
    timm_name = timm_name or timm_name_from_file(path)
    if timm_name is None:
        raise ValueError(
            f"{label}: pass timm_name (e.g. 'mobilenetv3_large_100' or 'tf_mobilenetv3_large_100'); "
            f"a timm state dict does not say whether it is a TensorFlow port (padding 'same', "
            f"BN eps 1e-3) or trained in timm (padding 'torch', BN eps 1e-5)"
        )
    family, width, minimal, tf_port = parse_timm_name(timm_name)
    if name is not None and name != family:
        raise WeightMismatch(f"timm model {timm_name!r} is a {family}, not {name}")
    tag = timm_name.split(".", 1)[1] if "." in timm_name else None
    recipe = TIMM_PREPROCESSING.get(
        tag or "",
        dict(
            mean=INCEPTION_MEAN if tf_port else IMAGENET_MEAN, std=INCEPTION_STD if tf_port else IMAGENET_STD
        ),
    )
    num_classes = int(state["classifier.bias"].shape[0]) if "classifier.bias" in state else None
    extra = converted_extra(
        {"library": "timm", "model": timm_name, "file": path}, preprocessing(224, **recipe), num_classes
    )
    config = source_config(
        family,
        width_mult=width,
        num_classes=num_classes,
        resolution=224,
        padding="same" if tf_port else "torch",
        bn_eps=1e-3 if tf_port else 1e-5,
        bn_momentum=0.1,
        dropout=0.2 if family != "mobilenet_v1" else 0.0,
        extra=extra,
        activation="relu6",
        minimalistic=minimal,
    )
    model = MobileNet(config)
    used: set[str] = set()
    read_slot = slot_reader(state, lambda slot: timm_module_name(family, config, slot), config, label, used)
    load_slots(model, read_slot, label)
    check_all_used(weight_keys(state), used, label, config)
    return model.eval()


__all__ = ["from_timm", "parse_timm_name", "timm_module_name", "timm_name_from_file", "UNSUPPORTED"]
