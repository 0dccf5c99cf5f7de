"""Which MobileNet fits a latency budget on this machine: every configuration with published
ImageNet weights, timed here on the chosen backend, against its published top-1.

    mobilenets choose --budget-ms 10 --backend onnxruntime --families v1,v2,v3 --with-popular

Method: each configuration is built with random weights (the weights do not change the speed),
prepared as `bench` prepares it for the backend (BatchNorm folded, ONNX export, int8
quantization...; not timed), then all are timed in interleaved rounds (`timing.time_interleaved`),
so load from other programs hits every candidate alike. The latency is the fastest round: load from
other programs only ever adds time, and on a shared machine it stretches medians several times over
(measured here beside a training run: one model's rounds ranged from 12 to 49 ms); the median is
printed beside it.
Top-1 comes from `data_files/imagenet_top1.json`, where every number cites its source. The
Pareto front: the configurations no other one beats on both latency and top-1.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..costs.accuracy import citation, paper_comparison, published_configurations
from ..costs.analysis import cost, render_rows
from ..costs.reference import AnyModel, create_reference_model, reference_cost
from ..factory import create_model
from ..figures import figure
from .bench import BACKENDS, PreparedModel, make_runner
from .cpu import machine_description
from .timing import best, measuring, time_interleaved

FAMILIES = ("v1", "v2", "v3")
POPULAR = ("resnet50", "googlenet", "vgg16")
FORMATS = ("table", "markdown", "csv", "json")


@dataclass
class Candidate:
    label: str  # "mobilenet_v2 0.75 160", "mobilenet_v3_small 1.0 minimalistic", "resnet50"
    model: str
    options: dict
    top1: float
    source: str  # key of the accuracy data file's sources
    mult_adds: int
    params: int
    times_ms: list[float]
    reference: bool = False
    on_front: bool = False

    @property
    def latency_ms(self) -> float:
        return best(self.times_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "model": self.model,
            "options": self.options,
            "top1": self.top1,
            "source": self.source,
            "mult_adds": self.mult_adds,
            "params": self.params,
            "latency_ms": self.latency_ms,
            "median_ms": self.median_ms,
            "times_ms": self.times_ms,
            "reference": self.reference,
            "on_front": self.on_front,
        }


def parse_families(text: str) -> tuple[str, ...]:
    families = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(
            f"unknown family {(unknown or [text])[0]!r} in --families; choose from {','.join(FAMILIES)}"
        )
    return families


def _label(row: dict) -> str:
    suffix = " minimalistic" if row["minimalistic"] else ""
    return f"{row['model']} {row['width_mult']:g} {row['resolution']}{suffix}"


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Sorted by latency, the ones more accurate than every faster one."""
    front, best_top1 = [], float("-inf")
    for candidate in sorted(candidates, key=lambda c: (c.latency_ms, -c.top1)):
        if candidate.top1 > best_top1:
            front.append(candidate)
            best_top1 = candidate.top1
    return front


@dataclass
class Choice:
    machine: dict
    settings: dict
    candidates: list[Candidate]  # sorted by latency
    chosen: Candidate | None  # the most accurate within the budget

    @property
    def fastest(self) -> Candidate:
        return self.candidates[0]

    def to_dict(self) -> dict:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "candidates": [c.to_dict() for c in self.candidates],
            "chosen": None if self.chosen is None else self.chosen.label,
            "sources": {key: citation(key) for key in sorted({c.source for c in self.candidates})},
        }


