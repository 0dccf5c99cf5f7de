"""Accuracy gates: which reduced-precision runtime paths `bench` may call "recommended".

A path (a `bench` backend such as onnxruntime-int8 or openvino-bf16) passes when, on the shipped
CIFAR-10 model's validation split, its top-1 predictions agree with PyTorch float32's on at least
99% of the images and its accuracy differs from float32's by at most 0.5 points (either way: a
"gain" that large is as much a sign of changed answers as a loss).

The measurements come from `benchmarks/runtimes.py`, which writes them to `accuracy_gates.json`
beside this module (one entry per backend, with the CPU, the library versions and the number of
images they were measured on); the thresholds live here, so a reader of the JSON and `bench` judge
alike. A path with no measurement is "not measured", never recommended. float32 paths are
references, not gated: their parity with PyTorch (≤ 1e-4) is a test.

The int8 and bf16 answers depend on the CPU's kernels: ONNX Runtime's u8·s8 kernels saturate
without VNNI, OpenVINO runs bf16 only with AVX-512 BF16 or AMX. So the file keeps one measurement
per set of instruction-set features (deploy/cpu.py), and a machine is judged only by the
measurement taken on a CPU with exactly its features, of the weights the package ships now; on any
other CPU, or after the shipped weights changed, every reduced-precision path is "not measured"
until benchmarks/runtimes.py has run again there.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..files import write_atomically
from ..pretrained.registry import bundled_checkpoint
from .cpu import CPU_FEATURES, cpu_model_and_features

MIN_AGREEMENT = 0.99
MAX_CHANGE_POINTS = 0.5
GATES_FILE = Path(__file__).with_name("accuracy_gates.json")
REDUCED_PRECISIONS = ("int8", "bf16", "f16")
GATES_FORMAT = "mobilenets.accuracy-gates/2"


def passes(top1_agreement: float, accuracy_change_points: float) -> bool:
    return top1_agreement >= MIN_AGREEMENT and abs(accuracy_change_points) <= MAX_CHANGE_POINTS


def load_gates(
    path: str | os.PathLike = GATES_FILE,
    cpu_features: list[str] | None = None,
    weights_file: str | None = None,
    weights_sha256: str | None = None,
) -> dict:
    """The measurement for a CPU with `cpu_features` (default: this machine's) of the weights in
    `weights_file` (default: the `cifar10` weights this package ships):
    {"measured_on": {...}, "backends": {backend: {"top1_agreement", "accuracy_change_points", ...}
    or {"error": why not measured}}}; with no such measurement, "measured_on" None, no backends and
    "why" saying what was measured instead."""
    if cpu_features is None:
        cpu_features = cpu_model_and_features()[1]
    if weights_file is None:  # the shipped weights, known by their bytes: a retrained file keeps its name
        shipped = bundled_checkpoint("cifar10")
        weights_file = shipped.name if shipped else "none"
        weights_sha256 = hashlib.sha256(shipped.read_bytes()).hexdigest() if shipped else None
    measurements = read_measurements(path)
    this_cpu = [m for m in measurements if _features(m) == sorted(cpu_features)]
    for measurement in this_cpu:
        measured = measurement["measured_on"]
        if measured.get("weights_file") == weights_file and measured.get("weights_sha256") == weights_sha256:
            return measurement
    if this_cpu:
        other = this_cpu[0]["measured_on"]
        digest = f", SHA-256 {other['weights_sha256'][:12]}" if other.get("weights_sha256") else ""
        why = (
            f"measured on this CPU for other weights ({other.get('weights_file')}{digest}), not the "
            f"shipped {weights_file}: rerun benchmarks/runtimes.py --write-gates"
        )
    elif measurements:
        elsewhere = "; ".join(
            f"{m['measured_on']['cpu']} ({', '.join(m['measured_on']['cpu_features'])})" for m in measurements
        )
        why = (
            f"measured on {elsewhere}, not on a CPU with this one's features "
            f"({', '.join(cpu_features) or 'none of ' + ', '.join(CPU_FEATURES)})"
        )
    else:
        why = "no gate measurement"
    return {"measured_on": None, "backends": {}, "why": why}


def _features(measurement: dict) -> list[str]:
    return sorted(measurement["measured_on"]["cpu_features"])


def read_measurements(path: str | os.PathLike = GATES_FILE) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    content = json.loads(path.read_text(encoding="utf-8"))
    if content.get("format") != GATES_FORMAT:
        raise ValueError(
            f"{path}: not an accuracy gates file of format {GATES_FORMAT!r}; "
            "rewrite it with benchmarks/runtimes.py --write-gates"
        )
    return content["measurements"]


def save_measurement(measurement: dict, path: str | os.PathLike = GATES_FILE) -> None:
    """Add `measurement` to the file, replacing the one taken on a CPU with the same features;
    written atomically (a temporary file moved over the old one)."""
    path = Path(path)
    kept = [m for m in read_measurements(path) if _features(m) != _features(measurement)]
    text = json.dumps({"format": GATES_FORMAT, "measurements": [*kept, measurement]}, indent=2) + "\n"
    write_atomically(path, text)


def verdict(backend: str, precision: str, gates: dict) -> dict:
    """What `bench` says about a backend's accuracy: status "reference" (float32), "recommended",
    "fails gate" or "not measured", with the figures behind it."""
    if precision not in REDUCED_PRECISIONS:
        return {"status": "reference"}
    entry = gates["backends"].get(backend)
    if entry is None or "top1_agreement" not in entry:
        return {
            "status": "not measured",
            "why": (entry or {}).get("error", gates.get("why", "no gate measurement")),
        }
    ok = passes(entry["top1_agreement"], entry["accuracy_change_points"])
    return {
        "status": "recommended" if ok else "fails gate",
        "top1_agreement": entry["top1_agreement"],
        "accuracy_change_points": entry["accuracy_change_points"],
    }


def describe(result: dict) -> str:
    if result["status"] in ("recommended", "fails gate"):
        return (
            f"{result['status']} ({100 * result['top1_agreement']:.2f}% agree, "
            f"{result['accuracy_change_points']:+.2f} pts)"
        )
    return result["status"]
