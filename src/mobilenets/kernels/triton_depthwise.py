"""Depthwise convolution in Triton: forward with a fused per-channel affine (folded BN or bias) and
activation, input gradient, weight (and bias) gradient, and the autograd Function tying them.

Built for channels_last (NHWC) tensors, where a pixel's channels are contiguous, so a tile of
[pixels × channels] is read with coalesced loads; other layouts work through their strides. The
arithmetic is float32 for bf16, fp16 and fp32 storage, and float64 for float64 tensors (the type of
the prepared taps, `reference.compute_dtype`), so gradients can be checked in float64, where a
network's rounding noise cannot hide a kernel's error. Tested against
`reference.depthwise_conv2d_reference`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .reference import activation_code, compute_dtype
from .triton_common import (
    activate,
    activation_grad,
    config_grid,
    empty_like_layout,
    load_tap,
    memory_format,
    output_size,
    pixel_coords,
    program_tile,
    tile_grid,
    tuned,
)


@triton.jit
def _depthwise_fwd_kernel(
    x_ptr,
    w_ptr,
    scale_ptr,
    shift_ptr,
    y_ptr,
    pre_ptr,
    N,
    C,
    H,
    W,
    OH,
    OW,
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
    HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
    ACT: tl.constexpr,
    STORE_PRE: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    n, oh, ow, p_ok, c, c_ok = program_tile(N, OH, OW, C, BLOCK_P, BLOCK_C)
    ih0 = oh * stride - pad_top
    iw0 = ow * stride - pad_left
    x_tile = x_ptr + (n * sxn + ih0 * sxh + iw0 * sxw)[:, None] + (c * sxc)[None, :]
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=w_ptr.dtype.element_ty)
    for kh in tl.static_range(K):
        for kw in tl.static_range(K):
            xv = load_tap(x_tile, ih0, iw0, p_ok, c_ok, kh, kw, H, W, sxh, sxw, dilation, acc)
            wv = tl.load(w_ptr + (kh * K + kw) * C + c, mask=c_ok, other=0.0)
            acc += xv * wv[None, :]
    if HAS_SCALE:
        acc *= tl.load(scale_ptr + c, mask=c_ok, other=0.0)[None, :]
    if HAS_SHIFT:
        acc += tl.load(shift_ptr + c, mask=c_ok, other=0.0)[None, :]
    out = n * syn + oh * syh + ow * syw
    out_offsets = out[:, None] + c[None, :] * syc
    out_ok = p_ok[:, None] & c_ok[None, :]
    if STORE_PRE:
        tl.store(pre_ptr + out_offsets, acc.to(pre_ptr.dtype.element_ty), mask=out_ok)
    acc = activate(acc, ACT)
    tl.store(y_ptr + out_offsets, acc.to(y_ptr.dtype.element_ty), mask=out_ok)


@triton.jit
def _depthwise_bwd_input_kernel(
    g_ptr,
    saved_ptr,
    w_ptr,
    scale_ptr,
    dx_ptr,
    N,
    C,
    H,
    W,
    OH,
    OW,
    sgn,
    sgc,
    sgh,
    sgw,
    sdn,
    sdc,
    sdh,
    sdw,
    stride,
    dilation,
    pad_top,
    pad_left,
    K: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    ACT: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    # dx[ih, iw] gathers g[oh, ow]·w[kh, kw] over the taps with oh·stride - pad + kh·dilation = ih.
    # `saved` (the output or pre-activation, see activation_grad) has g's strides.
    n, ih, iw, p_ok, c, c_ok = program_tile(N, H, W, C, BLOCK_P, BLOCK_C)
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=w_ptr.dtype.element_ty)
    for kh in tl.static_range(K):
        th = ih + pad_top - kh * dilation
        oh = th // stride
        row_ok = p_ok & (th >= 0) & (th % stride == 0) & (oh < OH)
        for kw in tl.static_range(K):
            tw = iw + pad_left - kw * dilation
            ow = tw // stride
            ok = row_ok & (tw >= 0) & (tw % stride == 0) & (ow < OW)
            offsets = (n * sgn + oh * sgh + ow * sgw)[:, None] + c[None, :] * sgc
            mask = ok[:, None] & c_ok[None, :]
            g = tl.load(g_ptr + offsets, mask=mask, other=0.0).to(acc.dtype)
            if ACT != 0:
                g = activation_grad(g, tl.load(saved_ptr + offsets, mask=mask, other=0.0).to(acc.dtype), ACT)
            wv = tl.load(w_ptr + (kh * K + kw) * C + c, mask=c_ok, other=0.0)
            acc += g * wv[None, :]
    if HAS_SCALE:
        acc *= tl.load(scale_ptr + c, mask=c_ok, other=0.0)[None, :]
    offsets = (n * sdn + ih * sdh + iw * sdw)[:, None] + c[None, :] * sdc
    tl.store(dx_ptr + offsets, acc.to(dx_ptr.dtype.element_ty), mask=p_ok[:, None] & c_ok[None, :])


@triton.jit
def _depthwise_bwd_weight_kernel(
    g_ptr,
    saved_ptr,
    x_ptr,
    partial_ptr,
    N,
    C,
    H,
    W,
    OH,
    OW,
    sgn,
    sgc,
    sgh,
    sgw,
    sxn,
    sxc,
    sxh,
    sxw,
    stride,
    dilation,
    pad_top,
    pad_left,
    pixels_per_split,
    K: tl.constexpr,
    TAPS: tl.constexpr,
    ACT: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    # Each program reduces one slice of the output pixels for one block of channels into
    # partial[split, tap, c]: rows 0..K²-1 hold Σ g·x for each tap, row K² holds Σ g (the shift's
    # gradient). The host sums the splits, which keeps the result deterministic (no atomics).
    split = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    tap = tl.arange(0, TAPS)
    acc = tl.zeros((TAPS, BLOCK_C), dtype=partial_ptr.dtype.element_ty)
    start = split * pixels_per_split
    end = tl.minimum(start + pixels_per_split, N * OH * OW)
    for p0 in range(start, end, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        p_ok = p < end
        n, oh, ow = pixel_coords(p, OH, OW)
        offsets = (n * sgn + oh * sgh + ow * sgw)[:, None] + c[None, :] * sgc
        mask = p_ok[:, None] & c_ok[None, :]
        g = tl.load(g_ptr + offsets, mask=mask, other=0.0).to(acc.dtype)
        if ACT != 0:
            g = activation_grad(g, tl.load(saved_ptr + offsets, mask=mask, other=0.0).to(acc.dtype), ACT)
        acc = tl.where(tap[:, None] == K * K, acc + tl.sum(g, axis=0)[None, :], acc)
        ih0 = oh * stride - pad_top
        iw0 = ow * stride - pad_left
        x_tile = x_ptr + (n * sxn + ih0 * sxh + iw0 * sxw)[:, None] + (c * sxc)[None, :]
        for kh in tl.static_range(K):
            for kw in tl.static_range(K):
                xv = load_tap(x_tile, ih0, iw0, p_ok, c_ok, kh, kw, H, W, sxh, sxw, dilation, g)
                acc = tl.where(tap[:, None] == kh * K + kw, acc + tl.sum(g * xv, axis=0)[None, :], acc)
    offsets = (split * TAPS + tap)[:, None] * C + c[None, :]
    tl.store(partial_ptr + offsets, acc, mask=(tap[:, None] <= K * K) & c_ok[None, :])


_KEY = ["C", "H", "W", "stride"]
# The interpreter's cost is per operation, whatever the block size: large pixel blocks keep tests fast,
# and the tests use channel counts (20, 33, 37) that leave partial channel blocks.
_INTERPRETER_BLOCKS = {"BLOCK_P": 64, "BLOCK_C": 32}
# Few configs: tuning runs once per shape on first use, and a whole model has a dozen shapes.
_GPU_CONFIGS = config_grid({"BLOCK_P": [64, 32, 128], "BLOCK_C": [32, 64]}, [4])
_fwd, _FWD_META = tuned(_depthwise_fwd_kernel, _GPU_CONFIGS, _KEY, _INTERPRETER_BLOCKS)
_bwd_input, _BWD_INPUT_META = tuned(_depthwise_bwd_input_kernel, _GPU_CONFIGS, _KEY, _INTERPRETER_BLOCKS)
_bwd_weight, _BWD_WEIGHT_META = tuned(_depthwise_bwd_weight_kernel, _GPU_CONFIGS, _KEY, _INTERPRETER_BLOCKS)


def taps_by_channel(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(C, 1, K, K) weight as (K·K, C) in `dtype`, each tap's channels contiguous, as the kernels read.
    The depthwise kernels compute in this type: pass `compute_dtype` of the input's."""
    return weight.detach().reshape(weight.shape[0], -1).t().contiguous().to(dtype)


