"""MobileNetV2/V3 blocks against functional references, and the V2/V3 models' exact figures."""

import json

import pytest
import torch
import torch.nn.functional as F

from mobilenets import (
    InvertedResidual,
    MobileNet,
    ModelConfig,
    SqueezeExcite,
    cost,
    create_model,
    hard_sigmoid,
    hard_swish,
    hook_costs,
    make_divisible,
    model_config,
)
from mobilenets.layers import same_padding

from helpers import randomize_batchnorm


def bn_ref(x, bn):
    return (x - bn.running_mean[None, :, None, None]) / torch.sqrt(
        bn.running_var[None, :, None, None] + bn.eps
    ) * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]


ACTS = {"relu": F.relu, "relu6": lambda t: t.clamp(0, 6), "hardswish": lambda t: t * (t + 3).clamp(0, 6) / 6}


def se_reference(x, se):
    pooled = x.sum((2, 3), keepdim=True) / (x.shape[2] * x.shape[3])
    hidden = (
        torch.einsum("nchw,oc->nohw", pooled, se.reduce.weight[:, :, 0, 0])
        + se.reduce.bias[None, :, None, None]
    )
    hidden = hidden.clamp(min=0)
    gate = (
        torch.einsum("nchw,oc->nohw", hidden, se.expand.weight[:, :, 0, 0])
        + se.expand.bias[None, :, None, None]
    )
    return x * ((gate + 3).clamp(0, 6) / 6)


def inverted_residual_reference(x, block, kernel, stride, padding, activation):
    act = ACTS[activation]
    out = x
    if block.expand is not None:
        out = act(
            bn_ref(
                torch.einsum("nchw,oc->nohw", out, block.expand.conv.weight[:, :, 0, 0]), block.expand.norm
            )
        )
    if padding == "same":
        top, bottom = same_padding(out.shape[2], kernel, stride)
        left, right = same_padding(out.shape[3], kernel, stride)
    else:
        top = bottom = left = right = kernel // 2
    padded = F.pad(out, (left, right, top, bottom))
    weight = block.dw.conv.weight
    out = torch.cat(
        [F.conv2d(padded[:, c : c + 1], weight[c : c + 1], stride=stride) for c in range(padded.shape[1])], 1
    )
    out = act(bn_ref(out, block.dw.norm))
    if block.se is not None:
        out = se_reference(out, block.se)
    out = bn_ref(
        torch.einsum("nchw,oc->nohw", out, block.project.conv.weight[:, :, 0, 0]), block.project.norm
    )
    return out + x if stride == 1 and x.shape[1] == out.shape[1] else out


@pytest.mark.parametrize(
    "in_channels, out_channels, expanded", [(8, 8, 8), (8, 8, 48), (8, 12, 24), (6, 6, 36)]
)
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("se_channels", [None, 8])
@pytest.mark.parametrize("activation, padding", [("relu6", "torch"), ("hardswish", "same"), ("relu", "same")])
def test_inverted_residual_matches_reference(
    in_channels, out_channels, expanded, kernel, stride, se_channels, activation, padding
):
    torch.manual_seed(0)
    block = InvertedResidual(
        in_channels,
        out_channels,
        expanded,
        kernel,
        stride,
        padding,
        activation=activation,
        se_channels=se_channels,
    ).eval()
    randomize_batchnorm(block)
    assert (block.expand is None) == (expanded == in_channels)
    x = torch.randn(2, in_channels, 11, 10)
    with torch.no_grad():
        torch.testing.assert_close(
            block(x),
            inverted_residual_reference(x, block, kernel, stride, padding, activation),
            rtol=1e-4,
            atol=1e-5,
        )


