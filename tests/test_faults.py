"""Faults a user or the machine can cause: each gives one clear line, a non-zero exit code, and
leaves every good file byte-identical (see docs/reliability.md)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenets.checkpoint import load_checkpoint, read_header
from mobilenets.cli import main

from helpers import one_error_line

TINY_TRAIN = ["--data", "digits", "--batch-size", "32", "--width", "0.25", "--no-progress"]


def train_args(out, *extra, epochs=2, lr=0.1):
    return ["train", *TINY_TRAIN, "--epochs", str(epochs), "--lr", str(lr), "--output", str(out), *extra]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".safetensors"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 2-epoch run on digits; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("faults") / "run"
    assert main(train_args(out)) == 0
    return out


@pytest.fixture
def run_copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


# --------------------------------------------------------------------------------------------
# 1. Non-finite training
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flag, value",
    [
        ("--lr", "inf"),
        ("--lr", "nan"),
        ("--weight-decay", "nan"),
        ("--weight-decay", "inf"),
        ("--warmup-epochs", "nan"),
        ("--label-smoothing", "nan"),
        ("--val-fraction", "nan"),
    ],
)
def test_non_finite_options_are_refused(tmp_path, capsys, flag, value):
    assert main(["train", "--output", str(tmp_path / "x"), flag, value]) == 2
    one_error_line(capsys, f"({flag}) must be a finite number")
    assert not (tmp_path / "x").exists()


def test_divergence_stops_with_exit_3_and_keeps_checkpoints(run_copy, capsys):
    before = snapshot(run_copy)
    assert main(train_args(run_copy, "--resume", epochs=3, lr=1000)) == 3
    line = one_error_line(capsys, "training diverged", "epoch 3", "step", "--resume", "smaller --lr")
    assert "nan" in line or "inf" in line
    assert snapshot(run_copy) == before  # last and best byte-identical
    # ... and resuming with a sane learning rate continues from the last finite state
    assert main(train_args(run_copy, "--resume", epochs=3, lr=0.05)) == 0
    assert read_header(run_copy / "last.safetensors")["epoch"] == 3


def test_non_finite_weights_are_never_saved_or_exported(run_copy, tmp_path, capsys):
    from mobilenets.checkpoint import save_checkpoint

    model = load_checkpoint(run_copy / "last.safetensors").model
    before = snapshot(run_copy)
    with __import__("torch").no_grad():
        model.head.fc.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="head.fc.weight holds NaN"):
        save_checkpoint(run_copy / "last.safetensors", model)
    assert snapshot(run_copy) == before
    # a file written by someone else with NaN weights: export refuses it
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(run_copy / "last.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(run_copy / "last.safetensors"))
    tensors["model.head.fc.weight"][0, 0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata=metadata)
    assert main(["export", str(bad), "--output", str(tmp_path / "nan.onnx")]) == 2
    one_error_line(capsys, "nan.safetensors", "head.fc.weight holds NaN")
    assert not (tmp_path / "nan.onnx").exists()


# --------------------------------------------------------------------------------------------
# 2. Ctrl-C during the per-epoch validation
# --------------------------------------------------------------------------------------------
def model_tensors(path):
    return load_checkpoint(path).model.state_dict()


def test_ctrl_c_during_validation_keeps_the_epoch(run, tmp_path, monkeypatch, capsys):
    from mobilenets.data import MemoryLoader

    original = MemoryLoader.batches
    validations = {"count": 0}

    def batches(self, epoch, start_step=0):
        if not self.train:
            validations["count"] += 1
            if validations["count"] == 2:  # Ctrl-C in the middle of epoch 2's validation
                yield next(original(self, epoch, start_step))
                raise KeyboardInterrupt
        yield from original(self, epoch, start_step)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(MemoryLoader, "batches", batches)
        assert main(train_args(out)) == 130
    one_error_line(capsys, "interrupted while validating epoch 2", "--resume")
    header = read_header(out / "last.safetensors")
    assert header["epoch"] == 2 and header["pending_validation"] is not None and len(header["history"]) == 1
    assert main(train_args(out, "--resume")) == 0
    header = read_header(out / "last.safetensors")
    assert [row["epoch"] for row in header["history"]] == [1, 2] and header["pending_validation"] is None
    reference = model_tensors(run / "last.safetensors")
    for name, tensor in model_tensors(out / "last.safetensors").items():
        assert tensor.equal(reference[name]), name
    assert header["best_val_top1"] == read_header(run / "last.safetensors")["best_val_top1"]


# --------------------------------------------------------------------------------------------
# 3. I/O failures: one line, exit 1, checkpoints intact; checked before training starts
# --------------------------------------------------------------------------------------------
def test_out_is_an_existing_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep me")
    assert main(train_args(target)) == 1
    one_error_line(capsys, str(target), "existing file")
    assert target.read_text() == "keep me"
    assert main(train_args(target / "sub")) == 1
    one_error_line(capsys, "cannot write", str(target / "sub"))


@pytest.mark.parametrize("out", ["/sys/mobilenets-run", "/sys/kernel"])
def test_out_not_writable_is_found_before_training(out, capsys):
    # /sys refuses new files even to root, as a read-only file system or a folder without write
    # permission does; the data would take longer than this test allows to load if it were reached
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no /sys")
    assert main(["train", "--data", "/nonexistent", "--output", out]) == 1
    one_error_line(capsys, "cannot write to the --output folder", out)


@pytest.mark.skipif(
    not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
    reason="root writes into read-only folders",
)
def test_out_without_write_permission(tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(train_args(folder / "run")) == 1
        one_error_line(capsys, "cannot write", "Permission denied")
    finally:
        folder.chmod(0o700)


def test_disk_full_while_saving_keeps_checkpoints(run_copy, monkeypatch, capsys):
    import errno
    import os

    before = snapshot(run_copy)
    real_fsync = os.fsync

    def full(fd):  # the disk fills up as a checkpoint is written (small files still fit)
        if ".safetensors." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    assert main(train_args(run_copy, "--resume", epochs=3)) == 1
    one_error_line(capsys, "cannot write", ".safetensors", "No space left on device", "intact", "--resume")
    assert snapshot(run_copy) == before
    assert [p.name for p in run_copy.iterdir() if p.name.endswith(".tmp")] == []


def test_disk_full_for_a_small_run_file_is_one_line_too(run_copy, monkeypatch, capsys):
    import errno
    import os

    before = snapshot(run_copy)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(train_args(run_copy, "--resume", epochs=3)) == 1
    one_error_line(capsys, "cannot write", "train_config.json", "No space left on device", "intact")
    assert snapshot(run_copy) == before
    assert [p.name for p in run_copy.iterdir() if p.name.endswith(".tmp")] == []


def test_eval_png_into_an_unwritable_folder_fails_first(run, tmp_path, capsys):
    target = tmp_path / "png-is-a-folder"
    target.mkdir()
    assert main(["eval", str(run / "best.safetensors"), "--data", "digits", "--output", str(target)]) == 1
    one_error_line(capsys, "is a folder")
    if Path("/sys/kernel").is_dir():
        assert (
            main(
                [
                    "eval",
                    str(run / "best.safetensors"),
                    "--data",
                    "digits",
                    "--output",
                    "/sys/kernel/confusion.png",
                ]
            )
            == 1
        )
        one_error_line(capsys, "cannot write", "/sys/kernel")


def test_eval_keeps_an_existing_png_unless_force(run, tmp_path, capsys):
    target = tmp_path / "mine.png"
    target.write_bytes(b"not eval's")
    argv = ["eval", str(run / "best.safetensors"), "--data", "digits", "--output", str(target)]
    assert main(argv) == 2
    one_error_line(capsys, str(target), "exists", "--force")
    assert target.read_bytes() == b"not eval's"
    assert main([*argv, "--force"]) == 0
    assert target.read_bytes().startswith(b"\x89PNG")


def test_a_failed_eval_leaves_no_folder_for_its_png(run, tmp_path, capsys):
    target = tmp_path / "new" / "sub" / "confusion.png"  # checked, but made only when written
    argv = ["eval", str(run / "best.safetensors"), "--output", str(target)]
    assert main([*argv, "--data", str(tmp_path / "no-such-data")]) == 2
    one_error_line(capsys, "does not exist")
    assert list(tmp_path.iterdir()) == []
    assert main([*argv, "--data", "digits"]) == 0
    assert target.read_bytes().startswith(b"\x89PNG")


# --------------------------------------------------------------------------------------------
# 4. One run per output folder
# --------------------------------------------------------------------------------------------
HOLD_LOCK = """
import sys, time
from mobilenets.files import OutputLock
lock = OutputLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_run_on_the_same_out_fails_at_once(tmp_path, capsys):
    import os
    import signal

    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(train_args(out)) == 1
        one_error_line(capsys, "in use by another run", f"pid {holder.pid}", "choose another --out")
        assert not (out / "last.safetensors").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without releasing anything: its lock is stale and taken over, and the
    # temporary file of a write it never finished is cleaned up
    (out / ".last.safetensors.abc123.tmp").write_bytes(b"partial")
    assert main(train_args(out, epochs=1)) == 0
    assert read_header(out / "last.safetensors")["epoch"] == 1
    assert not (out / ".last.safetensors.abc123.tmp").exists()


