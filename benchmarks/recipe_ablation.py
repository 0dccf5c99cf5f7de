"""What buys accuracy per CPU-minute on CIFAR-10: short `mobilenets train` runs that differ from a
baseline recipe in one option each, two at a time (one thread each), tabulated side by side.

    python benchmarks/recipe_ablation.py --data ../shared/data/cifar10/train --out /work/runs/ablation \
        [--epochs 10] [--width 0.25] [--parallel 2]

Every run is the project's own `mobilenets train` (validation split seed 0, the same for all), so a
row's difference from the baseline is that option's effect at this budget; the 5,000-image split
resolves about ±1.2 points (95%) at 80% accuracy. Writes OUT/ablation.json and prints a markdown
table (final and best validation top-1, minutes of training).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BASELINE = [
    "--lr",
    "0.1",
    "--warmup",
    "1",
    "--weight-decay",
    "5e-4",
    "--label-smoothing",
    "0.1",
    "--batch-size",
    "128",
    "--seed",
    "0",
    "--channels-last",
]
VARIANTS = {  # name: the options that replace the baseline's
    "baseline (SGD 0.1, warm-up 1 + cosine, wd 5e-4, label smoothing 0.1)": {},
    "+ Cutout 16 px": {"--cutout": "16"},
    "no label smoothing": {"--label-smoothing": "0"},
    "weight decay 1e-3": {"--weight-decay": "1e-3"},
}


def command(data: str, out: Path, epochs: int, width: float, changes: dict) -> list[str]:
    options = list(BASELINE)
    for flag, value in changes.items():
        if flag in options:
            options[options.index(flag) + 1] = value
        else:
            options += [flag, value]
    return [
        sys.executable,
        "-m",
        "mobilenets",
        "train",
        "--model",
        "mobilenet_v1",
        "--width",
        str(width),
        "--data",
        data,
        "--epochs",
        str(epochs),
        "--no-progress",
        "--out",
        str(out),
        *options,
    ]


def result(out: Path) -> dict:
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "final_top1": float(rows[-1]["val_top1"]),
        "best_top1": max(float(r["val_top1"]) for r in rows),
        "minutes": sum(float(r["epoch_seconds"]) for r in rows) / 60,
        "epochs": len(rows),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time, one thread each")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [(name, args.out / f"run{i}") for i, name in enumerate(VARIANTS)]
    pending = list(runs)
    running: list[tuple[str, Path, subprocess.Popen]] = []
    started = time.time()
    while pending or running:
        while pending and len(running) < args.parallel:
            name, out = pending.pop(0)
            argv = command(args.data, out, args.epochs, args.width, VARIANTS[name])
            with open(args.out / f"{out.name}.log", "w") as log:
                running.append(
                    (name, out, subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
                )
        time.sleep(5)
        for item in list(running):
            if item[2].poll() is not None:
                running.remove(item)
                if item[2].returncode != 0:
                    print(f"{item[0]}: exit {item[2].returncode}, see {item[1]}.log", file=sys.stderr)
    rows = {
        name: {
            **result(out),
            "command": " ".join(command(args.data, out, args.epochs, args.width, VARIANTS[name])[2:]),
        }
        for name, out in runs
    }
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")
    base = next(iter(rows.values()))["final_top1"]
    print(
        f"| recipe (mobilenet_v1 width {args.width:g}, {args.epochs} epochs) | top-1 final | vs baseline | "
        "top-1 best | minutes |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {100 * row['final_top1']:.2f}% | {100 * (row['final_top1'] - base):+.2f} | "
            f"{100 * row['best_top1']:.2f}% | {row['minutes']:.1f} |"
        )
    print(f"(wall time of the whole ablation: {(time.time() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
