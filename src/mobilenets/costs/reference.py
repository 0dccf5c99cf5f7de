"""The popular models the MobileNet paper compares against (Tables 8 and 9), as plain PyTorch
modules for cost and speed comparison (random weights; no published weights are loaded).

    VGG16       Simonyan & Zisserman 2014, configuration D (Table 1), 224×224
    GoogLeNet   Szegedy et al. 2014, Table 1, 224×224, *without* the two auxiliary classifiers:
                they exist only during training, and the paper's 6.8M / 1.5G counts leave them out
                (with them the network has 13.0M params). The 5×5 branches are real 5×5
                convolutions, as in the paper (torchvision's GoogLeNet uses 3×3 there).
    AlexNet     Krizhevsky et al. 2012, 227×227, with the paper's two-GPU *grouped* convolutions
                (conv2, conv4, conv5 split in 2 groups): each output reads half the input channels,
                which is what makes the 720M mult-adds / 60M params of the MobileNet paper's Table 9
                (ungrouped it would be 1.14G). LocalResponseNorm layers included (they cost no
                mult-adds in the paper's count).
    SqueezeNet  Iandola et al. 2016, SqueezeNet 1.0 (Table 1), 224×224.
    ResNet-50   He et al. 2015, Table 1, 224×224, stride in the 3×3 conv of each bottleneck (the
                torchvision "v1.5" layout, whose published top-1 we quote).

Each module has `features`, `head` and a `config` (`ReferenceConfig`: name, native resolution,
input channels, classes) so the benchmark code that times MobileNets times these alike. Costs are
measured with forward hooks (`cost.hook_costs`): these models have no `ModelConfig`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import nn

from ..models import MobileNet
from .accuracy import citation, paper_comparison
from .analysis import CostReport, LayerCost, cost, hook_costs, render, render_rows


@dataclass(frozen=True)
class ReferenceConfig:
    """What the timing code needs to know about a reference model. `blocks` is empty: it has no
    depthwise separable blocks, so it has no full-convolution twin."""

    name: str
    resolution: int
    in_channels: int = 3
    num_classes: int = 1000
    blocks: tuple = ()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "resolution": self.resolution,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "reference_model": True,
        }


class ReferenceModel(nn.Module):
    def __init__(self, config: ReferenceConfig, features: nn.Module, head: nn.Module):
        super().__init__()
        self.config = config
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# What the benchmarks, the profiler and `export` take: a MobileNet, or a reference network timed
# beside it. Both have the `config` fields they read (name, resolution, in_channels, num_classes).
AnyModel = MobileNet | ReferenceModel


def _conv_relu(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, groups: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups),
        nn.ReLU(inplace=True),
    ]


def _mlp_head(in_features: int, hidden: int, num_classes: int) -> nn.Sequential:
    """VGG's and AlexNet's classifier: two hidden FC layers with ReLU and dropout 0.5."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


# --------------------------------------------------------------------------------------------
# VGG16 — configuration D: 3×3 convolutions, max-pool after each stage
# --------------------------------------------------------------------------------------------
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, convolutions)


def vgg16(num_classes: int = 1000) -> ReferenceModel:
    layers: list[nn.Module] = []
    channels = 3
    for width, repeats in VGG16_STAGES:
        for _ in range(repeats):
            layers += _conv_relu(channels, width, 3, padding=1)
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
    return ReferenceModel(
        ReferenceConfig("vgg16", 224, num_classes=num_classes),
        nn.Sequential(*layers),
        _mlp_head(512 * 7 * 7, 4096, num_classes),
    )


