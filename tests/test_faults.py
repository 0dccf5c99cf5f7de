"""Faults a user or the machine can cause: each gives one clear line, a non-zero exit code, and
leaves every good file byte-identical (see docs/reliability.md)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenets.checkpoint import load_checkpoint, read_header
from mobilenets.cli import main

TINY_TRAIN = ["--data", "digits", "--batch-size", "32", "--width", "0.25", "--no-progress"]


def train_args(out, *extra, epochs=2, lr=0.1):
    return ["train", *TINY_TRAIN, "--epochs", str(epochs), "--lr", str(lr), "--out", str(out), *extra]


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    # the per-epoch progress lines of a run that trained before failing are not part of the error
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("epoch ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


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
@pytest.mark.parametrize("flag, value", [("--lr", "inf"), ("--lr", "nan"), ("--weight-decay", "nan"),
                                         ("--weight-decay", "inf"), ("--warmup", "nan"),
                                         ("--label-smoothing", "nan"), ("--val-fraction", "nan")])
def test_non_finite_options_are_refused(tmp_path, capsys, flag, value):
    assert main(["train", "--out", str(tmp_path / "x"), flag, value]) == 2
    one_error_line(capsys, flag.lstrip("-").replace("-", "_"), "finite")
    assert not (tmp_path / "x").exists()


def test_divergence_stops_with_exit_3_and_keeps_checkpoints(run_copy, capsys):
    before = snapshot(run_copy)
    assert main(train_args(run_copy, "--resume", epochs=3, lr=1e6)) == 3
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
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(run_copy / "last.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(run_copy / "last.safetensors"))
    tensors["model.head.fc.weight"][0, 0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata=metadata)
    assert main(["export", str(bad), "--output", str(tmp_path / "nan.onnx")]) == 2
    one_error_line(capsys, "cannot export", "NaN")
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
    assert main(["train", "--data", "/nonexistent", "--out", out]) == 1
    one_error_line(capsys, "cannot write to the --out folder", out)


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders")
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

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(train_args(run_copy, "--resume", epochs=3)) == 1
    one_error_line(capsys, "cannot write", ".safetensors", "No space left on device", "intact", "--resume")
    assert snapshot(run_copy) == before
    assert [p.name for p in run_copy.iterdir() if p.name.endswith(".tmp")] == []


def test_eval_png_into_an_unwritable_folder_fails_first(run, tmp_path, capsys):
    target = tmp_path / "png-is-a-folder"
    target.mkdir()
    assert main(["eval", str(run / "best.safetensors"), "--data", "digits", "--confusion", str(target)]) == 1
    one_error_line(capsys, "is a folder")
    if Path("/sys/kernel").is_dir():
        assert main(["eval", str(run / "best.safetensors"), "--data", "digits",
                     "--confusion", "/sys/kernel/confusion.png"]) == 1
        one_error_line(capsys, "cannot write", "/sys/kernel")


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
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True,
                              env=env)
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
