"""The backend switch: run a model's depthwise layers (and whole depthwise separable blocks) on the
Triton kernels, or back on PyTorch's.

`use_backend(model, "triton")` re-classes, in place, every ConvNormAct whose convolution is a
depthwise one, every DepthwiseSeparableConv2d and every InvertedResidual as a subclass whose forward
calls the kernels. The
modules keep their parameters, buffers and names, so state dicts, checkpoints, optimizers and
`use_backend(model, "torch")` (which restores the original classes) are unaffected.

What each swapped module runs:
- inference (eval BatchNorm or none, no gradient needed): a DepthwiseSeparableConv2d is one fused
  kernel (depthwise → BN → act → pointwise GEMM → BN → act), and so is the depthwise → projection of
  a V2/V3 inverted residual without squeeze-excite (its expansion stays PyTorch's); a depthwise unit
  followed by SE is the depthwise kernel with BN folded into its epilogue with the activation;
- training: the depthwise kernel (forward and both gradients), then PyTorch's BatchNorm (batch
  statistics have to be known before anything after them can run) and activation. Without a
  BatchNorm, bias and activation stay fused in the kernel, gradients included.
A module falls back to its PyTorch forward for a tensor the kernels cannot take (a CPU tensor when
Triton's interpreter is off) or a configuration they do not cover (depth multiplier > 1, unequal
strides, another activation).

The backend is off by default: nothing uses it unless `use_backend` is called, and it stays so
until its GPU figures are measured (docs/kernels.md).
"""

from __future__ import annotations

import importlib.util
import itertools
import warnings
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import Conv2d, ConvNormAct, DepthwiseSeparableConv2d, InvertedResidual, same_padding
from .reference import compute_dtype

TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
if TRITON_INSTALLED:
    from .triton_common import INTERPRET, can_run_on
    from .triton_depthwise import depthwise_conv2d, depthwise_forward, taps_by_channel
    from .triton_separable import prepare_separable, separable_forward

BACKENDS = ("torch", "triton")
_CACHE = "_kernel_operands"
_ACTIVATIONS = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish", nn.Identity: "none"}


def check_backend(backend: str) -> None:
    """Raise ValueError, naming the choices, unless `backend` is one of BACKENDS."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")


def unavailable_reason() -> str | None:
    """Why the Triton kernels cannot run in this process, or None when they can."""
    if not TRITON_INSTALLED:
        return "the Triton backend needs triton: pip install 'mobilenets[triton]'"
    if not INTERPRET and not torch.cuda.is_available():
        return (
            "the Triton backend needs a CUDA GPU (or TRITON_INTERPRET=1 set before triton is imported, "
            "to run its kernels slowly on CPU for testing)"
        )
    return None


def activation_name(module: nn.Module) -> str | None:
    """The kernels' name for an activation module, or None for one they do not fuse."""
    return _ACTIVATIONS.get(type(module))


def explicit_padding(conv: Conv2d, height: int, width: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) that `layers.Conv2d` applies to an input of height × width."""
    if conv.explicit_padding is not None:
        return conv.explicit_padding
    if conv.dynamic_same:
        top, bottom = same_padding(height, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        left, right = same_padding(width, conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        return left, right, top, bottom
    padding = conv.padding
    assert isinstance(padding, tuple)  # layers.Conv2d pads statically by a number, never "same"
    rows, cols = padding
    return cols, cols, rows, rows


def is_depthwise_unit(module: nn.Module) -> bool:
    """A ConvNormAct the depthwise kernel computes: one square filter per channel, equal strides and
    dilations, zero padding, BatchNorm or nothing after it, and an activation the kernel fuses."""
    if not isinstance(module, ConvNormAct):
        return False
    conv = module.conv
    square = conv.kernel_size[0] == conv.kernel_size[1]
    same_steps = conv.stride[0] == conv.stride[1] and conv.dilation[0] == conv.dilation[1]
    return (
        conv.groups == conv.in_channels == conv.out_channels
        and conv.padding_mode == "zeros"
        and square
        and same_steps
        and isinstance(module.norm, (nn.BatchNorm2d, nn.Identity))
        and activation_name(module.act) is not None
    )


T = TypeVar("T")


def _cached(module: nn.Module, dtype: torch.dtype, build: Callable[[], T]) -> T:
    """build(), computed again only when a parameter or buffer of `module` changed (storage or
    in-place version: an optimizer step, load_state_dict, .to()) or the input dtype did. For
    inference, where preparing the kernels' operands would otherwise cost more small launches per
    block than the kernel itself."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    key = (dtype, *((t.data_ptr(), t._version) for t in tensors))
    cached = module.__dict__.get(_CACHE)
    if cached is None or cached[0] != key:
        cached = (key, build())
        module.__dict__[_CACHE] = cached  # a plain attribute: not state, not moved by .to()
    return cached[1]


def _trains(module: nn.Module) -> bool:
    """Whether autograd will want gradients of any of module's parameters."""
    return torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())


def has_fixed_norm(unit: ConvNormAct) -> bool:
    """Whether unit's norm is a fixed per-channel map (an eval BatchNorm with running statistics, or
    none), which `folded_affine` can fold."""
    norm = unit.norm
    return isinstance(norm, nn.Identity) or not (norm.training or norm.running_mean is None)


