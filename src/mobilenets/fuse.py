"""Fuse (fold) every BatchNorm into the convolution before it, for inference: `fuse_bn(model)`,
one pair at a time with `fuse_bn_into(conv, norm)`.

In eval mode a BatchNorm is a fixed per-channel affine map y = γ·(x - μ)/√(σ² + ε) + β, so
conv → BN equals one convolution with weights W·s and bias (b - μ)·s + β, where s = γ/√(σ² + ε).
Folding removes a full read and write of every feature map; on a CPU that is a large share of a
MobileNet's time, because its depthwise layers do little arithmetic per byte moved.

The folded model is for inference only (the BatchNorm statistics are gone), and it is tested
against the unfused eval model it came from.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

from .layers import ConvNormAct

__all__ = ["fuse_bn_into", "fuse_bn", "is_fused"]


@torch.no_grad()
def fuse_bn_into(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Rewrite `conv` in place so that conv(x) equals norm(conv(x)) with `norm` in eval mode."""
    running_mean, running_var = norm.running_mean, norm.running_var
    if not norm.track_running_stats or running_mean is None or running_var is None:
        raise ValueError("can only fold a BatchNorm that tracks running statistics")
    if norm.num_features != conv.out_channels:
        raise ValueError(
            f"BatchNorm has {norm.num_features} channels but the convolution writes {conv.out_channels}"
        )
    # float64 for the folding arithmetic so the only float32 rounding left is the final cast.
    weight = conv.weight.double()
    gamma = norm.weight.double() if norm.affine else torch.ones_like(running_var, dtype=torch.float64)
    beta = norm.bias.double() if norm.affine else torch.zeros_like(running_mean, dtype=torch.float64)
    scale = gamma / torch.sqrt(running_var.double() + norm.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    dtype = conv.weight.dtype
    conv.weight.copy_((weight * scale.reshape(-1, 1, 1, 1)).to(dtype))
    new_bias = ((bias - running_mean.double()) * scale + beta).to(dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias, requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(new_bias)


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def fuse_bn(model: ModuleT, inplace: bool = False) -> ModuleT:
    """`model` (a copy unless inplace) in eval mode with every ConvNormAct's BatchNorm folded into
    its convolution and replaced by nn.Identity.

    Works on a `MobileNet` or on any module built from `ConvNormAct` units; models built with
    norm="none" come back unchanged. Returns the folded model.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for module in model.modules():
        if isinstance(module, ConvNormAct) and isinstance(module.norm, nn.BatchNorm2d):
            fuse_bn_into(module.conv, module.norm)
            module.norm = nn.Identity()
    return model


def is_fused(model: nn.Module) -> bool:
    """True when no ConvNormAct in `model` still has a BatchNorm."""
    return not any(isinstance(m, ConvNormAct) and isinstance(m.norm, nn.BatchNorm2d) for m in model.modules())
