"""Plain PyTorch references for the Triton kernels: what every kernel is tested against and what
the backend falls back to where a kernel cannot run.

Padding is always explicit here, (left, right, top, bottom) as F.pad takes it: the modules resolve
"torch" (symmetric), "same" (TensorFlow, asymmetric) and "keras" to it before calling a kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The activations the kernels fuse, by the names `layers.make_activation` uses; the integer is the
# code the kernels take as a compile-time constant.
ACTIVATION_CODES = {"none": 0, "relu": 1, "relu6": 2, "hardswish": 3}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The type the depthwise kernels compute in for tensors of `dtype`: float32 (bf16, fp16 and fp32
    storage), or float64 for float64 tensors."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def activation_code(name: str) -> int:
    if name not in ACTIVATION_CODES:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATION_CODES))}; got {name!r}")
    return ACTIVATION_CODES[name]


def activate(z: torch.Tensor, activation: str) -> torch.Tensor:
    """The activation `activation` (see ACTIVATION_CODES) applied to z."""
    activation_code(activation)
    if activation == "relu":
        return F.relu(z)
    if activation == "relu6":
        return F.relu6(z)
    if activation == "hardswish":
        return F.hardswish(z)
    return z


def affine(z: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None) -> torch.Tensor:
    """z · scale + shift per channel (dimension 1), either optional: a folded BN or a bias."""
    if scale is not None:
        z = z * scale.reshape(1, -1, 1, 1)
    if shift is not None:
        z = z + shift.reshape(1, -1, 1, 1)
    return z


def depthwise_conv2d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    stride: int = 1,
    padding: tuple[int, int, int, int] = (1, 1, 1, 1),
    dilation: int = 1,
    activation: str = "none",
) -> torch.Tensor:
    """activation(depthwise_conv(x) · scale + shift): F.conv2d with groups=C, weight (C, 1, K, K)."""
    z = F.conv2d(F.pad(x, padding), weight, None, stride, 0, dilation, groups=x.shape[1])
    return activate(affine(z, scale, shift), activation)


def separable_conv2d_reference(
    x: torch.Tensor,
    dw_weight: torch.Tensor,
    dw_scale: torch.Tensor | None,
    dw_shift: torch.Tensor | None,
    pw_weight: torch.Tensor,
    pw_scale: torch.Tensor | None,
    pw_shift: torch.Tensor | None,
    stride: int = 1,
    padding: tuple[int, int, int, int] = (1, 1, 1, 1),
    dilation: int = 1,
    dw_activation: str = "relu",
    pw_activation: str = "relu",
) -> torch.Tensor:
    """Depthwise → affine → activation → pointwise (weight (C_out, C, 1, 1)) → affine → activation."""
    hidden = depthwise_conv2d_reference(
        x, dw_weight, dw_scale, dw_shift, stride, padding, dilation, dw_activation
    )
    return activate(affine(F.conv2d(hidden, pw_weight), pw_scale, pw_shift), pw_activation)
