"""Image data for training and evaluation: sources, splits, and batch loaders.

Sources (`load_data(spec)`):
- "digits": scikit-learn's bundled 1,797 real 8×8 handwritten digits; needs no download or files.
- "cifar10:PATH": the CIFAR-10 python batches, from a folder or the .tar.gz as distributed.
- PATH: a class-per-folder image tree (jpg/jpeg/png/bmp/webp). If PATH holds `train/` and `val/`
  (or `test/`) class trees, those are the split; otherwise a seeded fraction is held out.

Small images (≤ 64 px) are decoded once into a uint8 tensor and augmented a batch at a time on
tensors (`MemoryLoader`); larger ones are read by worker processes (`FileLoader`). Both derive all
randomness from (seed, epoch, step), so a resumed run sees exactly the batches the uninterrupted
run would have, on one process or many.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from . import transforms
from .images import SMALL_IMAGE_MAX, DataError, open_image, scan_image_folder, unreadable_reason

SKIP_HINT = "use --skip-bad-images to skip unreadable files"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _decode_small(args: tuple[str, int]) -> np.ndarray | str:
    path, max_side = args
    try:
        return np.asarray(open_image(path, max_side), dtype=np.uint8)
    except DataError as error:
        return str(error)


# --------------------------------------------------------------------------------------------
# Data sets and splits
# --------------------------------------------------------------------------------------------
@dataclass
class MemoryImages:
    """Decoded images kept in memory: N×3×H×W uint8 and N labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> MemoryImages:
        return MemoryImages(self.images[index], self.labels[index])


@dataclass
class FileImages:
    """Images left on disk, decoded on demand."""

    paths: list[str]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> FileImages:
        return FileImages([self.paths[i] for i in index.tolist()], self.labels[index])


@dataclass
class DataBundle:
    name: str
    class_names: list[str]
    train: MemoryImages | FileImages
    val: MemoryImages | FileImages
    image_size: int  # the size the model sees
    flip: bool = True  # horizontal flips are label-preserving (not for digits)
    mean: tuple[float, ...] = transforms.IMAGENET_MEAN
    std: tuple[float, ...] = transforms.IMAGENET_STD
    split: dict = field(default_factory=dict)  # how val was made, recorded in checkpoints
    skipped: int = 0  # unreadable files skipped with --skip-bad-images

    @property
    def preprocessing(self) -> dict:
        return {
            "size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.image_size
            if isinstance(self.train, MemoryImages)
            else round(self.image_size / 0.875),
        }


def held_out_split(count: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, val) index split; the same seed always holds out the same images."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1; got {val_fraction}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    val_count = max(1, round(count * val_fraction))
    return order[val_count:].sort().values, order[:val_count].sort().values


def _decode_all(
    paths: Sequence[str], max_side: int, skip_bad_images: bool, workers: int
) -> tuple[torch.Tensor, list[int]]:
    """Decode every file (in worker processes for large trees), any larger than max_side shrunk to
    fit it; returns images and kept indices."""
    decoded = _map_files(_decode_small, [(p, max_side) for p in paths], workers)
    kept, arrays, errors = [], [], []
    for index, result in enumerate(decoded):
        if isinstance(result, str):
            errors.append(result)
        else:
            kept.append(index)
            arrays.append(result)
    if errors and not skip_bad_images:
        raise DataError(
            f"{errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "") + f"; {SKIP_HINT}"
        )
    if errors:
        warnings.warn(f"skipped {len(errors)} unreadable image(s), e.g. {errors[0]}", stacklevel=3)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:  # mixed sizes: bring them to the largest common square
        side = max(max(s[0], s[1]) for s in shapes)
        arrays = [
            np.asarray(Image.fromarray(a).resize((side, side), Image.Resampling.BILINEAR)) for a in arrays
        ]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, kept


ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


def _map_files(function: Callable[[ItemT], ResultT], paths: Sequence[ItemT], workers: int) -> list[ResultT]:
    """`function` over many files, in worker processes for large trees."""
    if workers > 1 and len(paths) > 2000:
        import multiprocessing

        with multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            return pool.map(function, paths, chunksize=256)
    return [function(path) for path in paths]


