"""Image files: the one place they are found in a folder, decoded, and prepared for a model.

`list_images` scans a folder (flat, or one subfolder per class) for everything that reads images
from disk: training and evaluation (`datasets.load_data`), ONNX calibration and the benchmarks.
`preprocess_image` is the one evaluation pipeline: `eval`, `predict`, `predict_imagenet` and the
exported models' checks all prepare an image with it, following the model's recipe.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from . import transforms

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ORIENTATION_TAG = 0x0112  # EXIF Orientation
SMALL_IMAGE_MAX = 64  # images up to this size are kept decoded in memory, and seen at full frame
INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class DataError(ValueError):
    """Unusable data: the message names the path or file and what is wrong with it."""


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------
def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: grayscale, palette, RGBA/LA (composited on white), CMYK,
    and 16-bit or float images (scaled, not clipped)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode != "F" and array.max(initial=0) > 255:  # 16-bit data: 0..65535 → 0..255
            array = array / 257.0
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def open_image(path: str | os.PathLike, max_side: int | None = None) -> Image.Image:
    """Decode one file fully to RGB, upright as its EXIF orientation says (phone photos), or raise
    DataError naming the file: truncated, garbage, or a decompression bomb (Pillow's pixel limit).
    With max_side, a larger image is shrunk to fit (JPEGs are decoded at a reduced scale)."""
    image: Image.Image  # the file's own (an ImageFile) until it is transposed or converted
    try:
        with Image.open(path) as image:
            if max_side is not None and max(image.size) > max_side:
                image.draft("RGB", (max_side, max_side))
            image.load()  # decodes every byte: a truncated file fails here, unlike Image.verify()
            if image.getexif().get(ORIENTATION_TAG, 1) != 1:
                image = ImageOps.exif_transpose(image)
            image = to_rgb(image)
            if max_side is not None and max(image.size) > max_side:
                image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            return image
    except Exception as error:  # untrusted bytes: Pillow's decoders raise many kinds of error
        raise DataError(f"cannot read image {path}: {error}") from None


def unreadable_reason(path: str) -> str | None:
    """None if `path` decodes, else DataError's message naming it."""
    try:
        open_image(path)
    except DataError as error:
        return str(error)
    return None


# --------------------------------------------------------------------------------------------
# Finding images in a folder
# --------------------------------------------------------------------------------------------
@dataclass
class ImageFolder:
    """The image files of a folder: class-per-subfolder (labelled) or flat (unlabelled)."""

    root: Path
    paths: list[Path]
    labels: list[int] | None  # index into class_names; None for a flat folder
    class_names: list[str] | None


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _image_files(directory: Path, recursive: bool) -> list[Path]:
    found = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(f for f in found if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file() and _visible(f))


def list_images(folder: str | os.PathLike) -> ImageFolder:
    """The images of `folder`: one class per subfolder (each searched to any depth; files beside the
    subfolders are not part of any class), or, when no subfolder holds images, the folder's own files.
    Hidden files and folders are skipped. FileNotFoundError when there is no such folder, DataError
    when it holds no images or a class folder links back to the folder itself."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}")
    resolved_root = root.resolve()
    class_names: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)):
        if resolved_root.is_relative_to(class_dir.resolve()):  # a link to the data folder or above it
            raise DataError(
                f"class folder {class_dir} links to {class_dir.resolve()}, which holds the data "
                f"folder itself: every image would be a second time in class {class_dir.name!r}; "
                f"remove the link"
            )
        files = _image_files(class_dir, recursive=True)
        if files:
            labels += [len(class_names)] * len(files)
            class_names.append(class_dir.name)
            paths += files
    if paths:
        return ImageFolder(root, paths, labels, class_names)
    flat = _image_files(root, recursive=False)
    if not flat:
        raise DataError(
            f"image folder {root} is empty: no images found in it or in class subfolders "
            f"({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} files)"
        )
    return ImageFolder(root, flat, None, None)


def scan_image_folder(root: Path) -> tuple[list[str], list[str], list[int]]:
    """(class names, file paths, labels) of a class-per-folder tree with at least two classes, as
    training needs it."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of class subfolders")
    folder = list_images(root)
    if folder.labels is None or folder.class_names is None:  # (both None together: a flat folder)
        raise DataError(f"no images found in class subfolders of {root}: expected one subfolder per class")
    if len(folder.class_names) < 2:
        raise DataError(
            f"{root} has a single class ({folder.class_names[0]}); classification needs at least 2"
        )
    return folder.class_names, [str(path) for path in folder.paths], folder.labels


