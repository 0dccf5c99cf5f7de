"""What the Triton kernels share: the fused activations, the interpreter switch and autotuning.

Imports triton at module level: only `backend` imports this package's Triton modules, and only when
triton is installed (it is an optional dependency).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import triton
import triton.language as tl

# Triton decides when a kernel is decorated whether it will be interpreted on CPU tensors
# (TRITON_INTERPRET=1) or compiled for a GPU, so this is fixed when the module is imported.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")
# MOBILENETS_KERNELS_AUTOTUNE=0 launches each kernel with its first GPU config instead of tuning:
# the GPU tests use it, since tuning every small test shape would take longer than the tests.
AUTOTUNE = os.environ.get("MOBILENETS_KERNELS_AUTOTUNE", "1") != "0"


def can_run_on(x: torch.Tensor) -> bool:
    """Whether the kernels can run on x's device: a GPU, or any tensor under the interpreter."""
    return INTERPRET or x.is_cuda


def tuned(
    kernel: Any, configs: list[triton.Config], key: list[str], interpreter_config: dict[str, int]
) -> tuple[Any, dict[str, int]]:
    """`kernel` autotuned over `configs` on a GPU; under the interpreter one fixed config, because
    autotuning there would time Python, and slowly. Returns (launchable, fixed_meta): pass
    **fixed_meta at launch (it is empty when the autotuner supplies the blocks)."""
    if INTERPRET:
        return kernel, dict(interpreter_config)
    if not AUTOTUNE:
        first = configs[0]
        return kernel, {**first.kwargs, "num_warps": first.num_warps, "num_stages": first.num_stages}
    return triton.autotune(configs=configs, key=key)(kernel), {}


def config_grid(
    space: dict[str, list[int]], warps: Sequence[int], stages: Sequence[int] = (2,)
) -> list[triton.Config]:
    """Every combination of the block sizes in `space` with the warp and stage counts."""
    configs: list[dict[str, int]] = [{}]
    for name, values in space.items():
        configs = [{**c, name: v} for c in configs for v in values]
    return [triton.Config(c, num_warps=w, num_stages=s) for c in configs for w in warps for s in stages]


def tile_grid(
    pixels: int, channels: int, pixel_block: str = "BLOCK_P", channel_block: str = "BLOCK_C"
) -> Callable[[dict[str, int]], tuple[int, int]]:
    """Launch grid of `program_tile`: [pixel blocks × channel blocks] for the block sizes of the launch
    (the autotuner's or the interpreter's)."""
    return lambda meta: (triton.cdiv(pixels, meta[pixel_block]), triton.cdiv(channels, meta[channel_block]))


def output_size(size: int, kernel_size: int, stride: int, dilation: int, before: int, after: int) -> int:
    return (size + before + after - dilation * (kernel_size - 1) - 1) // stride + 1


def memory_format(t: torch.Tensor) -> torch.memory_format:
    """channels_last if t is laid out so, else contiguous: the layout every result takes from x."""
    channels_last = t.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def empty_like_layout(reference: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty (N, C, H, W) tensor in reference's memory layout."""
    return torch.empty(shape, dtype=dtype, device=reference.device, memory_format=memory_format(reference))


@triton.jit
def activate(z, ACT: tl.constexpr):
    """Activation code ACT (reference.ACTIVATION_CODES) applied to z (float32)."""
    if ACT == 1:
        z = tl.maximum(z, 0.0)
    elif ACT == 2:
        z = tl.minimum(tl.maximum(z, 0.0), 6.0)
    elif ACT == 3:
        z = z * tl.minimum(tl.maximum(z + 3.0, 0.0), 6.0) / 6.0
    return z


@triton.jit
def activation_grad(g, saved, ACT: tl.constexpr):
    """g times the activation's derivative. `saved` is the output for ReLU/ReLU6 (whose derivative
    the output determines, as for PyTorch's in-place versions) and the pre-activation for
    hard-swish, with PyTorch's convention at the kinks."""
    if ACT == 1:
        g = tl.where(saved > 0.0, g, 0.0)
    elif ACT == 2:
        g = tl.where((saved > 0.0) & (saved < 6.0), g, 0.0)
    elif ACT == 3:
        g = tl.where(saved < -3.0, 0.0, tl.where(saved <= 3.0, g * (saved / 3.0 + 0.5), g))
    return g


@triton.jit
def pixel_coords(p, OH, OW):
    """(n, row, column) of flat pixel indices p over an N×OH×OW grid; n as int64 for large batches."""
    col = p % OW
    rest = p // OW
    return (rest // OH).to(tl.int64), rest % OH, col


@triton.jit
def program_tile(N, ROWS, COLS, C, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's [BLOCK_P pixels × BLOCK_C channels] tile of an N×ROWS×COLS×C grid (grid axis 0
    over pixel blocks, axis 1 over channel blocks): (n, row, col, pixel mask, channels, channel mask)."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    n, row, col = pixel_coords(p, ROWS, COLS)
    return n, row, col, p < N * ROWS * COLS, c, c < C


@triton.jit
def load_tap(x_tile, ih0, iw0, p_ok, c_ok, kh, kw, H, W, sxh, sxw, dilation, like):
    """x under tap (kh, kw) for every pixel of a tile in like's type, zero in the padding. x_tile points
    at tap (0, 0) (rows ih0, columns iw0); each tap adds a scalar, which keeps per-tap work small."""
    ih = ih0 + kh * dilation
    iw = iw0 + kw * dilation
    ok = p_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    tap_offset = kh * dilation * sxh + kw * dilation * sxw
    xv = tl.load(x_tile + tap_offset, mask=ok[:, None] & c_ok[None, :], other=0.0)
    return xv.to(like.dtype)