def test_an_existing_run_is_replaced_only_with_force_and_only_once_the_new_one_ends(
    run_copy, monkeypatch, capsys
):
    before = snapshot(run_copy)
    assert main(train_args(run_copy)) == 2  # a run is there: --resume, --force or another --output
    one_error_line(capsys, "last.safetensors exists", "--resume", "--force")
    assert main(train_args(run_copy, "--force", "--resume")) == 2
    one_error_line(capsys, "--force and --resume contradict")
    assert snapshot(run_copy) == before

    # Ctrl-C in the replacing run: the old run is untouched and the message says where the new one is
    from mobilenets.data import MemoryLoader

    original = MemoryLoader.batches

    def batches(self, epoch, start_step=0):
        if self.train and epoch == 1:
            raise KeyboardInterrupt
        yield from original(self, epoch, start_step)

    staging = run_copy.with_name(run_copy.name + ".new")
    with monkeypatch.context() as patch:
        patch.setattr(MemoryLoader, "batches", batches)
        assert main(train_args(run_copy, "--force", lr=0.05)) == 130
    one_error_line(capsys, "interrupted in epoch 2", f"{run_copy} still holds the old run", str(staging))
    assert snapshot(run_copy) == before and (staging / "last.safetensors").is_file()
    # A second --force does not silently drop that unfinished replacement
    assert main(train_args(run_copy, "--force", lr=0.05)) == 2
    one_error_line(capsys, f"{staging} exists", "--resume --output")
    assert snapshot(run_copy) == before

    shutil.rmtree(staging)
    assert main(train_args(run_copy, "--force", lr=0.05)) == 0
    header = read_header(run_copy / "last.safetensors")
    assert header["train_config"]["lr"] == 0.05 and len(header["history"]) == 2
    assert snapshot(run_copy) != before
    leftovers = sorted(p.name for p in run_copy.parent.iterdir() if p.name != run_copy.name)
    assert leftovers == [], leftovers  # no OUT.new, no hidden old copy