# --------------------------------------------------------------------------------------------
# Preparing an image for a model
# --------------------------------------------------------------------------------------------
def preprocess_image(path: str | os.PathLike, preprocessing: dict) -> torch.Tensor:
    """One image file → a normalized 1×3×S×S batch, following a model's recipe (the checkpoint
    format's "preprocessing": size, resize, mean, std on 0..1 RGB, optional interpolation): the
    shorter side scaled to `resize`, the central S×S crop, then (x - mean) / std. An image no larger
    than SMALL_IMAGE_MAX whose recipe does not crop (resize == size) is scaled whole to S×S, as such
    data sets are trained at full frame."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no image at {path}")
    return prepare(open_image(path), preprocessing)


def prepare(image: Image.Image, preprocessing: dict) -> torch.Tensor:
    """An RGB image → a normalized 1×3×S×S batch, by `preprocess_image`'s steps."""
    interpolation = preprocessing.get("interpolation", "bilinear")
    if interpolation not in INTERPOLATIONS:
        raise DataError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")
    size = preprocessing["size"]
    resize_to = preprocessing.get("resize", size)
    if resize_to == size and max(image.size) <= SMALL_IMAGE_MAX:
        image = image.resize((size, size), INTERPOLATIONS[interpolation])
    else:
        image = transforms.resize(image, resize_to, INTERPOLATIONS[interpolation])
        image = transforms.center_crop(image, size)
    return transforms.normalize(
        transforms.to_uint8_tensor(image)[None], tuple(preprocessing["mean"]), tuple(preprocessing["std"])
    )


@dataclass(frozen=True)
class Preprocess:
    """A model's input recipe (`Weights.transforms()`), as torchvision's weights give one: call it on
    a PIL image, an image file, or a C×H×W tensor (uint8 0..255, or float 0..1) and get the
    normalized 3×S×S float32 tensor the model expects; `torch.stack` a list of them for a batch.
    The steps are `mobilenets predict`'s: the shorter side scaled to `resize`, the central S×S crop
    (small images seen at full frame), then (x - mean) / std."""

    preprocessing: dict

    def __call__(self, image: Image.Image | str | os.PathLike | torch.Tensor) -> torch.Tensor:
        if isinstance(image, (str, os.PathLike)):
            return preprocess_image(image, self.preprocessing)[0]
        if isinstance(image, torch.Tensor):
            if image.dim() != 3 or image.shape[0] not in (1, 3):
                raise ValueError(
                    f"a tensor image is C×H×W with 1 or 3 channels; got shape {tuple(image.shape)}"
                )
            pixels = image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().byte()
            array = pixels.expand(3, -1, -1).permute(1, 2, 0).contiguous().numpy()
            image = Image.fromarray(array, "RGB")
        if not isinstance(image, Image.Image):
            raise TypeError(
                f"transforms() takes a PIL image, a file path or a C×H×W tensor; got {type(image).__name__}"
            )
        return prepare(to_rgb(image), self.preprocessing)[0]


@torch.no_grad()
def predict_top_k(
    model: nn.Module,
    images: Sequence[str | os.PathLike],
    preprocessing: dict,
    class_names: list[str],
    top_k: int = 5,
) -> list[dict]:
    """The `top_k` most probable classes of each image file, each image prepared by `preprocessing`:
    [{"image": path, "top": [(class name, probability), ...]}, ...], most probable first. The model
    is run in eval mode and left in the mode it came in."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k (--top-k) must be a positive integer; got {top_k!r}")
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    results = []
    try:
        for path in tqdm(
            images,
            desc="predicting",
            unit="image",
            file=sys.stderr,
            leave=False,
            disable=None if len(images) > 20 else True,
        ):
            probabilities = model(preprocess_image(path, preprocessing)).softmax(1)[0]
            if len(class_names) != len(probabilities):
                raise ValueError(
                    f"{len(class_names)} class names for a model with {len(probabilities)} classes"
                )
            values, indices = probabilities.topk(min(top_k, len(class_names)))
            results.append(
                {
                    "image": str(path),
                    "top": [
                        (class_names[i], v) for v, i in zip(values.tolist(), indices.tolist(), strict=True)
                    ],
                }
            )
    finally:
        model.train(was_training)
    return results