# --------------------------------------------------------------------------------------------
# GoogLeNet — Table 1 of Szegedy et al.: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj
# --------------------------------------------------------------------------------------------
class Inception(nn.Module):
    def __init__(
        self, in_channels: int, ch1: int, ch3_reduce: int, ch3: int, ch5_reduce: int, ch5: int, pool_proj: int
    ):
        super().__init__()
        self.branch1 = nn.Sequential(*_conv_relu(in_channels, ch1, 1))
        self.branch3 = nn.Sequential(
            *_conv_relu(in_channels, ch3_reduce, 1), *_conv_relu(ch3_reduce, ch3, 3, padding=1)
        )
        self.branch5 = nn.Sequential(
            *_conv_relu(in_channels, ch5_reduce, 1), *_conv_relu(ch5_reduce, ch5, 5, padding=2)
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, 1, padding=1), *_conv_relu(in_channels, pool_proj, 1)
        )
        self.out_channels = ch1 + ch3 + ch5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], 1)


GOOGLENET_INCEPTIONS = (  # name, the six widths of Table 1; "pool" marks a 3×3/2 max-pool before it
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    ("pool", None),
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    ("pool", None),
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
)


def googlenet(num_classes: int = 1000) -> ReferenceModel:
    layers: list[nn.Module] = [
        *_conv_relu(3, 64, 7, 2, 3),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(5),
        *_conv_relu(64, 64, 1),
        *_conv_relu(64, 192, 3, padding=1),
        nn.LocalResponseNorm(5),
        nn.MaxPool2d(3, 2, ceil_mode=True),
    ]
    channels = 192
    for _name, widths in GOOGLENET_INCEPTIONS:
        if widths is None:
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            continue
        block = Inception(channels, *widths)
        layers.append(block)
        channels = block.out_channels
    head = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4), nn.Linear(channels, num_classes)
    )
    return ReferenceModel(
        ReferenceConfig("googlenet", 224, num_classes=num_classes), nn.Sequential(*layers), head
    )


# --------------------------------------------------------------------------------------------
# AlexNet — the two-GPU original: conv2, conv4 and conv5 in two groups
# --------------------------------------------------------------------------------------------
ALEXNET_GROUPS = 2


def alexnet(num_classes: int = 1000) -> ReferenceModel:
    layers = [
        *_conv_relu(3, 96, 11, 4),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.MaxPool2d(3, 2),
        *_conv_relu(96, 256, 5, padding=2, groups=ALEXNET_GROUPS),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.MaxPool2d(3, 2),
        *_conv_relu(256, 384, 3, padding=1),
        *_conv_relu(384, 384, 3, padding=1, groups=ALEXNET_GROUPS),
        *_conv_relu(384, 256, 3, padding=1, groups=ALEXNET_GROUPS),
        nn.MaxPool2d(3, 2),
    ]
    return ReferenceModel(
        ReferenceConfig("alexnet", 227, num_classes=num_classes),
        nn.Sequential(*layers),
        _mlp_head(256 * 6 * 6, 4096, num_classes),
    )


# --------------------------------------------------------------------------------------------
# SqueezeNet 1.0 — fire modules: squeeze 1×1, then expand 1×1 and 3×3 concatenated
# --------------------------------------------------------------------------------------------
class Fire(nn.Module):
    def __init__(self, in_channels: int, squeeze: int, expand1: int, expand3: int):
        super().__init__()
        self.squeeze = nn.Sequential(*_conv_relu(in_channels, squeeze, 1))
        self.expand1 = nn.Sequential(*_conv_relu(squeeze, expand1, 1))
        self.expand3 = nn.Sequential(*_conv_relu(squeeze, expand3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1(x), self.expand3(x)], 1)


SQUEEZENET_FIRES = (
    (96, 16, 64),
    (128, 16, 64),
    (128, 32, 128),
    "pool",
    (256, 32, 128),
    (256, 48, 192),
    (384, 48, 192),
    (384, 64, 256),
    "pool",
    (512, 64, 256),
)  # in, squeeze, expand (each)


