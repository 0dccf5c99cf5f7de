"""The papers' architecture tables as literal data, and the functions that turn them into configs.

Every table below is copied from the paper it cites; width multipliers, resolution and the other
`ModelOptions` are applied by the `*_config` builders, which return a `ModelConfig`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .config import BlockConfig, HeadConfig, ModelConfig, ModelOptions


def make_divisible(
    value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never going more than 10% down.

    This is the rounding of the TensorFlow MobileNet reference code that Keras, torchvision and
    timm all copy (`_make_divisible`), so channel counts agree with their published weights.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:  # rounding down must not remove more than 10%
        rounded += divisor
    return rounded


# --------------------------------------------------------------------------------------------
# MobileNetV1 — Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for
# Mobile Vision Applications", Table 1 (MobileNet Body Architecture).
# A "separable" row is the paper's "Conv dw / s" + "Conv / s1" (1×1) pair; the stride is the
# depthwise layer's. Table 1 prints the second-to-last depthwise layer as "s2" although its input
# and output are both 7×7: that is a typo, it is stride 1 (every implementation uses 1).
# --------------------------------------------------------------------------------------------
MOBILENET_V1_BODY = (
    # kind,        c,    s      input (224×224)
    ("conv", 32, 2),  # 224×224×3
    ("separable", 64, 1),  # 112×112×32
    ("separable", 128, 2),  # 112×112×64
    ("separable", 128, 1),  # 56×56×128
    ("separable", 256, 2),  # 56×56×128
    ("separable", 256, 1),  # 28×28×256
    ("separable", 512, 2),  # 28×28×256
    ("separable", 512, 1),  # 14×14×512  ┐
    ("separable", 512, 1),  # 14×14×512  │
    ("separable", 512, 1),  # 14×14×512  │ "5×" in Table 1; removed in the
    ("separable", 512, 1),  # 14×14×512  │ shallow MobileNet of Table 5
    ("separable", 512, 1),  # 14×14×512  ┘
    ("separable", 1024, 2),  # 14×14×512
    ("separable", 1024, 1),  # 7×7×1024 (printed "s2", see above)
)
# Then: Avg Pool 7×7 → FC 1024×1000 → Softmax.
MOBILENET_V1_SHALLOW_ROWS = range(7, 12)  # the five 14×14×512 separable rows (Table 5)


def _zoo_config(
    name: str,
    blocks: list[BlockConfig],
    options: ModelOptions,
    *,
    dropout: float,
    bn_eps: float,
    bn_momentum: float = 0.1,
    hidden_channels: int | None = None,
    hidden_activation: str = "none",
) -> ModelConfig:
    """A zoo model's config from its blocks: the classifier head on the last block (none with
    features_only), and the options every model takes. dropout and bn_eps are the model's defaults,
    which the options override."""
    head = (
        None
        if options.features_only
        else HeadConfig(
            blocks[-1].out_channels,
            options.num_classes,
            hidden_channels,
            hidden_activation,
            dropout if options.dropout is None else options.dropout,
        )
    )
    return ModelConfig(
        name,
        tuple(blocks),
        head,
        in_channels=options.in_channels,
        resolution=options.resolution,
        padding=options.padding,
        bn_eps=options.bn_eps or bn_eps,
        bn_momentum=bn_momentum,
        width_mult=options.width_mult,
        minimalistic=options.minimalistic,
        out_indices=options.out_indices,
    )


def _v1_config(name: str, options: ModelOptions, body: tuple) -> ModelConfig:
    if options.minimalistic:
        raise ValueError(f"minimalistic applies to mobilenet_v3_large/small only, not {name}")
    activation = options.activation or "relu"  # the paper uses ReLU; Keras uses ReLU6
    blocks = []
    channels = options.in_channels
    for kind, paper_channels, stride in body:
        out_channels = int(paper_channels * options.width_mult)  # paper §4.2: αM, αN, truncated as Keras
        if out_channels < 1:
            raise ValueError(
                f"width_mult {options.width_mult} leaves a layer of {paper_channels} channels with none"
            )
        if kind == "separable":
            blocks.append(
                BlockConfig(
                    "separable",
                    channels,
                    out_channels,
                    3,
                    stride,
                    activation=activation,
                    depth_multiplier=options.depth_multiplier,
                )
            )
        else:  # the stem
            blocks.append(BlockConfig("conv", channels, out_channels, 3, stride, activation=activation))
        channels = out_channels
    # The paper relies on little regularisation for small models (§4); default: no dropout.
    return _zoo_config(name, blocks, options, dropout=0.0, bn_eps=1e-5)


def full_conv_twin(config: ModelConfig) -> ModelConfig | None:
    """`config` with every depthwise separable block replaced by one standard K×K convolution
    (MobileNet paper Table 4), or None when the model has no separable blocks (V2/V3)."""
    if not any(block.kind == "separable" for block in config.blocks):
        return None
    blocks = tuple(
        dataclasses.replace(block, kind="conv", depth_multiplier=1) if block.kind == "separable" else block
        for block in config.blocks
    )
    name = config.name if config.name.startswith("conv_") else f"conv_{config.name}"
    return config.replace(name=name, blocks=blocks)


def mobilenet_v1_config(options: ModelOptions) -> ModelConfig:
    return _v1_config("mobilenet_v1", options, MOBILENET_V1_BODY)


def conv_mobilenet_v1_config(options: ModelOptions) -> ModelConfig:
    """Table 4's "Conv MobileNet": every depthwise separable pair replaced by one full 3×3 conv."""
    if options.depth_multiplier != 1:
        raise ValueError("depth_multiplier applies to separable blocks; conv_mobilenet_v1 has none")
    twin = full_conv_twin(_v1_config("conv_mobilenet_v1", options, MOBILENET_V1_BODY))
    assert twin is not None  # MobileNetV1's body is separable blocks
    return twin


