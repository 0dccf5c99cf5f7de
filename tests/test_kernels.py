"""Triton kernels against their PyTorch references.

On a machine without CUDA the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set in
conftest.py before triton is first imported) on CPU tensors; on a GPU the same tests run compiled
(`benchmarks/gpu.py` runs them there). The interpreter pays per operation, so shapes are small and
the default selection covers every option at least once; the full cross product is marked slow.
"""

import copy
import os

import pytest
import torch
from torch import nn

triton = pytest.importorskip("triton")

from mobilenets import ConvNormAct, DepthwiseSeparableConv2d, InvertedResidual, create_model  # noqa: E402
from mobilenets.kernels import backend, backend_of, triton_common, use_backend  # noqa: E402
from mobilenets.kernels.reference import depthwise_conv2d_reference, separable_conv2d_reference  # noqa: E402
from mobilenets.kernels.triton_depthwise import depthwise_conv2d  # noqa: E402
from mobilenets.kernels.triton_separable import separable_conv2d  # noqa: E402
from mobilenets.layers import same_padding  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ACTIVATIONS = ["none", "relu", "relu6", "hardswish"]
slow = pytest.mark.skipif(os.environ.get("MOBILENETS_FAST") == "1", reason="slow; MOBILENETS_FAST=1")


pytestmark = pytest.mark.usefixtures("one_thread")


def explicit_padding(
    mode: str, height: int, width: int, kernel_size: int, stride: int, dilation: int = 1
) -> tuple[int, ...]:
    """(left, right, top, bottom) of the modules' "torch" (symmetric) or "same" (TensorFlow) padding."""
    if mode == "torch":
        return (dilation * (kernel_size - 1) // 2,) * 4
    top, bottom = same_padding(height, kernel_size, stride, dilation)
    left, right = same_padding(width, kernel_size, stride, dilation)
    return left, right, top, bottom


def random_case(channels, height, width, kernel_size, dtype, generator, batch=2):
    """Channels_last input, weight, folded-BN-like scale and shift, all on DEVICE."""

    def rand(*shape, low=-1.0, high=1.0):
        return (low + (high - low) * torch.rand(*shape, generator=generator)).to(DEVICE)

    x = rand(batch, channels, height, width, low=-3, high=3).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    weight = rand(channels, 1, kernel_size, kernel_size)
    return x, weight, rand(channels, low=0.5, high=1.5), rand(channels)


def check_depthwise(
    kernel_size,
    stride,
    padding_mode,
    activation,
    channels=20,
    height=8,
    width=7,
    dtype=torch.float32,
    use_scale=True,
    use_shift=True,
    tolerance=2e-5,
    dilation=1,
):
    generator = torch.Generator().manual_seed(kernel_size * 100 + stride * 10 + channels)
    x, weight, scale, shift = random_case(channels, height, width, kernel_size, dtype, generator)
    scale = scale if use_scale else None
    shift = shift if use_shift else None
    padding = explicit_padding(padding_mode, height, width, kernel_size, stride, dilation)
    leaves = [x.requires_grad_(), weight.requires_grad_()] + ([shift.requires_grad_()] if use_shift else [])

    y = depthwise_conv2d(x, weight, scale, shift, stride, padding, dilation, activation)
    # The reference sees the same (rounded) inputs, in float32.
    reference = depthwise_conv2d_reference(
        x.float(), weight, scale, shift, stride, padding, dilation, activation
    )
    assert y.shape == reference.shape and y.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last)
    scale_of = reference.abs().max().item() + 1e-6
    torch.testing.assert_close(y.float(), reference, atol=tolerance * scale_of, rtol=tolerance)

    grad = torch.randn(reference.shape, generator=generator).to(DEVICE)
    grads = torch.autograd.grad(y, leaves, grad.to(dtype))
    expected = torch.autograd.grad(reference, leaves, grad.to(dtype).float())
    # Not strict: without use_shift there are two leaves, and the last name ("shift") goes unused.
    for name, leaf, actual, wanted in zip(
        ["input", "weight", "shift"], leaves, grads, expected, strict=False
    ):
        assert actual.dtype == leaf.dtype and actual.shape == leaf.shape
        peak = wanted.abs().max().item() + 1e-6
        torch.testing.assert_close(
            actual.float(),
            wanted.float(),
            atol=tolerance * peak,
            rtol=tolerance,
            msg=lambda m, name=name: f"{name} gradient: {m}",
        )


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


