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
        (dict(num_classes=-1), "num_classes"),
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
    with pytest.raises(TypeError, match="alpha"):  # create_model's keywords are explicit
        create_model("mobilenet_v1", alpha=0.5)
    with pytest.raises(TypeError, match="width_mult"):
        model_config("mobilenet_v1", alpha=0.5)


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
    with pytest.raises(ValueError, match="num_classes must be a positive integer, or 0"):
        create_model("mobilenet_v1", width_mult=0.25).reset_classifier(-2)


# --------------------------------------------------------------------------------------------
# The Python API as timm and torchvision users expect it
# --------------------------------------------------------------------------------------------
def test_create_model_takes_exactly_the_model_options_as_typed_keywords():
    import dataclasses
    import inspect

    from mobilenets import ModelOptions

    parameters = inspect.signature(create_model).parameters
    assert list(parameters)[0] == "name"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(parameters.values())[1:])
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    options = {f.name for f in dataclasses.fields(ModelOptions)}
    assert set(parameters) - {"name", "weights", "pretrained", "backend"} == options
    assert all(parameters[name].annotation != inspect.Parameter.empty for name in options)
    with pytest.raises(TypeError):
        create_model("mobilenet_v1", "cifar10")  # weights only by keyword


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small"])
def test_num_classes_0_gives_pooled_features(name, tmp_path):
    from mobilenets import cost
    from mobilenets.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = create_model(name, width_mult=0.5, num_classes=0).eval()
    x = torch.randn(2, 3, 64, 64)
    pooled = model(x)
    head = model.config.head
    assert pooled.shape == (2, head.hidden_channels or head.in_channels)
    expected = model.forward_features(x).mean((2, 3))
    if model.head.hidden is not None:  # V3: the 1280/1024-wide layer after pooling, as timm keeps it
        expected = model.head.hidden_act(model.head.hidden(expected))
    torch.testing.assert_close(pooled, expected)
    assert not model.has_classifier and "head.fc.weight" not in model.state_dict()
    classifier = create_model(name, width_mult=0.5, num_classes=10)
    fc = classifier.head.fc
    assert cost(model).params == cost(classifier).params - fc.weight.numel() - fc.bias.numel()
    assert (
        classifier.reset_classifier(0).config.replace(extra={}) == model.config
    )  # the same model either way
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    assert load_checkpoint(path).model.config.num_classes == 0


def test_a_pooled_feature_model_is_not_exported(tmp_path):
    from mobilenets.deploy.export import export_onnx

    model = create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=0)
    with pytest.raises(ValueError, match="num_classes=0"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v3_large"])
def test_out_indices_pick_feature_maps_and_feature_info_describes_them(name):
    every = create_model(name, width_mult=0.5, features_only=True).eval()
    picked = create_model(name, width_mult=0.5, features_only=True, out_indices=(1, -1)).eval()
    picked.load_state_dict(every.state_dict())
    x = torch.randn(1, 3, 64, 64)
    maps, all_maps = picked(x), every(x)
    assert len(all_maps) == 5 and every.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert picked.feature_info.reduction() == [4, 32]
    assert picked.feature_info.channels() == [m.shape[1] for m in maps]
    assert [64 // s for s in picked.feature_info.reduction()] == [m.shape[-1] for m in maps]
    for got, want in zip(maps, (all_maps[1], all_maps[4]), strict=True):
        assert torch.equal(got, want)
    assert ModelConfig.from_dict(picked.config.to_dict()) == picked.config  # JSON round trip


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(out_indices=(1,)), "needs features_only"),
        (dict(features_only=True, out_indices=(5,)), "0 to 4"),
        (dict(features_only=True, out_indices=()), "non-empty"),
        (dict(features_only=True, out_indices=(1, -4)), "twice"),
    ],
)
def test_bad_out_indices_are_one_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("mobilenet_v1", width_mult=0.25, **kwargs)


def test_typed_errors_for_unknown_models_and_weights():
    from mobilenets import UnknownModelError, UnknownWeightsError

    with pytest.raises(UnknownModelError, match="mobilenet_v9"):
        create_model("mobilenet_v9")
    with pytest.raises(UnknownWeightsError, match="cifar-ten"):
        create_model("mobilenet_v1", weights="cifar-ten")
    assert issubclass(UnknownModelError, ValueError) and issubclass(UnknownWeightsError, ValueError)


def test_pretrained_true_is_the_models_default_weights(monkeypatch):
    from mobilenets import default_weights, list_weights

    assert default_weights("mobilenet_v1") == "keras-imagenet"
    assert default_weights("conv_mobilenet_v1") == "cifar10"  # ships inside the package
    for name in list_models(pretrained=True):
        assert default_weights(name) == list_weights(name)[0].key
    with pytest.raises(ValueError, match="no published weights for shallow_mobilenet_v1"):
        create_model("shallow_mobilenet_v1", pretrained=True)
    with pytest.raises(ValueError, match="not both"):
        create_model("mobilenet_v1", weights="cifar10", pretrained=True)
    model = create_model("conv_mobilenet_v1", pretrained=True, width_mult=0.25)
    assert model.config.extra["weights"]["weights"] == "cifar10"


def test_one_mode_rule_and_one_build_with_weights(monkeypatch):
    from mobilenets import models

    builds = []
    real_init = models.MobileNet.__init__

    def counting_init(self, config):
        builds.append(config.name)
        real_init(self, config)

    monkeypatch.setattr(models.MobileNet, "__init__", counting_init)
    loaded = create_model("mobilenet_v1", weights="cifar10", num_classes=3)
    assert builds == ["mobilenet_v1"]  # resolved once, built once (the classifier swapped in place)
    assert loaded.training and create_model("mobilenet_v1", width_mult=0.25).training
    assert loaded.config.num_classes == 3 and loaded.head.fc.out_features == 3
