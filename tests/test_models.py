"""Every registry model: shapes over the width × resolution grid, layouts, config round-trip, errors."""

import math

import pytest
import torch

from mobilenets import MobileNet, ModelConfig, create_model, list_models, model_config

MODELS = list_models()
WIDTHS = [0.25, 0.5, 0.75, 1.0]
SIZES = [128, 160, 192, 224, 193]


def test_registry_names():
    for name in ["mobilenet_v1", "conv_mobilenet_v1", "shallow_mobilenet_v1"]:
        assert name in MODELS


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("width", WIDTHS)
def test_output_shapes_over_width_and_resolution(name, width):
    torch.manual_seed(0)
    model = create_model(name, width_mult=width, num_classes=7).eval()
    with torch.no_grad():
        for size in SIZES:
            assert model(torch.randn(1, 3, size, size)).shape == (1, 7)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("padding", ["torch", "same"])
def test_feature_maps_at_strides_2_to_32(name, padding):
    model = create_model(name, width_mult=0.5, features_only=True, padding=padding).eval()
    assert [f["stride"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    size = 193
    with torch.no_grad():
        maps = model(torch.randn(2, 3, size, size))
    assert len(maps) == 5
    for feature, info in zip(maps, model.feature_info, strict=True):
        assert feature.shape[1] == info["channels"]
        if padding == "same":
            assert feature.shape[-1] == math.ceil(size / info["stride"])
    assert model.head is None


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_equals_nchw(name):
    torch.manual_seed(1)
    model = create_model(name, width_mult=0.5, padding="same").eval()
    x = torch.randn(2, 3, 97, 97)
    with torch.no_grad():
        expected = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_options_are_applied():
    model = create_model(
        "mobilenet_v1",
        width_mult=0.5,
        num_classes=5,
        in_channels=1,
        dropout=0.3,
        depth_multiplier=2,
        activation="relu6",
        bn_eps=1e-3,
    )
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 5)
    assert model.head.dropout.p == 0.3
    assert model.features[1].dw.conv.out_channels == 2 * model.features[1].dw.conv.in_channels
    assert isinstance(model.features[0].act, torch.nn.ReLU6)
    assert model.features[0].norm.eps == 1e-3


def test_conv_and_shallow_variants_structure():
    conv = model_config("conv_mobilenet_v1")
    assert [b.kind for b in conv.blocks] == ["conv"] * 14
    assert all(b.kernel_size == 3 for b in conv.blocks)
    shallow = model_config("shallow_mobilenet_v1")
    assert len(shallow.blocks) == 14 - 5
    assert sum(1 for b in shallow.blocks if b.out_channels == 512 and b.stride == 1) == 0


def test_v1_channel_counts_truncate_like_keras():
    config = model_config("mobilenet_v1", width_mult=0.75)
    assert [b.out_channels for b in config.blocks] == [
        24,
        48,
        96,
        96,
        192,
        192,
        384,
        384,
        384,
        384,
        384,
        384,
        768,
        768,
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(width_mult=0), "width_mult"),
        (dict(width_mult=-0.5), "width_mult"),
        (dict(resolution=31), "resolution"),
        (dict(resolution=224.0), "resolution"),
        (dict(num_classes=0), "num_classes"),
        (dict(padding="reflect"), "padding"),
        (dict(dropout=1.0), "dropout"),
        (dict(minimalistic=True), "minimalistic"),
        (dict(activation="gelu"), "activation"),
    ],
)
def test_bad_options_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("mobilenet_v1", **kwargs)


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: mobilenet_v1, conv_mobilenet_v1"):
        create_model("mobilenet_v4")


def test_unknown_option_lists_the_available_ones():
    with pytest.raises(TypeError, match="width_mult"):
        create_model("mobilenet_v1", alpha=0.5)


def test_wrong_input_is_a_clear_error():
    model = create_model("mobilenet_v1", width_mult=0.25)
    with pytest.raises(ValueError, match="expects 3 input channels"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.randn(1, 3, 16, 64))
    with pytest.raises(ValueError, match="4-D"):
        model(torch.randn(3, 64, 64))


def test_any_size_from_32_works():
    model = create_model("mobilenet_v1", width_mult=0.25).eval()
    with torch.no_grad():
        for size in (32, 33, 47, 250):
            assert model(torch.randn(1, 3, size, size)).shape == (1, 1000)


def test_broken_configs_are_rejected():
    config = model_config("mobilenet_v1")
    with pytest.raises(ValueError, match="block 2 reads"):
        blocks = list(config.blocks)
        blocks[2] = blocks[2].__class__("separable", 99, 128, stride=2)
        config.replace(blocks=tuple(blocks))
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**config.to_dict(), "alpha": 1})


def test_training_step_runs_and_changes_weights():
    torch.manual_seed(3)
    model = create_model("mobilenet_v1", width_mult=0.25, num_classes=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.head.fc.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.head.fc.weight)


@pytest.mark.parametrize("name", MODELS)
def test_cifar_stem_keeps_the_first_layer_at_full_resolution(name):
    model = create_model(name, width_mult=0.5, stem_stride=1, num_classes=10).eval()
    assert model.config.blocks[0].stride == 1
    assert [f["stride"] for f in model.feature_info] == [2, 4, 8, 16]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    features = model_config(name, width_mult=0.5, stem_stride=1, features_only=True)
    assert MobileNet(features)(torch.randn(1, 3, 32, 32))[-1].shape[-1] == 2  # 32 px ends in a 2×2 map


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v3_small"])
def test_reset_classifier_keeps_config_cost_and_checkpoint_consistent(name, tmp_path):
    from mobilenets import cost
    from mobilenets.checkpoint import load_checkpoint, save_checkpoint

    model = create_model(name, width_mult=0.5, num_classes=10)
    features_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.fc.")}
    assert model.reset_classifier(3) is model
    assert model.config.num_classes == 3 and model.head.fc.out_features == 3
    assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 3)
    for key, value in features_before.items():
        assert torch.equal(model.state_dict()[key], value), key  # the backbone (and V3's hidden layer) stay
    assert cost(model).params == cost(name, width_mult=0.5, num_classes=3).params
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    assert load_checkpoint(path).model.config == model.config


def test_a_classifier_replaced_by_hand_is_refused_at_save(tmp_path):
    from torch import nn

    from mobilenets.checkpoint import save_checkpoint

    model = create_model("mobilenet_v1", width_mult=0.25, num_classes=10)
    model.head.fc = nn.Linear(model.head.fc.in_features, 3)  # config still says 10
    message = r"head.fc.bias is \(3,\) but its config says \(10,\).*reset_classifier"
    with pytest.raises(ValueError, match=message):
        save_checkpoint(tmp_path / "m.safetensors", model)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="feature extractor"):
        create_model("mobilenet_v1", width_mult=0.25, features_only=True).reset_classifier(3)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        create_model("mobilenet_v1", width_mult=0.25).reset_classifier(0)