def test_depthwise_dilated():
    check_depthwise(3, 1, "same", "relu6", height=9, width=8, dilation=2)


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


# --- gradients in float64 -----------------------------------------------------------------------
# The kernels compute in float64 for float64 tensors, so kernel and reference agree to ~1e-15 and a
# tolerance of 1e-10 catches any wrong term of a reduction (over the batch, over space, across the
# weight kernel's pixel splits or a partial channel block). In float32 a network's gradient cannot be
# compared that tightly: see test_training_runs_the_depthwise_kernels_and_matches.


def check_depthwise_float64(
    batch, channels, height, width, stride, layout, kernel_size=3, padding_mode="torch"
):
    generator = torch.Generator().manual_seed(batch * 1000 + channels * 10 + stride)
    x, weight, _, shift = random_case(channels, height, width, kernel_size, torch.float64, generator, batch)
    x = x.contiguous(memory_format=layout).requires_grad_()
    weight, shift = weight.double().requires_grad_(), shift.double().requires_grad_()
    padding = explicit_padding(padding_mode, height, width, kernel_size, stride)
    y = depthwise_conv2d(x, weight, None, shift, stride, padding, 1, "relu")
    expected = depthwise_conv2d_reference(x, weight, None, shift, stride, padding, 1, "relu")
    assert y.dtype == torch.float64 and y.is_contiguous(memory_format=layout)
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=1e-10)
    grad = torch.randn(expected.shape, generator=generator, dtype=torch.float64).to(DEVICE)
    actual = torch.autograd.grad(y, (x, weight, shift), grad)
    wanted = torch.autograd.grad(expected, (x, weight, shift), grad)
    assert actual[0].is_contiguous(memory_format=layout)
    for name, a, b in zip(["input", "weight", "shift"], actual, wanted, strict=True):
        torch.testing.assert_close(
            a,
            b,
            atol=1e-10 * b.abs().max().item(),
            rtol=1e-10,
            msg=lambda m, name=name: f"{name} gradient: {m}",
        )


CHANNELS_LAST, CONTIGUOUS = torch.channels_last, torch.contiguous_format
# Batch 1, 3 and 8; stride 1 and 2; 5 and 33 channels (a partial block of 32, and one channel past a
# full one); odd sizes; both layouts. Batch 8 at 9×10 has 720 output pixels: the weight kernel splits
# them into 3 slices of 240, which do not end on its 64-pixel blocks.
GRADIENT_CASES = [
    (1, 5, 7, 5, 1, CHANNELS_LAST),
    (3, 33, 5, 7, 2, CHANNELS_LAST),
    (8, 5, 9, 10, 1, CHANNELS_LAST),
    (8, 33, 6, 5, 2, CONTIGUOUS),
    (3, 5, 6, 9, 1, CONTIGUOUS),
    (1, 33, 9, 6, 2, CONTIGUOUS),
]


@pytest.mark.parametrize("batch, channels, height, width, stride, layout", GRADIENT_CASES)
def test_depthwise_gradients_match_float64(batch, channels, height, width, stride, layout):
    check_depthwise_float64(batch, channels, height, width, stride, layout)


def test_depthwise_gradients_match_float64_kernel5_same_padding():
    check_depthwise_float64(3, 37, 8, 7, 2, CHANNELS_LAST, kernel_size=5, padding_mode="same")


@slow
@pytest.mark.slow
@pytest.mark.parametrize("layout", [CHANNELS_LAST, CONTIGUOUS])
@pytest.mark.parametrize("channels", [5, 33])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_depthwise_gradients_match_float64_sweep(batch, stride, channels, layout):
    check_depthwise_float64(batch, channels, 9, 10, stride, layout)


