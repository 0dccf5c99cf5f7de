"""Evaluation and prediction with trained checkpoints, or with the files `mobilenets export` wrote
(.onnx, OpenVINO .xml, ...: run by their runtime, with the preprocessing and validation split their
sidecar recorded from the checkpoint)."""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint
from ..data import MemoryImages, load_data, make_loader, predict_top_k
from ..data.datasets import DataBundle, FileLoader, MemoryLoader
from ..deploy.runtimes import ExportedModel, load_exported, runtime_for_file
from ..deploy.sidecar import names_digest
from ..files import check_writable_file
from .plots import plot_confusion


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: MemoryLoader | FileLoader,
    num_classes: int,
    device: torch.device | str = "cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
    amp: bool = False,
    tta: bool = False,
    progress: bool = False,
) -> dict:
    """Loss, top-1, top-5, per-class accuracy and the confusion matrix over one pass of `loader`.

    tta: also score flip test-time augmentation (the mean of the class probabilities of each image
    and its mirror image), reported apart under "tta"; the plain figures never include it."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum, top5_hits, count = 0.0, 0, 0
    k = min(5, num_classes)
    flipped = {"loss": 0.0, "top1": 0, "top5": 0}
    bar = None
    if progress:  # a bar with ETA on a terminal, nothing otherwise (disable=None)
        from tqdm import tqdm

        bar = tqdm(
            total=len(loader), desc="evaluating", unit="batch", file=sys.stderr, disable=None, leave=False
        )
    try:
        for images, labels in loader.batches(0):
            if bar is not None:
                bar.update(1)
            images = images.to(device, memory_format=memory_format)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(images).float().cpu()
                mirrored = model(images.flip(-1)).float().cpu() if tta else None
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            top5_hits += (logits.topk(k, 1).indices == labels[:, None]).any(1).sum().item()
            if mirrored is not None:
                probabilities = (logits.softmax(1) + mirrored.softmax(1)) / 2
                flipped["loss"] += F.nll_loss(probabilities.log(), labels, reduction="sum").item()
                flipped["top1"] += (probabilities.argmax(1) == labels).sum().item()
                flipped["top5"] += (probabilities.topk(k, 1).indices == labels[:, None]).any(1).sum().item()
            confusion += torch.bincount(
                labels * num_classes + logits.argmax(1), minlength=num_classes * num_classes
            ).view(num_classes, num_classes)
            count += labels.numel()
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    if count == 0:
        raise ValueError("evaluation data is empty")
    per_class_total = confusion.sum(1)
    per_class = (confusion.diag().double() / per_class_total.clamp(min=1)).tolist()
    predicted = confusion.sum(0)
    metrics = {
        "loss": loss_sum / count,
        # The share of the most predicted class: near 1 when a model has collapsed to one answer.
        "top_prediction": int(predicted.argmax()),
        "top_prediction_share": predicted.max().item() / count,
        "top1": confusion.diag().sum().item() / count,
        "top5": top5_hits / count,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "images": count,
    }
    if tta:
        metrics["tta"] = {"kind": "horizontal flip", **{key: value / count for key, value in flipped.items()}}
    return metrics


COLLAPSE_SHARE = 0.9  # one class for more than this share of a split (of several classes): flagged


def collapse_warning(metrics: dict, class_names: list[str]) -> str | None:
    """One line when the model answers one class for more than COLLAPSE_SHARE of the images."""
    share = metrics["top_prediction_share"]
    if len(class_names) < 2 or share <= COLLAPSE_SHARE:
        return None
    return (
        f"warning: the model predicts {class_names[metrics['top_prediction']]!r} for {100 * share:.1f}% of "
        f"the {metrics['images']} images: it has collapsed to one class (check the learning rate, the "
        f"labels and the class balance)"
    )


def load_for_inference(path: str | os.PathLike) -> Checkpoint | ExportedModel:
    """A checkpoint, or an exported file by its suffix: either has model, class_names,
    preprocessing and metadata (the validation split)."""
    return load_exported(path) if runtime_for_file(path) is not None else load_checkpoint(path)


def evaluate_checkpoint(
    checkpoint_path: str | os.PathLike,
    data: str,
    split: str = "val",
    batch_size: int = 256,
    workers: int = 2,
    confusion_png: str | os.PathLike | None = None,
    skip_bad_images: bool = False,
    tta: bool = False,
) -> dict:
    """Evaluate a checkpoint (or an exported file, see `load_for_inference`) on a data source.

    split "val": the validation split the checkpoint was trained with (same seed and fraction);
    split "all": every image of the source (e.g. a separate test folder).
    tta: add flip test-time augmentation's figures under "tta" (see `evaluate`).
    """
    if split not in ("val", "all"):
        raise ValueError(f"split must be 'val' or 'all'; got {split!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size (--batch-size) must be a positive integer; got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers (--workers) must be 0 or more; got {workers!r}")
    checkpoint = load_for_inference(checkpoint_path)
    if confusion_png is not None:  # before the evaluation, not after it
        check_writable_file(confusion_png, "confusion matrix file")
    recorded = checkpoint.metadata.get("split", {})
    seed = recorded.get("seed", 0)
    bundle = load_data(
        data,
        checkpoint.preprocessing["size"] if checkpoint.preprocessing else None,
        recorded.get("val_fraction", 0.1),
        seed,
        skip_bad_images=skip_bad_images,
        workers=workers,
        val_files=recorded.get("val_files") if split == "val" else None,
    )
    if tta and not bundle.flip:
        raise ValueError(
            f"--tta averages each image with its mirror image, but {data} is not mirror-symmetric "
            f"(it trains without flips); evaluate without --tta"
        )
    if checkpoint.class_names is not None and bundle.class_names != checkpoint.class_names:
        raise ValueError(f"{data} has classes {bundle.class_names}, the checkpoint {checkpoint.class_names}")
    if checkpoint.preprocessing:  # evaluate exactly as trained
        bundle.mean = tuple(checkpoint.preprocessing["mean"])
        bundle.std = tuple(checkpoint.preprocessing["std"])
    whole, scope = evaluation_scope(bundle, recorded, split, data)
    subset = _concatenate(bundle.train, bundle.val) if whole else bundle.val
    loader = make_loader(subset, bundle, batch_size, train=False, workers=workers)
    metrics = evaluate(checkpoint.model, loader, len(bundle.class_names), tta=tta, progress=True)
    metrics["class_names"] = bundle.class_names
    metrics["scope"] = scope
    if confusion_png is not None:
        name = os.path.basename(os.fspath(checkpoint_path))
        which = "all images" if whole else "validation split"
        title = f"{name}, {which} of {data} ({metrics['images']} images)"
        plot_confusion(metrics["confusion"], bundle.class_names, confusion_png, title)
    return metrics


def evaluation_scope(bundle: DataBundle, recorded: dict, split: str, data: str) -> tuple[bool, str]:
    """(whether to score every image of `data`, the words that say which images were scored).

    A recorded split applies only to the folder it was recorded on: one holding under half of the
    recorded validation files (data.recorded_split), or whose seeded split's file names do not hash
    to the one an exported file's sidecar recorded, is another folder, and all of it is scored."""
    kind = bundle.split.get("kind")
    if split == "all":
        return True, f"all of {data}"
    if kind == "not_recorded":
        found, total = bundle.split["recorded_found"], bundle.split["recorded"]
        return True, (
            f"all of {data}; no recorded split for this folder: it holds {found} of the {total} validation "
            f"files the checkpoint recorded, so it is not the folder it was trained on"
        )
    by_hash = recorded.get("val_files_sha256")
    if by_hash and kind == "held_out":
        if names_digest(bundle.split["val_files"]) != by_hash:
            return True, (
                f"all of {data}; no recorded split for this folder: its seeded validation split is not the "
                f"one the checkpoint recorded (the file names' hash differs)"
            )
        return False, f"the {len(bundle.val)} validation files the checkpoint recorded (same hash) in {data}"
    if kind == "held_out" and recorded.get("val_files"):
        return False, f"the {len(bundle.val)} validation files the checkpoint recorded, found in {data}"
    if kind == "source":
        return False, f"the {bundle.split['val']}/ folder of {data}"
    return False, f"the checkpoint's validation split of {data}"


def _concatenate(first, second):
    if isinstance(first, MemoryImages):
        return MemoryImages(
            torch.cat([first.images, second.images]), torch.cat([first.labels, second.labels])
        )
    return type(first)(first.paths + second.paths, torch.cat([first.labels, second.labels]))


def predict(checkpoint_path: str | os.PathLike, images: list[str], top_k: int = 5) -> list[dict]:
    """Top-k class names with probabilities for each image file (`data.predict_top_k`), each image
    prepared as the checkpoint (or the exported file, `load_for_inference`) was evaluated."""
    checkpoint = load_for_inference(checkpoint_path)
    if not checkpoint.preprocessing:
        raise ValueError(f"{checkpoint_path} records no preprocessing; cannot prepare images for it")
    model = checkpoint.model
    num_classes = model.config.num_classes
    if num_classes is None:
        raise ValueError(f"{checkpoint_path} holds a feature extractor (no classifier); it cannot predict")
    names = checkpoint.class_names or [str(i) for i in range(num_classes)]
    return predict_top_k(model, images, checkpoint.preprocessing, names, top_k)


__all__ = [
    "collapse_warning",
    "evaluate",
    "evaluate_checkpoint",
    "load_for_inference",
    "plot_confusion",
    "predict",
]
