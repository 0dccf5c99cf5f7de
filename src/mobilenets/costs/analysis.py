"""Per-layer parameters and mult-adds, computed from a `ModelConfig` alone.

Counting convention (MobileNet paper §3.1, Tables 2-9): mult-adds of every convolution and fully
connected layer (one multiply-accumulate each); BatchNorm, activations, pooling, the SE gate's
multiply and residual additions are not counted. Params are convolution and FC weights plus their
biases (the FC bias, and in V3 the SE and head biases); BatchNorm's γ and β are reported
separately (`params_with_norm`), its running statistics never (they are not trained).

`hook_costs` measures the same numbers on a real model with forward hooks, so tests can check
that the analytic table and the model agree layer by layer.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..config import LayerSpec, ModelConfig, iter_layers
from ..layers import resolve_padding
from ..zoo import model_config


@dataclass(frozen=True)
class LayerCost:
    name: str  # the module path in `MobileNet`, e.g. "features.1.dw.conv"
    type: str  # "Conv 3×3", "Conv DW 3×3", "Conv 1×1", "SE 1×1", "FC"
    stride: int
    filter_shape: tuple[int, ...]  # paper notation: K×K×M×N, depthwise K×K×M (×multiplier)
    input_shape: tuple[int, int, int]  # H×W×C
    output_shape: tuple[int, int, int]
    weights: int
    bias: int
    norm_params: int  # γ and β of the BatchNorm that follows, 0 if none
    mult_adds: int

    @property
    def params(self) -> int:
        return self.weights + self.bias


def conv_output_size(
    size: int, kernel_size: int, stride: int, dilation: int, padding: str, depthwise: bool = False
) -> int:
    resolved = resolve_padding(padding, kernel_size, stride, dilation, depthwise)
    if resolved == "same":
        return math.ceil(size / stride)
    # a tuple: Keras's fixed ZeroPadding before a "valid" convolution; otherwise "torch": symmetric
    total = sum(resolved[:2]) if isinstance(resolved, tuple) else 2 * (dilation * (kernel_size - 1) // 2)
    return (size + total - dilation * (kernel_size - 1) - 1) // stride + 1


def _resolution_pair(resolution: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(resolution, int):
        return resolution, resolution
    height, width = resolution
    return int(height), int(width)


def _layer_type(layer: LayerSpec) -> tuple[str, tuple[int, ...]]:
    """The paper's layer type (Table 1) and filter shape."""
    k, in_channels, out_channels = layer.kernel_size, layer.in_channels, layer.out_channels
    if layer.op == "depthwise":
        multiplier = (out_channels // in_channels,) if out_channels != in_channels else ()
        return f"Conv DW {k}×{k}", (k, k, in_channels) + multiplier
    if layer.op == "se":
        return "SE 1×1", (1, 1, in_channels, out_channels)
    if layer.op == "linear":
        return "FC", (in_channels, out_channels)
    return f"Conv {k}×{k}", (k, k, in_channels, out_channels)


def layer_costs(config: ModelConfig, resolution: int | tuple[int, int] | None = None) -> list[LayerCost]:
    """Every conv and FC layer of the model `config` describes, at `resolution` (default: the
    config's), in forward order: a fold over `iter_layers` that carries the feature map's size."""
    height, width = _resolution_pair(resolution or config.resolution)
    rows: list[LayerCost] = []
    for layer in iter_layers(config):
        type_, shape = _layer_type(layer)
        if layer.op in ("se", "linear"):  # on the pooled 1×1 map; the body's size carries on unchanged
            in_size = out_size = (1, 1)
        else:
            in_size = height, width
            padding = layer.padding
            assert padding is not None  # iter_layers gives every convolution the config's padding mode
            height, width = (
                conv_output_size(
                    size,
                    layer.kernel_size,
                    layer.stride,
                    layer.dilation,
                    padding,
                    layer.op == "depthwise",
                )
                for size in in_size
            )
            out_size = height, width
        per_output = (layer.in_channels // layer.groups) * layer.kernel_size**2
        rows.append(
            LayerCost(
                layer.path,
                type_,
                layer.stride,
                shape,
                (*in_size, layer.in_channels),
                (*out_size, layer.out_channels),
                weights=layer.out_channels * per_output,
                bias=layer.out_channels if layer.bias else 0,
                norm_params=2 * layer.out_channels if layer.norm else 0,
                mult_adds=out_size[0] * out_size[1] * layer.out_channels * per_output,
            )
        )
    return rows


@dataclass(frozen=True)
class SeparableComparison:
    """A depthwise separable block against the standard convolution it replaces (paper §3.1)."""

    name: str
    kernel_size: int
    in_channels: int  # M
    out_channels: int  # N
    output_size: tuple[int, int]  # D_F × D_F (after the stride)
    separable_mult_adds: int
    standard_mult_adds: int
    separable_params: int
    standard_params: int

    @property
    def ratio(self) -> float:
        return self.separable_mult_adds / self.standard_mult_adds

    @property
    def formula(self) -> float:
        """1/N + 1/D_K², the paper's eq. (5) reduction."""
        return 1 / self.out_channels + 1 / self.kernel_size**2


def separable_vs_standard(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    feature_size: int | tuple[int, int] = 14,
    depth_multiplier: int = 1,
    name: str = "layer",
) -> SeparableComparison:
    """One layer's cost both ways at output size D_F (paper Table 3)."""
    out_h, out_w = _resolution_pair(feature_size)
    mid = in_channels * depth_multiplier
    k2 = kernel_size * kernel_size
    return SeparableComparison(
        name,
        kernel_size,
        in_channels,
        out_channels,
        (out_h, out_w),
        separable_mult_adds=out_h * out_w * (mid * k2 + mid * out_channels),
        standard_mult_adds=out_h * out_w * in_channels * out_channels * k2,
        separable_params=mid * k2 + mid * out_channels,
        standard_params=in_channels * out_channels * k2,
    )


TYPE_ORDER = ("Conv 1×1", "Conv DW", "Conv", "SE", "FC")  # grouping order of the by-type table


@dataclass
class CostReport:
    model: str
    resolution: tuple[int, int]
    rows: list[LayerCost]
    separable: list[SeparableComparison]

    @property
    def mult_adds(self) -> int:
        return sum(r.mult_adds for r in self.rows)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def weights(self) -> int:
        return sum(r.weights for r in self.rows)

    @property
    def params_with_norm(self) -> int:
        return self.params + sum(r.norm_params for r in self.rows)

    def by_type(self) -> list[dict]:
        """Paper Table 2: share of mult-adds and of parameters per layer type.

        The parameter share is of weights (biases excluded), which is what Table 2 prints.
        """
        groups: dict[str, dict] = {}
        for row in self.rows:
            entry = groups.setdefault(
                row.type, {"type": row.type, "layers": 0, "mult_adds": 0, "weights": 0, "params": 0}
            )
            entry["layers"] += 1
            entry["mult_adds"] += row.mult_adds
            entry["weights"] += row.weights
            entry["params"] += row.params
        total_ma, total_w = self.mult_adds, self.weights
        for entry in groups.values():
            entry["mult_adds_percent"] = 100 * entry["mult_adds"] / total_ma
            entry["weights_percent"] = 100 * entry["weights"] / total_w

        def order(entry):
            t = entry["type"]
            return next(i for i, prefix in enumerate(TYPE_ORDER) if t.startswith(prefix)), t

        return sorted(groups.values(), key=order)

    def totals(self) -> dict:
        return {
            "model": self.model,
            "resolution": list(self.resolution),
            "mult_adds": self.mult_adds,
            "params": self.params,
            "params_with_norm": self.params_with_norm,
            "layers": len(self.rows),
        }

    def to_dict(self) -> dict:
        return {
            **self.totals(),
            "rows": [{**asdict(r), "params": r.params} for r in self.rows],
            "by_type": self.by_type(),
            "separable": [{**asdict(c), "ratio": c.ratio, "formula": c.formula} for c in self.separable],
        }


def cost(
    model: str | ModelConfig | nn.Module, resolution: int | tuple[int, int] | None = None, **options: Any
) -> CostReport:
    """Cost table of a zoo name (with `create_model` options), a `ModelConfig` or a `MobileNet`.

    >>> cost("mobilenet_v1").mult_adds
    568740352
    """
    if isinstance(model, str):
        if resolution is not None and "resolution" not in options and isinstance(resolution, int):
            options["resolution"] = resolution
        config = model_config(model, **options)
    else:
        if options:
            raise TypeError("model options apply to zoo names only; pass a name or set them in the config")
        found = model if isinstance(model, ModelConfig) else getattr(model, "config", None)
        if not isinstance(found, ModelConfig):
            raise TypeError(
                f"cost() takes a model name, a ModelConfig or a MobileNet; got {type(model).__name__}"
            )
        config = found
    rows = layer_costs(config, resolution)
    separable = []
    by_name = {r.name: r for r in rows}
    for index, block in enumerate(config.blocks):
        if block.kind != "separable":
            continue
        dw, pw = by_name[f"features.{index}.dw.conv"], by_name[f"features.{index}.pw.conv"]
        comparison = separable_vs_standard(
            block.in_channels,
            block.out_channels,
            block.kernel_size,
            pw.output_shape[:2],
            block.depth_multiplier,
            f"features.{index}",
        )
        assert comparison.separable_mult_adds == dw.mult_adds + pw.mult_adds  # same formula, two ways
        separable.append(comparison)
    return CostReport(config.name, _resolution_pair(resolution or config.resolution), rows, separable)


def hook_costs(
    model: nn.Module, resolution: int | tuple[int, int] = 224, in_channels: int = 3
) -> dict[str, dict]:
    """Mult-adds and params of every Conv2d and Linear measured on a forward pass with hooks.

    Independent of `layer_costs`: it reads shapes from the tensors that really flow.
    """
    height, width = _resolution_pair(resolution)
    measured: dict[str, dict] = {}
    handles = []

    def hook(name):
        def record(module, inputs, output):
            per_output = module.weight[0].numel()  # (in/groups)·K·K for a conv, in_features for a Linear
            measured[name] = {
                "mult_adds": output[0].numel() * per_output,
                "params": sum(p.numel() for p in module.parameters(recurse=False)),
                # H×W×C like the analytic rows; a Linear's output is a 1×1 map
                "output_shape": (*output.shape[2:], output.shape[1])
                if output.dim() == 4
                else (1, 1, output.shape[1]),
                "input_shape": (*inputs[0].shape[2:], inputs[0].shape[1])
                if inputs[0].dim() == 4
                else (1, 1, inputs[0].shape[1]),
            }

        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, height, width))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return measured


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
FORMATS = ("table", "markdown", "csv", "json")