def test_headers_record_paths_relative_to_where_the_run_started(tmp_path, monkeypatch):
    from mobilenets.training.train import portable_command

    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    out = tmp_path / "elsewhere" / "run"  # given as an absolute path
    assert main(train_args(out, epochs=1)) == 0
    header = read_header(out / "last.safetensors")
    assert header["train_config"]["out"] == "../elsewhere/run"
    assert str(tmp_path) not in json.dumps(header["train_config"])
    assert json.loads((out / "train_config.json").read_text())["out"] == "../elsewhere/run"
    command = portable_command(
        ["mobilenets", "train", "--output", str(out), f"--data={tmp_path}/d", "-o", "x"]
    )
    assert command == "mobilenets train --output ../elsewhere/run --data=../d -o x"


# --------------------------------------------------------------------------------------------
# 5. Bad images: one line naming the file and --skip-bad-images, which really decodes
# --------------------------------------------------------------------------------------------
def write_image(path: Path, side: int, seed: int = 0, fmt: str | None = None) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path, fmt)
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a header that verify() accepts, half the pixels
    return path


def decompression_bomb(path: Path) -> Path:
    """A 45-byte PNG whose header claims 100000×100000 pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )
    return path


def photo_tree(root: Path, per_class: int = 6, side: int = 80) -> list[Path]:
    return [
        write_image(root / name / f"{i}.jpg", side, seed=10 * c + i)
        for c, name in enumerate(("cat", "dog"))
        for i in range(per_class)
    ]


def split_of(paths: list[Path], fraction: float, seed: int = 0):
    from mobilenets.data import held_out_split

    train_index, val_index = held_out_split(len(paths), fraction, seed)
    return [paths[i] for i in train_index.tolist()], [paths[i] for i in val_index.tolist()]


PHOTO_TRAIN = [
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--width",
    "0.25",
    "--image-size",
    "32",
    "--workers",
    "1",
    "--no-progress",
    "--val-fraction",
    "0.25",
]


@pytest.mark.parametrize("damage", [truncate, decompression_bomb, "garbage"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_bad_photo_names_the_file_and_the_flag(tmp_path, capsys, damage, split):
    files = photo_tree(tmp_path / "data")
    victim = split_of(sorted(files), 0.25)[0 if split == "train" else 1][1]
    if damage == "garbage":
        victim.write_bytes(b"this is not an image at all" * 10)
    else:
        damage(victim)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--output", str(out), *PHOTO_TRAIN]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = [text for text in err.splitlines() if text.strip() and not text.startswith("epoch ")]
    assert len(line) == 1 and str(victim) in line[0] and "--skip-bad-images" in line[0], err
    if split == "val":  # found before any training
        assert "epoch 1/" not in err and not (out / "last.safetensors").exists()
    # with the flag the file is skipped (it is really decoded, not just verify()-ed) and the run finishes
    assert (
        main(["train", "--data", str(tmp_path / "data"), "-o", str(out), *PHOTO_TRAIN, "--skip-bad-images"])
        == 0
    )
    assert "skipped 1 unreadable images" in capsys.readouterr().out


def test_eval_predict_and_calibration_with_bad_images(tmp_path, run, capsys):
    files = photo_tree(tmp_path / "data", per_class=3, side=48)
    truncate(write_image(tmp_path / "data" / "cat" / "bad.png", 48, seed=99))
    checkpoint = tmp_path / "photo.safetensors"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "data"),
                "--output",
                str(tmp_path / "run"),
                "--epochs",
                "1",
                "--batch-size",
                "2",
                "--width",
                "0.25",
                "--image-size",
                "32",
                "--no-progress",
                "--skip-bad-images",
            ]
        )
        == 0
    )
    shutil.copy(tmp_path / "run" / "last.safetensors", checkpoint)
    capsys.readouterr()
    assert main(["eval", str(checkpoint), "--data", str(tmp_path / "data"), "--split", "all"]) == 2
    one_error_line(capsys, "bad.png", "--skip-bad-images")
    assert (
        main(
            [
                "eval",
                str(checkpoint),
                "--data",
                str(tmp_path / "data"),
                "--split",
                "all",
                "--skip-bad-images",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert '"images": 6' in capsys.readouterr().out
    bomb = decompression_bomb(tmp_path / "bomb.png")
    for image in (bomb, tmp_path / "data" / "cat" / "bad.png"):
        assert main(["predict", str(checkpoint), str(files[0]), str(image)]) == 2
        one_error_line(capsys, "cannot read image", str(image))
    calibration = tmp_path / "calibration"
    shutil.copytree(tmp_path / "data" / "dog", calibration)
    shutil.copy(bomb, calibration / "bomb.png")
    assert (
        main(
            [
                "export",
                str(checkpoint),
                "--output",
                str(tmp_path / "m.onnx"),
                "--int8",
                "--calibration",
                str(calibration),
            ]
        )
        == 2
    )
    one_error_line(capsys, "cannot read image", "bomb.png")


# --------------------------------------------------------------------------------------------
# 7. Small/large decision from all files' sizes, not the first file's
# --------------------------------------------------------------------------------------------
def test_a_small_icon_sorted_first_does_not_load_photos_into_memory(tmp_path):
    from mobilenets.data import FileImages, MemoryImages, load_data

    write_image(tmp_path / "photos" / "a" / "000_icon.png", 16)
    photo_tree(tmp_path / "photos", per_class=4, side=300)
    bundle = load_data(str(tmp_path / "photos"), val_fraction=0.25)
    assert isinstance(bundle.train, FileImages) and bundle.image_size == 224
    # the other way round: small images with one big photo stay in memory at their own size
    for i in range(8):
        write_image(tmp_path / "icons" / "ab"[i % 2] / f"{i}.png", 32, seed=i)
    write_image(tmp_path / "icons" / "a" / "zz_photo.jpg", 1500)
    bundle = load_data(str(tmp_path / "icons"), val_fraction=0.25)
    assert isinstance(bundle.train, MemoryImages) and bundle.image_size == 32
    assert bundle.train.images.shape[-2:] == (32, 32)


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    from mobilenets.data import open_image

    path = write_image(tmp_path / "phone.jpg", 8)
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(path, exif=exif)
    assert open_image(path).size == (20, 40)


# --------------------------------------------------------------------------------------------
# 8. convert never overwrites by accident; weights files are told apart by their bytes
# --------------------------------------------------------------------------------------------
@pytest.fixture
def torchvision_file(tmp_path):
    import torch

    from helpers import TorchvisionV2

    path = tmp_path / "tv.pth"
    torch.save(TorchvisionV2(num_classes=10, width_mult=0.5).state_dict(), path)
    return path


def test_convert_refuses_to_overwrite(torchvision_file, tmp_path, capsys):
    source_bytes = torchvision_file.read_bytes()
    trained = tmp_path / "best.safetensors"
    trained.write_bytes(b"a trained checkpoint")
    assert main(["convert", "--from", "torchvision", str(torchvision_file), "-o", str(trained)]) == 2
    one_error_line(capsys, str(trained), "exists", "--force")
    assert trained.read_bytes() == b"a trained checkpoint"
    for out in (torchvision_file, tmp_path / "." / "tv.pth"):  # OUT = SRC: never, even with --force
        assert (
            main(["convert", "--from", "torchvision", str(torchvision_file), "-o", str(out), "--force"]) == 2
        )
        one_error_line(capsys, "source file itself")
    assert torchvision_file.read_bytes() == source_bytes
    assert (
        main(["convert", "--from", "torchvision", str(torchvision_file), "-o", str(trained), "--force"]) == 0
    )
    assert load_checkpoint(trained).model.config.num_classes == 10


def test_weights_format_is_read_from_the_bytes_not_the_name(torchvision_file, tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    from mobilenets import create_model

    converted = tmp_path / "converted.bin"  # a mobilenets checkpoint without the .safetensors suffix
    assert main(["convert", "--from", "torchvision", str(torchvision_file), "-o", str(converted)]) == 0
    reference = load_checkpoint(converted).model.eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(create_model("mobilenet_v2", weights=str(converted)).eval()(x), reference(x))
    # a torchvision state dict saved with safetensors under a .pth name
    renamed = tmp_path / "state.pth"
    save_file(torch.load(torchvision_file, weights_only=True), str(renamed))
    assert torch.equal(create_model("mobilenet_v2", weights=str(renamed)).eval()(x), reference(x))


# --------------------------------------------------------------------------------------------
# 9. URL weights are cached per URL
# --------------------------------------------------------------------------------------------
def test_two_urls_with_the_same_file_name_do_not_share_a_cache_entry(tmp_path, monkeypatch):
    import torch

    from mobilenets import create_model
    from mobilenets.checkpoint import save_checkpoint

    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "cache"))
    urls, models = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = create_model("mobilenet_v3_small", width_mult=0.5, num_classes=5).eval()
        path = save_checkpoint(tmp_path / f"source{seed}" / "model.safetensors", model)
        urls.append(path.as_uri())
        models.append(model)
    x = torch.randn(1, 3, 64, 64)
    for url, model in zip(urls, models, strict=True):
        loaded = create_model("mobilenet_v3_small", weights=url).eval()
        assert torch.equal(loaded(x), model(x)), url
        assert loaded.config.extra["weights"]["weights"] == url


# --------------------------------------------------------------------------------------------
# 6. eval uses the exact validation files the checkpoint recorded
# --------------------------------------------------------------------------------------------
def test_eval_on_a_changed_folder_keeps_the_recorded_validation_files(tmp_path, capsys):
    import json

    files = [write_image(tmp_path / "data" / "ab"[i % 2] / f"{i:02d}.png", 32, seed=i) for i in range(40)]
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "data"),
                "--output",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--width",
                "0.25",
                "--no-progress",
            ]
        )
        == 0
    )
    recorded = read_header(out / "last.safetensors")["split"]["val_files"]
    _, expected_val = split_of(sorted(files), 0.1)
    assert (
        recorded == [p.relative_to(tmp_path / "data").as_posix() for p in expected_val] and len(recorded) == 4
    )
    capsys.readouterr()
    write_image(
        tmp_path / "data" / "a" / "new.png", 32, seed=100
    )  # one more image changes the recomputed split
    with pytest.warns(UserWarning, match=r"changed since training .* would have put \d+ training images"):
        assert (
            main(["eval", str(out / "last.safetensors"), "--data", str(tmp_path / "data"), "--format=json"])
            == 0
        )
    assert json.loads(capsys.readouterr().out)["images"] == 4
    (tmp_path / "data" / recorded[0]).unlink()
    with pytest.warns(UserWarning, match="1 of the 4 validation images gone"):
        assert (
            main(["eval", str(out / "last.safetensors"), "--data", str(tmp_path / "data"), "--format=json"])
            == 0
        )
    assert json.loads(capsys.readouterr().out)["images"] == 3


def test_eval_on_another_folder_scores_every_image_and_says_so(tmp_path, capsys):
    """Names such as a/00.png recur across folders: a folder holding a few of the recorded validation
    names is not the training folder, so the answer is about all of it, never about those few."""
    import json

    for i in range(40):
        write_image(tmp_path / "data" / "ab"[i % 2] / f"{i:02d}.png", 32, seed=i)
    out = tmp_path / "run"
    argv = ["--output", str(out), "--epochs", "1", "--batch-size", "8", "--width", "0.25", "--no-progress"]
    assert main(["train", "--data", str(tmp_path / "data"), *argv]) == 0
    recorded = read_header(out / "last.safetensors")["split"]["val_files"]
    for i, name in enumerate(recorded[:1] + [f"{c}/new{j}.png" for c in "ab" for j in range(15)]):
        write_image(tmp_path / "new" / name, 32, seed=200 + i)  # one recorded name among 31 images
    capsys.readouterr()
    assert (
        main(["eval", str(out / "last.safetensors"), "--data", str(tmp_path / "new"), "--format=json"]) == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["images"] == 31 and "no recorded split for this folder" in metrics["scope"]
    assert "holds 1 of the 4 validation files" in metrics["scope"]
    assert main(["eval", str(out / "last.safetensors"), "--data", str(tmp_path / "data")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("4 images (the 4 validation files the checkpoint recorded"), first


# --------------------------------------------------------------------------------------------
# 10. The remaining tracebacks and silent acceptances
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changed, fragment",
    [
        (["--optimizer", "rmsprop"], "--optimizer 'sgd'"),
        (["--data", "FOLDER"], "--data 'digits'"),
        (["--seed", "1"], "--seed 0"),
        (["--batch-size", "16"], "--batch-size 32"),
    ],
)
def test_resume_refuses_changed_options(run_copy, tmp_path, capsys, changed, fragment):
    if changed[1] == "FOLDER":
        for i in range(20):
            write_image(tmp_path / "data" / str(i % 10) / f"{i}.png", 32, seed=i)
        changed = [changed[0], str(tmp_path / "data")]
    before = snapshot(run_copy)
    args = train_args(run_copy, "--resume", epochs=3)
    flag, value = changed
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += changed
    assert main(args) == 2
    one_error_line(capsys, "--resume", fragment, "repeat the run's options")
    assert snapshot(run_copy) == before


def test_resume_with_a_new_lr_warns_that_it_is_no_longer_bit_exact(run_copy, capsys):
    with pytest.warns(UserWarning, match=r"--lr 0.1 → 0.05.*no longer bit-identical"):
        assert main(train_args(run_copy, "--resume", epochs=3, lr=0.05)) == 0
    # nothing left to do: says so (the history loaded from the checkpoint is not "nothing")
    capsys.readouterr()
    assert main(train_args(run_copy, "--resume", epochs=3, lr=0.05)) == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--features-only"], "features_only"),
        (
            ["train", "--num-classes", "5", "--epochs", "1"],
            "num_classes (--num-classes) is 5 but digits has 10",
        ),
        (["train", "--resolution", "224", "--epochs", "1"], "set --image-size instead"),
        (["train", "--image-size", "100000"], "image_size must be an integer from 32 to"),
        (["train", "--width", "1e9"], "width_mult must be a positive number up to"),
        (["cost", "mobilenet_v1", "--width", "1e9"], "width_mult must be a positive number up to"),
        (["eval", "CHECKPOINT", "--data", "digits", "--batch-size", "0"], "--batch-size"),
        (["predict", "CHECKPOINT", "IMAGE", "--top-k", "0"], "--top-k"),
        (["predict", "CHECKPOINT", "IMAGE", "--top-k", "-1"], "--top-k"),
    ],
)
def test_bad_values_are_one_line(run, tmp_path, capsys, argv, fragment):
    argv = [str(run / "best.safetensors") if a == "CHECKPOINT" else a for a in argv]
    argv = [str(write_image(tmp_path / "x.png", 32)) if a == "IMAGE" else a for a in argv]
    if argv[0] == "train":
        argv += ["--output", str(tmp_path / "out"), "--batch-size", "32", "--no-progress"]
        if "--width" not in argv:
            argv += ["--width", "0.25"]
    assert main(argv) == 2
    one_error_line(capsys, fragment)
    assert not (tmp_path / "out" / "last.safetensors").exists()


def test_numpy_scalars_and_float64_input():
    import numpy as np
    import torch

    from mobilenets import create_model

    model = create_model(
        "mobilenet_v1", width_mult=np.float32(0.25), num_classes=np.int64(10), resolution=np.int32(64)
    )
    assert model.config.num_classes == 10 and model.config.width_mult == 0.25
    assert type(model.config.resolution) is int
    with pytest.raises(ValueError, match="float32 weights but got a torch.float64 batch"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.float64))


def edited_checkpoint(source: Path, target: Path, edit) -> Path:
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), framework="pt") as handle:
        header = json.loads(handle.metadata()["mobilenets"])
    tensors = load_file(str(source))
    edit(header, tensors)
    save_file(tensors, str(target), metadata={"mobilenets": json.dumps(header)})
    return target


def _set_kernel(header, tensors):
    header["config"]["blocks"][1]["kernel_size"] = 99999


def _set_classes(header, tensors):
    header["config"]["head"]["num_classes"] = 10**9
    header["class_names"] = None


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda h, t: h.pop("config"), "no model config"),
        (lambda h, t: h["config"].update(blocks="many"), "model config is invalid"),
        (lambda h, t: h.update(class_names=["0", "1"]), "2 class names for a model with 10 classes"),
        (_set_kernel, "in the header's config"),
        (_set_classes, "in the header's config"),
        (lambda h, t: t.pop("model.head.fc.bias"), "which the file lacks"),
    ],
)
def test_bad_checkpoint_headers_are_one_line_before_allocating(run, tmp_path, capsys, edit, fragment):
    bad = edited_checkpoint(run / "best.safetensors", tmp_path / "bad.safetensors", edit)
    with pytest.raises(ValueError, match=fragment):
        load_checkpoint(bad)
    assert main(["predict", str(bad), str(write_image(tmp_path / "x.png", 32))]) == 2
    one_error_line(capsys, str(bad))


def test_checkpoints_are_created_with_the_usual_file_mode(run):
    import os

    umask = os.umask(0)
    os.umask(umask)
    for name in ("last.safetensors", "best.safetensors", "metrics.csv"):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_truncated_cifar_tarball(tmp_path, capsys):
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        payload = bytes(range(256)) * 4000
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    tarball = tmp_path / "cifar-10-python.tar.gz"
    tarball.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert main(["train", "--data", f"cifar10:{tarball}", "--output", str(tmp_path / "run")]) == 2
    one_error_line(capsys, str(tarball), "download it again")


def test_class_folder_linking_to_the_data_folder(tmp_path, capsys):
    for i in range(4):
        write_image(tmp_path / "data" / "ab"[i % 2] / f"{i}.png", 16, seed=i)
    (tmp_path / "data" / "loop").symlink_to(tmp_path / "data", target_is_directory=True)
    assert main(["train", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "loop", "remove the link")


def test_keras_file_listing_a_missing_layer(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [b"conv1", b"conv1_bn"]
        handle.create_group("conv1").attrs["weight_names"] = [b"conv1/kernel:0"]
        handle["conv1"].create_dataset(
            "conv1/kernel:0", data=__import__("numpy").zeros((3, 3, 3, 8), "float32")
        )
    assert main(["convert", "--from", "keras", str(path), "-o", str(tmp_path / "out.safetensors")]) == 2
    one_error_line(capsys, "conv1_bn", "missing from the file")


def test_keras_weights_only_file_records_the_size_in_its_published_name(request, tmp_path):
    keras_file = request.getfixturevalue("keras_v1_file")
    h5py = pytest.importorskip("h5py")
    weights_only = tmp_path / "mobilenet_2_5_128_tf.h5"  # as Keras publishes it: no config, no input size
    with h5py.File(keras_file, "r") as source, h5py.File(weights_only, "w") as target:
        for name in source["model_weights"]:
            source.copy(source["model_weights"][name], target, name)
        target.attrs["layer_names"] = source["model_weights"].attrs["layer_names"]
    assert (
        main(["convert", "--from", "keras", str(weights_only), "-o", str(tmp_path / "v1.safetensors")]) == 0
    )
    checkpoint = load_checkpoint(tmp_path / "v1.safetensors")
    assert checkpoint.preprocessing["size"] == 128 and checkpoint.model.config.resolution == 128


# --------------------------------------------------------------------------------------------
# 11. SIGKILL at random moments, during checkpoint writes too: `last` always loads, and resuming
# after every kill ends bit-identical to the run that was never interrupted
# --------------------------------------------------------------------------------------------
# A fork server: imports once, then runs each training in a forked child (so 20 starts cost no
# 20 imports of torch) and kills it with SIGKILL after a delay, or the moment a checkpoint's
# temporary file appears (mid-write).
FORK_SERVER = r"""
import json, os, signal, sys, time
from pathlib import Path
import matplotlib.pyplot, sklearn.datasets  # imported once, before any fork
from mobilenets.cli import main

