"""Reference PyTorch layers of the MobileNet family.

These are the plain, readable implementations every faster path is tested against. They work in
NCHW and channels_last alike (nothing here depends on the memory layout).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# An integer, "valid", "same" (TensorFlow semantics), "torch" (symmetric k//2), "keras" (see
# `keras_padding`) or an explicit (left, right, top, bottom) as F.pad takes it.
Padding = int | str | tuple[int, int, int, int]


def same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's "same" along one axis.

    The output has ceil(size / stride) elements; an odd padding total puts the extra element
    after (bottom/right), which is what Keras and TF checkpoints were trained with.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def keras_padding(kernel_size: int, stride: int, dilation: int = 1, depthwise: bool = False) -> Padding:
    """The padding Keras applications give a layer: padding="keras".

    Keras's MobileNet, MobileNetV2 and MobileNetV3 use "same" for full convolutions, but put an
    explicit ZeroPadding2D and a "valid" convolution before every strided depthwise layer. That
    padding is fixed when the model is built: MobileNet always pads one row/column at the
    bottom/right, and V2/V3 built without a fixed input size pad what "same" gives a size divisible
    by the stride. Both are what this returns. It equals "same" for even input sizes; for odd ones
    Keras (and so this) makes the output one pixel smaller than "same" would.
    """
    if not depthwise or stride == 1:
        return "same"
    total = max(dilation * (kernel_size - 1) + 1 - stride, 0)
    before, after = total // 2, total - total // 2
    return (before, after, before, after)


def resolve_padding(
    padding: Padding, kernel_size: int, stride: int, dilation: int = 1, depthwise: bool = False
) -> Padding:
    """The padding one layer applies for a padding mode: "keras" becomes what Keras gives that layer
    (`keras_padding`); every other mode already is one."""
    if padding == "keras":
        return keras_padding(kernel_size, stride, dilation, depthwise)
    return padding


class Conv2d(nn.Conv2d):
    """nn.Conv2d that also takes padding="same" with TensorFlow semantics at any stride,
    padding="torch" for PyTorch's usual symmetric dilation·(k-1)/2, and an explicit asymmetric
    (left, right, top, bottom).

    "same" pads statically when it is symmetric for every input size (stride 1, odd kernel), and
    otherwise computes the asymmetric padding from the input size on each call.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: Padding = "torch",
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
    ):
        explicit = None
        padding = resolve_padding(
            padding, kernel_size, stride, dilation, depthwise=groups > 1 and groups == in_channels
        )
        if isinstance(padding, tuple):
            if len(padding) != 4 or not all(
                isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in padding
            ):
                raise ValueError(
                    f"explicit padding must be four non-negative ints (left, right, top, bottom); "
                    f"got {padding!r}"
                )
            explicit, padding = padding, 0
        if padding == "torch":
            static: int | None = dilation * (kernel_size - 1) // 2
        elif padding == "valid":
            static = 0
        elif padding == "same":
            total = dilation * (kernel_size - 1)
            static = total // 2 if stride == 1 and total % 2 == 0 else None
        elif isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
            static = padding
        else:
            raise ValueError(
                f"padding must be a non-negative int, 'valid', 'same', 'torch', 'keras' or "
                f"(left, right, top, bottom); got {padding!r}"
            )
        super().__init__(in_channels, out_channels, kernel_size, stride, static or 0, dilation, groups, bias)
        self.dynamic_same = static is None
        self.explicit_padding = explicit  # (left, right, top, bottom), applied before the convolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.explicit_padding is not None:
            x = F.pad(x, self.explicit_padding)
        if self.dynamic_same:
            top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
            left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)

    def extra_repr(self) -> str:
        if self.explicit_padding is not None:
            return super().extra_repr() + f", explicit_padding={self.explicit_padding}"
        return super().extra_repr() + (", padding=same(dynamic)" if self.dynamic_same else "")


class DepthwiseConv2d(Conv2d):
    """K×K convolution with one filter per input channel (`depth_multiplier` filters per channel).

    Costs D_K·D_K·M·D_F·D_F mult-adds instead of D_K·D_K·M·N·D_F·D_F (MobileNet paper eq. 3).
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: Padding = "torch",
        dilation: int = 1,
        depth_multiplier: int = 1,
        bias: bool = False,
    ):
        if depth_multiplier < 1:
            raise ValueError(f"depth_multiplier must be ≥ 1; got {depth_multiplier}")
        super().__init__(
            in_channels,
            in_channels * depth_multiplier,
            kernel_size,
            stride,
            padding,
            dilation,
            groups=in_channels,
            bias=bias,
        )
        self.depth_multiplier = depth_multiplier


class PointwiseConv2d(Conv2d):
    """1×1 convolution: mixes channels, costs M·N·D_F·D_F mult-adds."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False):
        super().__init__(in_channels, out_channels, 1, bias=bias)


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """ReLU6(x + 3) / 6 (MobileNetV3 §5.2): 0 below -3, 1 above 3, linear between."""
    return F.hardsigmoid(x)


