"""Layers against independent references: a per-channel loop for depthwise, hand padding for "same"."""

import math

import pytest
import torch
import torch.nn.functional as F

from mobilenets import (
    Conv2d,
    DepthwiseConv2d,
    DepthwiseSeparableConv2d,
    PointwiseConv2d,
    same_padding,
)

from helpers import randomize_batchnorm


def depthwise_reference(x, weight, bias, stride, pad, dilation, depth_multiplier):
    """One single-channel F.conv2d per (input channel, multiplier) pair; pad = (left, right, top, bottom)."""
    x = F.pad(x, pad)
    outputs = []
    for c in range(x.shape[1]):
        for m in range(depth_multiplier):
            o = c * depth_multiplier + m  # PyTorch grouped-conv output order: channel-major
            w = weight[o : o + 1]  # (1, 1, K, K)
            b = None if bias is None else bias[o : o + 1]
            outputs.append(F.conv2d(x[:, c : c + 1], w, b, stride=stride, dilation=dilation))
    return torch.cat(outputs, dim=1)


def tf_same_pad(height, width, kernel, stride, dilation):
    top, bottom = same_padding(height, kernel, stride, dilation)
    left, right = same_padding(width, kernel, stride, dilation)
    return left, right, top, bottom


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("depth_multiplier", [1, 2])
@pytest.mark.parametrize("size", [(14, 14), (15, 17)])
@pytest.mark.parametrize("padding", ["torch", "same", "valid", 1])
def test_depthwise_matches_per_channel_loop(kernel, stride, dilation, depth_multiplier, size, padding):
    torch.manual_seed(0)
    channels = 5
    layer = DepthwiseConv2d(channels, kernel, stride, padding, dilation, depth_multiplier, bias=True)
    x = torch.randn(2, channels, *size)
    if padding == "torch":
        p = dilation * (kernel - 1) // 2
        pad = (p, p, p, p)
    elif padding == "same":
        pad = tf_same_pad(*size, kernel, stride, dilation)
    elif padding == "valid":
        pad = (0, 0, 0, 0)
    else:
        pad = (padding,) * 4
    expected = depthwise_reference(x, layer.weight, layer.bias, stride, pad, dilation, depth_multiplier)
    out = layer(x)
    assert out.shape == expected.shape
    assert out.shape[1] == channels * depth_multiplier
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", [7, 8, 14, 15, 112, 193])
def test_same_output_size_is_ceil(kernel, stride, size):
    layer = DepthwiseConv2d(2, kernel, stride, "same")
    out = layer(torch.zeros(1, 2, size, size + 1))
    assert out.shape[-2:] == (math.ceil(size / stride), math.ceil((size + 1) / stride))


def test_same_padding_puts_the_extra_row_bottom_right():
    # 3×3 stride 2 on an even input: TF pads 0 top/left and 1 bottom/right.
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(8, 5, 2) == (1, 2)
    assert same_padding(8, 4, 1) == (1, 2)
    torch.manual_seed(1)
    layer = DepthwiseConv2d(3, 3, 2, "same")
    x = torch.randn(1, 3, 8, 8)
    hand = F.conv2d(F.pad(x, (0, 1, 0, 1)), layer.weight, stride=2, groups=3)
    torch.testing.assert_close(layer(x), hand)
    symmetric = F.conv2d(F.pad(x, (1, 1, 1, 1)), layer.weight, stride=2, groups=3)
    assert not torch.allclose(layer(x), symmetric)  # the placement really differs from PyTorch's


def test_same_stride_one_even_kernel_is_asymmetric():
    torch.manual_seed(2)
    layer = Conv2d(2, 3, 4, 1, "same")
    x = torch.randn(1, 2, 9, 9)
    hand = F.conv2d(F.pad(x, (1, 2, 1, 2)), layer.weight)
    torch.testing.assert_close(layer(x), hand)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["torch", "same"])
@pytest.mark.parametrize("depth_multiplier", [1, 2])
def test_depthwise_gradcheck(stride, padding, depth_multiplier):
    torch.manual_seed(3)
    layer = DepthwiseConv2d(3, 3, stride, padding, depth_multiplier=depth_multiplier, bias=True).double()
    x = torch.randn(1, 3, 6, 7, dtype=torch.float64, requires_grad=True)

    def forward(inp, weight, bias):
        return torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (inp,))

    assert torch.autograd.gradcheck(forward, (x, layer.weight, layer.bias))


def test_pointwise_is_channel_mixing_matmul():
    torch.manual_seed(4)
    layer = PointwiseConv2d(6, 4, bias=True)
    x = torch.randn(2, 6, 5, 3)
    expected = torch.einsum("nchw,oc->nohw", x, layer.weight[:, :, 0, 0]) + layer.bias[None, :, None, None]
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "relu6", "none"])
@pytest.mark.parametrize("norm", ["batchnorm", "none"])
def test_separable_is_depthwise_then_pointwise(activation, norm):
    torch.manual_seed(5)
    block = DepthwiseSeparableConv2d(4, 8, 3, 2, "same", norm=norm, activation=activation).eval()
    randomize_batchnorm(block, seed=5)  # non-trivial running statistics
    act = {"relu": F.relu, "relu6": F.relu6, "none": lambda t: t}[activation]

    def norm_fn(t, bn):
        if norm == "none":
            return t
        return F.batch_norm(t, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    x = torch.randn(2, 4, 9, 9)
    dw = block.dw.conv
    y = depthwise_reference(x, dw.weight, dw.bias, 2, tf_same_pad(9, 9, 3, 2, 1), 1, 1)
    y = act(norm_fn(y, block.dw.norm))
    y = F.conv2d(y, block.pw.conv.weight, block.pw.conv.bias)
    y = act(norm_fn(y, block.pw.norm))
    torch.testing.assert_close(block(x), y, rtol=1e-5, atol=1e-5)
    # bias only when there is no norm to absorb it
    assert (dw.bias is not None) == (norm == "none")


@pytest.mark.parametrize("bad", [-1, "full", 1.5, True])
def test_bad_padding_is_rejected(bad):
    with pytest.raises(ValueError, match="padding"):
        DepthwiseConv2d(3, 3, 1, bad)


def test_depth_multiplier_must_be_positive():
    with pytest.raises(ValueError, match="depth_multiplier"):
        DepthwiseConv2d(3, depth_multiplier=0)
