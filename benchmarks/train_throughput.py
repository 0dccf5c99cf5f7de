"""Training throughput of MobileNetV1 and its full-convolution twin on CIFAR-size input, side by side.

    python benchmarks/train_throughput.py [--widths 0.25,0.5,1.0] [--batch-size 128] [--rounds 5]
    python benchmarks/train_throughput.py --variants default,nchw,bf16,compile   # what buys speed

Variants (issue 20, item 3): `default` is what `mobilenets train` runs (float32, channels_last,
eager); `nchw` the other memory layout; `bf16` bfloat16 autocast (`train --amp`; native on CPUs with
AVX512_BF16 or AMX); `compile` the model under torch.compile (inductor), compiled before timing.

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
from mobilenets.deploy.cpu import machine_description  # noqa: E402
from mobilenets.deploy.timing import median_ratio, time_interleaved, training_step_runner  # noqa: E402

MODELS = ("mobilenet_v1", "conv_mobilenet_v1")
# name: (channels_last, bf16 autocast, torch.compile)
VARIANTS = {
    "default": (True, False, False),
    "nchw": (False, False, False),
    "bf16": (True, True, False),
    "compile": (True, False, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="0.25,0.5,1.0")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--variants",
        default="default,nchw",
        help=f"comma-separated from {','.join(VARIANTS)} (default: default,nchw)",
    )
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    widths = [float(w) for w in args.widths.split(",")]
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "default" not in variants:
        parser.error(f"--variants: from {', '.join(VARIANTS)}, with default among them; got {args.variants}")

    keys = {}
    for width in widths:
        for name in MODELS:
            for variant in variants:
                channels_last, amp, compiled = VARIANTS[variant]
                torch.manual_seed(0)
                model = create_model(name, width_mult=width, resolution=32, num_classes=10, stem_stride=1)
                keys[f"{name}|{width}|{variant}"] = training_step_runner(
                    model,
                    args.batch_size,
                    32,
                    lr=0.1,
                    channels_last=channels_last,
                    amp=amp,
                    compiled=compiled,
                )
    for key, runner in keys.items():  # compile (and settle) before anything is timed
        if key.endswith("|compile"):
            runner()
    load_before = os.getloadavg()
    times = time_interleaved(
        keys, warmup=2, repeats=args.rounds, min_window_s=0.5, progress="train_throughput"
    )
    load_after = os.getloadavg()

    rows = []
    for key, seconds in times.items():
        name, width, variant = key.split("|")
        rows.append(
            {
                "model": name,
                "width_mult": float(width),
                "variant": variant,
                "images_per_s": args.batch_size / statistics.median(seconds),
                "step_ms": [1e3 * s for s in seconds],
            }
        )
    ratios = []
    for width in widths:
        separable, standard = f"mobilenet_v1|{width}|default", f"conv_mobilenet_v1|{width}|default"
        ratios.append(
            {
                "width_mult": width,
                "separable_speedup_default": median_ratio(times, standard, separable),
                **{  # > 1: the variant is faster than the default
                    f"{variant}_over_default_{name}": median_ratio(
                        times, f"{name}|{width}|default", f"{name}|{width}|{variant}"
                    )
                    for name in MODELS
                    for variant in variants
                    if variant != "default"
                },
            }
        )
    report = {
        "machine": machine_description(),
        "settings": {
            "batch_size": args.batch_size,
            "threads": args.threads,
            "variants": {
                v: dict(zip(("channels_last", "bf16_autocast", "torch_compile"), VARIANTS[v], strict=True))
                for v in variants
            },
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
        f"{report['machine']['cpu']}, {args.threads} threads, batch {args.batch_size}, "
        f"load average {load_before[0]:.2f} → {load_after[0]:.2f}\n"
    )
    others = [v for v in variants if v != "default"]
    print(
        "| model | width | img/s default | " + " | ".join(f"img/s {v} | {v} / default" for v in others) + " |"
    )
    print("|---|---:|---:|" + "---:|---:|" * len(others))
    for width, ratio in zip(widths, ratios, strict=True):
        for name in MODELS:
            rate = {
                r["variant"]: r["images_per_s"]
                for r in rows
                if r["model"] == name and r["width_mult"] == width
            }
            cells = " | ".join(f"{rate[v]:.0f} | {ratio[f'{v}_over_default_{name}']:.2f}×" for v in others)
            print(f"| {name} | {width:g} | {rate['default']:.0f} | {cells} |")
    print()
    for ratio in ratios:
        print(
            f"width {ratio['width_mult']:g}: MobileNet trains "
            f"{ratio['separable_speedup_default']:.2f}× "
            f"faster than its twin (default settings, per-round median)"
        )


if __name__ == "__main__":
    main()
