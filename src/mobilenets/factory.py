"""`create_model(name, weights=None, backend="torch", **options)`: a zoo model, randomly initialised or
with weights, on PyTorch's kernels or on the Triton ones."""

from __future__ import annotations

from .kernels import check_backend, use_backend
from .models import MobileNet
from .pretrained.registry import list_weights
from .pretrained.weights import pretrained_model
from .zoo import list_models as zoo_models
from .zoo import model_config


def list_models(pretrained: bool = False) -> list[str]:
    """The models `create_model` builds; with pretrained=True, those with published weights
    (`mobilenets weights` lists the weights themselves)."""
    names = zoo_models()
    if not pretrained:
        return names
    published = {entry.model for entry in list_weights()}
    return [name for name in names if name in published]


def create_model(name: str, weights: str | None = None, backend: str = "torch", **options) -> MobileNet:
    """Build a zoo model: `create_model("mobilenet_v1", width_mult=0.75, resolution=192)`.

    Options are the fields of `config.ModelOptions`; `list_models()` names the models.
    weights: None (random initialization), a published set such as "keras-imagenet" or
    "torchvision-imagenet-v1" (`mobilenets.pretrained.list_weights()`), a weights file or a URL;
    the model then follows the weights' conventions and is returned in eval mode.
    backend: "torch" (the default) or "triton", whose kernels run the depthwise layers and, for
    inference, each depthwise separable block fused (`kernels.use_backend`, docs/kernels.md). Where
    they cannot run (triton missing, no GPU and no TRITON_INTERPRET=1) it warns once and the model
    stays on PyTorch. The switch changes no parameter or name: state dicts and checkpoints are the same.
    """
    check_backend(backend)  # before any weights are fetched
    if weights is not None:
        model = pretrained_model(name, weights, options)
    else:
        model = MobileNet(model_config(name, **options))
    return model if backend == "torch" else use_backend(model, backend)
