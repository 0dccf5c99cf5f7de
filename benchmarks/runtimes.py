"""Every runtime path side by side: accuracy of the reduced-precision ones, and latency of all of them.

    python benchmarks/runtimes.py [--data ../shared/data/cifar10/train] [--write-gates]
                                  [--batch-size 1,32] [--repeats 10] [--threads 2] [--skip-latency]

1. Accuracy (the gates of `mobilenets bench`, deploy/gates.py): the shipped `cifar10` weights
   (mobilenet_v1 width 0.5) are exported for every runtime backend of `bench` (deploy/runtimes.py
   BACKENDS) through `export_model`, the code `mobilenets export` runs; int8 paths are calibrated on
   --calibration-images images of the training split (never validation images). Each file then runs
   the validation split the checkpoint records (5,000 images, seed 0) through the runner eval uses,
   and is compared with PyTorch float32: top-1 agreement and accuracy change in points. A path that
   cannot run here (bf16 on a CPU without bf16) is recorded with the reason, not measured.
2. Latency: MobileNetV1 1.0-224 (random weights: speed does not depend on them) on every backend at
   each batch size, interleaved in one process by `bench`'s own `run_benchmark`; each figure is the
   median over rounds of that round's latency over ONNX Runtime float32's in the same round.

Writes benchmarks/results/runtimes.json and runtimes.md (the table for docs/benchmarks.md); with
--write-gates also this CPU's entry of src/mobilenets/deploy/accuracy_gates.json (the entries of
CPUs with other instruction-set features stay), which `bench` reads to mark paths "recommended".
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mobilenets.data import load_data, make_loader  # noqa: E402
from mobilenets.deploy.base import compare_predictions, load_source, run_torch  # noqa: E402
from mobilenets.deploy.bench import run_benchmark  # noqa: E402
from mobilenets.deploy.cpu import machine_description  # noqa: E402
from mobilenets.deploy.gates import GATES_FILE, MAX_CHANGE_POINTS, MIN_AGREEMENT, passes, save_measurement  # noqa: E402
from mobilenets.deploy.runtimes import BACKENDS, RUNTIMES, export_model, load_exported  # noqa: E402
from mobilenets.pretrained.registry import bundled_checkpoint  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def as_arrays(loader) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*loader.batches(0), strict=True)
    return torch.cat(images).numpy(), torch.cat(labels).numpy()


def measure_accuracy(args) -> dict:
    path = bundled_checkpoint("cifar10")
    source = load_source(str(path))
    split, preprocessing = source.split, source.preprocessing
    bundle = load_data(
        args.data,
        preprocessing["size"],
        split["val_fraction"],
        split["seed"],
        val_files=split.get("val_files"),
    )
    bundle.mean, bundle.std = tuple(preprocessing["mean"]), tuple(preprocessing["std"])
    images, labels = as_arrays(make_loader(bundle.val, bundle, 500, train=False))
    if args.val_images:
        images, labels = images[: args.val_images], labels[: args.val_images]
    order = torch.randperm(len(bundle.train), generator=torch.Generator().manual_seed(0))
    calibration, _ = as_arrays(
        make_loader(bundle.train.subset(order[: args.calibration_images]), bundle, 500, train=False)
    )
    reference = run_torch(source.model, images, batch_size=500)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends:
            format_name, precision = BACKENDS[backend]
            runtime = RUNTIMES[format_name]
            start = time.perf_counter()
            try:
                file = Path(tmp) / f"{backend}{runtime.suffix}"
                export_model(
                    source,
                    runtime,
                    file,
                    precision=precision,
                    calibration=calibration if precision == "int8" else None,
                )
                exported = load_exported(file, threads=args.threads)
                in_effect = getattr(exported.runner, "precision_in_effect", precision)
                if in_effect != precision:
                    raise RuntimeError(
                        f"not measured: {runtime.title} runs {precision} as {in_effect} on this CPU"
                    )
                logits = exported.runner.run(images)
            except Exception as error:  # recorded, not fatal: the other paths still get measured
                rows[backend] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
                print(f"{backend}: {rows[backend]['error']}", flush=True)
                continue
            result = compare_predictions(reference, logits, labels)
            change = 100 * (result.quantized_accuracy - result.float_accuracy)
            rows[backend] = {
                "format": format_name,
                "precision": precision,
                "top1_agreement": result.top1_agreement,
                "float32_top1": result.float_accuracy,
                "top1": result.quantized_accuracy,
                "accuracy_change_points": round(change, 4),
                "max_abs_logit_diff": float(np.abs(logits - reference).max()),
                "passes_gate": passes(result.top1_agreement, change),
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(
                f"{backend}: agreement {100 * result.top1_agreement:.2f}%, accuracy "
                f"{100 * result.quantized_accuracy:.2f}% ({change:+.2f} points)",
                flush=True,
            )
    return {
        "weights": str(path),
        "images": len(images),
        "calibration_images": len(calibration),
        "float32_top1_pytorch": float((reference.argmax(1) == labels).mean()),
        "backends": rows,
    }


def measure_latency(args) -> dict:
    source = load_source("mobilenet_v1")  # 1.0-224, random weights
    report = run_benchmark(
        source,
        args.backends,
        args.batches,
        threads=args.threads,
        repeats=args.repeats,
        warmup=args.warmup,
        twin=False,
    )
    times = {(m.backend, m.batch): m.times_ms for m in report.results}
    errors = {(m.backend, m.batch): m.error for m in report.results if m.error}
    ratios = {}
    for backend in args.backends:
        for batch in args.batches:
            key, base = (backend, batch), ("onnxruntime", batch)
            if key in errors or base in errors:
                ratios[f"{backend}@{batch}"] = {"error": errors.get(key) or errors.get(base)}
                continue
            ratios[f"{backend}@{batch}"] = {
                "ratio": statistics.median(a / b for a, b in zip(times[key], times[base], strict=True)),
                "median_ms": statistics.median(times[key]),
            }
    return {"settings": report.settings, "ratios": ratios}


def markdown(
    accuracy: dict | None, latency: dict | None, batches: tuple[int, ...], backends: tuple[str, ...]
) -> str:
    columns = [f"latency vs ORT f32, batch {b}" for b in batches]
    lines = [
        "| path | " + " | ".join(columns) + " | top-1 agreement | accuracy change (points) | gate |",
        "|---|" + "---:|" * len(columns) + "---:|---:|---|",
    ]
    for backend in backends:
        precision = BACKENDS[backend][1]
        cells = []
        for batch in batches:
            entry = (latency or {}).get("ratios", {}).get(f"{backend}@{batch}")
            cells.append(
                "—" if entry is None else f"{entry['ratio']:.2f}×" if "ratio" in entry else "not measured"
            )
        row = (accuracy or {}).get("backends", {}).get(backend)
        if row is None:
            agreement = change = gate = "—"
        elif "error" in row:
            agreement, change, gate = "—", "—", row["error"]
        else:
            agreement, change = f"{100 * row['top1_agreement']:.2f}%", f"{row['accuracy_change_points']:+.2f}"
            gate = "reference" if precision == "f32" else "recommended" if row["passes_gate"] else "fails"
        lines.append(f"| {backend} | " + " | ".join(cells) + f" | {agreement} | {change} | {gate} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/cifar10/train")
    )
    parser.add_argument("--calibration-images", type=int, default=512)
    parser.add_argument("--val-images", type=int, default=0, help="use only the first N (default: all)")
    parser.add_argument("--batch-size", default="1,32")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated subset of the runtime backends (default: all)",
    )
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument(
        "--latency-from",
        type=Path,
        metavar="JSON",
        help="take the latency of an earlier run's output (measured on a quiet machine) "
        "instead of measuring it",
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--write-gates", action="store_true", help=f"write {GATES_FILE.name} for bench")
    parser.add_argument("--output", default=str(RESULTS / "runtimes.json"))
    args = parser.parse_args()
    args.batches = tuple(int(b) for b in args.batch_size.split(","))
    args.backends = tuple(b for b in args.backends.split(",") if b)
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown or "onnxruntime" not in args.backends:
        parser.error(f"--backends takes {', '.join(BACKENDS)} and must include onnxruntime (the baseline)")
    if args.write_gates and set(args.backends) != set(BACKENDS):
        parser.error("--write-gates needs every backend measured (it replaces this CPU's last measurement)")
    torch.set_num_threads(args.threads)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    accuracy = None if args.skip_accuracy else measure_accuracy(args)
    if args.latency_from:
        latency = json.loads(args.latency_from.read_text())["latency"]
    else:
        latency = None if args.skip_latency else measure_latency(args)
    machine = machine_description()
    report = {
        "started": started,
        "machine": machine,
        "gate": {"min_agreement": MIN_AGREEMENT, "max_change_points": MAX_CHANGE_POINTS},
        "accuracy": accuracy,
        "latency": latency,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(accuracy, latency, args.batches, args.backends)
    output.with_suffix(".md").write_text(table + "\n")
    print(table)
    if args.write_gates and accuracy is not None:
        save_measurement(
            {
                "measured_on": {
                    "cpu": machine["cpu"],
                    "cpu_features": machine["cpu_features"],
                    "images": accuracy["images"],
                    "weights": "cifar10",
                    "weights_file": bundled_checkpoint("cifar10").name,
                    "weights_sha256": hashlib.sha256(bundled_checkpoint("cifar10").read_bytes()).hexdigest(),
                    "date": started,
                    "versions": {k: v for k, v in machine.items() if k not in ("cpu", "cpu_features")},
                },
                "backends": accuracy["backends"],
            }
        )
        print(f"wrote {GATES_FILE}")


if __name__ == "__main__":
    main()
