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
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MIN_AGREEMENT = 0.99
MAX_CHANGE_POINTS = 0.5
GATES_FILE = Path(__file__).with_name("accuracy_gates.json")
REDUCED_PRECISIONS = ("int8", "bf16", "f16")


def passes(top1_agreement: float, accuracy_change_points: float) -> bool:
    return top1_agreement >= MIN_AGREEMENT and abs(accuracy_change_points) <= MAX_CHANGE_POINTS


def load_gates(path: str | os.PathLike = GATES_FILE) -> dict:
    """{"measured_on": {...}, "backends": {backend: {"top1_agreement", "accuracy_change_points",
    ...} or {"error": why not measured}}}; empty when nothing was measured."""
    path = Path(path)
    if not path.is_file():
        return {"measured_on": None, "backends": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def verdict(backend: str, precision: str, gates: dict) -> dict:
    """What `bench` says about a backend's accuracy: status "reference" (float32), "recommended",
    "fails gate" or "not measured", with the figures behind it."""
    if precision not in REDUCED_PRECISIONS:
        return {"status": "reference"}
    entry = gates["backends"].get(backend)
    if entry is None or "top1_agreement" not in entry:
        return {"status": "not measured", "why": (entry or {}).get("error", "no gate measurement")}
    ok = passes(entry["top1_agreement"], entry["accuracy_change_points"])
    return {"status": "recommended" if ok else "fails gate", "top1_agreement": entry["top1_agreement"],
            "accuracy_change_points": entry["accuracy_change_points"]}


def describe(result: dict) -> str:
    if result["status"] in ("recommended", "fails gate"):
        return (f"{result['status']} ({100 * result['top1_agreement']:.2f}% agree, "
                f"{result['accuracy_change_points']:+.2f} pts)")
    return result["status"]
