"""The training curves and the confusion matrix as PNG files (matplotlib, imported on first use)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import torch

from ..files import write_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, on machines without a display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(
    confusion: list[list[int]], class_names: list[str], path: str | os.PathLike, title: str | None = None
) -> None:
    """Row-normalised confusion matrix (each true class's share of predictions) in colour with a colour
    bar, and the raw counts written in the cells; `title` says what was evaluated on what."""
    plt = _pyplot()
    matrix = torch.tensor(confusion, dtype=torch.float64)
    normalized = matrix / matrix.sum(1, keepdim=True).clamp(min=1)
    size = max(4.5, 0.5 * len(class_names) + 2.5)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(normalized.numpy(), cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    axis.set_xticks(range(len(class_names)), class_names, rotation=90)
    axis.set_yticks(range(len(class_names)), class_names)
    heading = "Confusion matrix: colour = row share, numbers = image counts"
    title = f"{textwrap.fill(title, 70)}\n{heading}" if title else heading
    axis.set(xlabel="predicted", ylabel="true", title=title)
    if len(class_names) <= 20:
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                axis.text(
                    j,
                    i,
                    int(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if normalized[i, j] > 0.5 else "black",
                )
    figure.tight_layout()
    write_figure(figure, path, dpi=100)
    plt.close(figure)


def plot_curves(history: list[dict], path: Path, title: str | None = None) -> None:
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [r["train_loss"] for r in history], label="train")
    loss_axis.plot(epochs, [r["val_loss"] for r in history], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss")
    acc_axis.plot(epochs, [100 * r["train_acc"] for r in history], label="train")
    acc_axis.plot(epochs, [100 * r["val_top1"] for r in history], label="validation top-1")
    acc_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    if title:
        figure.suptitle(title)
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    write_figure(figure, path, dpi=100)
    plt.close(figure)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def plot_side_by_side(runs: dict[str, list[dict]], path: str | os.PathLike, title: str) -> None:
    """Validation top-1 (solid) and train accuracy (dashed) by epoch of several runs in one figure:
    `runs` maps each run's label to its history."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    colors = ("tab:blue", "tab:red", "tab:green", "tab:purple")
    for (label, history), color in zip(runs.items(), colors, strict=False):  # up to four runs; usually two
        epochs = [row["epoch"] for row in history]
        axis.plot(
            epochs, [100 * r["val_top1"] for r in history], color=color, label=f"{label}: validation top-1"
        )
        axis.plot(
            epochs,
            [100 * r["train_acc"] for r in history],
            color=color,
            linestyle="--",
            alpha=0.6,
            label=f"{label}: train (augmented)",
        )
    axis.set(xlabel="epoch", ylabel="accuracy (%)", title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    write_figure(figure, path, dpi=100)
    plt.close(figure)
