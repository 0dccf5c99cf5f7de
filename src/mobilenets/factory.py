"""`create_model(name, *, weights=None, ...)`: a zoo model, randomly initialised or with weights, on
PyTorch's kernels or on the Triton ones. Every option is a typed keyword of its own (no **options),
so IDEs and `help(create_model)` show them; tests/test_models.py checks they are exactly the fields
of `config.ModelOptions`, the one place each option is defined and validated."""

from __future__ import annotations

from collections.abc import Sequence

from .kernels import check_backend, use_backend
from .models import MobileNet
from .pretrained.registry import list_weights
from .pretrained.weights import pretrained_model
from .zoo import check_model_name, model_config
from .zoo import list_models as zoo_models


def list_models(pretrained: bool = False) -> list[str]:
    """The models `create_model` builds; with pretrained=True, those with published weights
    (`mobilenets weights` lists the weights themselves)."""
    names = zoo_models()
    if not pretrained:
        return names
    published = {entry.model for entry in list_weights()}
    return [name for name in names if name in published]


def default_weights(name: str) -> str:
    """The weights `pretrained=True` loads for model `name`: the first registered for it (ImageNet
    weights where a library publishes them, else those this project trained)."""
    check_model_name(name)
    entries = list_weights(name)
    if not entries:
        raise ValueError(
            f"no published weights for {name}; models with weights: {', '.join(list_models(pretrained=True))}"
        )
    return entries[0].key


def create_model(
    name: str,
    *,
    weights: str | None = None,
    pretrained: bool = False,
    backend: str = "torch",
    num_classes: int | None = None,
    width_mult: float | None = None,
    resolution: int | None = None,
    in_channels: int | None = None,
    dropout: float | None = None,
    padding: str | None = None,
    depth_multiplier: int | None = None,
    activation: str | None = None,
    minimalistic: bool | None = None,
    features_only: bool | None = None,
    out_indices: Sequence[int] | None = None,
    stem_stride: int | None = None,
    bn_eps: float | None = None,
) -> MobileNet:
    """Build a zoo model: `create_model("mobilenet_v1", width_mult=0.75, resolution=192)`.

    name: one of `list_models()`.
    weights: None (random initialization), a published key such as "keras-imagenet",
        "torchvision-imagenet-v1" or "cifar10" (`list_weights()`), a weights file or a URL; the model
        then follows the weights' conventions (padding, activation, preprocessing, class names).
    pretrained: True loads `default_weights(name)`, as `weights=` that key would.
    backend: "torch" (the default) or "triton", whose kernels run the depthwise layers and, for
        inference, each depthwise separable block fused (`kernels.use_backend`, docs/kernels.md).
        Where they cannot run (triton missing, no GPU and no TRITON_INTERPRET=1) it warns once and the
        model stays on PyTorch. The switch changes no parameter or name.
    num_classes: classifier outputs (default 1000, or the weights' own); a different count than the
        weights' gives a new, randomly initialised classifier; 0 keeps no classifier layer, so forward
        returns the pooled features (N, C) (timm's convention).
    width_mult: α, any positive number (default 1.0); with weights it selects the published file.
    resolution: ρ·224, the nominal input size costs are computed at (default 224, or the weights').
    in_channels, dropout, padding ("torch", "same", "keras"), depth_multiplier, activation ("relu",
        "relu6"), minimalistic (V3), stem_stride (1 for CIFAR-size inputs), bn_eps: as
        `config.ModelOptions` documents them.
    features_only: no classifier; forward returns the feature maps at strides 2, 4, 8, 16, 32, or
        those `out_indices` picks (indices into `model.feature_info`, whose `.channels()` and
        `.reduction()` give each map's channels and stride).

    The model comes back in training mode, with or without weights (call `.eval()` to infer), as
    timm's and torchvision's do. Unknown names raise `UnknownModelError`, unknown weights keys
    `UnknownWeightsError` (both ValueErrors).
    """
    check_backend(backend)  # before any weights are fetched
    if pretrained and weights is not None:
        raise ValueError(f"pass weights={weights!r} or pretrained=True, not both")
    options = {
        key: value
        for key, value in (
            ("num_classes", num_classes),
            ("width_mult", width_mult),
            ("resolution", resolution),
            ("in_channels", in_channels),
            ("dropout", dropout),
            ("padding", padding),
            ("depth_multiplier", depth_multiplier),
            ("activation", activation),
            ("minimalistic", minimalistic),
            ("features_only", features_only),
            ("out_indices", None if out_indices is None else tuple(out_indices)),
            ("stem_stride", stem_stride),
            ("bn_eps", bn_eps),
        )
        if value is not None  # unset: the architecture's (or the weights') own value
    }
    if pretrained:
        weights = default_weights(name)
    if weights is not None:
        model = pretrained_model(name, weights, options)
    else:
        model = MobileNet(model_config(name, **options))
    model.train()  # one mode rule, whatever the source
    return model if backend == "torch" else use_backend(model, backend)


__all__ = ["create_model", "default_weights", "list_models"]
