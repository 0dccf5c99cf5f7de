"""The standard CPU inference benchmark: runs everything docs/benchmarks.md reports and rewrites it.

    .venv/bin/python benchmarks/cpu_inference.py                 # ~20-30 min on 2 cores
    .venv/bin/python benchmarks/cpu_inference.py --quick         # a smoke run of every section, ~3 min
    .venv/bin/python benchmarks/cpu_inference.py --checkpoint runs/cifar10/best.safetensors

Sections (each measured side by side in this one process, interleaved; see mobilenets/bench.py):
1. MobileNetV1 1.0-224 and its full-convolution twin on every backend, batch 1 and 32, 2 threads.
2. Ways of running the float32 model at batch 1 (ONNX Runtime options, PyTorch variants).
3. int8: every quantization setting's latency (MobileNetV1 1.0-224, batch 1, against ONNX
   Runtime float32) and its agreement/accuracy on the CIFAR-10 validation split, with a
   MobileNetV1 trained here on CIFAR-10 (or --checkpoint). The training is cached under runs/.
4. What OpenMP's wait policy does to PyTorch on a shared machine (two subprocesses).

Writes docs/benchmarks.md and benchmarks/results/cpu_inference.json.
"""

from __future__ import annotations

import os

# Before torch is imported (libgomp reads it once): PyTorch's OpenMP threads sleep instead of
# spinning when they wait. Section 4 measures why: spinning threads collapse when another process
# holds one of the cores. It is recorded in the output.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mobilenets import DepthwiseConv2d, MobileNet  # noqa: E402
from mobilenets.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from mobilenets.data import list_images  # noqa: E402
from mobilenets.deploy.base import compare_predictions, load_images, load_source, run_torch  # noqa: E402
from mobilenets.deploy.bench import (  # noqa: E402
    BACKENDS,
    PreparedModel,
    make_runner,
    run_benchmark,
    time_interleaved,
)
from mobilenets.deploy.cpu import machine_description  # noqa: E402
from mobilenets.deploy.export import (  # noqa: E402
    INT8_SETTINGS,
    export_onnx,
    ort_session,
    quantize_int8,
    run_session,
)
from mobilenets.zoo import model_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10" / "train"
CACHE = REPO / "runs" / "benchmarks"  # runs/ is git-ignored
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
VALIDATION_IMAGES = 5000  # held out of the 50,000 training images, seeded
SPLIT_SEED = 0


# --------------------------------------------------------------------------------------------
# A CIFAR-10 MobileNetV1, trained here when no checkpoint is given
# --------------------------------------------------------------------------------------------
def cifar_split(data: Path) -> tuple[list[Path], np.ndarray, list[Path], np.ndarray, list[str]]:
    """(train paths, labels, validation paths, labels, class names): 5,000 images held out, seeded."""
    folder = list_images(data)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(folder.paths))
    labels = np.asarray(folder.labels)
    val, train = order[:VALIDATION_IMAGES], order[VALIDATION_IMAGES:]
    return (
        [folder.paths[i] for i in train],
        labels[train],
        [folder.paths[i] for i in val],
        labels[val],
        folder.class_names,
    )


def cifar_model_config():
    # At 32×32 a stride-2 stem leaves a 1×1 map after the last stage; stride 1 (as CIFAR recipes
    # do) keeps 2×2 and trains much better, for 4× the compute.
    config = model_config("mobilenet_v1", width_mult=0.5, resolution=32, num_classes=10)
    return config.replace(blocks=(dataclasses.replace(config.blocks[0], stride=1),) + config.blocks[1:])