def readable_files(data: FileImages, skip_bad_images: bool, workers: int) -> tuple[FileImages, int]:
    """`data` without the files that do not decode (each fully decoded once), and how many were
    dropped; without skip_bad_images the first bad file raises DataError naming it."""
    reasons = _map_files(unreadable_reason, data.paths, workers)
    bad = [reason for reason in reasons if reason is not None]
    if bad and not skip_bad_images:
        raise DataError(
            f"{bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "") + f"; {SKIP_HINT}"
        )
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s), e.g. {bad[0]}", stacklevel=3)
    good = torch.tensor([i for i, reason in enumerate(reasons) if reason is None], dtype=torch.int64)
    return data.subset(good), len(bad)


def _header_side(path: str) -> int | None:
    """The longer side from the file's header (Pillow decodes no pixels to tell it), or None."""
    try:
        with Image.open(path) as image:
            return max(image.size)
    except Exception:  # unreadable: it is reported, or skipped, when decoded
        return None


def sampled_sides(paths: Sequence[str], sample: int = 1000) -> list[int]:
    """The longer sides, sorted, of up to `sample` files spread evenly over `paths`, read from their
    headers: decisions on them (their median) do not hang on one odd file, wherever it sorts."""
    return sorted(side for side in map(_header_side, paths[:: max(1, len(paths) // sample)]) if side)


def _folder_images(
    root: Path, skip_bad_images: bool, workers: int, class_names: list[str] | None = None
) -> tuple[list[str], MemoryImages | FileImages, int, list[str]]:
    """(class names, images, how many were skipped, the file of each image kept)."""
    names, paths, labels = scan_image_folder(root)
    if class_names is not None and names != class_names:
        raise DataError(f"{root} has classes {names}, but the training split has {class_names}")
    labels_t = torch.tensor(labels, dtype=torch.int64)
    sides = sampled_sides(paths)
    if not sides or sides[len(sides) // 2] > SMALL_IMAGE_MAX:
        # left on disk; without --skip-bad-images a bad file raises DataError when read
        if not skip_bad_images:
            return names, FileImages(paths, labels_t), 0, paths
        files, skipped = readable_files(FileImages(paths, labels_t), skip_bad_images, workers)
        return names, files, skipped, files.paths
    # Small images are kept decoded in memory; the odd large photo among them is shrunk to the
    # largest small size as it is decoded, so it can never blow up the memory (or the input size).
    images, kept = _decode_all(paths, max(s for s in sides if s <= SMALL_IMAGE_MAX), skip_bad_images, workers)
    return names, MemoryImages(images, labels_t[kept]), len(paths) - len(kept), [paths[i] for i in kept]


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    sample = images[:20000].float().div_(255)
    return tuple(sample.mean((0, 2, 3)).tolist()), tuple(sample.std((0, 2, 3)).clamp(min=1e-3).tolist())


def load_digits(image_size: int | None, val_fraction: float, seed: int) -> DataBundle:
    """scikit-learn's digits: 1,797 8×8 images, values 0..16, as RGB uint8."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    gray = torch.from_numpy((digits.images * (255.0 / 16.0)).round().astype(np.uint8))
    images = gray[:, None].expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(digits.target.astype(np.int64))
    data = MemoryImages(images, labels)
    train_index, val_index = held_out_split(len(data), val_fraction, seed)
    mean, std = _channel_stats(images)
    return DataBundle(
        "digits",
        [str(d) for d in range(10)],
        data.subset(train_index),
        data.subset(val_index),
        image_size or 32,
        flip=False,
        mean=mean,
        std=std,
        split={"kind": "held_out", "val_fraction": val_fraction, "seed": seed},
    )


class _CifarUnpickler(pickle.Unpickler):
    """The CIFAR-10 batches are pickles of dicts of NumPy arrays; allow exactly that and nothing
    else, so a malicious file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _read_cifar_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as error:  # any malformed content: name the file
        raise DataError(f"{name} is not a CIFAR-10 python batch ({error})") from None
    return data, labels


def load_cifar10_batches(path: Path, image_size: int | None) -> DataBundle:
    """CIFAR-10 python version: data_batch_1..5 (train) and test_batch (val), from a folder
    (or its cifar-10-batches-py subfolder) or the .tar.gz."""
    files: dict[str, bytes] = {}
    wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if path.is_file():
        try:
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    base = Path(member.name).name
                    if base in wanted and member.isfile():
                        extracted = archive.extractfile(member)
                        assert extracted is not None  # tarfile extracts every regular file
                        files[base] = extracted.read()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:  # truncated download: EOFError
            reason = " ".join(str(error).split()) or type(error).__name__  # tarfile's can span lines
            raise DataError(
                f"{path} is not a CIFAR-10 tarball, or not a complete one ({reason}); download it again"
            ) from None
    elif path.is_dir():
        folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        files = {name: (folder / name).read_bytes() for name in wanted if (folder / name).is_file()}
    else:
        raise DataError(f"CIFAR-10 path {path} does not exist")
    missing = [name for name in wanted if name not in files]
    if missing:
        raise DataError(f"{path} lacks the CIFAR-10 batch file(s) {', '.join(missing)}")
    train = [_read_cifar_batch(files[name], name) for name in wanted[:5]]
    test_images, test_labels = _read_cifar_batch(files["test_batch"], "test_batch")
    train_images = torch.from_numpy(np.concatenate([b[0] for b in train]))
    train_labels = torch.from_numpy(np.concatenate([b[1] for b in train]))
    mean, std = _channel_stats(train_images)
    return DataBundle(
        "cifar10",
        list(CIFAR10_CLASSES),
        MemoryImages(train_images, train_labels),
        MemoryImages(torch.from_numpy(test_images), torch.from_numpy(test_labels)),
        image_size or 32,
        mean=mean,
        std=std,
        split={"kind": "source", "val": "test_batch"},
    )


def recorded_split(
    root: Path, names: list[str], val_files: list[str], recomputed_val: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(train, val) indices with val = the recorded validation files still in `names`; warns, with
    counts, when the folder changed so that recomputing the split would mix in training images.
    None when the folder holds fewer than half of the recorded files: it is not the folder the
    checkpoint was trained on (names like cat/001.jpg recur across folders), so no split applies."""
    recorded = set(val_files)
    val = [i for i, name in enumerate(names) if name in recorded]
    if 2 * len(val) < len(recorded):
        return None
    recomputed = set(recomputed_val.tolist())
    if recomputed != set(val):
        were_training = sum(1 for i in recomputed if names[i] not in recorded)
        warnings.warn(
            f"{root} changed since training ({len(names)} images now, {len(recorded) - len(val)} of the "
            f"{len(recorded)} validation images gone): evaluating on the {len(val)} recorded validation "
            f"images that remain (recomputing the split would have put {were_training} training images "
            f"among the {len(recomputed)} validation images)",
            stacklevel=3,
        )
    return split_by_indices(len(names), val)


def parent_split(names: list[str], keep_out: list[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(train, val) indices with val = the files of `keep_out` present in `names`, or None when
    none is (the folder is not the one the parent was trained on)."""
    held = set(keep_out)
    val = [i for i, name in enumerate(names) if name in held]
    return split_by_indices(len(names), val) if val else None


def split_by_indices(count: int, val: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) index tensors: `val` as given, train every other index below `count`."""
    in_val = set(val)
    train = [i for i in range(count) if i not in in_val]
    return torch.tensor(train, dtype=torch.int64), torch.tensor(val, dtype=torch.int64)


def load_data(
    spec: str,
    image_size: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    skip_bad_images: bool = False,
    workers: int = 2,
    val_files: list[str] | None = None,
    keep_out: list[str] | None = None,
) -> DataBundle:
    """Open a data source by its spec: "digits", "cifar10:PATH" or an image folder PATH.

    val_files: for a folder without its own split, the validation files a checkpoint recorded
    (paths relative to the folder); those that still exist are the validation split, whatever
    was added or removed since (see `recorded_split`).
    keep_out: the validation files of the run whose weights a new run starts from: where the
    folder holds any of them, exactly those are the new run's validation split, so no image the
    parent was validated on is ever trained on; otherwise the split is drawn as usual."""
    if spec == "digits":
        return load_digits(image_size, val_fraction, seed)
    if spec.startswith("cifar10:"):
        return load_cifar10_batches(Path(spec[len("cifar10:") :]).expanduser(), image_size)
    root = Path(spec).expanduser()
    if not root.exists():
        raise DataError(
            f"data path {root} does not exist (expected an image folder, 'digits' or 'cifar10:PATH')"
        )
    split_dirs = [name for name in ("val", "test") if (root / name).is_dir()]
    if (root / "train").is_dir() and split_dirs:
        class_names, train, skipped, _ = _folder_images(root / "train", skip_bad_images, workers)
        _, val, skipped_val, _ = _folder_images(root / split_dirs[0], skip_bad_images, workers, class_names)
        split: dict[str, Any] = {"kind": "source", "val": split_dirs[0]}
        skipped += skipped_val
    else:
        class_names, data, skipped, paths = _folder_images(root, skip_bad_images, workers)
        names = [Path(path).relative_to(root).as_posix() for path in paths]
        train_index, val_index = held_out_split(len(data), val_fraction, seed)
        inherited = parent_split(names, keep_out) if keep_out else None
        recorded = recorded_split(root, names, val_files, val_index) if val_files is not None else None
        if recorded is not None:
            train_index, val_index = recorded
        elif inherited is not None:
            train_index, val_index = inherited
        train, val = data.subset(train_index), data.subset(val_index)
        # The exact files: `eval` must find the same ones after the folder changes.
        split = {
            "kind": "held_out",
            "val_fraction": val_fraction,
            "seed": seed,
            "val_files": [names[i] for i in val_index.tolist()],
            **({"from_parent": True} if val_files is None and inherited is not None else {}),
        }
        if val_files is not None and recorded is None:  # another folder: the recorded split does not apply
            found = len(set(val_files) & set(names))
            split = {"kind": "not_recorded", "recorded_found": found, "recorded": len(set(val_files))}
    if isinstance(val, FileImages) and not skip_bad_images:
        # Validation reads every file once per epoch: a bad one must fail now, not after an epoch
        # of training (with --skip-bad-images every file was already decoded once).
        readable_files(val, False, workers)
    if isinstance(train, MemoryImages):
        mean, std = _channel_stats(train.images)
        size = image_size or train.images.shape[-1]
    else:
        mean, std, size = transforms.IMAGENET_MEAN, transforms.IMAGENET_STD, image_size or 224
    return DataBundle(
        root.name, class_names, train, val, size, mean=mean, std=std, split=split, skipped=skipped
    )


# --------------------------------------------------------------------------------------------
# Loaders: deterministic batches from (seed, epoch, step)
# --------------------------------------------------------------------------------------------
def _generator(*keys: int) -> torch.Generator:
    seed = 0
    for key in keys:  # a simple, stable mix of the keys into one 63-bit seed
        seed = (seed * 1_000_003 + int(key) + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class _ShardedOrder:
    """Each epoch's sample order, the same on every rank, cut into equal per-rank shards."""

    def __init__(
        self,
        count: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int,
        world_size: int,
        drop_last: bool,
    ):
        self.count, self.batch_size, self.shuffle, self.seed = count, batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last

    def per_rank(self) -> int:
        return self.count // self.world_size if self.world_size > 1 else self.count

    def __len__(self) -> int:
        n = self.per_rank()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        order = (
            torch.randperm(self.count, generator=_generator(self.seed, epoch))
            if self.shuffle
            else torch.arange(self.count)
        )
        if self.world_size > 1:  # equal shards so every rank runs the same number of steps
            order = order[: self.per_rank() * self.world_size][self.rank :: self.world_size]
        return [
            order[i : i + self.batch_size] for i in range(0, len(self) * self.batch_size, self.batch_size)
        ]


class _Loader:
    """Batches of `data` in the order of (seed, epoch), this rank's share; training drops the last
    partial batch (and shuffles and augments), evaluation keeps every image in order."""

    def __init__(
        self,
        data: MemoryImages | FileImages,
        bundle: DataBundle,
        batch_size: int,
        train: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.data, self.bundle, self.train, self.seed = data, bundle, train, seed
        self.order = _ShardedOrder(len(data), batch_size, train, seed, rank, world_size, drop_last=train)

    def __len__(self) -> int:
        return len(self.order)


class MemoryLoader(_Loader):
    """Batches from decoded images: random crop with padding, flips and Cutout done on whole batches."""

    data: MemoryImages

    def __init__(
        self,
        data: MemoryImages,
        bundle: DataBundle,
        batch_size: int,
        train: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        cutout: int = 0,
    ):
        super().__init__(data, bundle, batch_size, train, seed, rank, world_size)
        self.cutout = cutout
        self.padding = max(1, data.images.shape[-1] // 8)  # 4 px at 32, as the standard CIFAR recipe

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step, index in enumerate(self.order.batches(epoch)):
            if step < start_step:
                continue
            images = self.data.images[index]
            if self.train:
                generator = _generator(self.seed, epoch, step, 1)
                images = transforms.random_crop_with_padding(images, self.padding, generator)
                if self.bundle.flip:
                    images = transforms.random_horizontal_flip(images, generator)
            x = transforms.normalize(images, self.bundle.mean, self.bundle.std)
            x = transforms.resize_batch(x, self.bundle.image_size)
            if self.train and self.cutout:  # after normalising: the square is erased to the mean
                x = transforms.cutout(x, self.cutout, _generator(self.seed, epoch, step, 3))
            yield x, self.data.labels[index]


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, data: FileImages, bundle: DataBundle, train: bool, seed: int):
        self.data, self.bundle, self.train, self.seed = data, bundle, train, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor | None, int | str]:
        index, epoch = key
        try:
            image = open_image(self.data.paths[index])
        except DataError as error:  # handed to the main process as data: no worker traceback
            return None, str(error)
        size = self.bundle.image_size
        if self.train:
            generator = _generator(self.seed, epoch, index, 2)
            image = transforms.random_resized_crop(image, size, generator)
            if self.bundle.flip and torch.rand(1, generator=generator).item() < 0.5:
                image = transforms.horizontal_flip(image)
        else:
            image = transforms.resize(image, self.bundle.preprocessing["resize"])
            image = transforms.center_crop(image, size)
        return transforms.to_uint8_tensor(image), int(self.data.labels[index])


class FileLoader(_Loader):
    """Batches read from files by worker processes (random resized crop + flip for training,
    resize + center crop for evaluation)."""

    def __init__(
        self,
        data: FileImages,
        bundle: DataBundle,
        batch_size: int,
        train: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 2,
        cutout: int = 0,
    ):
        super().__init__(data, bundle, batch_size, train, seed, rank, world_size)
        self.cutout = cutout
        self.dataset = _FileDataset(data, bundle, train, seed)
        self.workers = workers

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        keyed = [[(int(i), epoch) for i in batch] for batch in self.order.batches(epoch)[start_step:]]
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=keyed,
            num_workers=self.workers,
            persistent_workers=False,
            collate_fn=_collate_or_error,
        )
        for step, (images, labels) in enumerate(loader, start=start_step):
            if images is None:
                raise DataError(f"{labels}; {SKIP_HINT}")
            x = transforms.normalize(images, self.bundle.mean, self.bundle.std)
            if self.train and self.cutout:
                x = transforms.cutout(x, self.cutout, _generator(self.seed, epoch, step, 3))
            yield x, labels


def _collate_or_error(
    items: list[tuple[torch.Tensor | None, int | str]],
) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, int | str]:
    """A batch, or (None, message) when one of its files could not be read."""
    images = []
    for image, label in items:
        if image is None:
            return None, label
        images.append(image)
    return torch.stack(images), torch.tensor([label for _, label in items])


def make_loader(
    data: MemoryImages | FileImages,
    bundle: DataBundle,
    batch_size: int,
    train: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 2,
    cutout: int = 0,
) -> MemoryLoader | FileLoader:
    """The loader for `data`: in memory (batch augmentation on tensors) or from files (worker
    processes). cutout: the side of the square Cutout erases from each training image (0: none)."""
    if isinstance(data, MemoryImages):
        return MemoryLoader(data, bundle, batch_size, train, seed, rank, world_size, cutout)
    return FileLoader(data, bundle, batch_size, train, seed, rank, world_size, workers, cutout)
