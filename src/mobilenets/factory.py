"""`create_model(name, weights=None, **options)`: a zoo model, randomly initialised or with weights."""

from __future__ import annotations

from .models import MobileNet
from .pretrained.weights import pretrained_model
from .zoo import model_config


def create_model(name: str, weights: str | None = None, **options) -> MobileNet:
    """Build a zoo model: `create_model("mobilenet_v1", width_mult=0.75, resolution=192)`.

    Options are the fields of `config.ModelOptions`; `list_models()` names the models.
    weights: None (random initialization), a published set such as "keras-imagenet" or
    "torchvision-imagenet-v1" (`mobilenets.pretrained.list_weights()`), a weights file or a URL;
    the model then follows the weights' conventions and is returned in eval mode.
    """
    if weights is not None:
        return pretrained_model(name, weights, options)
    return MobileNet(model_config(name, **options))