def choose(
    budget_ms: float,
    backend: str = "torch",
    batch: int = 1,
    families: tuple[str, ...] = FAMILIES,
    with_popular: bool = False,
    threads: int = 2,
    repeats: int = 5,
    warmup: int = 1,
    progress: bool = True,
    seed: int = 0,
) -> Choice:
    if not budget_ms > 0:
        raise ValueError(f"--budget-ms must be a positive number of milliseconds; got {budget_ms:g}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    for label, value in (("--batch-size", batch), ("--threads", threads), ("--repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive integer; got {value!r}")
    from tqdm import tqdm

    rows = published_configurations(families)
    specs = [
        (
            _label(row),
            row["model"],
            {
                "width_mult": row["width_mult"],
                "resolution": row["resolution"],
                **({"minimalistic": True} if row["minimalistic"] else {}),
            },
            row["top1"],
            row["source"],
        )
        for row in rows
    ]
    if with_popular:
        for name in POPULAR:
            published = paper_comparison(name)
            assert published is not None  # the cited figure of every POPULAR model
            specs.append((name, name, {}, published["top1"], published["source"]))
    # The plan first: `choose` runs for minutes, and a silent command looks hung.
    print(
        f"choose: {len(specs)} configurations × {backend} (batch {batch}, {threads} threads, "
        f"{repeats} timed rounds each after {warmup} warm-up); first building them, then timing",
        file=sys.stderr,
        flush=True,
    )
    with (
        measuring(threads, warmup, repeats) as conditions,
        tempfile.TemporaryDirectory(prefix="mobilenets-choose-") as workdir,
    ):
        runners, costs = {}, {}
        for index, (label, name, options, _, _) in enumerate(
            tqdm(specs, desc="preparing", disable=None if progress else True, file=sys.stderr)
        ):
            torch.manual_seed(seed)
            model: AnyModel
            if options:
                model = create_model(name, **options).eval()
                report = cost(model.config)
            else:
                model = create_reference_model(name, seed)
                report = reference_cost(model)
            costs[label] = report
            size = model.config.resolution
            images = torch.randn(
                batch, model.config.in_channels, size, size, generator=torch.Generator().manual_seed(seed)
            )
            prepared = PreparedModel(model, size, Path(workdir) / str(index), None)
            runners[label] = make_runner(backend, prepared, images, threads)
        times = time_interleaved(runners, warmup, repeats, progress="choose" if progress else None)
    candidates = [
        Candidate(
            label,
            name,
            options,
            top1,
            source,
            costs[label].mult_adds,
            costs[label].params,
            [1e3 * t for t in times[label]],
            reference=not options,
        )
        for label, name, options, top1, source in specs
    ]
    for candidate in pareto_front(candidates):
        candidate.on_front = True
    candidates.sort(key=lambda c: (c.latency_ms, -c.top1))
    within = [c for c in candidates if c.latency_ms <= budget_ms]
    chosen = max(within, key=lambda c: (c.top1, -c.latency_ms)) if within else None
    settings = {
        "budget_ms": budget_ms,
        "backend": backend,
        "batch": batch,
        "families": list(families),
        "with_popular": with_popular,
        **conditions,
    }
    return Choice(machine_description(), settings, candidates, chosen)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def render(choice: Choice, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(choice.to_dict(), indent=2)
    s, m = choice.settings, choice.machine
    header = [
        "model",
        "ImageNet top-1",
        "mult-adds",
        "params",
        "ms (fastest)",
        "ms (median)",
        "Pareto",
        "within budget",
    ]
    rows = [
        [
            c.label,
            f"{c.top1:g}%",
            f"{c.mult_adds / 1e6:,.0f}M",
            f"{c.params / 1e6:.2f}M",
            f"{c.latency_ms:.2f}",
            f"{c.median_ms:.2f}",
            "front" if c.on_front else "",
            "yes" if c.latency_ms <= s["budget_ms"] else "",
        ]
        for c in choice.candidates
    ]
    table = render_rows(header, rows, fmt)
    if fmt == "csv":
        return table
    lines = [
        f"{m['cpu']}, {m['cores']} cores ({', '.join(m['cpu_features'])}); torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime']}",
        f"backend {s['backend']}, batch {s['batch']}, {s['threads']} threads, fastest of {s['repeats']} "
        f"interleaved rounds; load average {s['load_average_before']} → {s['load_average_after']}; "
        f"OMP_WAIT_POLICY {s['omp_wait_policy']}",
        "",
        table,
        "",
    ]
    if choice.chosen is None:
        fastest = choice.fastest
        lines.append(
            f"nothing meets {s['budget_ms']:g} ms: the fastest is {fastest.label} at "
            f"{fastest.latency_ms:.2f} ms (top-1 {fastest.top1:g}%)"
        )
    else:
        c = choice.chosen
        lines.append(
            f"within {s['budget_ms']:g} ms the most accurate is {c.label}: top-1 {c.top1:g}%, "
            f"{c.latency_ms:.2f} ms, {c.mult_adds / 1e6:,.0f}M mult-adds, {c.params / 1e6:.2f}M params"
        )
    lines.append("top-1 sources:")
    lines += [f"  {key}: {citation(key)}" for key in sorted({c.source for c in choice.candidates})]
    return "\n".join(lines)


def plot(choice: Choice, path: str | os.PathLike) -> Path:
    """Top-1 against measured latency, the Pareto front and the budget line."""
    families: dict[str, list[Candidate]] = {}
    for c in choice.candidates:
        family = "popular" if c.reference else c.model.replace("mobilenet_", "").replace("_", " ")
        families.setdefault(family, []).append(c)
    front = [c for c in choice.candidates if c.on_front]
    s = choice.settings
    with figure(path) as (_, axes):
        for index, (family, members) in enumerate(sorted(families.items())):
            axes.scatter(
                [c.latency_ms for c in members],
                [c.top1 for c in members],
                label=family,
                marker="s" if family == "popular" else "o",
                color=f"C{index % 10}",
                s=24,
            )
            if family == "popular":
                for c in members:
                    axes.annotate(
                        c.label,
                        (c.latency_ms, c.top1),
                        fontsize="small",
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
        axes.step(
            [c.latency_ms for c in front],
            [c.top1 for c in front],
            where="post",
            color="black",
            linewidth=1,
            label="Pareto front",
        )
        axes.axvline(
            s["budget_ms"], color="red", linestyle="--", linewidth=1, label=f"budget {s['budget_ms']:g} ms"
        )
        if choice.chosen is not None:
            axes.scatter(
                [choice.chosen.latency_ms],
                [choice.chosen.top1],
                facecolors="none",
                edgecolors="red",
                s=120,
                label=f"chosen: {choice.chosen.label}",
            )
        axes.set_xscale("log")
        axes.set_xlabel(f"latency on this machine, fastest of {s['repeats']} rounds (ms, batch {s['batch']})")
        axes.set_ylabel("published ImageNet top-1 (%)")
        axes.set_title(f"{s['backend']}, {s['threads']} threads: {choice.machine['cpu']}")
        axes.legend(loc="lower right")
    return Path(path)
