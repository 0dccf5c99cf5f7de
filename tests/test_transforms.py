"""Image transforms against hand-computed values."""

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenets.data import transforms


def image_from(array):
    return Image.fromarray(np.asarray(array, dtype=np.uint8))


def test_resize_keeps_aspect_on_the_shorter_side():
    wide = image_from(np.zeros((20, 40, 3)))
    assert transforms.resize(wide, 10).size == (20, 10)
    tall = image_from(np.zeros((30, 10, 3)))
    assert transforms.resize(tall, 5).size == (5, 15)
    constant = image_from(np.full((8, 8, 3), 77))
    assert np.all(np.asarray(transforms.resize(constant, 4)) == 77)


def test_center_crop_takes_the_middle():
    array = np.arange(6 * 6).reshape(6, 6)
    image = image_from(np.stack([array] * 3, -1))
    crop = np.asarray(transforms.center_crop(image, 2))[..., 0]
    assert crop.tolist() == [[14, 15], [20, 21]]
    with pytest.raises(ValueError, match="smaller than"):
        transforms.center_crop(image, 7)


def test_random_resized_crop_full_area_is_a_plain_resize():
    rng = np.random.default_rng(0)
    image = image_from(rng.integers(0, 255, (16, 16, 3)))
    generator = torch.Generator().manual_seed(0)
    crop = transforms.random_resized_crop(image, 8, generator, scale=(1, 1), ratio=(1, 1))
    assert np.array_equal(np.asarray(crop), np.asarray(image.resize((8, 8), Image.BILINEAR)))
    a = transforms.random_resized_crop(image, 8, torch.Generator().manual_seed(5))
    b = transforms.random_resized_crop(image, 8, torch.Generator().manual_seed(5))
    assert a.size == (8, 8) and np.array_equal(np.asarray(a), np.asarray(b))


def test_horizontal_flip_and_to_tensor():
    image = image_from([[[1, 2, 3], [4, 5, 6]]])  # 1×2 pixels
    tensor = transforms.to_uint8_tensor(transforms.horizontal_flip(image))
    assert tensor.shape == (3, 1, 2) and tensor.dtype == torch.uint8
    assert tensor[:, 0, 0].tolist() == [4, 5, 6] and tensor[:, 0, 1].tolist() == [1, 2, 3]


def test_random_crop_with_padding_cuts_the_drawn_windows():
    batch = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3) + 1
    out = transforms.random_crop_with_padding(batch, 1, torch.Generator().manual_seed(3))
    offsets = torch.randint(0, 3, (2, 2), generator=torch.Generator().manual_seed(3)).tolist()
    padded = torch.nn.functional.pad(batch, (1, 1, 1, 1))
    for i, (top, left) in enumerate(offsets):
        assert torch.equal(out[i], padded[i, :, top : top + 3, left : left + 3])
    # offset (1, 1) is the identity; (0, 0) shifts the image down-right with a zero border
    shifted = transforms.random_crop_with_padding(batch[:1], 1, torch.Generator().manual_seed(0))
    assert shifted.shape == (1, 1, 3, 3)
    assert transforms.random_crop_with_padding(batch, 0, torch.Generator()) is batch


def test_random_horizontal_flip_flips_exactly_the_drawn_images():
    batch = torch.arange(4 * 2, dtype=torch.float32).view(4, 1, 1, 2)
    out = transforms.random_horizontal_flip(batch, torch.Generator().manual_seed(1))
    flipped = (torch.rand(4, generator=torch.Generator().manual_seed(1)) < 0.5).tolist()
    for i, was_flipped in enumerate(flipped):
        expected = batch[i].flip(-1) if was_flipped else batch[i]
        assert torch.equal(out[i], expected)


def test_normalize_uint8_and_float():
    batch = torch.tensor([[[[0, 255]], [[51, 102]], [[255, 0]]]], dtype=torch.uint8)  # 1×3×1×2
    out = transforms.normalize(batch, (0.5, 0.2, 0.0), (0.5, 0.2, 1.0))
    expected = torch.tensor([[[[-1.0, 1.0]], [[0.0, 1.0]], [[1.0, 0.0]]]])
    torch.testing.assert_close(out, expected)
    floats = transforms.normalize(batch.float() / 255, (0.5, 0.2, 0.0), (0.5, 0.2, 1.0))
    torch.testing.assert_close(floats, expected)


def test_resize_batch():
    batch = torch.ones(2, 3, 8, 8)
    assert transforms.resize_batch(batch, 32).shape == (2, 3, 32, 32)
    torch.testing.assert_close(transforms.resize_batch(batch, 4), torch.ones(2, 3, 4, 4))
    assert transforms.resize_batch(batch, 8) is batch
