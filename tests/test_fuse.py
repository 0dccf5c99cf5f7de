"""BatchNorm folding: the folded model computes what the unfused eval model computes."""

import pytest
import torch
from torch import nn

from mobilenets import ConvNormAct, create_model
from mobilenets.fuse import fuse_bn_into, is_fused

from helpers import randomize_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def test_folding_with_tf_same_padding_features_only_and_channels_last():
    torch.manual_seed(1)
    model = randomize_batchnorm(create_model("mobilenet_v3_small", padding="same", features_only=True))
    fused = model.fuse_bn()  # the MobileNet method
    x = torch.randn(1, 3, 75, 75)  # odd size: the stride-2 layers pad asymmetrically at run time
    with torch.no_grad():
        expected = model(x)
        channels_last = fused.to(memory_format=torch.channels_last)
        for got in (fused(x), channels_last(x.contiguous(memory_format=torch.channels_last))):
            assert len(got) == len(expected)
            for a, b in zip(got, expected, strict=True):
                assert relative_error(a, b) <= 1e-5


def test_inplace_returns_the_same_model_in_eval_mode():
    model = randomize_batchnorm(create_model("mobilenet_v1", width_mult=0.25)).train()
    assert model.fuse_bn(inplace=True) is model
    assert not model.training and is_fused(model)
    first = model.features[0]
    assert isinstance(first.norm, nn.Identity) and first.conv.bias is not None


def test_fuse_bn_into_keeps_an_existing_conv_bias():
    torch.manual_seed(2)
    unit = ConvNormAct(nn.Conv2d(4, 6, 3, padding=1, bias=True), activation="none")
    randomize_batchnorm(unit)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        expected = unit(x)
        fuse_bn_into(unit.conv, unit.norm)
        unit.norm = nn.Identity()
        assert relative_error(unit(x), expected) <= 1e-6


def test_fuse_bn_into_rejects_a_mismatched_norm():
    with pytest.raises(ValueError, match="BatchNorm has 5 channels but the convolution writes 6"):
        fuse_bn_into(nn.Conv2d(4, 6, 1), nn.BatchNorm2d(5))