def _millions(value: int) -> str:
    return f"{value / 1e6:.2f}M"


def _shape(shape: tuple) -> str:
    return "×".join(str(v) for v in shape)


def render_rows(header: list[str], rows: list[list], fmt: str) -> str:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    cells = [[str(c) for c in row] for row in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(header)]
    numeric = [
        all(row[i].replace(",", "").replace(".", "").rstrip("%M").isdigit() for row in cells if row[i])
        for i in range(len(header))
    ]

    def line(values):
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(row) for row in cells])


def render_layers(report: CostReport, fmt: str = "table") -> str:
    header = ["layer", "type", "stride", "filter", "input", "output", "params", "mult-adds"]
    rows = [
        [
            r.name,
            r.type,
            r.stride,
            _shape(r.filter_shape),
            _shape(r.input_shape),
            _shape(r.output_shape),
            f"{r.params:,}" if fmt != "csv" else r.params,
            f"{r.mult_adds:,}" if fmt != "csv" else r.mult_adds,
        ]
        for r in report.rows
    ]
    return render_rows(header, rows, fmt)


def render_by_type(report: CostReport, fmt: str = "table") -> str:
    header = ["type", "layers", "mult-adds", "mult-adds %", "weights", "weights %"]
    rows = [
        [
            e["type"],
            e["layers"],
            e["mult_adds"],
            f"{e['mult_adds_percent']:.2f}%",
            e["weights"],
            f"{e['weights_percent']:.2f}%",
        ]
        for e in report.by_type()
    ]
    return render_rows(header, rows, fmt)