base = json.loads(sys.argv[1])
for line in sys.stdin:
    command = json.loads(line)
    out = Path(command["out"])
    marker = out / "train_config.json"  # written once data and model are ready
    marker.unlink(missing_ok=True)
    argv = base + ["--output", str(out)] + (["--resume"] if (out / "last.safetensors").exists() else [])
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os._exit(main(argv))
    kill, during_write, started, status = command.get("kill"), False, time.monotonic(), None

    def running():
        global status
        if status is None:
            reaped, code = os.waitpid(pid, os.WNOHANG)
            if reaped:
                status = code
        return status is None

    if kill is not None:
        deadline = time.monotonic() + 120
        while not marker.exists() and running() and time.monotonic() < deadline:
            time.sleep(0.002)
        if isinstance(kill, list):  # ["write", delay]: the first checkpoint write after the delay
            time.sleep(kill[1])
            while time.monotonic() < deadline and running():
                if any(name.endswith(".tmp") for name in os.listdir(out)):
                    during_write = True
                    break
                time.sleep(0.0002)
        else:
            time.sleep(kill)
        if running():
            os.kill(pid, signal.SIGKILL)
    if status is None:
        _, status = os.waitpid(pid, 0)
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    print(json.dumps({"killed": os.WIFSIGNALED(status), "exit": exit_code, "during_write": during_write,
                      "seconds": time.monotonic() - started}), flush=True)
