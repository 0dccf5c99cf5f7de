"""One `MobileNet` class that builds every version from a `ModelConfig`."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from .config import BlockConfig, ModelConfig
from .fuse import fuse_bn
from .layers import ConvNormAct, DepthwiseSeparableConv2d, InvertedResidual, make_activation

__all__ = ["MobileNet", "ClassifierHead", "build_block"]

MIN_INPUT_SIZE = 32  # five stride-2 stages: below 32 pixels the last stage has nothing left


def build_block(block: BlockConfig, config: ModelConfig) -> nn.Module:
    """The module for one body block; the single place where config fields meet layer arguments."""
    norm_args: dict[str, Any] = dict(norm=config.norm, bn_eps=config.bn_eps, bn_momentum=config.bn_momentum)
    # in, out, kernel, stride, padding, dilation: the leading arguments of both layer constructors
    geometry = (
        block.in_channels,
        block.out_channels,
        block.kernel_size,
        block.stride,
        config.padding,
        block.dilation,
    )
    if block.kind == "conv":
        return ConvNormAct.standard(*geometry, activation=block.activation, **norm_args)
    if block.kind == "separable":
        return DepthwiseSeparableConv2d(
            *geometry, block.depth_multiplier, activation=block.activation, **norm_args
        )
    assert block.expanded_channels is not None  # BlockConfig requires it of inverted residuals
    return InvertedResidual(
        block.in_channels,
        block.out_channels,
        block.expanded_channels,
        block.kernel_size,
        block.stride,
        config.padding,
        block.dilation,
        block.activation,
        block.se_channels,
        **norm_args,
    )


class ClassifierHead(nn.Module):
    """Global average pool → [hidden linear → activation] → dropout → linear classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden_channels: int | None = None,
        hidden_activation: str = "none",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.hidden = nn.Linear(in_channels, hidden_channels) if hidden_channels else None
        self.hidden_act = make_activation(hidden_activation) if hidden_channels else None
        self.dropout = nn.Dropout(dropout)
        # num_classes 0: no classifier layer, the pooled (and hidden) features come out as they are
        features = hidden_channels or in_channels
        self.fc: nn.Module = nn.Linear(features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean((2, 3))  # global average pool; the paper's "Avg Pool 7×7" at 224
        if self.hidden is not None and self.hidden_act is not None:
            x = self.hidden_act(self.hidden(x))
        return self.fc(self.dropout(x))


class MobileNet(nn.Module):
    """MobileNetV1, V2 or V3, as its `config` describes.

    forward(x) returns logits (N, num_classes); with num_classes 0 the pooled features (N, C)
    (after V3's hidden head layer); in feature-extraction mode (config.head is None) the list of
    feature maps at strides 2, 4, 8, 16, 32, or those config.out_indices picks (see `feature_info`).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.features = nn.Sequential(*(build_block(block, config) for block in config.blocks))
        head = config.head
        self.head = (
            None
            if head is None
            else ClassifierHead(
                head.in_channels, head.num_classes, head.hidden_channels, head.hidden_activation, head.dropout
            )
        )
        self._adopt(config)
        self._init_weights()

    @classmethod
    def from_config(cls, config: ModelConfig | dict) -> MobileNet:
        return cls(config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config))

    def _init_weights(self) -> None:
        # As the reference implementations: He-normal (fan-out) convolutions, unit BN, small linear.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(
                f"{self.config.name} expects a 4-D batch (N, C, H, W); got shape {tuple(x.shape)}"
            )
        expected = next(self.parameters()).dtype
        if x.dtype != expected and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(
                f"{self.config.name} has {expected} weights but got a {x.dtype} batch; "
                f"convert it with x.to({expected}) (or the model with model.to({x.dtype}))"
            )
        if x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"{self.config.name} expects {self.config.in_channels} input channels "
                f"(in_channels={self.config.in_channels}); got {x.shape[1]} in shape {tuple(x.shape)}"
            )
        if x.shape[2] < MIN_INPUT_SIZE or x.shape[3] < MIN_INPUT_SIZE:
            raise ValueError(
                f"{self.config.name} needs inputs of at least {MIN_INPUT_SIZE}×{MIN_INPUT_SIZE}; "
                f"got {x.shape[2]}×{x.shape[3]}"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (before the classifier head)."""
        self._check_input(x)
        return self.features(x)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at every output stride (2, 4, 8, 16, 32) for detection/segmentation."""
        self._check_input(x)
        maps = []
        for index, block in enumerate(self.features):
            x = block(x)
            if index in self._feature_blocks:
                maps.append(x)
        return maps

    def reset_classifier(self, num_classes: int) -> MobileNet:
        """Replace the last linear layer with a new, randomly initialised one for `num_classes`
        classes (fine-tuning on other data), keeping everything before it and updating `config`, so
        that `cost()`, checkpoints and exports describe the new model. Returns the model itself.
        num_classes 0 removes the layer: forward then returns the pooled features (N, C).

        The config's `class_names` no longer apply and are dropped; V3's hidden head layer is kept.
        """
        current = self.config.head
        if self.head is None or current is None:
            raise ValueError(
                f"this {self.config.name} is a feature extractor (features_only): it has no classifier to "
                f"reset; build it with num_classes instead"
            )
        head = dataclasses.replace(current, num_classes=num_classes)  # validates num_classes
        reference = next(self.parameters())  # the device and dtype the new layer takes
        if num_classes:
            in_features = head.hidden_channels or head.in_channels
            fc = nn.Linear(in_features, num_classes, device=reference.device, dtype=reference.dtype)
            nn.init.normal_(fc.weight, 0, 0.01)  # as _init_weights
            nn.init.zeros_(fc.bias)
            self.head.fc = fc
        else:  # 0: pooled features
            self.head.fc = nn.Identity()
        self.config = self.config.replace(head=head, extra={**self.config.extra, "class_names": None})
        return self

    @property
    def has_classifier(self) -> bool:
        """Whether forward returns class logits (not feature maps, not pooled features)."""
        return self.head is not None and bool(self.config.num_classes)

    def reconfigure(self, config: ModelConfig) -> MobileNet:
        """Adopt `config` where it differs from the model's own only in what needs no new body layer:
        the head dropped (features_only), its class count (a new classifier, as reset_classifier) or
        dropout, the nominal resolution, out_indices and `extra`. How weights are fitted to the
        options a user asks for without building the network twice. Returns the model itself."""
        old = self.config
        same_body = dataclasses.replace(
            config, head=old.head, resolution=old.resolution, extra=old.extra, out_indices=old.out_indices
        )
        if same_body != old:
            raise ValueError(f"reconfigure changes only head, resolution, out_indices, extra of {old.name}")
        if config.head is None:
            self.head = None
        elif old.head is None or self.head is None:
            raise ValueError(f"this {old.name} is a feature extractor: it has no classifier to configure")
        else:
            kept = ("in_channels", "hidden_channels", "hidden_activation")
            if any(getattr(config.head, name) != getattr(old.head, name) for name in kept):
                raise ValueError(f"reconfigure keeps the head's {', '.join(kept)}")
            if config.head.num_classes != old.head.num_classes:
                self.reset_classifier(config.head.num_classes)
            self.head.dropout.p = config.head.dropout
        self._adopt(config)
        return self

    def _adopt(self, config: ModelConfig) -> None:
        self.config = config
        self.feature_info = config.feature_info()
        self._feature_blocks = {entry["block"] for entry in self.feature_info}

    def fuse_bn(self, inplace: bool = False) -> MobileNet:
        """For inference: a copy (or this model, if inplace) in eval mode with every BatchNorm folded
        into the convolution before it (see `fuse.fuse_bn`)."""
        return fuse_bn(self, inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.head is None:
            return self.feature_maps(x)
        return self.head(self.forward_features(x))