def _split_count(pixels: int, channel_blocks: int) -> int:
    # Enough programs to fill a large GPU several times over, each still reducing ≥ 256 pixels.
    return max(1, min(triton.cdiv(pixels, 256), triton.cdiv(1024, channel_blocks)))


def _optional(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return like if t is None else t.detach().to(like.dtype).contiguous()


def depthwise_forward(x, taps, scale, shift, kernel_size, stride, padding, dilation, activation, store_pre):
    """Launch the forward kernel; returns (output, pre-activation or None)."""
    N, C, H, W = x.shape
    left, right, top, bottom = padding
    OH = output_size(H, kernel_size, stride, dilation, top, bottom)
    OW = output_size(W, kernel_size, stride, dilation, left, right)
    y = empty_like_layout(x, (N, C, OH, OW), x.dtype)
    pre = torch.empty_like(y) if store_pre else None
    grid = tile_grid(N * OH * OW, C)
    _fwd[grid](
        x,
        taps,
        _optional(scale, taps),
        _optional(shift, taps),
        y,
        y if pre is None else pre,
        N,
        C,
        H,
        W,
        OH,
        OW,
        *x.stride(),
        *y.stride(),
        stride,
        dilation,
        top,
        left,
        K=kernel_size,
        HAS_SCALE=scale is not None,
        HAS_SHIFT=shift is not None,
        ACT=activation_code(activation),
        STORE_PRE=store_pre,
        **_FWD_META,
    )
    return y, pre


def depthwise_backward_input(
    grad, saved, taps, scale, x_shape, like, kernel_size, stride, padding, dilation, activation
):
    N, C, H, W = x_shape
    left, _, top, _ = padding
    OH, OW = grad.shape[2:]
    dx = empty_like_layout(like, tuple(x_shape), like.dtype)
    grid = tile_grid(N * H * W, C)
    _bwd_input[grid](
        grad,
        grad if saved is None else saved,
        taps,
        _optional(scale, taps),
        dx,
        N,
        C,
        H,
        W,
        OH,
        OW,
        *grad.stride(),
        *dx.stride(),
        stride,
        dilation,
        top,
        left,
        K=kernel_size,
        HAS_SCALE=scale is not None,
        ACT=activation_code(activation),
        **_BWD_INPUT_META,
    )
    return dx


def depthwise_backward_weight(grad, saved, x, kernel_size, stride, padding, dilation, activation):
    """(Σ g·x per tap as (K·K, C), Σ g per channel) with g the gradient before the activation."""
    N, C, H, W = x.shape
    left, _, top, _ = padding
    OH, OW = grad.shape[2:]
    taps = kernel_size * kernel_size
    pixels = N * OH * OW
    splits = _split_count(pixels, triton.cdiv(C, 64))
    pixels_per_split = triton.cdiv(pixels, splits)
    rows = triton.next_power_of_2(taps + 1)
    partial = torch.empty((splits, rows, C), dtype=compute_dtype(x.dtype), device=x.device)
    grid = lambda meta: (splits, triton.cdiv(C, meta["BLOCK_C"]))  # noqa: E731
    _bwd_weight[grid](
        grad,
        grad if saved is None else saved,
        x,
        partial,
        N,
        C,
        H,
        W,
        OH,
        OW,
        *grad.stride(),
        *x.stride(),
        stride,
        dilation,
        top,
        left,
        pixels_per_split,
        K=kernel_size,
        TAPS=rows,
        ACT=activation_code(activation),
        **_BWD_WEIGHT_META,
    )
    sums = partial[:, : taps + 1].sum(0)
    return sums[:taps], sums[taps]


class DepthwiseConv2dFunction(torch.autograd.Function):
    """activation(depthwise_conv(x, weight) · scale + shift) with Triton kernels both ways.

    scale is a constant (a folded BatchNorm's, for inference): it gets no gradient. shift (a bias or
    a folded BN's shift) and weight do. padding is explicit (left, right, top, bottom).
    """

    @staticmethod
    def forward(ctx, x, weight, scale, shift, stride, padding, dilation, activation):
        if scale is not None and scale.requires_grad:
            raise ValueError(
                "the depthwise kernel's scale is a constant (a folded BatchNorm) and gets no "
                "gradient; pass scale.detach(), or train with the BatchNorm unfolded"
            )
        kernel_size = weight.shape[-1]
        taps = taps_by_channel(weight, compute_dtype(x.dtype))
        needs_grad = any(ctx.needs_input_grad[i] for i in (0, 1, 3))
        y, pre = depthwise_forward(
            x,
            taps,
            scale,
            shift,
            kernel_size,
            stride,
            padding,
            dilation,
            activation,
            store_pre=needs_grad and activation == "hardswish",
        )
        # What the derivative of the activation needs: the output for ReLU/ReLU6, z for hard-swish.
        saved = pre if activation == "hardswish" else y if activation != "none" else None
        ctx.save_for_backward(x, weight, scale, saved)
        shift_dtype = None if shift is None else shift.dtype
        ctx.config = (kernel_size, stride, padding, dilation, activation, shift_dtype)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, scale, saved = ctx.saved_tensors
        kernel_size, stride, padding, dilation, activation, shift_dtype = ctx.config
        # The kernels read the gradient and the saved output with the same offsets: one layout.
        grad_y = grad_y.contiguous(memory_format=memory_format(x))
        grad_x = grad_weight = grad_shift = None
        if ctx.needs_input_grad[0]:
            taps = taps_by_channel(weight, compute_dtype(x.dtype))
            grad_x = depthwise_backward_input(
                grad_y, saved, taps, scale, x.shape, x, kernel_size, stride, padding, dilation, activation
            )
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[3]:
            tap_sums, shift_sums = depthwise_backward_weight(
                grad_y, saved, x, kernel_size, stride, padding, dilation, activation
            )
            if ctx.needs_input_grad[1]:
                if scale is not None:
                    tap_sums = tap_sums * scale.to(tap_sums.dtype)
                grad_weight = tap_sums.t().reshape(weight.shape).to(weight.dtype)
            if shift_dtype is not None and ctx.needs_input_grad[3]:
                grad_shift = shift_sums.to(shift_dtype)
        return grad_x, grad_weight, None, grad_shift, None, None, None, None


def depthwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    stride: int = 1,
    padding: tuple[int, int, int, int] = (1, 1, 1, 1),
    dilation: int = 1,
    activation: str = "none",
) -> torch.Tensor:
    """The Triton twin of `reference.depthwise_conv2d_reference` (same arguments, same result)."""
    if x.dim() != 4 or weight.shape != (x.shape[1], 1, weight.shape[-1], weight.shape[-1]):
        raise ValueError(
            f"depthwise_conv2d expects x (N, C, H, W) and weight (C, 1, K, K); got x "
            f"{tuple(x.shape)} and weight {tuple(weight.shape)}"
        )
    activation_code(activation)
    return DepthwiseConv2dFunction.apply(
        x, weight, scale, shift, stride, tuple(padding), dilation, activation
    )