def test_depthwise_rejects_a_trainable_scale_and_bad_shapes():
    generator = torch.Generator().manual_seed(2)
    x, weight, scale, shift = random_case(4, 5, 5, 3, torch.float32, generator)
    with pytest.raises(ValueError, match="scale is a constant"):
        depthwise_conv2d(x, weight, scale.requires_grad_(), shift)
    with pytest.raises(ValueError, match="weight \\(C, 1, K, K\\)"):
        depthwise_conv2d(x, weight[:3])
    with pytest.raises(ValueError, match="activation must be one of"):
        depthwise_conv2d(x, weight, activation="gelu")


def check_separable(
    kernel_size,
    stride,
    padding_mode,
    dw_activation,
    pw_activation,
    channels=20,
    out_channels=40,
    height=8,
    width=7,
    dtype=torch.float32,
    folded=True,
    tolerance=2e-5,
    dilation=1,
):
    generator = torch.Generator().manual_seed(kernel_size * 100 + stride * 10 + out_channels)
    x, dw_weight, dw_scale, dw_shift = random_case(channels, height, width, kernel_size, dtype, generator)
    pw_weight = (torch.randn(out_channels, channels, 1, 1, generator=generator) / channels**0.5).to(DEVICE)
    pw_scale = (0.5 + torch.rand(out_channels, generator=generator)).to(DEVICE)
    pw_shift = torch.randn(out_channels, generator=generator).to(DEVICE)
    if not folded:  # a model without BN: no scales, biases only on the pointwise side
        dw_scale = dw_shift = pw_scale = None
    padding = explicit_padding(padding_mode, height, width, kernel_size, stride, dilation)
    y = separable_conv2d(
        x,
        dw_weight,
        dw_scale,
        dw_shift,
        pw_weight,
        pw_scale,
        pw_shift,
        stride,
        padding,
        dilation,
        dw_activation,
        pw_activation,
    )
    expected = separable_conv2d_reference(
        x.float(),
        dw_weight,
        dw_scale,
        dw_shift,
        pw_weight,
        pw_scale,
        pw_shift,
        stride,
        padding,
        dilation,
        dw_activation,
        pw_activation,
    )
    assert y.shape == expected.shape and y.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last)
    peak = expected.abs().max().item()
    torch.testing.assert_close(y.float(), expected, atol=tolerance * peak, rtol=tolerance)


@pytest.mark.parametrize(
    "kernel_size, stride, padding_mode, dw_activation, pw_activation",
    [
        (3, 1, "torch", "relu", "relu"),  # MobileNetV1
        (3, 2, "same", "relu6", "none"),  # a V2 depthwise → projection
        (5, 2, "torch", "hardswish", "hardswish"),
        (5, 1, "same", "none", "relu6"),
    ],
)
def test_fused_separable_matches_reference(kernel_size, stride, padding_mode, dw_activation, pw_activation):
    check_separable(kernel_size, stride, padding_mode, dw_activation, pw_activation)


def test_fused_separable_channel_counts_off_the_block_sizes_and_no_bn():
    check_separable(
        3, 2, "same", "relu", "relu", channels=33, out_channels=17, height=5, width=9, folded=False
    )


def test_fused_separable_dilated_with_several_output_blocks():
    check_separable(3, 1, "torch", "relu", "hardswish", out_channels=70, height=7, width=6, dilation=2)


def test_fused_separable_bfloat16():
    # Under a GPU the hidden tile is rounded to bf16 before the tensor-core GEMM: 2⁻⁸ relative.
    check_separable(3, 1, "torch", "relu", "relu", dtype=torch.bfloat16, tolerance=2e-2)


def test_fused_separable_is_for_inference_only():
    generator = torch.Generator().manual_seed(3)
    x, dw_weight, _, _ = random_case(4, 5, 5, 3, torch.float32, generator)
    pw_weight = torch.randn(8, 4, 1, 1, device=DEVICE, requires_grad=True)
    with pytest.raises(ValueError, match="for inference"):
        separable_conv2d(x, dw_weight, None, None, pw_weight, None, None)
    with pytest.raises(ValueError, match="pw_weight \\(C_out, C, 1, 1\\)"):
        separable_conv2d(x, dw_weight, None, None, pw_weight[:, :3].detach(), None, None)
    with torch.no_grad():
        assert separable_conv2d(x, dw_weight, None, None, pw_weight, None, None).shape == (2, 8, 5, 5)


