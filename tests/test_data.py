"""Every data source, including malformed files, and the deterministic loaders."""

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenets.data import (
    DataError,
    FileImages,
    MemoryImages,
    held_out_split,
    load_data,
    make_loader,
    open_image,
    to_rgb,
)

CIFAR_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "train"


def write_tree(root: Path, classes=("cat", "dog"), per_class=6, size=16, ext="png"):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                root / name / f"{i}.{ext}"
            )
    return root


def test_image_modes_become_rgb(tmp_path):
    gray = Image.fromarray(np.full((4, 4), 200, np.uint8), "L")
    assert np.asarray(to_rgb(gray))[0, 0].tolist() == [200, 200, 200]
    palette = gray.convert("P")
    assert to_rgb(palette).mode == "RGB"
    rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 0))  # fully transparent red → white background
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [255, 255, 255]
    cmyk = Image.new("CMYK", (2, 2), (0, 0, 0, 0))
    assert np.asarray(to_rgb(cmyk))[0, 0].tolist() == [255, 255, 255]
    sixteen = Image.fromarray(
        np.full((2, 2), 65535, np.uint16)
    )  # 16-bit white scales to 255, not clipped noise
    assert np.asarray(to_rgb(sixteen))[0, 0].tolist() == [255, 255, 255]
    half = Image.fromarray(np.full((2, 2), 32896, np.uint16))
    assert np.asarray(to_rgb(half))[0, 0].tolist() == [128, 128, 128]
    path = tmp_path / "sixteen.png"
    half.save(path)
    assert open_image(path).mode == "RGB"


@pytest.mark.parametrize("ext", ["png", "jpg", "bmp", "webp"])
def test_image_folder_of_small_images_is_decoded_into_memory(tmp_path, ext):
    write_tree(tmp_path, ext=ext)
    bundle = load_data(str(tmp_path), val_fraction=0.25, seed=1)
    assert bundle.class_names == ["cat", "dog"]
    assert isinstance(bundle.train, MemoryImages)
    assert len(bundle.train) + len(bundle.val) == 12 and len(bundle.val) == 3
    assert bundle.train.images.shape[1:] == (3, 16, 16) and bundle.image_size == 16
    assert {k: v for k, v in bundle.split.items() if k != "val_files"} == {
        "kind": "held_out",
        "val_fraction": 0.25,
        "seed": 1,
    }
    assert len(bundle.split["val_files"]) == 3 and all(
        f.startswith(("cat/", "dog/")) for f in bundle.split["val_files"]
    )


def test_train_val_subfolders_are_the_split(tmp_path):
    write_tree(tmp_path / "train")
    write_tree(tmp_path / "val", per_class=2)
    bundle = load_data(str(tmp_path))
    assert (len(bundle.train), len(bundle.val)) == (12, 4)
    assert bundle.split["kind"] == "source"
    write_tree(tmp_path / "val", classes=("cow",), per_class=1)
    with pytest.raises(DataError, match="training split has"):
        load_data(str(tmp_path))


def test_large_images_stay_on_disk_and_load_in_workers(tmp_path):
    write_tree(tmp_path, size=80, ext="jpg", per_class=4)
    bundle = load_data(str(tmp_path), image_size=48, val_fraction=0.25)
    assert isinstance(bundle.train, FileImages)
    loader = make_loader(bundle.train, bundle, 3, train=True, workers=1)
    batches = list(loader.batches(0))
    assert len(batches) == len(loader) == 2 and batches[0][0].shape == (3, 3, 48, 48)
    again = list(make_loader(bundle.train, bundle, 3, train=True, workers=0).batches(0))
    assert torch.equal(batches[1][0], again[1][0])  # same draws whatever the worker count
    val = list(make_loader(bundle.val, bundle, 8, train=False, workers=0).batches(0))
    assert val[0][0].shape == (2, 3, 48, 48)


def test_corrupt_files_are_named_or_skipped(tmp_path):
    write_tree(tmp_path)
    bad = tmp_path / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png.*--skip-bad-images"):
        load_data(str(tmp_path))
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        bundle = load_data(str(tmp_path), skip_bad_images=True)
    assert bundle.skipped == 1 and len(bundle.train) + len(bundle.val) == 12