@pytest.mark.parametrize(
    "in_channels, out_channels, stride, residual",
    [(16, 16, 1, True), (16, 16, 2, False), (16, 24, 1, False), (24, 16, 1, False)],
)
def test_residual_exactly_when_shapes_allow(in_channels, out_channels, stride, residual):
    block = InvertedResidual(in_channels, out_channels, 4 * in_channels, stride=stride).eval()
    assert block.use_residual == residual
    # with the projection's BN zeroed the block outputs exactly its shortcut: x or nothing
    block.project.norm.weight.data.zero_()
    block.project.norm.bias.data.zero_()
    x = torch.randn(1, in_channels, 8, 8)
    with torch.no_grad():
        out = block(x)
    if residual:
        torch.testing.assert_close(out, x)
    else:
        assert torch.count_nonzero(out) == 0


def test_squeeze_excite_matches_reference():
    torch.manual_seed(1)
    se = SqueezeExcite(24, 8)
    for p in se.parameters():
        p.data.normal_()
    x = torch.randn(3, 24, 5, 7)
    torch.testing.assert_close(se(x), se_reference(x, se), rtol=1e-5, atol=1e-5)


def test_hard_activations_at_break_points():
    x = torch.tensor([-10.0, -3.0, -1.5, 0.0, 1.0, 3.0, 10.0])
    torch.testing.assert_close(hard_sigmoid(x), torch.tensor([0.0, 0.0, 0.25, 0.5, 4 / 6, 1.0, 1.0]))
    torch.testing.assert_close(hard_swish(x), torch.tensor([0.0, 0.0, -0.375, 0.0, 4 / 6, 3.0, 10.0]))
    # exactly ReLU6(x + 3) / 6 everywhere
    grid = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(hard_sigmoid(grid), torch.clamp(grid + 3, 0, 6) / 6)
    torch.testing.assert_close(hard_swish(grid), grid * torch.clamp(grid + 3, 0, 6) / 6)


@pytest.mark.parametrize(
    "value, expected",
    [
        (32 * 0.35, 16),  # 11.2 rounds to 8, which would lose > 10%: bumped to 16
        (16 * 0.35, 8),
        (32 * 1.4, 48),
        (1280 * 1.4, 1792),
        (1280 * 1.3, 1664),
        (96 * 0.75, 72),
        (12, 16),
        (4, 8),
        (20, 24),
        (26, 24),
        (27.9, 32),
        (28, 32),
        (3.0, 8),  # 27.9 → 24 would lose > 10%
    ],
)
def test_make_divisible_rounds_like_the_references(value, expected):
    assert make_divisible(value) == expected


def test_make_divisible_other_divisors():
    assert (
        make_divisible(10, 4) == 12
        and make_divisible(9, 4) == 12
        and make_divisible(7, 4) == 8
        and make_divisible(30, 16, min_value=8) == 32
    )


# Trainable parameter counts (= torchvision's and Keras's); mult-adds with the paper's rounded figure.
V2_V3_FIGURES = [
    ("mobilenet_v2", {}, 3_504_872, 300_774_272, 300e6),
    (
        "mobilenet_v2",
        {"width_mult": 1.4},
        6_108_776,
        582_195_824,
        None,
    ),  # paper 585M, TF reference table 582M
    ("mobilenet_v2", {"width_mult": 0.35}, 1_677_128, 59_285_808, 59e6),
    ("mobilenet_v3_large", {}, 5_483_032, 216_589_760, 219e6),
    ("mobilenet_v3_large", {"minimalistic": True}, 3_924_288, 209_136_704, 209e6),
    ("mobilenet_v3_small", {}, 2_542_856, 56_510_400, 56e6),
    ("mobilenet_v3_small", {"minimalistic": True}, 2_044_736, 52_288_448, None),
]


@pytest.mark.parametrize("name, options, params, mult_adds, paper", V2_V3_FIGURES)
def test_v2_v3_figures(name, options, params, mult_adds, paper):
    report = cost(name, **options)
    assert report.params_with_norm == params
    assert sum(p.numel() for p in create_model(name, **options).parameters()) == params
    assert report.mult_adds == mult_adds
    if paper is not None:
        assert abs(report.mult_adds - paper) / paper < 0.012  # V3-Large: 216.6M vs 219M, see docs/costs.md


