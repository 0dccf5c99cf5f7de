"""Published MobileNet weights in our models, with proven output parity.

Converters (each returns our `MobileNet` in eval mode; its config records the source's padding,
BatchNorm epsilon, input preprocessing and class names):

    from_keras(model_or_path)      Keras applications MobileNet / V2 / V3 (.keras, .h5, keras.Model)
    from_torchvision(state_dict)   torchvision mobilenet_v2 / mobilenet_v3_large / mobilenet_v3_small
    from_timm(state_dict, name)    timm mobilenetv1_* / mobilenetv2_* / (tf_)mobilenetv3_*

Published files: `create_model(name, weights="keras-imagenet" | "torchvision-imagenet-v1" | ... |
PATH | URL)`; the registry of `Weights` records: `list_weights()`, `find_weights()`, `register()`.
Prediction: `predict_imagenet(model, image_paths)`.
See docs/interop.md.
"""

from ..data import preprocess_image  # one pipeline for every model; kept importable from here
from .convert import convert, save_converted
from .download import HashMismatch, WeightsUnavailable, cache_dir, fetch
from .imagenet import imagenet_class_names, predict_imagenet
from .keras import from_keras
from .registry import (
    UnknownWeightsError,
    Weights,
    find_weights,
    list_weights,
    register,
    registered,
    weight_keys,
)
from .slots import WeightMismatch
from .timm import from_timm
from .torchvision import from_torchvision
from .weights import load_weights_file, pretrained_model

__all__ = [
    "HashMismatch",
    "UnknownWeightsError",
    "WeightMismatch",
    "Weights",
    "WeightsUnavailable",
    "cache_dir",
    "convert",
    "fetch",
    "find_weights",
    "from_keras",
    "from_timm",
    "from_torchvision",
    "imagenet_class_names",
    "list_weights",
    "load_weights_file",
    "predict_imagenet",
    "preprocess_image",
    "pretrained_model",
    "register",
    "registered",
    "save_converted",
    "weight_keys",
]