def render_separable(report: CostReport, fmt: str = "table") -> str:
    header = ["block", "D_K", "M", "N", "D_F", "separable", "standard", "ratio", "1/N + 1/D_K²"]
    rows = [
        [
            c.name,
            c.kernel_size,
            c.in_channels,
            c.out_channels,
            _shape(c.output_size),
            _millions(c.separable_mult_adds),
            _millions(c.standard_mult_adds),
            f"{c.ratio:.4f}",
            f"{c.formula:.4f}",
        ]
        for c in report.separable
    ]
    return render_rows(header, rows, fmt)


def render_summary(reports: list[CostReport], fmt: str = "table") -> str:
    header = ["model", "resolution", "mult-adds", "params", "params+BN"]
    rows = [
        [r.model, _shape(r.resolution), f"{r.mult_adds:,}", f"{r.params:,}", f"{r.params_with_norm:,}"]
        for r in reports
    ]
    text = render_rows(header, rows, fmt)
    if len(reports) == 2 and fmt in ("table", "markdown"):
        base, other = reports
        text += (
            f"\n\n{other.model} / {base.model}: {other.mult_adds / base.mult_adds:.2f}× the mult-adds, "
            f"{other.params / base.params:.2f}× the params"
        )
    return text


def render(reports: list[CostReport], fmt: str = "table", by_type: bool = False) -> str:
    """The `mobilenets cost` output: per-layer table(s), totals, and optional breakdowns."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "json":
        payload = [r.to_dict() for r in reports]
        if not by_type:
            for entry in payload:
                entry.pop("by_type")
        return json.dumps(payload[0] if len(payload) == 1 else payload, indent=2)
    parts = []
    for report in reports:
        title = f"{report.model} at {_shape(report.resolution)}"
        parts.append(title if fmt == "table" else f"## {title}" if fmt == "markdown" else f"# {title}")
        parts.append(render_by_type(report, fmt) if by_type else render_layers(report, fmt))
        if report.separable and fmt != "csv":
            parts.append("separable blocks against the standard convolution they replace:")
            parts.append(render_separable(report, fmt))
        if fmt != "markdown":
            parts.append("")
    parts.append(render_summary(reports, fmt))
    return ("\n\n" if fmt == "markdown" else "\n").join(parts)
