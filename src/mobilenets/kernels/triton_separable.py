"""The fused depthwise → pointwise block in Triton, for inference.

One kernel computes activation(pointwise(activation(depthwise(x)·s₁ + b₁))·s₂ + b₂): each program
owns a tile of output pixels × output channels and walks the input channels in blocks; for each
block it computes the depthwise result for its pixels in registers (the GEMM's prologue), applies
the first folded BN and activation, and feeds it straight to the tensor-core GEMM (`tl.dot`) with
the pointwise weights. The depthwise output, the largest tensor of a MobileNet, never goes to memory.
The price is recomputing it once per block of output channels (cheap arithmetic, reads from cache).

Inference only: training needs the depthwise output's batch statistics before the pointwise layer
can run, so the backend trains through the depthwise kernel and cuDNN's 1×1 convolution instead.
Tested against `reference.separable_conv2d_reference`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .reference import activation_code
from .triton_common import (
    INTERPRET,
    activate,
    config_grid,
    empty_like_layout,
    load_tap,
    output_size,
    program_tile,
    tile_grid,
    tuned,
)
from .triton_depthwise import taps_by_channel


@triton.jit
def _separable_fwd_kernel(
    x_ptr,
    dw_w_ptr,
    dw_scale_ptr,
    dw_shift_ptr,
    pw_w_ptr,
    pw_scale_ptr,
    pw_shift_ptr,
    y_ptr,
    N,
    C,
    H,
    W,
    OH,
    OW,
    COUT,
    sxn,
    sxc,
    sxh,
    sxw,
    syn,
    syc,
    syh,
    syw,
    stride,
    dilation,
    pad_top,
    pad_left,
    K: tl.constexpr,
    DW_ACT: tl.constexpr,
    PW_ACT: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    n, oh, ow, p_ok, co, co_ok = program_tile(N, OH, OW, COUT, BLOCK_M, BLOCK_N)
    ih0 = oh * stride - pad_top
    iw0 = ow * stride - pad_left
    x_pixels = x_ptr + (n * sxn + ih0 * sxh + iw0 * sxw)[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, C, BLOCK_K):
        ci = k0 + tl.arange(0, BLOCK_K)
        ci_ok = ci < C
        x_tile = x_pixels + (ci * sxc)[None, :]
        hidden = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
        for kh in tl.static_range(K):
            for kw in tl.static_range(K):
                xv = load_tap(x_tile, ih0, iw0, p_ok, ci_ok, kh, kw, H, W, sxh, sxw, dilation, hidden)
                hidden += xv * tl.load(dw_w_ptr + (kh * K + kw) * C + ci, mask=ci_ok, other=0.0)[None, :]
        # Channels past C come out as activation(0) = 0 and meet zero weight rows: they add nothing.
        hidden = hidden * tl.load(dw_scale_ptr + ci, mask=ci_ok, other=0.0)[None, :]
        hidden = activate(hidden + tl.load(dw_shift_ptr + ci, mask=ci_ok, other=0.0)[None, :], DW_ACT)
        pw_mask = ci_ok[:, None] & co_ok[None, :]
        pw = tl.load(pw_w_ptr + ci[:, None] * COUT + co[None, :], mask=pw_mask, other=0.0)
        if DOT_FP32:
            # float32 models get a float32 GEMM (not TF32); the interpreter only multiplies float32 right.
            acc = tl.dot(hidden, pw.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(hidden.to(pw.dtype), pw, acc)
    acc = acc * tl.load(pw_scale_ptr + co, mask=co_ok, other=0.0)[None, :]
    acc = activate(acc + tl.load(pw_shift_ptr + co, mask=co_ok, other=0.0)[None, :], PW_ACT)
    offsets = (n * syn + oh * syh + ow * syw)[:, None] + (co * syc)[None, :]
    tl.store(y_ptr + offsets, acc.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & co_ok[None, :])


_fused, _FUSED_META = tuned(
    _separable_fwd_kernel,
    config_grid({"BLOCK_M": [128, 64], "BLOCK_N": [64, 128], "BLOCK_K": [32, 64]}, [4], [2, 3]),
    ["C", "COUT", "H", "W", "stride"],
    # The interpreter pays per operation, not per element: large blocks. The tests' channel counts
    # (20, 33, 37 in; 17, 40, 70 out) leave partial blocks, and several of them.
    {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32},
)


def _per_channel(
    values: torch.Tensor | None, channels: int, default: float, device: torch.device
) -> torch.Tensor:
    if values is None:
        return torch.full((channels,), default, dtype=torch.float32, device=device)
    return values.detach().float().contiguous()


class SeparableOperands(NamedTuple):
    """The fused kernel's weights as it reads them: depthwise taps (K·K, C) float32, per-channel
    float32 scales and shifts, pointwise weight (C, C_out) in the GEMM's type. Preparing them takes
    a handful of small kernels, so the backend does it once per weights (see backend._cached)."""

    dw_taps: torch.Tensor
    dw_scale: torch.Tensor
    dw_shift: torch.Tensor
    pw: torch.Tensor
    pw_scale: torch.Tensor
    pw_shift: torch.Tensor


def prepare_separable(
    dw_weight: torch.Tensor,
    dw_scale: torch.Tensor | None,
    dw_shift: torch.Tensor | None,
    pw_weight: torch.Tensor,
    pw_scale: torch.Tensor | None,
    pw_shift: torch.Tensor | None,
    dtype: torch.dtype,
) -> SeparableOperands:
    """Operands for inputs of `dtype`: float32 models multiply in float32 (as does the interpreter,
    whose bf16 `tl.dot` is wrong), bf16/fp16 ones on tensor cores in their own type."""
    channels, out_channels, device = dw_weight.shape[0], pw_weight.shape[0], dw_weight.device
    gemm_dtype = torch.float32 if INTERPRET or dtype == torch.float32 else dtype
    pw = pw_weight.detach().reshape(out_channels, channels).t().contiguous().to(gemm_dtype)
    return SeparableOperands(
        taps_by_channel(dw_weight, torch.float32),
        _per_channel(dw_scale, channels, 1.0, device),
        _per_channel(dw_shift, channels, 0.0, device),
        pw,
        _per_channel(pw_scale, out_channels, 1.0, device),
        _per_channel(pw_shift, out_channels, 0.0, device),
    )


def separable_forward(
    x: torch.Tensor,
    operands: SeparableOperands,
    stride: int,
    padding: tuple[int, int, int, int],
    dilation: int,
    dw_activation: str,
    pw_activation: str,
) -> torch.Tensor:
    """Launch the fused kernel on prepared operands (no checks: see separable_conv2d)."""
    N, C, H, W = x.shape
    kernel_size = math.isqrt(operands.dw_taps.shape[0])
    cout = operands.pw.shape[1]
    left, right, top, bottom = padding
    OH = output_size(H, kernel_size, stride, dilation, top, bottom)
    OW = output_size(W, kernel_size, stride, dilation, left, right)
    y = empty_like_layout(x, (N, cout, OH, OW), x.dtype)
    grid = tile_grid(N * OH * OW, cout, "BLOCK_M", "BLOCK_N")
    _fused[grid](
        x,
        *operands,
        y,
        N,
        C,
        H,
        W,
        OH,
        OW,
        cout,
        *x.stride(),
        *y.stride(),
        stride,
        dilation,
        top,
        left,
        K=kernel_size,
        DW_ACT=activation_code(dw_activation),
        PW_ACT=activation_code(pw_activation),
        DOT_FP32=operands.pw.dtype == torch.float32,
        **_FUSED_META,
    )
    return y


def separable_conv2d(
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
    """The fused Triton twin of `reference.separable_conv2d_reference` (same arguments and result),
    for inference: it raises if autograd would need a gradient through it."""
    C = x.shape[1]
    kernel_size = dw_weight.shape[-1]
    if dw_weight.shape != (C, 1, kernel_size, kernel_size) or pw_weight.shape[1:] != (C, 1, 1):
        raise ValueError(
            f"separable_conv2d expects x (N, C, H, W), dw_weight (C, 1, K, K) and pw_weight "
            f"(C_out, C, 1, 1); got {tuple(x.shape)}, {tuple(dw_weight.shape)}, "
            f"{tuple(pw_weight.shape)}"
        )
    tensors = (x, dw_weight, dw_scale, dw_shift, pw_weight, pw_scale, pw_shift)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise ValueError(
            "the fused separable kernel is for inference: run it under torch.no_grad() "
            "(or torch.inference_mode()), or train through the depthwise kernel"
        )
    operands = prepare_separable(dw_weight, dw_scale, dw_shift, pw_weight, pw_scale, pw_shift, x.dtype)
    left, right, top, bottom = padding  # (any sequence of four)
    return separable_forward(
        x, operands, stride, (left, right, top, bottom), dilation, dw_activation, pw_activation
    )