def train_cifar_model(
    train_paths: list[Path], train_labels: np.ndarray, class_names: list[str], epochs: int, output: Path
) -> Path:
    """A bare PyTorch loop: SGD with Nesterov momentum, one-cycle learning rate, random crop with
    4-pixel padding and horizontal flips. Enough for a realistically trained model whose int8
    behaviour we can measure, in a few minutes on two cores; the trainer (`mobilenets train`)
    is the real recipe."""
    preprocessing = {"size": 32, "mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)}
    images = torch.from_numpy(load_images(train_paths, preprocessing))
    labels = torch.from_numpy(train_labels).long()
    torch.manual_seed(0)
    model = MobileNet(cifar_model_config()).to(memory_format=torch.channels_last)
    batch_size = 128
    steps = epochs * math.ceil(len(images) / batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=steps, pct_start=0.25)
    generator = torch.Generator().manual_seed(0)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total_loss = 0.0
        for first in range(0, len(images), batch_size):
            index = order[first : first + batch_size]
            batch = _augment(images[index], generator).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(batch), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(index)
        print(
            f"  epoch {epoch + 1}/{epochs}: loss {total_loss / len(images):.3f} ({time.time() - start:.0f}s)",
            flush=True,
        )
    save_checkpoint(
        output,
        model.to(memory_format=torch.contiguous_format).eval(),
        class_names=class_names,
        preprocessing=preprocessing,
        metadata={
            "trained_by": "benchmarks/cpu_inference.py",
            "epochs": epochs,
            "train_images": len(images),
            "seconds": round(time.time() - start),
        },
    )
    return output


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n, _, height, width = batch.shape
    padded = F.pad(batch, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2,), generator=generator).tolist()  # one offset per batch: cheap, enough
    batch = padded[:, :, dy : dy + height, dx : dx + width]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], batch.flip(-1), batch)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------
def section_backends(repeats: int, batches: tuple[int, ...], backends: tuple[str, ...]) -> dict:
    print(f"[1] backends × batch {batches} for mobilenet_v1 and its twin ...", flush=True)
    report = run_benchmark(load_source("mobilenet_v1"), backends, batches, threads=2, repeats=repeats)
    return report.to_dict()


def section_float_variants(repeats: int) -> list[dict]:
    """Ways to run MobileNetV1 1.0-224 in float32 at batch 1, 2 threads, side by side."""
    print("[2] float32 variants at batch 1 ...", flush=True)
    torch.set_num_threads(2)
    model = load_source("mobilenet_v1").model
    batch = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    runners, notes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = PreparedModel(model, 224, Path(tmp), None)
        for backend in ("torch", "torch-fused", "torch-channels-last", "torch-compile", "onnxruntime"):
            runners[backend] = make_runner(backend, prepared, batch, threads=2)
        notes["onnxruntime"] = "all optimizations (NCHWc), threads sleep when idle: the bench backend"
        array = batch.numpy()
        for label, kwargs in {
            "onnxruntime, spinning threads (ORT default)": dict(spinning=True),
            "onnxruntime, extended optimizations (no NCHWc layout)": dict(
                optimization="extended", spinning=False
            ),
            "onnxruntime, basic optimizations": dict(optimization="basic", spinning=False),
        }.items():
            session = ort_session(prepared.onnx_float(), threads=2, **kwargs)
            runners[label] = lambda session=session: session.run(None, {"input": array})
        unfused = Path(tmp) / "unfused.onnx"  # what a plain torch.onnx.export of the model gives
        torch.onnx.export(model, (batch,), str(unfused), dynamo=True, input_names=["input"], verbose=False)
        session = ort_session(unfused, threads=2, spinning=False)
        runners["onnxruntime, exported without fuse_bn"] = lambda: session.run(None, {"input": array})
        try:  # TorchScript freezing + oneDNN: the pre-torch.compile route to fused kernels
            with torch.no_grad():
                scripted = torch.jit.optimize_for_inference(
                    torch.jit.freeze(
                        torch.jit.trace(
                            prepared.fused_channels_last(),
                            batch.contiguous(memory_format=torch.channels_last),
                        )
                    )
                )
            runners["torch.jit.freeze + optimize_for_inference"] = lambda: _no_grad_call(scripted, batch)
        except Exception as error:  # noqa: BLE001 - reported, not fatal
            notes["torch.jit.freeze + optimize_for_inference"] = f"failed: {error}"
        times = time_interleaved(runners, warmup=3, repeats=repeats)
    reference = statistics.median(times["onnxruntime"])
    return [
        {
            "variant": key,
            "median_ms": 1e3 * statistics.median(t),
            "min_ms": 1e3 * min(t),
            "vs_onnxruntime": statistics.median(t) / reference,
            "note": notes.get(key, ""),
        }
        for key, t in times.items()
    ]


def _no_grad_call(module, batch):
    with torch.inference_mode():
        return module(batch.contiguous(memory_format=torch.channels_last))


