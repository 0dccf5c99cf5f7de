"""Published ImageNet top-1 accuracy, read from `data_files/imagenet_top1.json`, where every number
names its source (the papers' tables, TF-slim's checkpoint tables that the Keras weights come
from, torchvision's weight metadata)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

DATA_FILE = "imagenet_top1.json"


@lru_cache(maxsize=1)
def accuracy_data() -> dict:
    with resources.files(__package__).joinpath("data_files", DATA_FILE).open(encoding="utf-8") as handle:
        return json.load(handle)


def citation(source: str) -> str:
    return accuracy_data()["sources"][source]


def paper_comparison(
    model: str, width_mult: float | None = None, resolution: int | None = None
) -> dict | None:
    """The row of the MobileNet paper's Table 8 or 9 (or the cited figure for ResNet-50) for
    `model`; MobileNets match on width and resolution too. None when the paper has no such row."""
    for row in accuracy_data()["paper_comparisons"]:
        if row["model"] != model:
            continue
        if row["width_mult"] is None or (row["width_mult"] == width_mult and row["resolution"] == resolution):
            return row
    return None


def published_configurations(families: tuple[str, ...] = ("v1", "v2", "v3")) -> list[dict]:
    """Every configuration with published ImageNet weights in the given families, with its top-1."""
    return [
        row
        for row in accuracy_data()["published_weights"]
        if row["model"].removeprefix("mobilenet_").split("_")[0] in families
    ]
