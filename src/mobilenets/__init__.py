"""mobilenets: depthwise separable convolutions and the MobileNet family (V1, V2, V3)."""

from .config import BlockConfig, HeadConfig, ModelConfig, ModelOptions
from .cost import cost, hook_costs, layer_costs, separable_vs_standard
from .layers import (
    Conv2d,
    ConvNormAct,
    DepthwiseConv2d,
    DepthwiseSeparableConv2d,
    InvertedResidual,
    PointwiseConv2d,
    SqueezeExcite,
    hard_sigmoid,
    hard_swish,
    same_padding,
)
from .fuse import fuse_bn
from .models import MobileNet, create_model, list_models
from .zoo import make_divisible, model_config

__version__ = "0.1.0"