def section_int8(
    repeats: int,
    data: Path | None,
    checkpoint: Path | None,
    epochs: int,
    calibration_images: int,
    settings: list[str],
    fragile_model: bool,
) -> dict:
    print("[3] int8 settings ...", flush=True)
    torch.set_num_threads(2)
    result: dict = {"settings": {name: INT8_SETTINGS[name].describe() for name in settings}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Latency: MobileNetV1 1.0-224 (random weights; calibration scales do not change speed).
        model = load_source("mobilenet_v1").model
        float_path = export_onnx(model, tmp / "v1.onnx", dynamic_batch=True)
        synthetic = np.random.default_rng(0).standard_normal((16, 3, 224, 224), dtype=np.float32)
        sessions = {"float32": ort_session(float_path, threads=2, spinning=False)}
        for name in settings:
            path = quantize_int8(float_path, tmp / f"v1.{name}.onnx", synthetic, INT8_SETTINGS[name])
            sessions[name] = ort_session(path, threads=2, spinning=False)
        probe = synthetic[:1]
        times = time_interleaved(
            {k: (lambda s=s: s.run(None, {"input": probe})) for k, s in sessions.items()},
            warmup=3,
            repeats=repeats,
        )
        reference = statistics.median(times["float32"])
        result["latency"] = {
            k: {"median_ms": 1e3 * statistics.median(t), "vs_float32": statistics.median(t) / reference}
            for k, t in times.items()
        }

    # Accuracy: CIFAR-10 models on the held-out validation split.
    if data is None or not data.is_dir():
        result["models"] = []
        result["accuracy_note"] = f"CIFAR-10 not found at {data}; accuracy skipped"
        return result
    split = cifar_split(data)
    checkpoints = [("main", checkpoint or cached_cifar_model(split, epochs))]
    if fragile_model:  # an under-trained model: what the quantization settings do to a fragile one
        checkpoints.append(("after 1 epoch", cached_cifar_model(split, 1)))
    result["models"] = [
        evaluate_int8_settings(label, path, split, calibration_images, settings)
        for label, path in checkpoints
    ]
    return result


def cached_cifar_model(split: tuple, epochs: int) -> Path:
    path = CACHE / f"cifar10_mobilenet_v1_w0.5_e{epochs}.safetensors"
    if not path.is_file():
        train_paths, train_labels, _, _, class_names = split
        print(f"  training {path.name} ({epochs} epochs on {len(train_paths)} images) ...", flush=True)
        train_cifar_model(train_paths, train_labels, class_names, epochs, path)
    return path


def evaluate_int8_settings(
    label: str, checkpoint: Path, split: tuple, calibration_images: int, settings: list[str]
) -> dict:
    """Top-1 agreement with float32 and accuracy of every int8 setting, on the validation split."""
    print(f"  int8 settings on the {label} CIFAR-10 model ...", flush=True)
    train_paths, _, val_paths, val_labels, class_names = split
    source = load_source(str(checkpoint))
    images = load_images(val_paths, source.preprocessing)
    order = np.random.default_rng(1).permutation(len(train_paths))[:calibration_images]
    calibration = load_images([train_paths[i] for i in order], source.preprocessing)
    labels = val_labels
    if source.class_names:  # the checkpoint's own class order
        index = {name: i for i, name in enumerate(source.class_names)}
        labels = np.asarray([index[class_names[label]] for label in val_labels])
    result: dict = {
        "label": label,
        "checkpoint": str(checkpoint.relative_to(REPO) if checkpoint.is_relative_to(REPO) else checkpoint),
        "metadata": load_checkpoint(checkpoint).metadata,
        "validation_images": len(images),
        "calibration_images": len(calibration),
        "depthwise_weight_spread": depthwise_weight_spread(source.model),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        float_path = export_onnx(source.model, tmp / "cifar.onnx", dynamic_batch=True)
        float_logits = run_session(ort_session(float_path), images)
        torch_logits = run_torch(source.model, images)
        result["torch_float_accuracy"] = float((torch_logits.argmax(1) == labels).mean())
        rows = {"float32 (onnxruntime)": compare_predictions(torch_logits, float_logits, labels)}
        for name in settings:
            path = quantize_int8(float_path, tmp / f"cifar.{name}.onnx", calibration, INT8_SETTINGS[name])
            logits = run_session(ort_session(path), images)
            rows[name] = compare_predictions(float_logits, logits, labels)
            if name == "default":
                result["default_disagreements"] = disagreement_margins(float_logits, logits)
        result["accuracy"] = {k: dataclasses.asdict(v) for k, v in rows.items()}
        if "float-depthwise" in settings:  # is the breakage ONNX Runtime's optimizer? Run it without.
            import onnxruntime

            session = onnxruntime.InferenceSession(
                str(tmp / "cifar.float-depthwise.onnx"),
                providers=["CPUExecutionProvider"],
                disabled_optimizers=["WeightBiasQuantization"],
            )
            result["float_depthwise_without_weight_bias_quantization"] = dataclasses.asdict(
                compare_predictions(float_logits, run_session(session, images), labels)
            )
    return result


def disagreement_margins(float_logits: np.ndarray, quantized_logits: np.ndarray) -> dict:
    """Where int8 and float disagree: how close the float model's top two classes were there."""
    probabilities = np.exp(float_logits - float_logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    top_two = np.sort(probabilities, 1)[:, -2:]
    margin = top_two[:, 1] - top_two[:, 0]
    differ = float_logits.argmax(1) != quantized_logits.argmax(1)
    confident = margin >= 0.1
    return {
        "disagreements": int(differ.sum()),
        "images": len(differ),
        "median_margin_where_they_differ": float(np.median(margin[differ])) if differ.any() else None,
        "median_margin_overall": float(np.median(margin)),
        "share_with_margin_at_least_0.1": float(confident.mean()),
        "agreement_with_margin_at_least_0.1": float((~differ[confident]).mean()),
    }


def depthwise_weight_spread(model: MobileNet) -> list[float]:
    """Per depthwise layer, after BN folding: the largest channel's max |weight| over the median
    channel's. A per-tensor int8 scale is set by the largest; the rest round towards zero."""
    spreads = []
    for module in model.fuse_bn().modules():
        if isinstance(module, DepthwiseConv2d):
            peaks = module.weight.detach().abs().flatten(1).amax(1)
            spreads.append(float(peaks.max() / peaks.median()))
    return spreads


OMP_PROBE = """
import statistics, time, torch
from mobilenets import create_model
torch.set_num_threads(2)
model = create_model("mobilenet_v1").eval().fuse_bn().to(memory_format=torch.channels_last)
x = torch.randn(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
times = []
with torch.inference_mode():
    for i in range(13):
        start = time.perf_counter(); model(x); times.append(time.perf_counter() - start)
print(1e3 * statistics.median(times[3:]))
"""


def section_wait_policy() -> list[dict]:
    """torch-channels-last at batch 1 in fresh processes, with each OpenMP wait policy, alternated."""
    print("[4] OMP_WAIT_POLICY ...", flush=True)
    rows = []
    for round_ in range(2):
        for policy in ("ACTIVE", "PASSIVE", None):
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            load = os.getloadavg()[0]
            out = subprocess.run(
                [sys.executable, "-c", OMP_PROBE],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            rows.append(
                {
                    "policy": policy or "unset (libgomp default)",
                    "round": round_,
                    "median_ms": float(out.stdout.strip().splitlines()[-1]),
                    "load_average_1min": load,
                }
            )
    return rows


# --------------------------------------------------------------------------------------------
# docs/benchmarks.md
# --------------------------------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render_markdown(results: dict, command: str) -> str:
    m = results["machine"]
    bench = results["backends"]
    s = bench["settings"]
    lines = [
        "# CPU inference benchmarks",
        "",
        "Every figure on this page was measured by one run of",
        "",
        f"```\n{command}\n```",
        "",
        f"on {results['date']} (total {results['seconds'] / 60:.0f} min). Raw numbers: "
        "[benchmarks/results/cpu_inference.json](../benchmarks/results/cpu_inference.json).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores visible (a KVM guest); ISA: {', '.join(m['cpu_features'])}",
        f"- torch {m['torch']} (CPU capability {m['torch_cpu_capability']}), onnxruntime {m['onnxruntime']}, "
        f"Python {m['python']}, {m['platform']}",
        f"- Shared with other users' jobs: load average {s['load_average_before']} before section 1 and "
        f"{s['load_average_after']} after it (2 cores; ~1 means one core was busy with someone else's work).",
        f"- {s['threads']} threads for every backend; OMP_WAIT_POLICY={s['omp_wait_policy']}; ONNX Runtime "
        "threads "
        "do not spin (section 4 says why).",
        "",
        "Method: all runners are built and warmed up first (3 calls), then timed round-robin, one call each "
        "per "
        f"round, {s['repeats']} rounds; the table gives the median (milliseconds per batch) and batch / "
        "median "
        "(images/s). Inputs are NCHW float32 random images; outputs are float32 logits. A channels_last "
        "backend "
        "converts its input inside the timed call. Only numbers from the same table are comparable: the "
        "machine's "
        "speed varies with its other load.",
        "",
    ]
    lines += summarize_targets(results) + [""]
    names = [row["name"] for row in bench["models"]]
    theory = bench["models"][1]["mult_adds"] / bench["models"][0]["mult_adds"]
    lines += [f"## 1. MobileNetV1 1.0-{s['resolution']} and its full-convolution twin", ""]
    lines += [
        f"Mult-adds: {names[0]} {bench['models'][0]['mult_adds']:,}, {names[1]} "
        f"{bench['models'][1]['mult_adds']:,} ({theory:.2f}×).",
        "",
    ]
    lines += [
        "| backend | batch | "
        + " | ".join(f"{n} ms | {n} img/s" for n in names)
        + " | vs onnxruntime | measured speedup (theory "
        + f"{theory:.2f}×) |",
        "|---|---:|" + "---:|---:|" * len(names) + "---:|---:|",
    ]
    by_key = {(r["model"], r["backend"], r["batch"]): r for r in bench["results"]}
    speedups = {(r["backend"], r["batch"]): r for r in bench["speedups"]}
    for backend in s["backends"]:
        for batch in s["batches"]:
            cells = []
            for name in names:
                r = by_key[(name, backend, batch)]
                cells += (
                    [f"failed: {r['error']}", ""]
                    if r["error"]
                    else [_ms(r["median_ms"]), f"{r['images_per_s']:.1f}"]
                )
            ort = by_key.get((names[0], "onnxruntime", batch))
            mine = by_key[(names[0], backend, batch)]
            ratio = (
                f"{mine['median_ms'] / ort['median_ms']:.2f}×"
                if ort and not ort["error"] and not mine["error"]
                else "—"
            )
            sp = speedups[(backend, batch)]
            speed = (
                "—"
                if sp["measured"] is None
                else f"{sp['measured']:.2f}× ({100 * sp['fraction_of_theory']:.0f}%)"
            )
            lines.append(f"| {backend} | {batch} | " + " | ".join(cells) + f" | {ratio} | {speed} |")
    lines += [
        "",
        '"vs onnxruntime" is the mobilenet_v1 latency over ONNX Runtime float32\'s at the same batch.',
        "",
    ]

    lines += [
        "## 2. Running the float32 model (MobileNetV1 1.0-224, batch 1)",
        "",
        f"Side by side, {results['float_variants_repeats']} rounds.",
        "",
        "| variant | median ms | min ms | vs onnxruntime | note |",
        "|---|---:|---:|---:|---|",
    ]
    for row in results["float_variants"]:
        lines.append(
            f"| {row['variant']} | {_ms(row['median_ms'])} | {_ms(row['min_ms'])} | "
            f"{row['vs_onnxruntime']:.2f}× | {row['note']} |"
        )
    lines.append("")

    q = results["int8"]
    models = q.get("models") or []
    lines += [
        "## 3. int8 quantization settings",
        "",
        "Latency: MobileNetV1 1.0-224, batch 1, ONNX Runtime, against float32 ONNX Runtime in the same "
        f"rounds ({results['int8_repeats']} rounds). Agreement (share of images where int8 and float32 "
        "predict "
        "the same class) and accuracy: CIFAR-10 models (mobilenet_v1 width 0.5, 32×32, stem stride 1) on "
        f"{VALIDATION_IMAGES:,} validation images held out of the 50,000 training images (seed "
        f"{SPLIT_SEED}), "
        "calibrated on other training images.",
        "",
    ]
    for m in models:
        meta = m["metadata"]
        trained = (
            f"trained here, {meta.get('epochs')} epochs on {meta.get('train_images'):,} images in "
            f"{meta.get('seconds')} s"
            if meta.get("trained_by")
            else "given with --checkpoint"
        )
        lines.append(
            f"- {m['label']} model: `{m['checkpoint']}` ({trained}); float32 accuracy "
            f"{100 * m['torch_float_accuracy']:.2f}%; {m['calibration_images']} calibration images; "
            f"depthwise weight spread (largest channel's range over the median channel's, after BN "
            f"folding) up to {max(m['depthwise_weight_spread']):,.0f}×."
        )
    header = "| setting | what it is | ms | vs float32 |"
    rule = "|---|---|---:|---:|"
    for m in models:
        header += f" {m['label']}: agreement | accuracy | change (points) |"
        rule += "---:|---:|---:|"
    lines += ["", header, rule]
    lat = q["latency"]["float32"]
    row = f"| float32 | ONNX Runtime float32 | {_ms(lat['median_ms'])} | 1.00× |"
    for m in models:
        row += f" — | {100 * m['accuracy']['float32 (onnxruntime)']['quantized_accuracy']:.2f}% | — |"
    lines.append(row)
    for name, text in q["settings"].items():
        lat = q["latency"][name]
        row = f"| {name} | {text} | {_ms(lat['median_ms'])} | {lat['vs_float32']:.2f}× |"
        for m in models:
            acc = m["accuracy"][name]
            row += (
                f" {100 * acc['top1_agreement']:.2f}% | {100 * acc['quantized_accuracy']:.2f}% | "
                f"{100 * (acc['quantized_accuracy'] - acc['float_accuracy']):+.2f} |"
            )
        lines.append(row)
    for m in models:
        fixed = m.get("float_depthwise_without_weight_bias_quantization")
        if fixed:
            lines += [
                "",
                f"{m['label']} model, float-depthwise with ONNX Runtime's `WeightBiasQuantization` optimizer "
                'disabled (`InferenceSession(..., disabled_optimizers=["WeightBiasQuantization"])`): '
                "agreement "
                f"{100 * fixed['top1_agreement']:.2f}%, accuracy {100 * fixed['quantized_accuracy']:.2f}%.",
            ]
        margins = m.get("default_disagreements")
        if margins and margins["disagreements"]:
            lines += [
                "",
                f"{m['label']} model: where `default` and float32 disagree ({margins['disagreements']} of "
                f"{margins['images']} images), the float model was all but tied between its top two classes: "
                f"median softmax margin {margins['median_margin_where_they_differ']:.3f} there, against "
                f"{margins['median_margin_overall']:.2f} over all images. On the "
                f"{100 * margins['share_with_margin_at_least_0.1']:.1f}% of images where the margin is at "
                "least "
                f"0.1, agreement is {100 * margins['agreement_with_margin_at_least_0.1']:.2f}%.",
            ]
    if q.get("accuracy_note"):
        lines += ["", q["accuracy_note"]]
    lines.append("")

    lines += [
        "## 4. OpenMP wait policy (PyTorch channels_last, MobileNetV1 1.0-224, batch 1, 2 threads)",
        "",
        "Fresh processes, alternated; the 1-minute load average shows how busy the machine was.",
        "",
        "| OMP_WAIT_POLICY | round | median ms | load average |",
        "|---|---:|---:|---:|",
    ]
    for row in results["wait_policy"]:
        lines.append(
            f"| {row['policy']} | {row['round']} | {row['median_ms']:.2f} | {row['load_average_1min']:.2f} |"
        )
    lines.append("")
    return "\n".join(lines)


def summarize_targets(results: dict) -> list[str]:
    """The issue's targets next to this run's figures (MobileNetV1 1.0-224, 2 threads)."""
    bench = results["backends"]
    by_key = {(r["model"], r["backend"], r["batch"]): r for r in bench["results"] if not r["error"]}
    name, twin = bench["models"][0]["name"], bench["models"][1]["name"]
    speedups = {(r["backend"], r["batch"]): r for r in bench["speedups"]}

    def vs_ort(backend: str, batch: int) -> str:
        mine, ort = by_key.get((name, backend, batch)), by_key.get((name, "onnxruntime", batch))
        return "—" if not (mine and ort) else f"{mine['median_ms'] / ort['median_ms']:.2f}×"

    float_backends = [b for b in bench["settings"]["backends"] if b != "onnxruntime-int8"]
    fastest = min(
        (b for b in float_backends if (name, b, 1) in by_key), key=lambda b: by_key[(name, b, 1)]["median_ms"]
    )
    variants = {row["variant"]: row for row in results["float_variants"]}
    spinning = variants.get("onnxruntime, spinning threads (ORT default)")
    lines = [
        "## Summary against the targets",
        "",
        "| target | this run |",
        "|---|---|",
        f"| fastest float32 path ≤ 1.0× ONNX Runtime float32 (batch 1) | {fastest}: {vs_ort(fastest, 1)} of "
        "ONNX Runtime float32 as `bench` runs it"
        + (
            f"; ONNX Runtime with its default spinning threads is {spinning['vs_onnxruntime']:.2f}× slower "
            "than that (section 2)"
            if spinning
            else ""
        )
        + " |",
        "| PyTorch: folded BN + channels_last closes most of eager's gap (batch 1) | eager "
        f"{vs_ort('torch', 1)}, "
        f"folded + channels_last {vs_ort('torch-channels-last', 1)}, + torch.compile "
        f"{vs_ort('torch-compile', 1)} "
        "of ONNX Runtime float32 |",
        f"| int8 ≤ 0.5× ONNX Runtime float32 | section 1: batch 1 {vs_ort('onnxruntime-int8', 1)}, batch 32 "
        f"{vs_ort('onnxruntime-int8', 32)}; section 3 ({results['int8_repeats']} rounds, batch 1): "
        f"{results['int8']['latency']['default']['vs_float32']:.2f}× |",
    ]
    main_model = (results["int8"].get("models") or [None])[0]
    if main_model:
        acc = main_model["accuracy"]["default"]
        lines.append(
            f"| int8: ≥ 99% top-1 agreement, ≤ 1 point accuracy drop on CIFAR-10 validation | "
            f"{100 * acc['top1_agreement']:.2f}% agreement, "
            f"{100 * (acc['quantized_accuracy'] - acc['float_accuracy']):+.2f} points "
            f"({main_model['label']} model, section 3) |"
        )
    row = speedups.get((fastest, 1))
    lines.append(
        f"| {name} over {twin} ≥ 6.8× on the fastest path (theory {row['theoretical']:.2f}×) | "
        + ", ".join(
            f"{b} batch {n}: {speedups[(b, n)]['measured']:.2f}×"
            for b in ("onnxruntime", "torch")
            for n in bench["settings"]["batches"]
            if speedups.get((b, n)) and speedups[(b, n)]["measured"]
        )
        + " |"
    )
    lines += [
        "",
        "The machine is shared and was busy (load averages above), so figures move from run to run: "
        "compare rows within one table, and rerun before trusting a ratio close to its target.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, batch 1, no torch-compile, 1 epoch")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 train folder (class subfolders)"
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="a CIFAR-10 checkpoint (default: train one, cached in runs/)"
    )
    parser.add_argument("--epochs", type=int, default=8, help="when training the CIFAR-10 model here")
    parser.add_argument("--calibration-images", type=int, default=512)
    parser.add_argument("--output", type=Path, help="default: docs/benchmarks.md (--quick: runs/benchmarks/)")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only rewrite the markdown from a results JSON this script wrote (no measuring)",
    )
    args = parser.parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
        output = args.output or REPO / "docs" / "benchmarks.md"
        output.write_text(render_markdown(results, results["command"]) + "\n")
        print(f"wrote {output} from {args.render}")
        return
    # A quick run is a smoke test: it must not overwrite the published figures.
    out_dir = CACHE if args.quick else REPO / "docs"
    output = args.output or out_dir / ("benchmarks-quick.md" if args.quick else "benchmarks.md")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"no checkpoint at {args.checkpoint}")
    repeats = 3 if args.quick else 10  # section 1: the "median of 10"
    short_repeats = 3 if args.quick else 30  # sections 2 and 3: batch 1 only, so more rounds are cheap
    batches = (1,) if args.quick else (1, 32)
    backends = tuple(b for b in BACKENDS if not (args.quick and b == "torch-compile"))
    epochs = 1 if args.quick else args.epochs
    start = time.time()
    results = {"machine": machine_description(), "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    results["backends"] = section_backends(repeats, batches, backends)
    results["float_variants"] = section_float_variants(short_repeats)
    results["float_variants_repeats"] = results["int8_repeats"] = short_repeats
    results["int8"] = section_int8(
        short_repeats,
        args.data,
        args.checkpoint,
        epochs,
        args.calibration_images,
        list(INT8_SETTINGS),
        fragile_model=not args.quick and args.checkpoint is None,
    )
    results["wait_policy"] = section_wait_policy()
    results["seconds"] = time.time() - start
    command = ".venv/bin/python benchmarks/cpu_inference.py" + " ".join([""] + sys.argv[1:])
    results["command"] = command
    json_path = (
        CACHE / "cpu_inference-quick.json"
        if args.quick
        else REPO / "benchmarks" / "results" / "cpu_inference.json"
    )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_markdown(results, command) + "\n")
    print(f"wrote {output} and {json_path} in {results['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
