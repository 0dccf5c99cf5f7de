"""Frozen dataclasses that describe a MobileNet completely.

A `ModelConfig` is the single source of truth: `models.MobileNet` builds its modules from it,
`costs.cost` computes every layer's parameters and mult-adds from it without building anything,
and it round-trips through a plain dict (and so JSON) to rebuild the identical model.
`iter_layers(config)` is the one walk of the module tree (paths, channels, kernels, strides) that
the cost tables and the weight converters share.

All channel counts in a config are final (width multiplier already applied); the zoo turns the
papers' tables plus user options into configs.
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

BLOCK_KINDS = ("conv", "separable", "inverted_residual")
ACTIVATIONS = ("relu", "relu6", "hardswish", "none")
NORMS = ("batchnorm", "none")
PADDINGS = ("torch", "same", "keras")
MAX_WIDTH_MULT = (
    10  # 10× the paper's widest layer is 10,240 channels; beyond, a typo that allocates terabytes
)


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _plain_number(value: Any) -> Any:
    """NumPy (or other) scalars as Python's int and float, so np.int64(10) is an integer here."""
    if isinstance(value, (bool, int, float)) or not isinstance(value, numbers.Number):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value) if isinstance(value, numbers.Real) else value


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def _check_class_count(value: Any) -> None:
    """num_classes: a positive count, or 0 for no classifier layer (forward gives pooled features)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(
            f"num_classes must be a positive integer, or 0 for pooled features without a classifier; "
            f"got {value!r}"
        )


class FeatureInfo(list):
    """`model.feature_info`: one dict per feature map a features_only model returns (stride,
    channels, block index), with timm's queries on top."""

    def channels(self) -> list[int]:
        """Each map's channel count."""
        return [entry["channels"] for entry in self]

    def reduction(self) -> list[int]:
        """Each map's stride relative to the input (2, 4, 8, 16, 32)."""
        return [entry["stride"] for entry in self]