def folded_affine(unit: ConvNormAct, dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(scale, shift) with norm(conv(x)) = conv_without_bias(x)·scale + shift per channel, for a unit
    with `has_fixed_norm`, in the kernels' compute type for inputs of `dtype`. Either may be None (no
    scale: 1, no shift: 0)."""
    norm, bias = unit.norm, unit.conv.bias
    dtype = compute_dtype(dtype)
    if isinstance(norm, nn.Identity):
        return None, bias
    # has_fixed_norm: else an eval-mode BatchNorm (BatchNorm2d, or SyncBatchNorm) with running statistics
    assert isinstance(norm, _BatchNorm) and norm.running_mean is not None and norm.running_var is not None
    # Not under no_grad: a convolution bias keeps its gradient through the shift. The scale carries
    # one only if BN's weight is trained, and then the callers do not fold.
    scale = torch.rsqrt(norm.running_var.to(dtype) + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.to(dtype)
    shift = -norm.running_mean.to(dtype) * scale
    if bias is not None:
        shift = shift + bias.to(dtype) * scale
    if norm.bias is not None:
        shift = shift + norm.bias.to(dtype)
    return scale, shift


class TritonConvNormAct(ConvNormAct):
    """A depthwise ConvNormAct running on the depthwise kernel (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not can_run_on(x):
            return super().forward(x)
        conv = self.conv
        padding = explicit_padding(conv, x.shape[-2], x.shape[-1])
        geometry = (conv.stride[0], padding, conv.dilation[0])
        activation = activation_name(self.act)
        foldable = has_fixed_norm(self) and not _trains(self.norm)
        if foldable and not torch.is_grad_enabled():
            taps, scale, shift = _cached(
                self,
                x.dtype,
                lambda: (taps_by_channel(conv.weight, compute_dtype(x.dtype)), *folded_affine(self, x.dtype)),
            )
            return depthwise_forward(
                x, taps, scale, shift, conv.kernel_size[0], *geometry, activation, store_pre=False
            )[0]
        if foldable:  # gradients wanted, BN (if any) frozen: its scale is a constant, a bias still trains
            assert activation is not None  # is_depthwise_unit: one the kernel fuses
            scale, shift = folded_affine(self, x.dtype)
            return depthwise_conv2d(x, conv.weight, scale, shift, *geometry, activation)
        return self.act(self.norm(depthwise_conv2d(x, conv.weight, None, conv.bias, *geometry, "none")))


def fused_arguments(owner: nn.Module, dw: nn.Module, pw: ConvNormAct, x: torch.Tensor) -> tuple | None:
    """separable_forward's arguments after x for the depthwise unit `dw` then the 1×1 unit `pw` of
    `owner` (which caches the prepared operands), or None when this call cannot be fused."""
    if not isinstance(dw, TritonConvNormAct) or not can_run_on(x) or _trains(owner):
        return None
    pw_activation = activation_name(pw.act)
    if pw_activation is None or not (has_fixed_norm(dw) and has_fixed_norm(pw)):
        return None
    conv = dw.conv
    operands = _cached(
        owner,
        x.dtype,
        lambda: prepare_separable(
            conv.weight, *folded_affine(dw, x.dtype), pw.conv.weight, *folded_affine(pw, x.dtype), x.dtype
        ),
    )
    padding = explicit_padding(conv, x.shape[-2], x.shape[-1])
    return operands, conv.stride[0], padding, conv.dilation[0], activation_name(dw.act), pw_activation


class TritonDepthwiseSeparableConv2d(DepthwiseSeparableConv2d):
    """A DepthwiseSeparableConv2d that, for inference, runs as one fused kernel (the depthwise result
    never goes to memory); otherwise its depthwise unit runs on the depthwise kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = fused_arguments(self, self.dw, self.pw, x)
        if fused is None:
            return self.pw(self.dw(x))
        return separable_forward(x, *fused)


class TritonInvertedResidual(InvertedResidual):
    """A V2/V3 inverted residual whose depthwise → projection runs, for inference and without SE, as
    the fused separable kernel (the expanded depthwise output never goes to memory); the expansion
    stays PyTorch's 1×1 convolution. Otherwise its depthwise unit runs on the depthwise kernel."""

    def depthwise_and_project(self, x: torch.Tensor) -> torch.Tensor:
        fused = None if self.se is not None else fused_arguments(self, self.dw, self.project, x)
        if fused is None:
            return super().depthwise_and_project(x)
        return separable_forward(x, *fused)


# Each Triton class and the PyTorch class it stands in for.
_SWAPS = {
    TritonConvNormAct: ConvNormAct,
    TritonDepthwiseSeparableConv2d: DepthwiseSeparableConv2d,
    TritonInvertedResidual: InvertedResidual,
}


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def use_backend(model: ModuleT, backend: str, strict: bool = False) -> ModuleT:
    """Switch `model` in place to `backend` ("torch" or "triton") and return it.

    When the kernels cannot run here (triton missing, or neither a GPU nor the interpreter), "triton"
    warns in one line and leaves the model on PyTorch; with strict=True it raises instead.
    """
    check_backend(backend)
    if backend == "triton":
        reason = unavailable_reason()
        if reason is not None:
            if strict:
                raise RuntimeError(reason)
            warnings.warn(f"{reason}; the model keeps running on PyTorch", RuntimeWarning, stacklevel=2)
            return model
    for module in model.modules():
        # Re-classing keeps every parameter, buffer and name as it is (see the module docstring).
        if backend == "torch" and type(module) in _SWAPS:
            module.__class__ = _SWAPS[type(module)]
            module.__dict__.pop(_CACHE, None)
        elif backend == "triton" and type(module) is DepthwiseSeparableConv2d:
            module.__class__ = TritonDepthwiseSeparableConv2d
        elif backend == "triton" and type(module) is InvertedResidual:
            module.__class__ = TritonInvertedResidual
        elif backend == "triton" and type(module) is ConvNormAct and is_depthwise_unit(module):
            module.__class__ = TritonConvNormAct
    return model


def backend_of(model: nn.Module) -> str:
    """ "triton" when any module of `model` runs on the kernels, else "torch"."""
    return "triton" if any(type(m) in _SWAPS for m in model.modules()) else "torch"
