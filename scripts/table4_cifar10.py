"""The MobileNet paper's Table 4 on CIFAR-10: two finished `mobilenets train` runs side by side.

    python scripts/table4_cifar10.py SEPARABLE_RUN CONV_RUN --out docs/results/table4_cifar10_0.25

Reads each run's last.safetensors (config, history, provenance), checks that the two differ only in
the model (same data, recipe, seed and schedule, both run to their end), and writes OUT/curves.png
(both validation curves, train curves dashed), OUT/table.md (the paper's layout: accuracy,
mult-adds, parameters, plus minutes) and both runs' metrics.csv. Costs come from `cost(config)`,
exact for the 32×32 input and stride-1 stem the runs trained with.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mobilenets.checkpoint import read_header
from mobilenets.config import ModelConfig
from mobilenets.costs.analysis import cost
from mobilenets.training.plots import plot_side_by_side

PAPER = {"mobilenet_v1": (70.6, 569, 4.2), "conv_mobilenet_v1": (71.7, 4866, 29.3)}  # Table 4, ImageNet
SAME = (
    "data",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "warmup",
    "label_smoothing",
    "weight_decay",
    "seed",
    "val_fraction",
    "cutout",
    "channels_last",
    "amp",
    "image_size",
)


def summary(run: Path) -> dict:
    header = read_header(run / "last.safetensors")
    history, recipe = header["history"], header["train_config"]
    if len(history) != recipe["epochs"]:
        raise SystemExit(f"{run} has {len(history)} of {recipe['epochs']} epochs: finish it first (--resume)")
    config = ModelConfig.from_dict(header["config"])
    report = cost(config)
    return {
        "run": run,
        "name": config.name,
        "width": config.width_mult,
        "recipe": recipe,
        "history": history,
        "final": history[-1]["val_top1"],
        "best": max(row["val_top1"] for row in history),
        "minutes": sum(row["epoch_seconds"] for row in history) / 60,
        "mult_adds": report.mult_adds,
        "params": report.params,
        "command": header["provenance"]["command"],
        "commit": header["provenance"]["git_commit"],
    }


def plot(runs: list[dict], path: Path) -> None:
    labels = {"mobilenet_v1": "MobileNet (separable)", "conv_mobilenet_v1": "Conv MobileNet (full conv.)"}
    plot_side_by_side(
        {labels[run["name"]]: run["history"] for run in runs},
        path,
        f"CIFAR-10, width {runs[0]['width']:g}, 32×32: separable vs full convolutions",
    )


def table(separable: dict, conv: dict) -> str:
    gap = 100 * (conv["final"] - separable["final"])
    rows = [
        "| model | top-1 (final) | top-1 (best) | mult-adds | parameters | minutes | paper (ImageNet) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in (conv, separable):
        top1, madds, params = PAPER[run["name"]]
        rows.append(
            f"| {run['name']} {run['width']:g} | {100 * run['final']:.2f}% | {100 * run['best']:.2f}% | "
            f"{run['mult_adds'] / 1e6:.1f}M | {run['params'] / 1e6:.3f}M | {run['minutes']:.1f} | "
            f"{top1}%, {madds}M, {params}M |"
        )
    rows += [
        "",
        f"Gap (full convolutions − separable, final top-1): **{gap:+.2f} points** (paper: +1.1 on ImageNet); "
        f"{conv['mult_adds'] / separable['mult_adds']:.2f}× the mult-adds, "
        f"{conv['params'] / separable['params']:.2f}× the parameters (paper: 8.6× and 7.0×).",
    ]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("separable", type=Path)
    parser.add_argument("conv", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    separable, conv = summary(args.separable), summary(args.conv)
    if (separable["name"], conv["name"]) != ("mobilenet_v1", "conv_mobilenet_v1"):
        print("give the mobilenet_v1 run first, then the conv_mobilenet_v1 run", file=sys.stderr)
        return 2
    differing = [key for key in SAME if separable["recipe"].get(key) != conv["recipe"].get(key)]
    if differing or separable["width"] != conv["width"]:
        print(
            f"the runs differ in {', '.join(differing) or 'width'}: not a Table 4 comparison", file=sys.stderr
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    plot([separable, conv], args.out / "curves.png")
    text = table(separable, conv)
    (args.out / "table.md").write_text(text + "\n")
    for run in (separable, conv):
        shutil.copyfile(run["run"] / "metrics.csv", args.out / f"metrics_{run['name']}.csv")
        print(f"{run['name']}: {run['command']} (commit {run['commit']})")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