@dataclass(frozen=True)
class BlockConfig:
    """One block of the network body.

    kind:
      "conv"              K×K convolution → norm → activation (stems, 1×1 head convs, and the
                          full convolutions of conv_mobilenet_v1).
      "separable"         depthwise K×K → norm → act → pointwise 1×1 → norm → act (MobileNetV1).
      "inverted_residual" [1×1 expand → norm → act] → depthwise K×K → norm → act → [SE] →
                          1×1 linear projection → norm, plus the input when shapes allow (V2/V3).
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    dilation: int = 1
    activation: str = "relu"
    # "separable": depthwise channel multiplier (Keras `depth_multiplier`); the pointwise layer
    # then reads in_channels * depth_multiplier channels.
    depth_multiplier: int = 1
    # "inverted_residual": width of the expanded (hidden) layer, t·in in the V2 paper. Equal to
    # in_channels means the 1×1 expansion is skipped.
    expanded_channels: int | None = None
    # "inverted_residual": squeeze-and-excite bottleneck width; None means no SE.
    se_channels: int | None = None

    def __post_init__(self) -> None:
        _check_choice("block kind", self.kind, BLOCK_KINDS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "dilation", "depth_multiplier"):
            _check_positive_int(name, getattr(self, name))
        if self.kind == "inverted_residual":
            if self.expanded_channels is None:
                raise ValueError("an inverted_residual block needs expanded_channels")
            _check_positive_int("expanded_channels", self.expanded_channels)
        elif self.expanded_channels is not None or self.se_channels is not None:
            raise ValueError(
                f"expanded_channels and se_channels apply to inverted_residual blocks, not {self.kind!r}"
            )
        if self.se_channels is not None:
            _check_positive_int("se_channels", self.se_channels)
        if self.kind != "separable" and self.depth_multiplier != 1:
            raise ValueError("depth_multiplier applies to separable blocks only")

    @property
    def has_residual(self) -> bool:
        # V2 paper §3.3: the shortcut is used when the block keeps both resolution and width.
        return self.kind == "inverted_residual" and self.stride == 1 and self.in_channels == self.out_channels

    @property
    def has_expansion(self) -> bool:
        return self.kind == "inverted_residual" and self.expanded_channels != self.in_channels


@dataclass(frozen=True)
class HeadConfig:
    """Classifier: global average pool → [hidden linear → activation] → dropout → linear."""

    in_channels: int
    num_classes: int = 1000
    hidden_channels: int | None = None  # MobileNetV3's 1280/1024-wide layer after pooling
    hidden_activation: str = "none"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_positive_int("head in_channels", self.in_channels)
        _check_class_count(self.num_classes)
        if self.hidden_channels is not None:
            _check_positive_int("hidden_channels", self.hidden_channels)
        _check_choice("hidden_activation", self.hidden_activation, ACTIVATIONS)
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")


@dataclass(frozen=True)
class ModelConfig:
    """A whole network: body blocks, optional classifier head, and network-wide conventions."""

    name: str
    blocks: tuple[BlockConfig, ...]
    head: HeadConfig | None  # None: feature-extraction mode, forward returns the feature maps
    in_channels: int = 3
    resolution: int = 224  # the nominal input size (ρ·224); costs are computed at this size
    padding: str = "torch"  # "torch": symmetric k//2; "same": TensorFlow/Keras asymmetric; "keras": as
    # Keras applications build it (layers.keras_padding), needed for Keras weights at odd input sizes
    norm: str = "batchnorm"
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1  # PyTorch convention (Keras momentum m ↔ 1 - m here)
    width_mult: float = 1.0  # recorded for reference; channel counts above already include it
    minimalistic: bool = False  # MobileNetV3 "minimalistic" (Keras): recorded; the blocks above include it
    # features_only: which of the feature maps (indices into every stride's last block, 0 = stride
    # 2) forward returns; None returns all of them
    out_indices: tuple[int, ...] | None = None
    # What is not architecture: "source" and "weights" (provenance), and for converted or published
    # weights their "preprocessing" recipe and "class_names" (the list of names, or None).
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ValueError("a model needs at least one block")
        _check_positive_int("in_channels", self.in_channels)
        _check_positive_int("resolution", self.resolution)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("norm", self.norm, NORMS)
        if not isinstance(self.minimalistic, bool):
            raise ValueError(f"minimalistic must be true or false; got {self.minimalistic!r}")
        if self.blocks[0].in_channels != self.in_channels:
            raise ValueError(
                f"first block reads {self.blocks[0].in_channels} channels but in_channels is "
                f"{self.in_channels}"
            )
        for i, (prev, block) in enumerate(itertools.pairwise(self.blocks), start=1):
            if block.in_channels != prev.out_channels:
                raise ValueError(
                    f"block {i} reads {block.in_channels} channels but block {i - 1} writes "
                    f"{prev.out_channels}"
                )
        self._check_out_indices()
        if self.head is not None and self.head.in_channels != self.blocks[-1].out_channels:
            raise ValueError(
                f"head reads {self.head.in_channels} channels but the last block writes "
                f"{self.blocks[-1].out_channels}"
            )

    def _check_out_indices(self) -> None:
        if self.out_indices is None:
            return
        if self.head is not None:
            raise ValueError("out_indices picks feature maps: it needs features_only=True")
        strides = [entry["stride"] for entry in self.all_feature_info()]
        levels, indices = len(strides), self.out_indices

        def valid(index: Any) -> bool:
            return isinstance(index, int) and not isinstance(index, bool) and -levels <= index < levels

        if not isinstance(indices, tuple) or not indices or not all(valid(i) for i in indices):
            raise ValueError(
                f"out_indices must be a non-empty sequence of indices into the {levels} feature maps "
                f"(0 to {levels - 1}, strides {', '.join(map(str, strides))}); got {indices!r}"
            )
        if len({i % levels for i in indices}) != len(indices):
            raise ValueError(f"out_indices names a feature map twice: {indices!r}")

    @property
    def num_classes(self) -> int | None:
        return None if self.head is None else self.head.num_classes

    def feature_info(self) -> FeatureInfo:
        """The feature maps a features_only model returns, in order: those `out_indices` picks, or
        one per output stride (2, 4, 8, ...), each a dict with keys stride, channels, block (index
        of the last block producing that stride)."""
        every = self.all_feature_info()
        if self.out_indices is None:
            return FeatureInfo(every)
        return FeatureInfo(every[i] for i in sorted(i % len(every) for i in self.out_indices))

    def all_feature_info(self) -> list[dict]:
        """The multi-scale feature maps: for each output stride, the last block that produces it."""
        info: list[dict] = []
        total_stride = 1
        for index, block in enumerate(self.blocks):
            total_stride *= block.stride
            if info and info[-1]["stride"] == total_stride:
                info[-1] = {"stride": total_stride, "channels": block.out_channels, "block": index}
            else:
                info.append({"stride": total_stride, "channels": block.out_channels, "block": index})
        return [entry for entry in info if entry["stride"] > 1]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        data = dict(data)
        if "minimalistic" in data.get("extra", {}) and "minimalistic" not in data:
            # configs written before minimalistic was a field kept it in extra
            extra = dict(data["extra"])
            data["minimalistic"] = bool(extra.pop("minimalistic"))
            data["extra"] = extra
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        data["blocks"] = tuple(BlockConfig(**b) for b in data["blocks"])
        if data.get("head") is not None:
            data["head"] = HeadConfig(**data["head"])
        if data.get("out_indices") is not None:  # JSON has lists
            data["out_indices"] = tuple(data["out_indices"])
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class LayerSpec:
    """One convolution or linear layer of the model a config describes.

    path:   module path in `MobileNet`, e.g. "features.3.dw.conv"
    op:     "conv" (full or 1×1), "depthwise", "se" (a squeeze-and-excite 1×1 convolution with bias,
            on the pooled 1×1 map) or "linear" (the classifier head)
    block:  index in config.blocks, or None for the head
    part:   which layer of the block: "conv", "dw", "pw", "expand", "se_reduce", "se_expand",
            "project", "hidden" or "fc"
    padding: the config's padding mode for convolutions ("torch", "same", "keras"), None otherwise;
            `layers.resolve_padding` turns it into what this layer applies
    norm:   a norm layer follows, at `norm_path`
    """

    path: str
    op: str
    block: int | None
    part: str
    in_channels: int
    out_channels: int
    kernel_size: int = 1
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    padding: str | None = None
    bias: bool = False
    norm: bool = False

    @property
    def norm_path(self) -> str:
        return self.path.rsplit(".", 1)[0] + ".norm"


def iter_layers(config: ModelConfig) -> Iterator[LayerSpec]:
    """Every convolution and linear layer of the model `config` describes, in forward order: the one
    walk of the module tree that the cost tables and the weight converters share."""
    norm = config.norm != "none"

    def conv(
        index: int,
        path: str,
        part: str,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
    ) -> LayerSpec:
        # Without a norm layer a bias is the only shift the layer has.
        return LayerSpec(
            f"features.{index}.{path}",
            "depthwise" if groups > 1 else "conv",
            index,
            part,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            dilation,
            groups,
            config.padding,
            bias=not norm,
            norm=norm,
        )

    for index, block in enumerate(config.blocks):
        k, s, d = block.kernel_size, block.stride, block.dilation
        if block.kind == "conv":
            yield conv(index, "conv", "conv", block.in_channels, block.out_channels, k, s, d)
        elif block.kind == "separable":
            expanded = block.in_channels * block.depth_multiplier
            yield conv(index, "dw.conv", "dw", block.in_channels, expanded, k, s, d, groups=block.in_channels)
            yield conv(index, "pw.conv", "pw", expanded, block.out_channels)
        else:
            assert block.expanded_channels is not None  # BlockConfig requires it of inverted_residual blocks
            expanded = block.expanded_channels
            if block.has_expansion:
                yield conv(index, "expand.conv", "expand", block.in_channels, expanded)
            yield conv(index, "dw.conv", "dw", expanded, expanded, k, s, d, groups=expanded)
            if block.se_channels:
                yield LayerSpec(
                    f"features.{index}.se.reduce",
                    "se",
                    index,
                    "se_reduce",
                    expanded,
                    block.se_channels,
                    bias=True,
                )
                yield LayerSpec(
                    f"features.{index}.se.expand",
                    "se",
                    index,
                    "se_expand",
                    block.se_channels,
                    expanded,
                    bias=True,
                )
            yield conv(index, "project.conv", "project", expanded, block.out_channels)
    head = config.head
    if head is not None:
        if head.hidden_channels:
            yield LayerSpec(
                "head.hidden", "linear", None, "hidden", head.in_channels, head.hidden_channels, bias=True
            )
        if head.num_classes == 0:  # pooled features: no classifier layer
            return
        yield LayerSpec(
            "head.fc",
            "linear",
            None,
            "fc",
            head.hidden_channels or head.in_channels,
            head.num_classes,
            bias=True,
        )


def flag_field(default: Any, flag: str, help: str, **extra: Any) -> Any:
    """A dataclass field that the command line offers as `flag` (cli.options generates the flags)."""
    return field(default=default, metadata={"flag": flag, "help": help, **extra})


@dataclass(frozen=True)
class ModelOptions:
    """What a user may choose when creating a zoo model; `create_model(name, **options)` and the
    CLI flags are both generated from these fields. None means "the architecture's default"."""

    width_mult: float = flag_field(1.0, "--width", "width multiplier α (any positive number)")
    resolution: int = flag_field(224, "--resolution", "nominal input size ρ·224 (≥ 32); costs use it")
    num_classes: int = flag_field(1000, "--num-classes", "classifier outputs")
    in_channels: int = flag_field(3, "--in-channels", "input image channels")
    dropout: float | None = flag_field(None, "--dropout", "dropout before the classifier (default per model)")
    padding: str = flag_field(
        "torch",
        "--padding",
        "'torch' (symmetric k//2), 'same' (TensorFlow) or 'keras' "
        "(Keras applications: 'same' plus fixed padding before strided depthwise layers)",
        choices=PADDINGS,
    )
    depth_multiplier: int = flag_field(1, "--depth-multiplier", "MobileNetV1 depthwise channel multiplier")
    activation: str | None = flag_field(
        None,
        "--activation",
        "MobileNetV1 activation: relu (paper) or relu6 (Keras)",
        choices=("relu", "relu6"),
    )
    minimalistic: bool = flag_field(
        False, "--minimalistic", "MobileNetV3 without SE, hard-swish and 5×5 kernels"
    )
    features_only: bool = flag_field(False, "--features-only", "no classifier; forward returns feature maps")
    # Python only (create_model's out_indices=): which feature maps a features_only model returns
    out_indices: tuple[int, ...] | None = None
    stem_stride: int = flag_field(
        2,
        "--stem-stride",
        "stride of the first convolution: 2 as the papers, 1 for small (CIFAR-size, ≤ 64 px) inputs",
        choices=(1, 2),
    )
    bn_eps: float | None = flag_field(None, "--bn-eps", "BatchNorm epsilon (default per model)")

    def __post_init__(self) -> None:
        w = self.width_mult
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= MAX_WIDTH_MULT:
            raise ValueError(
                f"width_mult must be a positive number up to {MAX_WIDTH_MULT} "
                f"(e.g. 0.25, 0.5, 0.75, 1.0); got {w!r}"
            )
        r = self.resolution
        if isinstance(r, bool) or not isinstance(r, int) or r < 32:
            raise ValueError(f"resolution must be an integer ≥ 32 (e.g. 128, 160, 192, 224); got {r!r}")
        _check_class_count(self.num_classes)
        _check_positive_int("in_channels", self.in_channels)
        _check_positive_int("depth_multiplier", self.depth_multiplier)
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2; got {self.stem_stride!r}")
        if self.dropout is not None and not (
            isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1
        ):
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")
        _check_choice("padding", self.padding, PADDINGS)
        if self.activation is not None:
            _check_choice("activation", self.activation, ("relu", "relu6"))
        if self.bn_eps is not None and not (isinstance(self.bn_eps, (int, float)) and self.bn_eps > 0):
            raise ValueError(f"bn_eps must be a positive number; got {self.bn_eps!r}")

    @classmethod
    def from_kwargs(cls, options: dict) -> ModelOptions:
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"unknown model option(s) {', '.join(unknown)}; available: {', '.join(known)}")
        return cls(**{name: _plain_number(value) for name, value in options.items()})