@slow
@pytest.mark.slow
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("padding_mode", ["torch", "same"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("kernel", ["depthwise", "fused_separable"])
def test_full_sweep(kernel, kernel_size, stride, padding_mode, activation):
    # 37 channels: a full block of 32 and a partial one. 5×6 (batch 2): at stride 1 two pixel blocks,
    # the first crossing from one image into the next; at stride 2 "same" pads the odd height evenly and
    # the even width asymmetrically, (0, 1) at kernel 3 and (1, 2) at kernel 5, as 9×10 did at 2.5×
    # the interpreter's time.
    if kernel == "depthwise":
        check_depthwise(kernel_size, stride, padding_mode, activation, channels=37, height=5, width=6)
    else:
        check_separable(
            kernel_size,
            stride,
            padding_mode,
            activation,
            activation,
            channels=37,
            out_channels=50,
            height=5,
            width=6,
        )


# --- the backend switch ------------------------------------------------------------------------


def with_running_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh BatchNorms are identities; give each the statistics and affine a trained one has, so
    folding them is not trivially exact."""
    generator = torch.Generator().manual_seed(seed)
    for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        for tensor, low, high in (
            (norm.running_mean, -0.5, 0.5),
            (norm.running_var, 0.3, 2.0),
            (norm.weight.data, 0.5, 1.5),
            (norm.bias.data, -0.3, 0.3),
        ):
            tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator))
    return model


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the backend's calls of each kernel, so a test knows the kernels really ran."""
    # depthwise_conv2d: the autograd Function; depthwise_forward, separable_forward: inference on
    # prepared operands.
    calls = {"depthwise_conv2d": 0, "depthwise_forward": 0, "separable_forward": 0}

    def counting(name):
        function = getattr(backend, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        monkeypatch.setattr(backend, name, wrapper)

    for name in calls:
        counting(name)
    return calls


def twins(module: nn.Module, train: bool) -> tuple[nn.Module, nn.Module]:
    """(reference, the same module on the Triton backend), both in train or eval mode, on DEVICE."""
    reference = copy.deepcopy(module).to(DEVICE).train(train)
    return reference, use_backend(copy.deepcopy(reference), "triton")


def assert_same_gradients(fast: nn.Module, reference: nn.Module, tolerance: float) -> None:
    for (name, actual), expected in zip(fast.named_parameters(), reference.parameters(), strict=True):
        peak = expected.grad.abs().max().item() + 1e-12
        torch.testing.assert_close(
            actual.grad,
            expected.grad,
            atol=tolerance * peak,
            rtol=tolerance,
            msg=lambda m, name=name: f"gradient of {name}: {m}",
        )


def test_inference_runs_the_fused_kernel_and_matches(kernel_calls):
    # padding="same": TensorFlow's asymmetric padding at the stride-2 layers of a 32-pixel input.
    model = create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10, padding="same")
    model = with_running_statistics(model)
    reference, fast = twins(model, train=False)
    assert backend_of(fast) == "triton" and backend_of(reference) == "torch"
    x = torch.randn(2, 3, 32, 32).to(DEVICE).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = reference(x)
        actual = fast(x)
    # Every block of MobileNetV1, fused.
    assert kernel_calls == {"depthwise_conv2d": 0, "depthwise_forward": 0, "separable_forward": 13}
    torch.testing.assert_close(actual, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4)


def stem_and_block(channels: int, out_channels: int, stride: int) -> nn.Module:
    """A MobileNetV1 stem (a full 3×3 convolution, on PyTorch) and a depthwise separable block."""
    return nn.Sequential(
        ConvNormAct.standard(3, channels, 3, 1),
        DepthwiseSeparableConv2d(channels, out_channels, stride=stride),
    )


def assert_same_training_step(
    reference: nn.Module, fast: nn.Module, x: torch.Tensor, weights: torch.Tensor, tolerance: float
) -> None:
    """One forward and backward of both (float64) modules: the outputs, the input's and every
    parameter's gradient (convolution weights, BN γ and β) and BN's running statistics agree."""
    results = []
    for net in (reference, fast):
        leaf = x.detach().clone().requires_grad_()
        out = net(leaf)
        (out * weights).sum().backward()
        results.append((out.detach(), leaf.grad))
    (expected, expected_grad), (actual, actual_grad) = results
    torch.testing.assert_close(actual, expected, atol=tolerance * expected.abs().max().item(), rtol=tolerance)
    torch.testing.assert_close(
        actual_grad,
        expected_grad,
        atol=tolerance * expected_grad.abs().max().item(),
        rtol=tolerance,
        msg=lambda m: f"input gradient: {m}",
    )
    assert_same_gradients(fast, reference, tolerance)
    for (name, actual_buffer), expected_buffer in zip(fast.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(
            actual_buffer,
            expected_buffer,
            atol=tolerance,
            rtol=tolerance,
            msg=lambda m, name=name: f"{name}: {m}",
        )


@pytest.mark.parametrize("batch, channels, stride", [(1, 5, 2), (3, 33, 1), (8, 20, 2)])
def test_training_stem_and_block_gradients_match_float64(batch, channels, stride, kernel_calls):
    # Training BatchNorm after the depthwise kernel: its batch statistics and their backward run on
    # PyTorch and see the kernel's output; the stem's weight gradient is the last link of the chain.
    torch.manual_seed(batch + channels)
    block = stem_and_block(channels, 12, stride).double()
    reference, fast = twins(block, train=True)
    generator = torch.Generator().manual_seed(stride)
    x = torch.randn(batch, 3, 7, 6, generator=generator, dtype=torch.float64).to(DEVICE)
    x = x.contiguous(memory_format=torch.channels_last)
    out_shape = (batch, 12, (7 - 1) // stride + 1, (6 - 1) // stride + 1)
    weights = torch.randn(out_shape, generator=generator, dtype=torch.float64).to(DEVICE)
    assert_same_training_step(reference, fast, x, weights, tolerance=1e-9)
    assert kernel_calls == {"depthwise_conv2d": 1, "depthwise_forward": 0, "separable_forward": 0}


@slow
@pytest.mark.slow
def test_training_runs_the_depthwise_kernels_and_matches(kernel_calls):
    # In float64 (the kernels then compute in float64): a float32 comparison of a whole network's
    # gradients is not a test of the kernels. A ReLU whose input lies within float32 rounding of zero
    # takes the other side when the depthwise sums are added in another order; at the 4×4 and 2×2 layers
    # one such unit moves its channel's BatchNorm statistics, and BatchNorm's backward spreads the change
    # over the whole channel, down to the stem. Measured on this model at batch 8 (PyTorch alone, float32
    # against float64, 12 initialisations): none flipped in 10, the stem's weight gradient agreed to
    # 1e-5; one ReLU flipped in 2, it was 4e-4 and 3.5e-2 off, and another parameter's gradient 36%. That
    # is the "stem weight gradient 18% off" this test once showed with an unseeded model; in float64 no
    # flip happens and everything agrees to 1e-9. stem_stride=1 keeps the last layers at 2×2.
    # Batch 4: ~14 s of CPU in the interpreter (batch 8 took 32 s and catches nothing more: a weight
    # gradient that drops one pixel, or an input gradient that ignores the stride, fails at either; the
    # stem-and-block tests and the float64 gradient cases cover batches 1 to 8 and the split reductions).
    torch.manual_seed(0)
    model = create_model(
        "mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10, dropout=0.0, stem_stride=1
    ).double()
    reference, fast = twins(model, train=True)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 32, 32, generator=generator, dtype=torch.float64).to(DEVICE)
    x = x.contiguous(memory_format=torch.channels_last)
    weights = torch.randn(4, 10, generator=generator, dtype=torch.float64).to(DEVICE)
    assert_same_training_step(reference, fast, x, weights, tolerance=1e-9)
    assert kernel_calls == {"depthwise_conv2d": 13, "depthwise_forward": 0, "separable_forward": 0}


@pytest.mark.parametrize("train", [False, True])
def test_inverted_residual_block_with_se_and_hardswish(train, kernel_calls):
    # A MobileNetV3 block: 5×5 depthwise, TensorFlow padding, hard-swish, squeeze-excite between the
    # depthwise and projection (so only the depthwise unit runs on a kernel).
    block = with_running_statistics(
        InvertedResidual(
            8, 12, 24, kernel_size=5, stride=2, padding="same", activation="hardswish", se_channels=8
        )
    )
    reference, fast = twins(block, train)
    x = torch.randn(2, 8, 9, 8).to(DEVICE).contiguous(memory_format=torch.channels_last)
    expected, actual = reference(x), fast(x)
    expected.square().sum().backward()
    actual.square().sum().backward()
    assert kernel_calls == {"depthwise_conv2d": 1, "depthwise_forward": 0, "separable_forward": 0}
    torch.testing.assert_close(actual, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4)
    assert_same_gradients(fast, reference, tolerance=1e-3)


@pytest.mark.parametrize(
    "in_channels, out_channels, expanded, kernel_size, stride, padding, activation",
    [
        (8, 8, 20, 3, 1, "torch", "relu6"),  # V2: expansion, residual; 20 channels, a partial GEMM block
        (8, 12, 8, 5, 2, "same", "hardswish"),  # V3 without SE: no expansion, TensorFlow padding, stride 2
    ],
)
def test_inverted_residual_inference_fuses_depthwise_and_projection(
    in_channels, out_channels, expanded, kernel_size, stride, padding, activation, kernel_calls
):
    block = with_running_statistics(
        InvertedResidual(
            in_channels, out_channels, expanded, kernel_size, stride, padding, activation=activation
        )
    )
    reference, fast = twins(block, train=False)
    assert type(fast) is backend.TritonInvertedResidual
    x = torch.randn(2, in_channels, 9, 7).to(DEVICE).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, actual = reference(x), fast(x)
    assert kernel_calls == {"depthwise_conv2d": 0, "depthwise_forward": 0, "separable_forward": 1}
    assert actual.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(actual, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4)


def test_eval_mode_with_gradients_keeps_batchnorm_parameters_trainable(kernel_calls):
    # Eval-mode BN whose γ, β still train (fine-tuning): nothing may be folded into a constant.
    block = with_running_statistics(DepthwiseSeparableConv2d(6, 10, stride=2, activation="relu6"))
    reference, fast = twins(block, train=False)
    x = torch.randn(2, 6, 7, 7).to(DEVICE).contiguous(memory_format=torch.channels_last)
    expected, actual = reference(x), fast(x)
    expected.sum().backward()
    actual.sum().backward()
    assert kernel_calls == {"depthwise_conv2d": 1, "depthwise_forward": 0, "separable_forward": 0}
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
    assert_same_gradients(fast, reference, tolerance=1e-3)


def test_switching_back_restores_classes_and_keeps_state():
    model = create_model("mobilenet_v3_small", width_mult=0.5, resolution=32, num_classes=10)
    keys = list(model.state_dict())
    use_backend(model, "triton")
    swapped = [m for m in model.modules() if isinstance(m, backend.TritonConvNormAct)]
    assert len(swapped) == sum(isinstance(m, InvertedResidual) for m in model.modules())
    assert list(model.state_dict()) == keys
    assert use_backend(model, "torch") is model and backend_of(model) == "torch"
    layer_classes = (ConvNormAct, DepthwiseSeparableConv2d, InvertedResidual)
    assert all(type(m) in layer_classes for m in model.modules() if isinstance(m, layer_classes))
    with pytest.raises(ValueError, match="backend must be one of 'torch', 'triton'; got 'cuda'"):
        use_backend(model, "cuda")


def test_create_model_selects_the_backend(monkeypatch):
    options = dict(width_mult=0.25, resolution=32, num_classes=10)
    torch.manual_seed(0)
    fast = create_model("mobilenet_v1", backend="triton", **options)
    torch.manual_seed(0)
    reference = create_model("mobilenet_v1", **options)
    assert backend_of(fast) == "triton" and backend_of(reference) == "torch"
    assert sum(isinstance(m, backend.TritonDepthwiseSeparableConv2d) for m in fast.modules()) == 13
    expected = reference.state_dict()
    assert all(torch.equal(t, expected[k]) for k, t in fast.state_dict().items())
    # Shipped weights too (the model comes back in training mode, as every create_model, on the kernels).
    trained = create_model("mobilenet_v1", weights="cifar10", backend="triton")
    assert backend_of(trained) == "triton" and trained.training
    # A wrong name is refused before any weights are looked for.
    with pytest.raises(ValueError, match="backend must be one of 'torch', 'triton'; got 'cuda'"):
        create_model("mobilenet_v1", weights="https://example.invalid/none.safetensors", backend="cuda")
    monkeypatch.setattr(backend, "TRITON_INSTALLED", False)
    with pytest.warns(RuntimeWarning, match="needs triton.*keeps running on PyTorch"):
        assert backend_of(create_model("mobilenet_v1", backend="triton", **options)) == "torch"


def test_unavailable_kernels_fall_back_with_one_warning_or_raise_when_strict(monkeypatch):
    monkeypatch.setattr(backend, "TRITON_INSTALLED", False)
    model = create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10)
    message = r"needs triton: pip install 'mobilenets\[triton\]'; the model keeps running on PyTorch"
    with pytest.warns(RuntimeWarning, match=message):
        assert use_backend(model, "triton") is model
    assert backend_of(model) == "torch"
    with pytest.raises(RuntimeError, match="needs triton"):
        use_backend(model, "triton", strict=True)
    monkeypatch.setattr(backend, "TRITON_INSTALLED", True)
    monkeypatch.setattr(backend, "INTERPRET", False)
    monkeypatch.setattr(backend.torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU \\(or TRITON_INTERPRET=1"):
        use_backend(model, "triton", strict=True)


def test_a_cpu_tensor_without_the_interpreter_runs_the_reference(monkeypatch, kernel_calls):
    block = with_running_statistics(DepthwiseSeparableConv2d(4, 6))
    reference, fast = twins(block, train=False)
    monkeypatch.setattr(backend, "can_run_on", lambda x: False)
    x = torch.randn(1, 4, 5, 5).to(DEVICE)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), reference(x))
    assert kernel_calls == {"depthwise_conv2d": 0, "depthwise_forward": 0, "separable_forward": 0}


def test_prepared_inference_operands_follow_weight_updates(kernel_calls):
    # The backend prepares the kernels' operands once per weights; an in-place update (an optimizer
    # step, load_state_dict) and a BN statistics update must both be seen by the next call.
    block = with_running_statistics(DepthwiseSeparableConv2d(6, 10, activation="relu6"))
    residual = with_running_statistics(InvertedResidual(6, 6, 12, activation="hardswish"))
    for module in (block, residual):
        reference, fast = twins(module, train=False)
        x = torch.randn(2, 6, 5, 5).to(DEVICE).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), reference(x), atol=1e-5, rtol=1e-4)
            for net in (reference, fast):
                net.dw.conv.weight.mul_(-2.0)
                net.dw.norm.running_mean.add_(0.5)
            torch.testing.assert_close(fast(x), reference(x), atol=1e-5, rtol=1e-4)
    # Both fused: the separable block, and the inverted residual's depthwise → projection.
    assert kernel_calls == {"depthwise_conv2d": 0, "depthwise_forward": 0, "separable_forward": 4}


def test_tuning_choice_per_mode(monkeypatch):
    # GPU: the autotuner over the grid, or (MOBILENETS_KERNELS_AUTOTUNE=0) its first config with its
    # warps and stages; interpreter: the interpreter's config.
    configs = triton_common.config_grid({"BLOCK_P": [64, 32], "BLOCK_C": [16]}, [4, 8], [3])
    assert [(c.kwargs["BLOCK_P"], c.num_warps) for c in configs] == [(64, 4), (64, 8), (32, 4), (32, 8)]
    monkeypatch.setattr(triton_common, "INTERPRET", False)
    monkeypatch.setattr(triton_common, "AUTOTUNE", False)
    assert triton_common.tuned("kernel", configs, ["C"], {"BLOCK_P": 8}) == (
        "kernel",
        {"BLOCK_P": 64, "BLOCK_C": 16, "num_warps": 4, "num_stages": 3},
    )
    monkeypatch.setattr(triton_common, "INTERPRET", True)
    assert triton_common.tuned("kernel", configs, ["C"], {"BLOCK_P": 8}) == ("kernel", {"BLOCK_P": 8})