def squeezenet(num_classes: int = 1000) -> ReferenceModel:
    layers: list[nn.Module] = [*_conv_relu(3, 96, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True)]
    for fire in SQUEEZENET_FIRES:
        layers.append(
            nn.MaxPool2d(3, 2, ceil_mode=True)
            if isinstance(fire, str)  # "pool"
            else Fire(fire[0], fire[1], fire[2], fire[2])
        )
    head = nn.Sequential(
        nn.Dropout(0.5), *_conv_relu(512, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    return ReferenceModel(
        ReferenceConfig("squeezenet", 224, num_classes=num_classes), nn.Sequential(*layers), head
    )


# --------------------------------------------------------------------------------------------
# ResNet-50 — bottleneck blocks 1×1 → 3×3 → 1×1 (×4), BatchNorm, projection shortcuts
# --------------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


RESNET50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # width, blocks, first stride


def resnet50(num_classes: int = 1000) -> ReferenceModel:
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    channels = 64
    for width, blocks, stride in RESNET50_STAGES:
        for i in range(blocks):
            layers.append(Bottleneck(channels, width, stride if i == 0 else 1))
            channels = width * Bottleneck.expansion
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    return ReferenceModel(
        ReferenceConfig("resnet50", 224, num_classes=num_classes), nn.Sequential(*layers), head
    )


# --------------------------------------------------------------------------------------------
# Registry and costs
# --------------------------------------------------------------------------------------------
REFERENCE_MODELS = {
    "vgg16": vgg16,
    "googlenet": googlenet,
    "alexnet": alexnet,
    "squeezenet": squeezenet,
    "resnet50": resnet50,
}


def is_reference_model(name: str) -> bool:
    return name in REFERENCE_MODELS


def create_reference_model(name: str, seed: int = 0) -> ReferenceModel:
    """A reference architecture with random weights from `seed`, in eval mode."""
    if name not in REFERENCE_MODELS:
        raise ValueError(f"unknown reference model {name!r}; available: {', '.join(REFERENCE_MODELS)}")
    torch.manual_seed(seed)
    return REFERENCE_MODELS[name]().eval()


def layer_type(module: nn.Conv2d | nn.Linear) -> str:
    """Cost-table type of a Conv2d or Linear: "Conv 3×3", "Conv DW 3×3", "Conv 5×5 /2 groups", "FC"."""
    if isinstance(module, nn.Linear):
        return "FC"
    k = module.kernel_size[0]
    if module.groups == 1:
        return f"Conv {k}×{k}"
    if module.groups == module.in_channels:
        return f"Conv DW {k}×{k}"
    return f"Conv {k}×{k} /{module.groups} groups"


def reference_cost(model: ReferenceModel | str) -> CostReport:
    """Per-layer params and mult-adds of a reference model at its native resolution, counted as
    `cost.cost` counts a MobileNet (every conv and FC; BatchNorm γ/β reported separately), but
    measured with forward hooks on the module. Rows are in execution order."""
    if isinstance(model, str):
        model = create_reference_model(model)
    resolution = model.config.resolution
    measured = hook_costs(model, resolution, model.config.in_channels)
    modules = dict(model.named_modules())
    norm_after: dict[str, int] = {}  # BatchNorm γ and β, given to the convolution registered before it
    last_conv = None
    for name, module in modules.items():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            last_conv = name
        elif isinstance(module, nn.BatchNorm2d) and last_conv is not None:
            norm_after[last_conv] = norm_after.get(last_conv, 0) + 2 * module.num_features
    rows = []
    for name, entry in measured.items():
        module = modules[name]
        assert isinstance(module, (nn.Conv2d, nn.Linear))  # all that hook_costs measures
        bias = 0 if module.bias is None else module.bias.numel()
        filter_shape: tuple[int, ...]
        if isinstance(module, nn.Linear):
            stride, filter_shape = 1, (module.in_features, module.out_features)
        else:
            k = module.kernel_size[0]
            stride = module.stride[0]
            filter_shape = (k, k, module.in_channels // module.groups, module.out_channels)
        rows.append(
            LayerCost(
                name,
                layer_type(module),
                stride,
                filter_shape,
                tuple(entry["input_shape"]),
                tuple(entry["output_shape"]),
                weights=module.weight.numel(),
                bias=bias,
                norm_params=norm_after.get(name, 0),
                mult_adds=entry["mult_adds"],
            )
        )
    return CostReport(model.config.name, (resolution, resolution), rows, [])


# --------------------------------------------------------------------------------------------
# `mobilenets cost MODEL --compare A,B`: the paper's Tables 8 and 9
# --------------------------------------------------------------------------------------------
def model_cost(name: str, options: dict) -> CostReport:
    """A zoo MobileNet's exact cost from its config (with `options`), or a reference model's, which
    is fixed: its native resolution, no options."""
    if is_reference_model(name):
        return reference_cost(name)
    return cost(name, **options)


def compare_costs(model: str, compare: str | None, options: dict) -> list[CostReport]:
    """`model` with `options`, then each comma-separated name of `compare`: zoo models get the same
    options (except depth_multiplier), reference models their own paper resolution."""
    if is_reference_model(model) and options:
        raise ValueError(
            f"model options ({', '.join(sorted(options))}) apply to MobileNets, not to the "
            f"reference model {model}; drop them"
        )
    others = [part.strip() for part in (compare or "").split(",") if part.strip()]
    shared = {k: v for k, v in options.items() if k != "depth_multiplier"}
    return [model_cost(model, options)] + [model_cost(name, shared) for name in others]


def _published_row(report: CostReport, options: dict) -> dict | None:
    if is_reference_model(report.model):
        return paper_comparison(report.model)
    return paper_comparison(report.model, float(options.get("width_mult", 1.0)), report.resolution[0])


def _paper_millions(row: dict | None, key: str) -> str:
    """A paper's figure from a published row, in millions ("" where the paper gives none)."""
    return "" if row is None or row[key] is None else f"{row[key]:g}M"


def render_paper_comparison(reports: list[CostReport], options: dict, fmt: str = "table") -> str:
    """Our exact counts beside the paper's rounded ones and the published ImageNet top-1."""
    rows: list[list[str]] = []
    notes: dict[str, int] = {}
    for report in reports:
        row = _published_row(report, options)
        source = ""
        if row is not None:
            notes.setdefault(row["source"], len(notes) + 1)
            source = f"[{notes[row['source']]}] {row['table']}"
        rows.append(
            [
                report.model,
                f"{report.resolution[0]}×{report.resolution[1]}",
                "" if row is None else f"{row['top1']:.2f}".rstrip("0").rstrip(".") + "%",
                f"{report.mult_adds / 1e6:,.1f}M",
                _paper_millions(row, "paper_mult_adds_millions"),
                f"{report.params / 1e6:,.2f}M",
                _paper_millions(row, "paper_params_millions"),
                source,
            ]
        )
    header = ["model", "input", "ImageNet top-1", "mult-adds", "paper", "params", "paper", "source"]
    text = render_rows(header, rows, fmt)
    if fmt != "csv":
        text += "\n" + "\n".join(f"[{number}] {citation(source)}" for source, number in notes.items())
    return text


def render_cost_comparison(
    reports: list[CostReport], options: dict, fmt: str = "table", by_type: bool = False
) -> str:
    """The `mobilenets cost` output, with the paper-comparison table after it when a reference
    model is involved (in JSON: each report gains `published`)."""
    text = render(reports, fmt, by_type=by_type)
    if not any(is_reference_model(r.model) for r in reports):
        return text
    if fmt == "json":
        payload = json.loads(text)
        entries = [payload] if len(reports) == 1 else payload  # render() writes one report unlisted
        for entry, report in zip(entries, reports, strict=True):
            row = _published_row(report, options)
            entry["published"] = None if row is None else {**row, "citation": citation(row["source"])}
        return json.dumps(payload, indent=2)
    return text + "\n\n" + render_paper_comparison(reports, options, fmt)
