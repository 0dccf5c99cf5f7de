"""ImageNet-1k class names, each source's input preprocessing, and top-k prediction for converted
models.

The 1000 names are Keras's `imagenet_class_index.json` (the order every published MobileNet uses),
with underscores shown as spaces; they ship in imagenet_classes.txt so nothing is downloaded.
Two names occur twice in ImageNet itself: "crane" (134 the bird, 517 the machine) and "maillot"
(638, 639).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from importlib import resources

from ..data import predict_top_k
from ..data.images import INTERPOLATIONS
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..models import MobileNet

IMAGENET_CLASSES = 1000
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # TensorFlow and Keras: x / 127.5 - 1, values in [-1, 1]
INCEPTION_STD = (0.5, 0.5, 0.5)
DEFAULT_CROP_FRACTION = 0.875  # evaluate on the central 87.5%: resize to 256, crop 224


@functools.lru_cache(maxsize=1)
def _class_names() -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(text.splitlines())
    if len(names) != IMAGENET_CLASSES:  # a damaged install, not a user mistake
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, expected {IMAGENET_CLASSES}")
    return names


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in the index order of every published MobileNet."""
    return list(_class_names())


def preprocessing(
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    crop_fraction: float = DEFAULT_CROP_FRACTION,
    interpolation: str = "bilinear",
    note: str | None = None,
) -> dict:
    """How to turn an image into this model's input, in the checkpoint format's "preprocessing"
    dict (size, resize, mean, std on 0..1 RGB) plus the interpolation and a human note."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")
    result = {
        "size": size,
        "resize": round(size / crop_fraction),
        "mean": list(mean),
        "std": list(std),
        "interpolation": interpolation,
    }
    if note:
        result["note"] = note
    return result


def converted_extra(source: dict, recipe: dict, num_classes: int | None) -> dict:
    """What a converted model records beside its architecture (`ModelConfig.extra`): where it came
    from, how its source prepared images, and its class names (ImageNet's, as a list, for a
    1000-class classifier; None otherwise)."""
    names = imagenet_class_names() if num_classes == IMAGENET_CLASSES else None
    return {"source": source, "preprocessing": recipe, "class_names": names}


def with_size(recipe: dict, size: int) -> dict:
    """The same recipe at another input size (the crop fraction kept)."""
    crop_fraction = recipe["size"] / recipe["resize"]
    return {**recipe, "size": size, "resize": round(size / crop_fraction)}


def model_preprocessing(model: MobileNet) -> dict:
    """The preprocessing a converted model records; ImageNet mean/std at its resolution otherwise."""
    config = model.config
    return config.extra.get("preprocessing") or preprocessing(config.resolution, IMAGENET_MEAN, IMAGENET_STD)


def predict_imagenet(
    model: MobileNet,
    images: Sequence[str | os.PathLike],
    top_k: int = 5,
    class_names: list[str] | None = None,
) -> list[dict]:
    """Top-k (class name, probability) for each image file, each image prepared as the model's
    source prepared its evaluation images (`data.predict_top_k`).

    Returns [{"image": path, "top": [(name, probability), ...]}, ...], the format of
    `evaluate.predict`. Class names default to those the model records (`config.extra`: converted
    and published weights), else ImageNet's for a 1000-class model, else the class indices.
    """
    head = model.config.head
    if head is None:
        raise ValueError("this model has no classifier (features_only); it cannot predict classes")
    num_classes = head.num_classes
    if class_names is None:
        class_names = model.config.extra.get("class_names")
    if class_names is None:
        class_names = (
            imagenet_class_names()
            if num_classes == IMAGENET_CLASSES
            else [str(i) for i in range(num_classes)]
        )
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {num_classes} classes")
    return predict_top_k(model, images, model_preprocessing(model), class_names, top_k)
