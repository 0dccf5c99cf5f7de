"""What the Triton kernels share: the fused activations, the interpreter switch and autotuning.

Imports triton at module level: only `backend` imports this package's Triton modules, and only when
triton is installed (it is an optional dependency).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# Triton decides when a kernel is decorated whether it will be interpreted on CPU tensors
# (TRITON_INTERPRET=1) or compiled for a GPU, so this is fixed when the module is imported.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def can_run_on(x: torch.Tensor) -> bool:
    """Whether the kernels can run on x's device: a GPU, or any tensor under the interpreter."""
    return INTERPRET or x.is_cuda


def tuned(kernel, configs: list, key: list[str], interpreter_config: dict):
    """`kernel` autotuned over `configs` on a GPU; under the interpreter one fixed, small config,
    because autotuning there would time Python, and slowly. Returns (launchable, fixed_meta):
    pass **fixed_meta at launch (it is empty on a GPU, where the autotuner supplies the blocks)."""
    if INTERPRET:
        return kernel, dict(interpreter_config)
    return triton.autotune(configs=configs, key=key)(kernel), {}


def config_grid(space: dict[str, list[int]], warps: list[int], stages: list[int] = (2,)) -> list:
    """Every combination of the block sizes in `space` with the warp and stage counts."""
    configs = [{}]
    for name, values in space.items():
        configs = [{**c, name: v} for c in configs for v in values]
    return [triton.Config(c, num_warps=w, num_stages=s) for c in configs for w in warps for s in stages]


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
