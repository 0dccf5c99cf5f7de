"""mobilenets: depthwise separable convolutions and the MobileNet family (V1, V2, V3).

The public names below are imported on first use (PEP 562), so that `import mobilenets` does not
import torch: the command line must set OMP_WAIT_POLICY before torch loads (see `cli`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "config": ("BlockConfig", "FeatureInfo", "HeadConfig", "ModelConfig", "ModelOptions"),
    "costs.analysis": ("cost", "hook_costs", "layer_costs", "separable_vs_standard"),
    "layers": (
        "Conv2d",
        "ConvNormAct",
        "DepthwiseConv2d",
        "DepthwiseSeparableConv2d",
        "InvertedResidual",
        "PointwiseConv2d",
        "SqueezeExcite",
        "hard_sigmoid",
        "hard_swish",
        "same_padding",
    ),
    "fuse": ("fuse_bn",),
    "models": ("MobileNet",),
    "factory": ("create_model", "default_weights", "list_models"),
    "zoo": ("UnknownModelError", "make_divisible", "model_config"),
    "data.images": ("Preprocess",),
    "pretrained.registry": ("UnknownWeightsError", "Weights", "list_weights"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'mobilenets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
