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
