"""Does int8 keep the shipped CIFAR-10 model's answers? Agreement and accuracy on its validation split.

    python benchmarks/int8_cifar10.py [--data ../shared/data/cifar10/train] [--setting default]
                                      [--calibration-images 512]

The `cifar10` weights are exported to ONNX (BatchNorm folded) and quantized with `export --int8`'s
code and setting, calibrated on images of the training split (never on the validation images); then
float32 and int8 ONNX Runtime run the 5,000 validation images the checkpoint records (seed 0, 10%),
and we report top-1 agreement and both accuracies. Targets (issue: int8 that keeps the answer):
agreement ≥ 99% and an accuracy change within 0.3 points. Writes benchmarks/results/int8_cifar10.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mobilenets.checkpoint import load_checkpoint  # noqa: E402
from mobilenets.data import load_data, make_loader  # noqa: E402
from mobilenets.deploy.base import compare_predictions  # noqa: E402
from mobilenets.deploy.cpu import machine_description  # noqa: E402
from mobilenets.deploy.export import (  # noqa: E402
    INT8_SETTINGS,
    export_onnx,
    ort_session,
    quantize_int8,
    run_session,
)
from mobilenets.pretrained.registry import bundled_checkpoint  # noqa: E402


def as_arrays(loader) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*loader.batches(0), strict=True)
    return torch.cat(images).numpy(), torch.cat(labels).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/cifar10/train")
    )
    parser.add_argument("--setting", default="default", choices=sorted(INT8_SETTINGS))
    parser.add_argument("--calibration-images", type=int, default=512)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "int8_cifar10.json"))
    args = parser.parse_args()

    path = bundled_checkpoint("cifar10")
    checkpoint = load_checkpoint(path)
    model = checkpoint.model.eval()
    split = checkpoint.metadata["split"]
    bundle = load_data(args.data, checkpoint.preprocessing["size"], split["val_fraction"], split["seed"])
    bundle.mean, bundle.std = tuple(checkpoint.preprocessing["mean"]), tuple(checkpoint.preprocessing["std"])
    val_images, val_labels = as_arrays(make_loader(bundle.val, bundle, 500, train=False))
    calibration_index = torch.randperm(len(bundle.train), generator=torch.Generator().manual_seed(0))
    calibration_set = bundle.train.subset(calibration_index[: args.calibration_images])
    calibration, _ = as_arrays(make_loader(calibration_set, bundle, 500, train=False))

    with tempfile.TemporaryDirectory() as tmp:
        float_path = export_onnx(
            model, Path(tmp) / "cifar10.onnx", resolution=checkpoint.preprocessing["size"], dynamic_batch=True
        )
        int8_path = quantize_int8(
            float_path, Path(tmp) / "cifar10.int8.onnx", calibration, INT8_SETTINGS[args.setting]
        )
        float_logits = run_session(ort_session(float_path), val_images, batch_size=500)
        int8_logits = run_session(ort_session(int8_path), val_images, batch_size=500)
    with torch.inference_mode():
        torch_top1 = float((model(torch.from_numpy(val_images)).argmax(1).numpy() == val_labels).mean())
    result = compare_predictions(float_logits, int8_logits, val_labels)
    report = {
        "machine": machine_description(),
        "weights": str(path),
        "setting": args.setting,
        "setting_description": INT8_SETTINGS[args.setting].describe(),
        "calibration_images": len(calibration),
        "validation_images": result.images,
        "top1_agreement": result.top1_agreement,
        "float_top1": result.float_accuracy,
        "int8_top1": result.quantized_accuracy,
        "pytorch_top1": torch_top1,
        "accuracy_change_points": 100 * (result.quantized_accuracy - result.float_accuracy),
        "meets_targets": result.top1_agreement >= 0.99
        and abs(result.quantized_accuracy - result.float_accuracy) <= 0.003,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(
        f"{args.setting} ({report['setting_description']}), calibrated on {len(calibration)} training "
        "images; "
        f"{result.images} validation images on {report['machine']['cpu']}:\n"
        f"  top-1 agreement {100 * result.top1_agreement:.2f}%\n"
        f"  top-1 float {100 * result.float_accuracy:.2f}% (PyTorch {100 * torch_top1:.2f}%), "
        f"int8 {100 * result.quantized_accuracy:.2f}% ({report['accuracy_change_points']:+.2f} points)\n"
        "  targets (agreement ≥ 99%, change within 0.3 points): "
        f"{'met' if report['meets_targets'] else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