V2_WIDTHS = [0.35, 0.5, 0.75, 1.0, 1.3, 1.4]
V3_VARIANTS = [
    (name, width, minimal)
    for name in ("mobilenet_v3_large", "mobilenet_v3_small")
    for width in (0.75, 1.0)
    for minimal in (False, True)
]


@pytest.mark.parametrize("width", V2_WIDTHS)
def test_v2_shapes_and_last_channel(width):
    model = create_model("mobilenet_v2", width_mult=width, num_classes=11).eval()
    assert model.config.blocks[-1].out_channels == (1280 if width <= 1 else make_divisible(1280 * width))
    with torch.no_grad():
        for size in (128, 160, 192, 224, 193):
            assert model(torch.randn(1, 3, size, size)).shape == (1, 11)


@pytest.mark.parametrize("name, width, minimal", V3_VARIANTS)
def test_v3_shapes_and_structure(name, width, minimal):
    config = model_config(name, width_mult=width, minimalistic=minimal)
    ir_blocks = [b for b in config.blocks if b.kind == "inverted_residual"]
    if minimal:
        assert all(b.kernel_size == 3 and b.se_channels is None and b.activation == "relu" for b in ir_blocks)
        assert config.head.hidden_activation == "relu"
    else:
        assert {b.kernel_size for b in ir_blocks} == {3, 5} and any(b.se_channels for b in ir_blocks)
        assert all(
            b.se_channels == make_divisible(b.expanded_channels / 4) for b in ir_blocks if b.se_channels
        )
        assert config.head.hidden_activation == "hardswish"
    assert config.head.hidden_channels == (1280 if name.endswith("large") else 1024)
    model = MobileNet(config).eval()
    with torch.no_grad():
        for size in (128, 160, 192, 224, 193):
            assert model(torch.randn(1, 3, size, size)).shape == (1, 1000)


@pytest.mark.parametrize(
    "name, width, minimal", V3_VARIANTS + [("mobilenet_v2", w, False) for w in V2_WIDTHS]
)
def test_v2_v3_cost_equals_hooks_and_round_trips(name, width, minimal):
    options = {"width_mult": width, "padding": "same", "resolution": 161}
    if minimal:
        options["minimalistic"] = True
    model = create_model(name, **options).eval()
    report = cost(name, **options)
    measured = hook_costs(model, 161)
    assert [(r.name, r.mult_adds, r.params) for r in report.rows] == [
        (n, m["mult_adds"], m["params"]) for n, m in measured.items()
    ]
    rebuilt = MobileNet.from_config(json.loads(json.dumps(model.config.to_dict())))
    assert rebuilt.config == model.config
    x = torch.randn(1, 3, 64, 64)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
        torch.testing.assert_close(
            model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last)),
            rebuilt(x),
            rtol=1e-4,
            atol=1e-5,
        )


def test_v3_uses_the_reference_batchnorm_settings():
    model = create_model("mobilenet_v3_small")
    bn = model.features[0].norm
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)
    assert create_model("mobilenet_v3_small", bn_eps=1e-5).features[0].norm.eps == 1e-5


def test_v2_v3_reject_v1_options():
    with pytest.raises(ValueError, match="depth_multiplier applies to the MobileNetV1 family"):
        create_model("mobilenet_v3_large", depth_multiplier=2)
    with pytest.raises(ValueError, match="minimalistic applies to mobilenet_v3"):
        create_model("mobilenet_v2", minimalistic=True)


def test_config_from_dict_rejects_bad_blocks():
    data = model_config("mobilenet_v2").to_dict()
    data["blocks"][3]["activation"] = "swish"
    with pytest.raises(ValueError, match="activation must be one of"):
        ModelConfig.from_dict(data)
