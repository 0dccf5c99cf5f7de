"""The few image transforms MobileNet training needs, written with Pillow, NumPy and torch.

Two families:
- per-image (Pillow in, Pillow out) for data read from files by worker processes;
- per-batch (uint8 or float N×C×H×W tensors) for small data sets held in memory, where doing the
  augmentation on whole batches is far cheaper than one Python call per image.

Every random transform takes an explicit `torch.Generator`, so a run is reproducible from its seed
(and a resumed run draws exactly what the uninterrupted run would have).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# Per image (Pillow)
# --------------------------------------------------------------------------------------------
def resize(image: Image.Image, size: int, resample: int = Image.Resampling.BILINEAR) -> Image.Image:
    """Scale so the shorter side is `size`, keeping the aspect ratio (antialiased; bilinear unless
    `resample` says otherwise)."""
    width, height = image.size
    if min(width, height) == size:
        return image
    if width <= height:
        new_size = (size, max(1, round(height * size / width)))
    else:
        new_size = (max(1, round(width * size / height)), size)
    return image.resize(new_size, resample)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central size×size square (the image must be at least that large)."""
    width, height = image.size
    if width < size or height < size:
        raise ValueError(f"center_crop: image {width}×{height} is smaller than {size}×{size}")
    left = (width - size) // 2
    top = (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def random_resized_crop(
    image: Image.Image,
    size: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """Inception-style crop: a random area fraction in `scale` and aspect ratio in `ratio`,
    resized to size×size; falls back to the central crop after 10 failed draws."""
    width, height = image.size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        values = torch.rand(4, generator=generator).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * values[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * values[1])
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left = int(values[2] * (width - crop_w + 1))
            top = int(values[3] * (height - crop_h + 1))
            return image.resize(
                (size, size), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h)
            )
    return center_crop(resize(image, size), size)


def horizontal_flip(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB Pillow image as a 3×H×W uint8 tensor."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


# --------------------------------------------------------------------------------------------
# Per batch (tensors)
# --------------------------------------------------------------------------------------------
def random_crop_with_padding(batch: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each image by `padding` on every side and cut a random window of the original size
    (the standard CIFAR augmentation), with an independent offset per image."""
    if padding == 0:
        return batch
    n, _, height, width = batch.shape
    padded = F.pad(batch, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator).tolist()
    # a plain loop of slices: faster than one gather for the small batches this is used on
    return torch.stack(
        [padded[i, :, top : top + height, left : left + width] for i, (top, left) in enumerate(offsets)]
    )


def random_horizontal_flip(
    batch: torch.Tensor, generator: torch.Generator, probability: float = 0.5
) -> torch.Tensor:
    flip = torch.rand(batch.shape[0], generator=generator) < probability
    return torch.where(flip[:, None, None, None], batch.flip(-1), batch)


def cutout(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor, 2017): zero one size×size square per image, its centre uniform over
    the image so the square may be clipped at the border. On a normalised batch zero is the mean."""
    n, _, height, width = batch.shape
    centres = torch.rand(n, 2, generator=generator)
    top = (centres[:, 0] * height).long() - size // 2
    left = (centres[:, 1] * width).long() - size // 2
    rows = torch.arange(height)[None, :]
    cols = torch.arange(width)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)  # N×H
    inside_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)  # N×W
    erased = inside_rows[:, :, None] & inside_cols[:, None, :]  # N×H×W
    return batch.masked_fill(erased[:, None].to(batch.device), 0.0)


def resize_batch(batch: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a float batch to size×size (antialiased when shrinking)."""
    if batch.shape[-2:] == (size, size):
        return batch
    shrinking = size < batch.shape[-1] or size < batch.shape[-2]
    return F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def normalize(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (0..255) or float (0..1) batch → float32 (x - mean) / std per channel."""
    scale = 255.0 if batch.dtype == torch.uint8 else 1.0
    mean_t = torch.tensor(mean, device=batch.device)[None, :, None, None] * scale
    inv_std_t = 1.0 / (torch.tensor(std, device=batch.device)[None, :, None, None] * scale)
    return (batch.float() - mean_t) * inv_std_t
