"""One test of every registry model (`list_models()`) under several option sets: the module tree
that `iter_layers` walks, forward and backward, feature-map mode, the config's dict round trip,
analytic cost against forward hooks, and BatchNorm folding."""

import json

import pytest
import torch
from torch import nn

from mobilenets import MobileNet, ModelConfig, cost, fuse_bn, hook_costs, list_models, model_config
from mobilenets.config import iter_layers
from mobilenets.fuse import is_fused

from helpers import randomize_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")

# Small widths and sizes keep every forward pass cheap; each set exercises something else: the
# papers' defaults, TensorFlow padding at an odd size, Keras's fixed padding at an odd size,
# feature extraction, the CIFAR stem, and each family's own option.
COMMON = [
    {"width_mult": 0.5, "resolution": 64},
    {"width_mult": 0.35, "resolution": 97, "padding": "same", "num_classes": 7},
    {"width_mult": 0.25, "resolution": 65, "padding": "keras"},
    {"width_mult": 0.25, "resolution": 64, "features_only": True},
    {"width_mult": 0.25, "resolution": 32, "stem_stride": 1, "num_classes": 10},
]
FAMILY = {
    "mobilenet_v1": {"depth_multiplier": 2},
    "shallow_mobilenet_v1": {"depth_multiplier": 2},
    "mobilenet_v3_large": {"minimalistic": True},
    "mobilenet_v3_small": {"minimalistic": True},
}


def cases() -> list:
    found = []
    for name in list_models():
        option_sets = COMMON + (
            [{"width_mult": 0.5, "resolution": 64, **FAMILY[name]}] if name in FAMILY else []
        )
        found += [pytest.param(name, options, id=f"{name}-{i}") for i, options in enumerate(option_sets)]
    return found


CASES = cases()


def build(name: str, options: dict, seed: int = 0) -> MobileNet:
    torch.manual_seed(seed)
    return MobileNet(model_config(name, **options))


def batch(config: ModelConfig, count: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(count, config.in_channels, config.resolution, config.resolution, generator=generator)


@pytest.mark.parametrize("name", list_models())
def test_iter_layers_is_the_module_tree_at_the_papers_defaults(name):
    check_layers_match_modules(MobileNet(model_config(name)))


@pytest.mark.parametrize("name, options", CASES)
def test_iter_layers_is_the_module_tree(name, options):
    check_layers_match_modules(build(name, options))


def check_layers_match_modules(model: MobileNet) -> None:
    modules = {
        path: module for path, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))
    }
    layers = list(iter_layers(model.config))
    assert [layer.path for layer in layers] == list(modules)
    for layer in layers:
        module = modules[layer.path]
        if isinstance(module, nn.Linear):
            assert layer.op == "linear"
            assert (module.in_features, module.out_features) == (layer.in_channels, layer.out_channels)
        else:
            assert (
                module.in_channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.dilation,
                module.groups,
            ) == (
                layer.in_channels,
                layer.out_channels,
                (layer.kernel_size,) * 2,
                (layer.stride,) * 2,
                (layer.dilation,) * 2,
                layer.groups,
            ), layer.path
            assert layer.op == (
                "depthwise" if module.groups > 1 else "se" if layer.part.startswith("se") else "conv"
            )
        assert (module.bias is not None) == layer.bias, layer.path
        if layer.norm:
            assert isinstance(model.get_submodule(layer.norm_path), nn.BatchNorm2d), layer.norm_path


@pytest.mark.parametrize("name, options", CASES)
def test_forward_and_backward(name, options):
    model = build(name, options).train()
    x = batch(model.config).requires_grad_()
    out = model(x)
    if model.config.head is None:
        assert [tuple(m.shape[:2]) for m in out] == [(2, info["channels"]) for info in model.feature_info]
        loss = sum(m.square().mean() for m in out)
    else:
        assert out.shape == (2, model.config.num_classes)
        loss = out.logsumexp(1).mean()
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    without_gradient = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert without_gradient == []


@pytest.mark.parametrize("name", list_models())
def test_feature_maps_are_the_classifier_models_activations(name):
    classifier = build(name, {"width_mult": 0.5, "resolution": 64}).eval()
    extractor = MobileNet(classifier.config.replace(head=None)).eval()
    missing = extractor.load_state_dict(classifier.state_dict(), strict=False)
    assert missing.missing_keys == [] and all(key.startswith("head.") for key in missing.unexpected_keys)
    x = batch(classifier.config)
    with torch.no_grad():
        maps = extractor(x)
        expected = classifier.forward_features(x)
    assert [info["stride"] for info in extractor.feature_info] == [2, 4, 8, 16, 32]
    assert [m.shape[-1] for m in maps] == [64 // stride for stride in (2, 4, 8, 16, 32)]
    torch.testing.assert_close(maps[-1], expected, rtol=0, atol=0)


@pytest.mark.parametrize("name, options", CASES)
def test_config_dict_round_trip_rebuilds_the_same_model(name, options):
    model = build(name, options).eval()
    document = json.loads(json.dumps(model.config.to_dict()))
    assert ModelConfig.from_dict(document) == model.config
    rebuilt = MobileNet.from_config(document).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = batch(model.config)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name, options", CASES)
def test_analytic_cost_equals_the_hooks_on_the_model(name, options):
    model = build(name, options)
    report = cost(model.config)
    measured = hook_costs(model, report.resolution, model.config.in_channels)
    assert [row.name for row in report.rows] == list(measured)
    for row in report.rows:
        got = measured[row.name]
        assert (row.mult_adds, row.params, row.output_shape) == (
            got["mult_adds"],
            got["params"],
            got["output_shape"],
        ), row.name
    assert report.params_with_norm == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, options", CASES)
def test_fuse_bn_computes_what_the_model_computes(name, options):
    model = randomize_batchnorm(build(name, options))
    fused = fuse_bn(model)
    assert is_fused(fused) and not is_fused(model)  # a copy: the original keeps its BatchNorms
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = batch(model.config)
    with torch.no_grad():
        expected, got = model(x), fused(x)
    if model.config.head is None:
        expected, got = (
            torch.cat([m.flatten(1) for m in expected], 1),
            torch.cat([m.flatten(1) for m in got], 1),
        )
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
