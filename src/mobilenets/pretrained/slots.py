"""Our side of every conversion: the weight-carrying layers of a `MobileNet`, walked from its config,
and the one function that fills them from another library's tensors, checking every shape.

Each converter (keras.py, torchvision.py, timm.py) only says, for each `Slot` below, what the source
calls that layer and how its tensors are laid out. Walking our config instead of zipping state
dicts in order means a layer that is missing, extra or misplaced is reported by name, never
silently loaded into the wrong place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from ..config import ModelConfig, iter_layers
from ..models import MobileNet
from ..zoo import model_config

# What a slot holds, and the names of its tensors in our modules.
SLOT_TENSORS = {
    "conv": ("weight",),  # a full or 1×1 convolution without bias (a BatchNorm follows)
    "depthwise": ("weight",),  # a depthwise convolution without bias
    "norm": ("weight", "bias", "running_mean", "running_var"),
    "se": ("weight", "bias"),  # a squeeze-and-excite 1×1 convolution, with bias
    "linear": ("weight", "bias"),  # nn.Linear of the classifier head
}


@dataclass(frozen=True)
class Slot:
    """One weight-carrying layer of our model.

    path:  module path in `MobileNet`, e.g. "features.3.dw.conv"
    op:    the layer's op (`LayerSpec.op`: conv, depthwise, se, linear) or "norm"; a key of
           SLOT_TENSORS (which tensors it holds)
    block: index in config.blocks, or None for the classifier head
    part:  which layer of the block: "conv", "dw", "pw", "expand", "se_reduce", "se_expand",
           "project", "hidden" or "fc"; the converters' naming tables are keyed by it.
    """

    path: str
    op: str
    block: int | None
    part: str


def model_slots(config: ModelConfig) -> list[Slot]:
    """Every weight-carrying layer, in forward order (so the first mismatch reported is the first
    layer that does not fit): each layer of `iter_layers`, and the norm layer after it."""
    slots = []
    for layer in iter_layers(config):
        slots.append(Slot(layer.path, layer.op, layer.block, layer.part))
        if layer.norm:
            slots.append(Slot(layer.norm_path, "norm", layer.block, layer.part))
    return slots


def is_last_conv(config: ModelConfig, slot: Slot) -> bool:
    """True for the 1×1 "conv" block after the bottlenecks (V2's 1280, V3's 960/576 layer)."""
    return slot.block is not None and slot.block > 0 and config.blocks[slot.block].kind == "conv"


class WeightMismatch(ValueError):
    """The source does not fit the model asked for: the message names the first layer that does not
    fit and both shapes, or the layer that is missing or left over."""


@dataclass
class SourceTensor:
    """One tensor of the source, already in our layout, with what a message needs to name it."""

    name: str  # the source's own name, e.g. "conv_pw_3/kernel" or "features.3.conv.1.weight"
    value: torch.Tensor  # in our layout (PyTorch NCHW conventions)
    source_shape: tuple[int, ...]  # as stored in the source (for the error message)


SlotReader = Callable[[Slot], dict[str, SourceTensor]]  # slot → its tensors in the source


@torch.no_grad()
def load_slots(model: MobileNet, read_slot: SlotReader, source: str) -> None:
    """Fill every slot of `model` with what `read_slot(slot)` returns (tensor name → SourceTensor).

    All shapes are checked before anything is copied, so a failed conversion leaves `model` as it
    was. `source` names the source in messages ("keras file x.h5", "torchvision state dict", ...).
    """
    config: ModelConfig = model.config
    plan: list[tuple[torch.Tensor, SourceTensor]] = []
    for slot in model_slots(config):
        module = model.get_submodule(slot.path)
        tensors = read_slot(slot)
        for tensor_name in SLOT_TENSORS[slot.op]:
            target = getattr(module, tensor_name)
            given = tensors.get(tensor_name)
            if given is None:
                raise WeightMismatch(f"{source} has no {tensor_name} for {slot.path} of {describe(config)}")
            if tuple(given.value.shape) != tuple(target.shape):
                ours = tuple(target.shape)
                as_ours = (
                    ""
                    if tuple(given.source_shape) == tuple(given.value.shape)
                    else f" ({tuple(given.value.shape)} in PyTorch layout)"
                )
                raise WeightMismatch(
                    f"{source}: {given.name} has shape {tuple(given.source_shape)}{as_ours} but "
                    f"{slot.path}.{tensor_name} of {describe(config)} has shape {ours}"
                )
            plan.append((target, given))
    for target, given in plan:
        target.copy_(given.value.to(target.dtype))


def describe(config: ModelConfig) -> str:
    """The model in words for messages, e.g. "mobilenet_v1 (width_mult=0.5, depth_multiplier=2)"."""
    details = [f"width_mult={config.width_mult:g}"]
    separable = [b for b in config.blocks if b.kind == "separable"]
    if separable and separable[0].depth_multiplier != 1:
        details.append(f"depth_multiplier={separable[0].depth_multiplier}")
    if config.minimalistic:
        details.append("minimalistic")
    if config.head is None:
        details.append("no classifier")
    else:
        details.append(f"num_classes={config.head.num_classes}")
    return f"{config.name} ({', '.join(details)})"


def check_all_used(available: list[str], used: set[str], source: str, config: ModelConfig) -> None:
    """A source with weights left over is not the model asked for (more blocks, an extra head
    layer, another width...): say which, rather than drop them silently."""
    left = [name for name in available if name not in used]
    if left:
        shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
        raise WeightMismatch(
            f"{source} has weights with no place in {describe(config)}: {shown}; it is not this architecture"
        )


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def first_success(attempts: list[Callable[[], ModuleT]]) -> ModuleT:
    """The model from the first attempt that fits; if none does, the first attempt's error (the most
    likely candidate's mismatch is the useful message)."""
    first_error: WeightMismatch | None = None
    for attempt in attempts:
        try:
            return attempt()
        except WeightMismatch as error:
            first_error = first_error or error
    assert first_error is not None, "first_success needs at least one attempt"
    raise first_error


def width_candidates(estimate: float | None, published: tuple[float, ...]) -> list[float]:
    """Widths to try when the caller did not say: the estimate from a layer's channel count first,
    then the widths the publishers use."""
    candidates = [] if estimate is None else [round(estimate, 4)]
    return candidates + [w for w in published if w not in candidates]


def source_config(
    name: str,
    *,
    width_mult: float,
    num_classes: int | None,
    resolution: int,
    padding: str,
    bn_eps: float,
    bn_momentum: float,
    dropout: float,
    extra: dict,
    activation: str | None = None,
    depth_multiplier: int = 1,
    minimalistic: bool = False,
) -> ModelConfig:
    """The config of a converted model: our architecture with the source's conventions (padding,
    BatchNorm epsilon and momentum, activation) and its provenance in `extra`.

    num_classes None builds the feature extractor (the source had no classifier).
    """
    options = dict(
        width_mult=width_mult, resolution=resolution, padding=padding, bn_eps=bn_eps, dropout=dropout
    )
    if name.startswith("mobilenet_v1"):
        options.update(activation=activation, depth_multiplier=depth_multiplier)
    if minimalistic:
        options["minimalistic"] = True
    if num_classes is None:
        options["features_only"] = True
    else:
        options["num_classes"] = num_classes
    config = model_config(name, **options)
    return config.replace(bn_momentum=bn_momentum, extra={**config.extra, **extra})
