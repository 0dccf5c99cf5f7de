"""The paper's central claim on real data: MobileNetV1 against its full-convolution twin (Table 4),
trained with the same recipe, with parameters, mult-adds, measured speed and accuracy side by side.

The speed ratios come from interleaved measurements after both runs (see timing.py): the two
training runs happen one after the other, so their wall times can see different machines and are
reported for information only.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import torch

from ..costs.analysis import CostReport, cost
from ..deploy.timing import (
    inference_runner,
    median_round,
    time_interleaved,
    training_step_runner,
)
from ..files import write_atomically
from ..models import MobileNet
from .plots import plot_side_by_side
from .train import TrainConfig, TrainResult, train

SEPARABLE, STANDARD = "mobilenet_v1", "conv_mobilenet_v1"


def measure_speed(
    models: dict[str, MobileNet], recipe: TrainConfig, image_size: int, repeats: int = 10
) -> dict[str, dict[str, float]]:
    """Seconds per training step (the recipe's batch, layout and precision) and per batch-1 forward
    pass of each model, the models alternating in short timed windows; each figure is from the round
    whose last-to-first ratio is the median one (`timing.median_round`)."""
    train_runners = {
        name: training_step_runner(
            copy.deepcopy(model),
            recipe.batch_size,
            image_size,
            channels_last=recipe.channels_last,
            amp=recipe.amp,
            seed=recipe.seed,
        )
        for name, model in models.items()
    }
    step_times = time_interleaved(train_runners, warmup=2, repeats=repeats, min_window_s=0.2)
    infer_runners = {
        name: inference_runner(copy.deepcopy(model), 1, image_size, seed=recipe.seed)
        for name, model in models.items()
    }
    latencies = time_interleaved(infer_runners, warmup=3, repeats=2 * repeats, min_window_s=0.05)
    first, last = next(iter(models)), list(models)[-1]
    # The times reported are those of the round with the median ratio between the twins: each
    # round's windows saw the same machine, so a load burst cannot bend the ratio, and the printed
    # times divide to the printed ratio.
    step_round = median_round(step_times, last, first)
    latency_round = median_round(latencies, last, first)
    return {
        name: {
            "train_step_s": step_times[name][step_round],
            "latency_s": latencies[name][latency_round],
        }
        for name in models
    }


@dataclass
class TwinRun:
    """One model of the comparison: its training, its exact cost and its measured speed."""

    trained: TrainResult
    train_seconds: float  # wall time of its training run (informative: the runs are not interleaved)
    cost: CostReport
    speed: dict[str, float]  # measure_speed's entry for it
    data: str  # the recipe's data source
    batch_size: int  # the recipe's batch, at which training steps were timed


def _phase(number: int, text: str) -> None:
    print(f"[{number}/3] {text}", file=sys.stderr, flush=True)


def compare_twins(recipe: TrainConfig) -> dict[str, TwinRun]:
    """Train both models with `recipe` (its `model` is ignored), then measure and tabulate."""
    trained, seconds = {}, {}
    width = recipe.model_options.get("width_mult", 1.0)
    for number, (name, kind) in enumerate(((SEPARABLE, "separable"), (STANDARD, "full convolutions")), 1):
        _phase(
            number, f"training {name} ({kind}, width {width:g}) for {recipe.epochs} epochs on {recipe.data}"
        )
        config = replace(recipe, model=name, out=str(Path(recipe.out) / name))
        started = time.perf_counter()
        trained[name] = train(config)
        seconds[name] = time.perf_counter() - started
    _phase(3, "timing both models in alternating windows (training step and batch-1 inference)")
    # train() returns a MobileNet; TrainResult types it nn.Module (TODO(#24): type it in train.py)
    models = {name: cast(MobileNet, result.model) for name, result in trained.items()}
    image_size = models[SEPARABLE].config.resolution
    speed = measure_speed(models, recipe, image_size)
    return {
        name: TwinRun(
            result, seconds[name], cost(models[name].config), speed[name], recipe.data, recipe.batch_size
        )
        for name, result in trained.items()
    }


def accuracy_interval(accuracy: float, images: int) -> float:
    """Half-width of the 95% normal-approximation interval of an accuracy measured on `images`."""
    return 1.96 * math.sqrt(max(accuracy * (1 - accuracy), 0.25 / images) / images)


def format_compare(results: dict[str, TwinRun]) -> str:
    """The table and verdict; every ratio is computed from the figures as printed, so a reader who
    divides two printed numbers gets the printed ratio."""
    sep, std = results[SEPARABLE], results[STANDARD]
    last_sep, last_std = sep.trained.history[-1], std.trained.history[-1]
    batch = sep.batch_size
    figures = {
        "latency": (f"{1e3 * sep.speed['latency_s']:.2f}", f"{1e3 * std.speed['latency_s']:.2f}"),
        "step": (f"{1e3 * sep.speed['train_step_s']:.1f}", f"{1e3 * std.speed['train_step_s']:.1f}"),
        "throughput": (
            f"{batch / sep.speed['train_step_s']:.0f}",
            f"{batch / std.speed['train_step_s']:.0f}",
        ),
    }
    ratio = {key: float(b) / float(a) for key, (a, b) in figures.items()}
    rows = [
        ("parameters", f"{sep.cost.params:,}", f"{std.cost.params:,}", std.cost.params / sep.cost.params),
        (
            "mult-adds per image",
            f"{sep.cost.mult_adds:,}",
            f"{std.cost.mult_adds:,}",
            std.cost.mult_adds / sep.cost.mult_adds,
        ),
        ("CPU latency, batch 1 (ms)", *figures["latency"], ratio["latency"]),
        (f"training step, batch {batch} (ms)", *figures["step"], ratio["step"]),
        ("training throughput (img/s)", *figures["throughput"], ratio["throughput"]),
        ("training wall time (s)", f"{sep.train_seconds:.1f}", f"{std.train_seconds:.1f}", None),
    ]
    images = sep.trained.validation_images
    for label, a, b in (
        ("validation top-1 (final)", last_sep["val_top1"], last_std["val_top1"]),
        ("validation top-1 (best)", sep.trained.best_val_top1, std.trained.best_val_top1),
    ):
        rows.append(
            (
                label,
                f"{100 * a:.2f}% ± {100 * accuracy_interval(a, images):.2f}",
                f"{100 * b:.2f}% ± {100 * accuracy_interval(b, images):.2f}",
                None,
            )
        )
    header = ("", "MobileNet (separable)", "Conv MobileNet (standard)", "standard / separable")
    table = [header] + [(label, a, b, f"{value:.2f}×" if value else "") for label, a, b, value in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    formula = [c.formula for c in sep.cost.separable]
    gap = 100 * (last_std["val_top1"] - last_sep["val_top1"])
    # Both models are scored on the same images; treating the two accuracies as independent gives a
    # wider (conservative) interval for their difference.
    gap_interval = 100 * math.hypot(
        accuracy_interval(last_sep["val_top1"], images), accuracy_interval(last_std["val_top1"], images)
    )
    verdict = (
        f"within the ±{gap_interval:.2f} points that {images} validation images resolve (95%): no measurable "
        "difference"
        if abs(gap) <= gap_interval
        else f"beyond the ±{gap_interval:.2f} points that {images} validation images resolve (95%)"
    )
    lines += [
        "",
        f"theory: each separable layer costs 1/N + 1/D_K² = {min(formula):.4f}…{max(formula):.4f} of the "
        "standard "
        f"convolution it replaces ({1 / max(formula):.2f}…{1 / min(formula):.2f}× fewer mult-adds); "
        f"the whole network {std.cost.mult_adds / sep.cost.mult_adds:.2f}× fewer.",
        f"measured: inference {ratio['latency']:.2f}× faster, training {ratio['step']:.2f}× faster (ratios "
        f"of the times above); accuracy {gap:+.2f} points for the standard convolutions, {verdict} (the "
        "paper's ImageNet gap: +1.1).",
        "speed: both models timed in alternating windows in this process after training (the round with "
        "the median ratio, "
        f"{torch.get_num_threads()} threads); the wall times ran one after the other and are not compared.",
        f"accuracy: ± is the 95% interval of an accuracy measured on {images} images.",
        f"data: {sep.data} ({len(sep.trained.class_names)} classes), {len(sep.trained.history)} epochs each; "
        f"logs and checkpoints under {Path(sep.trained.out).parent}",
    ]
    return "\n".join(lines)


def write_compare_report(results: dict[str, TwinRun], text: str, out: str | Path) -> list[Path]:
    """The printed table as OUT/table.txt and both runs' curves as OUT/curves.png."""
    out = Path(out)
    table = out / "table.txt"
    write_atomically(table, text + "\n")
    curves = out / "curves.png"
    plot_side_by_side(
        {
            "MobileNet (separable)": results[SEPARABLE].trained.history,
            "Conv MobileNet (full conv.)": results[STANDARD].trained.history,
        },
        curves,
        f"{results[SEPARABLE].data}: MobileNetV1 against its full-convolution twin",
    )
    return [table, curves]
