"""Training throughput of MobileNetV1 and its full-convolution twin on CIFAR-size input, side by side.

    python benchmarks/train_throughput.py [--widths 0.25,0.5,1.0] [--batch-size 128] [--rounds 5]

Each runner is one training step exactly as `mobilenets train` takes it for 32×32 data (stride-1
stem, 10 classes, SGD with Nesterov momentum, cross-entropy; the data loading is left out: it is
the same for both models and costs 0.93-1.07× of a bare loop, benchmarks/trainer_overhead.py).
All models and both memory layouts are timed in alternating windows inside this one process
(mobilenets.timing), so a busy neighbour hits them alike; the ratios are the robust figures, the
absolute img/s hold for the load the machine had (reported with the load average).

Writes benchmarks/results/train_throughput.json and prints a markdown table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: OpenMP threads must not busy-wait

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from mobilenets import create_model  # noqa: E402
from mobilenets.deploy.bench import machine_description  # noqa: E402
from mobilenets.deploy.timing import median_ratio, time_interleaved, training_step_runner  # noqa: E402

MODELS = ("mobilenet_v1", "conv_mobilenet_v1")
LAYOUTS = {"channels_last": True, "contiguous": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="0.25,0.5,1.0")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    widths = [float(w) for w in args.widths.split(",")]

    runners = {}
    for width in widths:
        for name in MODELS:
            for layout, channels_last in LAYOUTS.items():
                torch.manual_seed(0)
                model = create_model(name, width_mult=width, resolution=32, num_classes=10, stem_stride=1)
                runners[(name, width, layout)] = training_step_runner(
                    model, args.batch_size, 32, lr=0.1, channels_last=channels_last
                )
    keys = {f"{name}|{width}|{layout}": runner for (name, width, layout), runner in runners.items()}
    load_before = os.getloadavg()
    times = time_interleaved(keys, warmup=2, repeats=args.rounds, min_window_s=0.5)
    load_after = os.getloadavg()

    rows = []
    for key, seconds in times.items():
        name, width, layout = key.split("|")
        rows.append(
            {
                "model": name,
                "width_mult": float(width),
                "layout": layout,
                "images_per_s": args.batch_size / statistics.median(seconds),
                "step_ms": [1e3 * s for s in seconds],
            }
        )
    ratios = []
    for width in widths:
        separable, standard = (
            f"mobilenet_v1|{width}|channels_last",
            f"conv_mobilenet_v1|{width}|channels_last",
        )
        ratios.append(
            {
                "width_mult": width,
                "separable_speedup_channels_last": median_ratio(times, standard, separable),
                **{
                    f"channels_last_speedup_{name}": median_ratio(
                        times, f"{name}|{width}|contiguous", f"{name}|{width}|channels_last"
                    )
                    for name in MODELS
                },
            }
        )
    report = {
        "machine": machine_description(),
        "settings": {
            "batch_size": args.batch_size,
            "threads": args.threads,
            "dtype": "float32",
            "input": "3×32×32, stride-1 stem, 10 classes",
            "rounds": args.rounds,
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "results": rows,
        "ratios": ratios,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))

    print(
        f"{report['machine']['cpu']}, {args.threads} threads, batch {args.batch_size}, float32, "
        f"load average {load_before[0]:.2f} → {load_after[0]:.2f}\n"
    )
    print("| model | width | img/s channels_last | img/s contiguous | channels_last gain |")
    print("|---|---|---|---|---|")
    for width, ratio in zip(widths, ratios):
        for name in MODELS:
            by_layout = {
                r["layout"]: r["images_per_s"]
                for r in rows
                if r["model"] == name and r["width_mult"] == width
            }
            print(
                f"| {name} | {width:g} | {by_layout['channels_last']:.0f} | {by_layout['contiguous']:.0f} | "
                f"{ratio[f'channels_last_speedup_{name}']:.2f}× |"
            )
    print()
    for ratio in ratios:
        print(
            f"width {ratio['width_mult']:g}: MobileNet trains "
            f"{ratio['separable_speedup_channels_last']:.2f}× "
            f"faster than its twin (channels_last, per-round median)"
        )


if __name__ == "__main__":
    main()