def test_corrupt_large_files_are_skipped_up_front(tmp_path):
    write_tree(tmp_path, size=80, ext="jpg", per_class=3)
    (tmp_path / "cat" / "zz.jpg").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        bundle = load_data(str(tmp_path), skip_bad_images=True, val_fraction=0.2)
    assert bundle.skipped == 1 and len(bundle.train) + len(bundle.val) == 6


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "no images found"),
        (lambda root: write_tree(root, classes=("only",)), "single class"),
        (
            lambda root: (root.mkdir(), (root / "a").mkdir(), (root / "a" / "notes.txt").write_text("x")),
            "no images found",
        ),
    ],
)
def test_unusable_folders_are_one_line_errors(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises((DataError, FileNotFoundError), match=message):
        load_data(str(root))


def cifar_batch(count, seed):
    rng = np.random.default_rng(seed)
    return pickle.dumps(
        {
            b"data": rng.integers(0, 255, (count, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, count).tolist(),
        }
    )


def test_cifar10_python_batches_from_folder_and_tarball(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(cifar_batch(4, i))
    (folder / "test_batch").write_bytes(cifar_batch(3, 9))
    bundle = load_data(f"cifar10:{tmp_path}")
    assert (len(bundle.train), len(bundle.val)) == (20, 3)
    assert bundle.train.images.shape == (20, 3, 32, 32) and bundle.class_names[0] == "airplane"
    tarball = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    from_tar = load_data(f"cifar10:{tarball}")
    assert torch.equal(from_tar.train.images, bundle.train.images)


def test_cifar10_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(f"cifar10:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="lacks the CIFAR-10 batch"):
        load_data(f"cifar10:{tmp_path}")
    for i in range(1, 6):
        (tmp_path / f"data_batch_{i}").write_bytes(cifar_batch(2, i))

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="test_batch is not a CIFAR-10 python batch.*refusing"):
        load_data(f"cifar10:{tmp_path}")
    not_tar = tmp_path / "x.tar.gz"
    not_tar.write_bytes(b"junk")
    with pytest.raises(DataError, match="not a CIFAR-10 tarball"):
        load_data(f"cifar10:{not_tar}")


def test_digits_is_built_in():
    bundle = load_data("digits")
    assert len(bundle.train) + len(bundle.val) == 1797 and len(bundle.class_names) == 10
    assert bundle.train.images.dtype == torch.uint8 and bundle.train.images.max() == 255
    assert bundle.flip is False and bundle.image_size == 32


def test_held_out_split_is_seeded_and_disjoint():
    train, val = held_out_split(100, 0.1, seed=3)
    assert len(val) == 10 and len(set(train.tolist()) | set(val.tolist())) == 100
    assert torch.equal(held_out_split(100, 0.1, seed=3)[1], val)
    assert not torch.equal(held_out_split(100, 0.1, seed=4)[1], val)
    with pytest.raises(DataError, match="val_fraction"):
        held_out_split(10, 1.5, 0)


def test_memory_loader_is_deterministic_and_sharded():
    bundle = load_data("digits")
    full = make_loader(bundle.train, bundle, 50, train=True, seed=7)
    first = [y for _, y in full.batches(2)]
    assert all(torch.equal(a, b) for a, b in zip(first, [y for _, y in full.batches(2)], strict=True))
    resumed = [y for _, y in full.batches(2, start_step=5)]
    assert (
        all(torch.equal(a, b) for a, b in zip(first[5:], resumed, strict=True))
        and len(resumed) == len(first) - 5
    )
    shards = [make_loader(bundle.train, bundle, 25, train=True, seed=7, rank=r, world_size=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    seen = torch.cat([y for shard in shards for _, y in shard.batches(0)])
    assert len(seen) == 2 * len(shards[0]) * 25


@pytest.mark.skipif(not CIFAR_ROOT.is_dir(), reason="shared CIFAR-10 images not present")
def test_real_cifar10_folder():
    bundle = load_data(str(CIFAR_ROOT))
    assert (len(bundle.train), len(bundle.val)) == (45000, 5000)
    assert bundle.class_names[:3] == ["airplane", "automobile", "bird"]
    assert isinstance(bundle.train, MemoryImages) and bundle.image_size == 32
