"""BatchNorm folding: the folded model computes what the unfused eval model computes."""

import pytest
import torch
from torch import nn

from mobilenets import ConvNormAct, create_model, list_models
from mobilenets.fuse import fold_batchnorm, fuse_bn, is_fused


@pytest.fixture(autouse=True)
def one_thread():
    """These models are small: one thread is as fast, and immune to OpenMP's spin-wait collapse when
    other jobs share the CPU (docs/benchmarks.md, section 4)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def with_trained_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh BatchNorms are identities (mean 0, var 1, γ 1, β 0), which would make folding trivial;
    give every one the kind of statistics a trained network has."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(0.2 + 2 * torch.rand(n, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
            module.bias.data.copy_(0.4 * torch.rand(n, generator=generator) - 0.2)
    return model.eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("name", list_models())
def test_folded_model_matches_the_unfused_eval_model(name):
    torch.manual_seed(0)
    model = with_trained_statistics(create_model(name, resolution=64, width_mult=0.5))
    fused = fuse_bn(model)
    assert is_fused(fused) and not is_fused(model)  # a copy: the original keeps its BatchNorms
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(fused(x), model(x)) <= 1e-5


def test_folding_with_tf_same_padding_features_only_and_channels_last():
    torch.manual_seed(1)
    model = with_trained_statistics(create_model("mobilenet_v3_small", padding="same", features_only=True))
    fused = model.fuse_bn()  # the MobileNet method
    x = torch.randn(1, 3, 75, 75)  # odd size: the stride-2 layers pad asymmetrically at run time
    with torch.no_grad():
        expected = model(x)
        channels_last = fused.to(memory_format=torch.channels_last)
        for got in (fused(x), channels_last(x.contiguous(memory_format=torch.channels_last))):
            assert len(got) == len(expected)
            for a, b in zip(got, expected):
                assert relative_error(a, b) <= 1e-5


def test_inplace_returns_the_same_model_in_eval_mode():
    model = with_trained_statistics(create_model("mobilenet_v1", width_mult=0.25)).train()
    assert model.fuse_bn(inplace=True) is model
    assert not model.training and is_fused(model)
    first = model.features[0]
    assert isinstance(first.norm, nn.Identity) and first.conv.bias is not None


def test_fold_batchnorm_keeps_an_existing_conv_bias():
    torch.manual_seed(2)
    unit = ConvNormAct(nn.Conv2d(4, 6, 3, padding=1, bias=True), activation="none")
    with_trained_statistics(unit)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        expected = unit(x)
        fold_batchnorm(unit.conv, unit.norm)
        unit.norm = nn.Identity()
        assert relative_error(unit(x), expected) <= 1e-6


def test_fold_batchnorm_rejects_a_mismatched_norm():
    with pytest.raises(ValueError, match="BatchNorm has 5 channels but the convolution writes 6"):
        fold_batchnorm(nn.Conv2d(4, 6, 1), nn.BatchNorm2d(5))
