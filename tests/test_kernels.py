"""Triton kernels against their PyTorch references.

On a machine without CUDA the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set here
before triton is first imported) on CPU tensors; on a GPU the same tests run compiled
(`benchmarks/gpu.py` runs them there). The interpreter pays per operation, so shapes are small and
the default selection covers every option at least once; the full cross product is marked slow.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

triton = pytest.importorskip("triton")

from mobilenets.kernels.reference import depthwise_conv2d_reference  # noqa: E402
from mobilenets.kernels.triton_depthwise import depthwise_conv2d  # noqa: E402
from mobilenets.layers import same_padding  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ACTIVATIONS = ["none", "relu", "relu6", "hardswish"]
slow = pytest.mark.skipif(os.environ.get("MOBILENETS_FAST") == "1", reason="slow; MOBILENETS_FAST=1")


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def explicit_padding(mode: str, height: int, width: int, kernel_size: int, stride: int) -> tuple[int, ...]:
    """(left, right, top, bottom) of the modules' "torch" (symmetric) or "same" (TensorFlow) padding."""
    if mode == "torch":
        return (kernel_size // 2,) * 4
    top, bottom = same_padding(height, kernel_size, stride)
    left, right = same_padding(width, kernel_size, stride)
    return left, right, top, bottom


def random_case(channels, height, width, kernel_size, dtype, generator, batch=2):
    """Channels_last input, weight, folded-BN-like scale and shift, all on DEVICE."""
    def rand(*shape, low=-1.0, high=1.0):
        return (low + (high - low) * torch.rand(*shape, generator=generator)).to(DEVICE)
    x = rand(batch, channels, height, width, low=-3, high=3).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    weight = rand(channels, 1, kernel_size, kernel_size)
    return x, weight, rand(channels, low=0.5, high=1.5), rand(channels)


def check_depthwise(kernel_size, stride, padding_mode, activation, channels=20, height=8, width=7,
                    dtype=torch.float32, use_scale=True, use_shift=True, tolerance=2e-5):
    generator = torch.Generator().manual_seed(kernel_size * 100 + stride * 10 + channels)
    x, weight, scale, shift = random_case(channels, height, width, kernel_size, dtype, generator)
    scale = scale if use_scale else None
    shift = shift if use_shift else None
    padding = explicit_padding(padding_mode, height, width, kernel_size, stride)
    leaves = [x.requires_grad_(), weight.requires_grad_()] + ([shift.requires_grad_()] if use_shift else [])

    y = depthwise_conv2d(x, weight, scale, shift, stride, padding, 1, activation)
    # The reference sees the same (rounded) inputs, in float32.
    reference = depthwise_conv2d_reference(x.float(), weight, scale, shift, stride, padding, 1, activation)
    assert y.shape == reference.shape and y.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last)
    scale_of = reference.abs().max().item() + 1e-6
    torch.testing.assert_close(y.float(), reference, atol=tolerance * scale_of, rtol=tolerance)

    grad = torch.randn(reference.shape, generator=generator).to(DEVICE)
    grads = torch.autograd.grad(y, leaves, grad.to(dtype))
    expected = torch.autograd.grad(reference, leaves, grad.to(dtype).float())
    for name, leaf, actual, wanted in zip(["input", "weight", "shift"], leaves, grads, expected):
        assert actual.dtype == leaf.dtype and actual.shape == leaf.shape
        peak = wanted.abs().max().item() + 1e-6
        torch.testing.assert_close(actual.float(), wanted.float(), atol=tolerance * peak, rtol=tolerance,
                                   msg=lambda m, name=name: f"{name} gradient: {m}")


# Every kernel size, stride, padding mode and activation at least once, in combinations that
# include the asymmetric TensorFlow padding at stride 2 and an odd width.
COVERING = [
    (3, 1, "torch", "relu"),
    (3, 2, "same", "relu6"),
    (3, 2, "torch", "hardswish"),
    (3, 1, "same", "none"),
    (5, 1, "torch", "hardswish"),
    (5, 2, "same", "relu"),
]


@pytest.mark.parametrize("kernel_size, stride, padding_mode, activation", COVERING)
def test_depthwise_matches_reference(kernel_size, stride, padding_mode, activation):
    check_depthwise(kernel_size, stride, padding_mode, activation)


@pytest.mark.parametrize("channels, height, width", [(5, 5, 9), (33, 3, 4)])
def test_depthwise_channel_counts_off_the_block_size(channels, height, width):
    check_depthwise(3, 2, "same", "relu", channels, height, width)


def test_depthwise_without_scale_or_shift():
    check_depthwise(3, 1, "torch", "relu", use_scale=False, use_shift=False)


def test_depthwise_bias_only():
    check_depthwise(5, 2, "same", "hardswish", use_scale=False)


def test_depthwise_bfloat16():
    # bf16 storage, float32 arithmetic: the error is the output's and gradients' final rounding
    # (2⁻⁸ relative), plus the gradient arriving in bf16. ReLU6 is left out on purpose: its mask
    # read from a bf16 output flips where 5.99 rounds to 6, exactly as PyTorch's own bf16 ReLU6.
    check_depthwise(3, 2, "same", "relu", dtype=torch.bfloat16, tolerance=2e-2)


def test_depthwise_nchw_input_works_through_strides():
    generator = torch.Generator().manual_seed(1)
    x, weight, scale, shift = random_case(6, 6, 6, 3, torch.float32, generator)
    x = x.contiguous()
    y = depthwise_conv2d(x, weight, scale, shift, 1, (1, 1, 1, 1), 1, "relu")
    assert y.is_contiguous()
    expected = depthwise_conv2d_reference(x, weight, scale, shift, 1, (1, 1, 1, 1), 1, "relu")
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


def test_depthwise_rejects_a_trainable_scale_and_bad_shapes():
    generator = torch.Generator().manual_seed(2)
    x, weight, scale, shift = random_case(4, 5, 5, 3, torch.float32, generator)
    with pytest.raises(ValueError, match="scale is a constant"):
        depthwise_conv2d(x, weight, scale.requires_grad_(), shift)
    with pytest.raises(ValueError, match="weight \\(C, 1, K, K\\)"):
        depthwise_conv2d(x, weight[:3])
    with pytest.raises(ValueError, match="activation must be one of"):
        depthwise_conv2d(x, weight, activation="gelu")


@slow
@pytest.mark.slow
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("padding_mode", ["torch", "same"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_depthwise_full_sweep(kernel_size, stride, padding_mode, activation):
    check_depthwise(kernel_size, stride, padding_mode, activation, channels=37, height=9, width=10)