"""


@pytest.mark.slow
def test_sigkill_at_20_random_moments_then_resume_is_bit_identical(tmp_path):
    import json
    import os
    import random

    from safetensors.torch import load_file

    base = [
        "train",
        "--data",
        "digits",
        "--epochs",
        "8",
        "--batch-size",
        "64",
        "--width",
        "0.1",
        "--stem-stride",
        "2",
        "--lr",
        "0.1",
        "--val-fraction",
        "0.5",
        "--dropout",
        "0.2",
        "--workers",
        "0",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-c", FORK_SERVER, json.dumps(base)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )

    def run(**command):
        server.stdin.write(json.dumps(command) + "\n")
        server.stdin.flush()
        return json.loads(server.stdout.readline())

    try:
        result = run(out=str(tmp_path / "reference"))
        assert (result["killed"], result["exit"]) == (False, 0)
        reference = load_file(str(tmp_path / "reference" / "last.safetensors"))
        # Kill times scale with this machine's (and its load's) speed: an epoch's training, plus
        # its validation of as many images without backward pass.
        history = read_header(tmp_path / "reference" / "last.safetensors")["history"]
        epoch_seconds = 1.4 * sum(row["epoch_seconds"] for row in history) / len(history)
        chain = tmp_path / "chain"
        chain.mkdir()
        rng = random.Random(20)
        epochs_seen, writes_hit = [], 0
        for attempt in range(20):
            delay = rng.uniform(0.0, 1.5) * epoch_seconds
            result = run(out=str(chain), kill=["write", delay / 2] if attempt % 3 == 2 else delay)
            assert result["killed"] or result["exit"] == 0, result  # killed, or it had already finished
            writes_hit += result["during_write"]
            if (chain / "last.safetensors").exists():
                checkpoint = load_checkpoint(chain / "last.safetensors")  # never torn
                epoch = checkpoint.metadata["epoch"]
                assert not epochs_seen or epoch >= epochs_seen[-1]  # never older than before
                epochs_seen.append(epoch)
        result = run(out=str(chain))
        assert (result["killed"], result["exit"]) == (False, 0)
        assert len(set(epochs_seen)) >= 2, epochs_seen  # some runs resumed from a killed run's checkpoint
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    resumed = load_file(str(chain / "last.safetensors"))
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():  # weights, optimizer state and RNG state
        assert torch_equal(resumed[name], tensor), name
    history = [
        read_header(chain / "last.safetensors")["history"],
        read_header(tmp_path / "reference" / "last.safetensors")["history"],
    ]
    assert [[(r["epoch"], r["val_loss"], r["val_top1"]) for r in h] for h in history][0] == [
        [(r["epoch"], r["val_loss"], r["val_top1"]) for r in h] for h in history
    ][1]
    assert not [p for p in chain.iterdir() if p.name.endswith(".tmp")]
    print(f"kills: 20, during a checkpoint write: {writes_hit}, epochs reached: {epochs_seen}")


def torch_equal(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())


def test_a_collapsed_model_is_flagged_in_eval_and_after_training(tmp_path, capsys):
    from mobilenets.training.evaluate import COLLAPSE_SHARE, collapse_warning

    names = ["cat", "dog", "owl"]
    healthy = {"top_prediction": 0, "top_prediction_share": COLLAPSE_SHARE, "images": 10}
    assert collapse_warning(healthy, names) is None
    line = collapse_warning({**healthy, "top_prediction": 2, "top_prediction_share": 0.95}, names)
    assert "predicts 'owl' for 95.0% of the 10 images" in line and "collapsed" in line
    assert collapse_warning({**healthy, "top_prediction_share": 1.0}, ["only"]) is None
    # A learning rate of 8 drives every image to one answer without overflowing (seed 0, digits).
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--output",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "64",
                "--width",
                "0.25",
                "--lr",
                "8",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "collapsed to one class" in capsys.readouterr().out
    assert main(["eval", str(out / "last.safetensors"), "--data", "digits"]) == 0
    assert "collapsed to one class" in capsys.readouterr().out


def test_a_batch_larger_than_the_data_stops_before_touching_disk(tmp_path, capsys):
    for i in range(30):
        write_image(tmp_path / "data" / "ab"[i % 2] / f"{i:02d}.png", 32, seed=i)
    out = tmp_path / "new" / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--output", str(out), "--width", "0.25"]) == 2
    one_error_line(capsys, "batch_size 128 is larger than the 27 training images", "--batch-size 13")
    assert not out.exists()  # no folder, no lock file
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep")
    assert main(["train", "--data", str(tmp_path / "data"), "-o", str(existing), "--width", "0.25"]) == 2
    assert (existing / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize(
    "flag, value, fragment",
    [
        ("--lr", "1e308", "lr (--lr) must be in (0, 1000]"),
        ("--lr", "0", "lr (--lr) must be in (0, 1000]"),
        ("--weight-decay", "1e308", "weight_decay (--weight-decay) must be at most 1"),
        ("--epochs", "100000000", "epochs (--epochs) must be at most 10,000"),
        ("--batch-size", "1000000", "batch_size (--batch-size) must be at most 65,536"),
    ],
)
def test_absurd_numbers_are_one_line_before_any_work(tmp_path, capsys, flag, value, fragment):
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--output", str(out), flag, value]) == 2
    one_error_line(capsys, fragment)
    assert not out.exists()


def test_weights_holding_nan_are_refused_at_load_with_the_tensor_name(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from mobilenets import create_model
    from mobilenets.checkpoint import METADATA_KEY, read_metadata, save_checkpoint

    good = save_checkpoint(
        tmp_path / "good.safetensors", create_model("mobilenet_v1", width_mult=0.25, num_classes=3)
    )
    tensors = load_file(str(good))
    tensors["model.features.3.pw.conv.weight"][0, 0] = float("nan")
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=read_metadata(good))
    assert read_metadata(bad)[METADATA_KEY]
    image = write_image(tmp_path / "x.png", 32, seed=0)
    assert main(["predict", str(bad), str(image)]) == 2
    one_error_line(capsys, "bad.safetensors", "features.3.pw.conv.weight holds NaN", "earlier checkpoint")


def test_ctrl_c_while_the_command_is_still_importing_is_one_line():
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "mobilenets", "list"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(1.0)  # after Python has started, while torch (seconds) is still importing
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err and err.count("\n") == 1, err


def test_a_pickle_named_safetensors_is_read_by_its_bytes(tmp_path, capsys):
    import torch

    from mobilenets import create_model

    state = create_model("mobilenet_v2", width_mult=0.5).state_dict()
    renamed = tmp_path / "weights.safetensors"
    torch.save({f"features.{k}": v for k, v in state.items()}, renamed)  # not a torchvision layout
    with pytest.warns(UserWarning, match="named .safetensors but its bytes are a PyTorch zip"):
        assert main(["convert", "--from", "torchvision", str(renamed), "-o", str(tmp_path / "out.st")]) == 2
    line = one_error_line(capsys, "is not a torchvision mobilenet_v2/v3 state dict")
    assert "SafetensorError" not in line and not (tmp_path / "out.st").exists()


def test_export_never_overwrites_without_force(tmp_path, capsys):
    from mobilenets.cli.deploy import _export_targets
    from mobilenets.deploy.runtimes import RUNTIMES

    # OpenVINO writes X.xml and X.bin: an unrelated X.bin is a target too
    assert [p.name for p in _export_targets(RUNTIMES["openvino"], tmp_path / "X.xml", "f32")] == [
        "X.xml",
        "X.bin",
        "X.xml.json",
    ]
    assert [p.name for p in _export_targets(RUNTIMES["onnx"], tmp_path / "m.onnx", "int8")] == [
        "m.onnx",
        "m.onnx.json",
        "m.int8.onnx",
        "m.int8.onnx.json",
    ]
    out = tmp_path / "m.onnx"
    argv = ["export", "mobilenet_v1", "--width", "0.25", "--resolution", "32", "-o", str(out)]
    (tmp_path / "m.onnx.json").write_text("my notes")  # someone else's file with the sidecar's name
    assert main(argv) == 2
    one_error_line(capsys, "m.onnx.json exists", "--force")
    assert (tmp_path / "m.onnx.json").read_text() == "my notes" and not out.exists()
    assert main([*argv, "--force"]) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    one_error_line(capsys, "m.onnx exists (and 1 more files of this export)", "--force")
    assert out.read_bytes() == first


def test_a_resumed_run_keeps_the_command_that_started_it(run_copy):
    started = read_header(run_copy / "last.safetensors")["provenance"]
    assert main(train_args(run_copy, "--resume", epochs=3)) == 0
    provenance = read_header(run_copy / "last.safetensors")["provenance"]
    assert provenance["command"] == started["command"] and provenance["git_commit"] == started["git_commit"]
    (resumed,) = provenance["resumes"]
    assert resumed["at_epoch"] == 2 and {"command", "git_commit", "git_dirty"} <= set(resumed)


def test_an_absurd_export_batch_is_refused_at_once(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "mobilenet_v1", "--width", "0.25", "--batch-size", "1000000", "-o", str(out)]) == 2
    one_error_line(capsys, "--batch-size 1,000,000 is more than 4,096")
    assert not out.exists()
