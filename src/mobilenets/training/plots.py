"""The training curves, the confusion matrix and the side-by-side comparison as PNG files (drawn in
the project's one style, `figures.figure`)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import torch

from ..figures import figure


def plot_confusion(
    confusion: list[list[int]], class_names: list[str], path: str | os.PathLike, title: str | None = None
) -> None:
    """Row-normalised confusion matrix (each true class's share of predictions) in colour with a colour
    bar, and the raw counts written in the cells; `title` says what was evaluated on what."""
    matrix = torch.tensor(confusion, dtype=torch.float64)
    normalized = matrix / matrix.sum(1, keepdim=True).clamp(min=1)
    size = max(4.5, 0.5 * len(class_names) + 2.5)
    with figure(path, size=(size + 1, size)) as (fig, axis):
        image = axis.imshow(normalized.numpy(), cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
        axis.grid(False)  # a grid would cross the cells
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
                        fontsize="small",
                        color="white" if normalized[i, j] > 0.5 else "black",
                    )


def plot_curves(history: list[dict], path: Path, title: str | None = None) -> None:
    epochs = [row["epoch"] for row in history]
    with figure(path, size=(10, 4), panels=2) as (fig, (loss_axis, acc_axis)):
        loss_axis.plot(epochs, [r["train_loss"] for r in history], label="train")
        loss_axis.plot(epochs, [r["val_loss"] for r in history], label="validation")
        loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss")
        acc_axis.plot(epochs, [100 * r["train_acc"] for r in history], label="train")
        acc_axis.plot(epochs, [100 * r["val_top1"] for r in history], label="validation top-1")
        acc_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
        if title:
            fig.suptitle(title)
        for axis in (loss_axis, acc_axis):
            axis.legend()


def plot_side_by_side(runs: dict[str, list[dict]], path: str | os.PathLike, title: str) -> None:
    """Validation top-1 (solid) and train accuracy (dashed) by epoch of several runs in one figure:
    `runs` maps each run's label to its history."""
    with figure(path) as (_, axis):
        for index, (label, history) in enumerate(runs.items()):
            epochs, color = [row["epoch"] for row in history], f"C{index % 10}"
            axis.plot(
                epochs,
                [100 * r["val_top1"] for r in history],
                color=color,
                label=f"{label}: validation top-1",
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
        axis.legend(loc="lower right")