def hard_swish(x: torch.Tensor) -> torch.Tensor:
    """x · ReLU6(x + 3) / 6 (MobileNetV3 eq. 2)."""
    return F.hardswish(x)


def make_activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hardswish":
        return nn.Hardswish(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"activation must be one of 'relu', 'relu6', 'hardswish', 'none'; got {name!r}")


def make_norm(name: str, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    if name == "batchnorm":
        return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batchnorm' or 'none'; got {name!r}")


class ConvNormAct(nn.Module):
    """Convolution → norm → activation, the unit every MobileNet layer is made of.

    Children are named conv / norm / act so that state dicts and cost tables read the same way
    for every block type.
    """

    def __init__(
        self,
        conv: Conv2d,
        norm: str = "batchnorm",
        activation: str = "relu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        self.conv = conv
        self.norm = make_norm(norm, conv.out_channels, bn_eps, bn_momentum)
        self.act = make_activation(activation)

    @classmethod
    def standard(
        cls,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: Padding = "torch",
        dilation: int = 1,
        norm: str = "batchnorm",
        activation: str = "relu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> ConvNormAct:
        """A standard (full) convolution unit; its bias only where there is no norm to shift it."""
        conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=norm == "none")
        return cls(conv, norm, activation, bn_eps, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class DepthwiseSeparableConv2d(nn.Module):
    """Depthwise K×K → norm → act → pointwise 1×1 → norm → act (MobileNet paper Fig. 3, right).

    Replaces a standard K×K convolution at 1/N + 1/K² of its cost.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: Padding = "torch",
        dilation: int = 1,
        depth_multiplier: int = 1,
        norm: str = "batchnorm",
        activation: str = "relu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        no_norm = norm == "none"  # without a norm layer a bias is the only shift the layer has
        self.dw = ConvNormAct(
            DepthwiseConv2d(
                in_channels, kernel_size, stride, padding, dilation, depth_multiplier, bias=no_norm
            ),
            norm,
            activation,
            bn_eps,
            bn_momentum,
        )
        self.pw = ConvNormAct(
            PointwiseConv2d(in_channels * depth_multiplier, out_channels, bias=no_norm),
            norm,
            activation,
            bn_eps,
            bn_momentum,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class SqueezeExcite(nn.Module):
    """Global average pool → 1×1 reduce (bias) → ReLU → 1×1 expand (bias) → hard-sigmoid → scale.

    MobileNetV3 §5.3 uses a fixed 1/4 of the expansion width for the reduced layer.
    """

    def __init__(self, channels: int, reduced_channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced_channels, 1, bias=True)
        self.expand = nn.Conv2d(reduced_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.expand(F.relu(self.reduce(scale)))
        return x * hard_sigmoid(scale)


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 bottleneck: [1×1 expand → norm → act] → depthwise K×K → norm → act → [SE] →
    1×1 linear projection → norm, with the input added when stride is 1 and widths match.

    The projection has no activation: V2 §3.2 shows that a ReLU on the narrow bottleneck destroys
    information ("linear bottlenecks").
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expanded_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: Padding = "torch",
        dilation: int = 1,
        activation: str = "relu6",
        se_channels: int | None = None,
        norm: str = "batchnorm",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        bias = norm == "none"
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = None
        if expanded_channels != in_channels:
            self.expand = ConvNormAct(
                PointwiseConv2d(in_channels, expanded_channels, bias=bias),
                norm,
                activation,
                bn_eps,
                bn_momentum,
            )
        self.dw = ConvNormAct(
            DepthwiseConv2d(expanded_channels, kernel_size, stride, padding, dilation, bias=bias),
            norm,
            activation,
            bn_eps,
            bn_momentum,
        )
        self.se = SqueezeExcite(expanded_channels, se_channels) if se_channels else None
        self.project = ConvNormAct(
            PointwiseConv2d(expanded_channels, out_channels, bias=bias), norm, "none", bn_eps, bn_momentum
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.depthwise_and_project(out)
        return out + x if self.use_residual else out

    def depthwise_and_project(self, x: torch.Tensor) -> torch.Tensor:
        """depthwise → [SE] → projection of the expanded x: what the Triton backend fuses (kernels/)."""
        out = self.dw(x)
        if self.se is not None:
            out = self.se(out)
        return self.project(out)