def shallow_mobilenet_v1_config(options: ModelOptions) -> ModelConfig:
    """Table 5's "Shallow MobileNet": the five 14×14×512 separable blocks removed."""
    body = tuple(row for i, row in enumerate(MOBILENET_V1_BODY) if i not in MOBILENET_V1_SHALLOW_ROWS)
    return _v1_config("shallow_mobilenet_v1", options, body)


# --------------------------------------------------------------------------------------------
# MobileNetV2 — Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
# Table 2. t: expansion factor, c: output channels, n: repeats, s: stride of the first repeat.
# --------------------------------------------------------------------------------------------
MOBILENET_V2_STEM = 32  # conv2d 3×3, stride 2
MOBILENET_V2_BODY = (
    # t,  c,   n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
MOBILENET_V2_LAST = 1280  # conv2d 1×1 before the pool


def mobilenet_v2_config(options: ModelOptions) -> ModelConfig:
    _reject_v1_options("mobilenet_v2", options)
    width = options.width_mult
    stem = make_divisible(MOBILENET_V2_STEM * width)
    blocks = [BlockConfig("conv", options.in_channels, stem, 3, 2, activation="relu6")]
    channels = stem
    for expand_ratio, paper_channels, repeats, first_stride in MOBILENET_V2_BODY:
        out_channels = make_divisible(int(paper_channels * width))  # Keras rounds int(c·α)
        for i in range(repeats):
            blocks.append(
                BlockConfig(
                    "inverted_residual",
                    channels,
                    out_channels,
                    3,
                    first_stride if i == 0 else 1,
                    activation="relu6",
                    expanded_channels=channels * expand_ratio,
                )
            )
            channels = out_channels
    # The paper keeps 1280 for α < 1 ("we do not apply the width multiplier to the last
    # convolutional layer") and scales it above 1, as Keras and torchvision do.
    last = make_divisible(MOBILENET_V2_LAST * width) if width > 1.0 else MOBILENET_V2_LAST
    blocks.append(BlockConfig("conv", channels, last, 1, 1, activation="relu6"))
    return _zoo_config("mobilenet_v2", blocks, options, dropout=0.2, bn_eps=1e-5)


# --------------------------------------------------------------------------------------------
# MobileNetV3 — Howard et al. 2019, "Searching for MobileNetV3", Table 1 (Large) and Table 2
# (Small). k: depthwise kernel, exp: expansion width, c: output channels, SE: squeeze-and-excite,
# NL: non-linearity (RE = ReLU, HS = hard-swish), s: stride.
# --------------------------------------------------------------------------------------------
MOBILENET_V3_LARGE_BODY = (
    # k, exp, c,   SE,    NL,   s       input
    (3, 16, 16, False, "RE", 1),  # 112²×16
    (3, 64, 24, False, "RE", 2),  # 112²×16
    (3, 72, 24, False, "RE", 1),  # 56²×24
    (5, 72, 40, True, "RE", 2),  # 56²×24
    (5, 120, 40, True, "RE", 1),  # 28²×40
    (5, 120, 40, True, "RE", 1),  # 28²×40
    (3, 240, 80, False, "HS", 2),  # 28²×40
    (3, 200, 80, False, "HS", 1),  # 14²×80
    (3, 184, 80, False, "HS", 1),  # 14²×80
    (3, 184, 80, False, "HS", 1),  # 14²×80
    (3, 480, 112, True, "HS", 1),  # 14²×80
    (3, 672, 112, True, "HS", 1),  # 14²×112
    (5, 672, 160, True, "HS", 2),  # 14²×112
    (5, 960, 160, True, "HS", 1),  # 7²×160
    (5, 960, 160, True, "HS", 1),  # 7²×160
)
MOBILENET_V3_SMALL_BODY = (
    # k, exp, c,  SE,    NL,   s       input
    (3, 16, 16, True, "RE", 2),  # 112²×16
    (3, 72, 24, False, "RE", 2),  # 56²×16
    (3, 88, 24, False, "RE", 1),  # 28²×24
    (5, 96, 40, True, "HS", 2),  # 28²×24
    (5, 240, 40, True, "HS", 1),  # 14²×40
    (5, 240, 40, True, "HS", 1),  # 14²×40
    (5, 120, 48, True, "HS", 1),  # 14²×40
    (5, 144, 48, True, "HS", 1),  # 14²×48
    (5, 288, 96, True, "HS", 2),  # 14²×48
    (5, 576, 96, True, "HS", 1),  # 7²×96
    (5, 576, 96, True, "HS", 1),  # 7²×96
)
MOBILENET_V3_STEM = 16  # conv2d 3×3, stride 2, hard-swish
# Both tables end: conv2d 1×1 (6 × last c: 960 / 576) → pool → 1×1 "NBN" (1280 / 1024) → 1×1 k.
MOBILENET_V3_HEAD = {"mobilenet_v3_large": 1280, "mobilenet_v3_small": 1024}
_V3_ACTIVATIONS = {"RE": "relu", "HS": "hardswish"}


def _v3_config(name: str, options: ModelOptions, body: tuple) -> ModelConfig:
    _reject_v1_options(name, options)
    width = options.width_mult
    minimal = options.minimalistic  # Keras "minimalistic": 3×3 kernels, ReLU, no SE

    def nonlinearity(code: str) -> str:
        return "relu" if minimal else _V3_ACTIVATIONS[code]

    # The stem keeps 16 channels at every width, as the TF reference and Keras (whose weights
    # are published for α = 0.75 and 1.0) do; torchvision scales it (identical at 0.75 and 1.0).
    stem = MOBILENET_V3_STEM
    blocks = [BlockConfig("conv", options.in_channels, stem, 3, 2, activation=nonlinearity("HS"))]
    channels = stem
    paper_in = MOBILENET_V3_STEM
    for kernel, paper_expanded, paper_out, use_se, code, stride in body:
        out_channels = make_divisible(paper_out * width)
        # The expansion is the paper's ratio exp/in applied to the actual input width, as the
        # reference TF code, Keras and timm do (they agree with the table at α = 1).
        expanded = make_divisible(channels * paper_expanded / paper_in)
        se = make_divisible(expanded / 4) if use_se and not minimal else None  # V3 §5.3: 1/4 of expansion
        blocks.append(
            BlockConfig(
                "inverted_residual",
                channels,
                out_channels,
                3 if minimal else kernel,
                stride,
                activation=nonlinearity(code),
                expanded_channels=expanded,
                se_channels=se,
            )
        )
        channels, paper_in = out_channels, paper_out
    last_conv = make_divisible(channels * 6)
    blocks.append(BlockConfig("conv", channels, last_conv, 1, 1, activation=nonlinearity("HS")))
    hidden = MOBILENET_V3_HEAD[name]
    if width > 1.0:  # as V2, the head is widened only for α > 1 (Keras convention)
        hidden = make_divisible(hidden * width)
    # torchvision and the TF reference use BN epsilon 1e-3 for V3.
    return _zoo_config(
        name,
        blocks,
        options,
        dropout=0.2,
        bn_eps=1e-3,
        bn_momentum=0.01,
        hidden_channels=hidden,
        hidden_activation=nonlinearity("HS"),
    )


def mobilenet_v3_large_config(options: ModelOptions) -> ModelConfig:
    return _v3_config("mobilenet_v3_large", options, MOBILENET_V3_LARGE_BODY)


def mobilenet_v3_small_config(options: ModelOptions) -> ModelConfig:
    return _v3_config("mobilenet_v3_small", options, MOBILENET_V3_SMALL_BODY)


def _reject_v1_options(name: str, options: ModelOptions) -> None:
    if options.depth_multiplier != 1:
        raise ValueError(f"depth_multiplier applies to the MobileNetV1 family only, not {name}")
    if options.activation is not None:
        raise ValueError(f"activation applies to the MobileNetV1 family only, not {name}")
    if options.minimalistic and not name.startswith("mobilenet_v3"):
        raise ValueError(f"minimalistic applies to mobilenet_v3_large/small only, not {name}")


class UnknownModelError(ValueError):
    """A model name that is not in the zoo (`list_models()` names them)."""


CONFIG_BUILDERS: dict[str, Callable[[ModelOptions], ModelConfig]] = {
    "mobilenet_v1": mobilenet_v1_config,
    "conv_mobilenet_v1": conv_mobilenet_v1_config,
    "shallow_mobilenet_v1": shallow_mobilenet_v1_config,
    "mobilenet_v2": mobilenet_v2_config,
    "mobilenet_v3_large": mobilenet_v3_large_config,
    "mobilenet_v3_small": mobilenet_v3_small_config,
}


def list_models() -> list[str]:
    return list(CONFIG_BUILDERS)


V1_FAMILY = ("mobilenet_v1", "conv_mobilenet_v1", "shallow_mobilenet_v1")


def recorded_options(config: ModelConfig) -> dict:
    """The ModelOptions a config of a zoo model embodies, each read where the builders above put it:
    the MobileNetV1 family's activation on every block and depth_multiplier on its separable blocks
    (V2/V3 take neither option, so neither is reported for them)."""
    options = {
        "width_mult": config.width_mult,
        "resolution": config.resolution,
        "in_channels": config.in_channels,
        "padding": config.padding,
        "bn_eps": config.bn_eps,
        "stem_stride": config.blocks[0].stride,
        "minimalistic": config.minimalistic,
    }
    if config.name in V1_FAMILY:
        separable = [block for block in config.blocks if block.kind == "separable"]
        options["activation"] = config.blocks[0].activation
        options["depth_multiplier"] = separable[0].depth_multiplier if separable else 1
    return options


def check_model_name(name: str) -> None:
    """Raise `UnknownModelError`, naming the zoo's models, unless `name` is one of them."""
    if name not in CONFIG_BUILDERS:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(CONFIG_BUILDERS)}")


def model_config(name: str, **options: Any) -> ModelConfig:
    """The config of a zoo model: `model_config("mobilenet_v1", width_mult=0.5, resolution=160)`."""
    check_model_name(name)
    chosen = ModelOptions.from_kwargs(options)
    config = CONFIG_BUILDERS[name](chosen)
    if chosen.stem_stride != 2:  # every model's block 0 is its stride-2 stem convolution
        stem = dataclasses.replace(config.blocks[0], stride=chosen.stem_stride)
        config = config.replace(blocks=(stem,) + config.blocks[1:])
    return config
