"""Training end to end on the built-in digits: learning, exact resume, checkpoints surviving a kill,
two-process DDP, eval and predict, and every CLI error path."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenets.checkpoint import load_checkpoint, read_header
from mobilenets.cli import main
from mobilenets.data import MemoryLoader
from mobilenets.training.train import Interrupted, TrainConfig, train

TINY = {"width_mult": 0.25}
# Dropout draws from the RNG every step: the resume tests check that its state is restored too.
DROPOUT = {**TINY, "dropout": 0.2}


def config(out, **changes):
    base = dict(
        data="digits", epochs=2, batch_size=32, lr=0.1, out=str(out), progress=False, model_options=TINY
    )
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch run, uninterrupted: the tests below read it, and the resume tests compare against it."""
    out = tmp_path_factory.mktemp("digits")
    result = train(config(out, model_options=DROPOUT))
    return out, result


def test_two_epochs_on_digits_learn(trained):
    out, result = trained
    assert result.history[-1]["val_top1"] > 0.6  # chance is 0.1
    for name in (
        "last.safetensors",
        "best.safetensors",
        "metrics.csv",
        "metrics.jsonl",
        "curves.png",
        "train_config.json",
    ):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and {"val_top5", "images_per_second", "lr"} <= set(rows[0])
    header = read_header(out / "last.safetensors")
    assert (
        header["epoch"] == 2 and header["step"] == 0 and header["class_names"] == [str(d) for d in range(10)]
    )
    assert header["preprocessing"]["size"] == 32
    assert Image.open(out / "curves.png").size[0] > 100


def interrupt_after(monkeypatch, steps):
    """Make the training loader raise KeyboardInterrupt (as Ctrl-C would) after `steps` batches."""
    original = MemoryLoader.batches
    counter = {"left": steps}

    def batches(self, epoch, start_step=0):
        for item in original(self, epoch, start_step):
            if self.train:
                if counter["left"] == 0:
                    raise KeyboardInterrupt
                counter["left"] -= 1
            yield item

    monkeypatch.setattr(MemoryLoader, "batches", batches)


@pytest.mark.parametrize("stop_after", [70, 50])  # mid-epoch 2, and exactly the end of epoch 1 (50 steps)
def test_resume_is_bit_exact(tmp_path, monkeypatch, trained, stop_after):
    reference = trained[1].model  # the same recipe, uninterrupted
    cfg = config(tmp_path / "run", model_options=DROPOUT)
    with monkeypatch.context() as patch:
        interrupt_after(patch, stop_after)
        with pytest.raises(Interrupted, match="continue with --resume"):
            train(cfg)
    saved = read_header(tmp_path / "run" / "last.safetensors")
    assert (saved["epoch"], saved["step"]) == divmod(stop_after, 50)
    resumed = train(TrainConfig(**{**cfg.__dict__, "resume": True})).model
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_checkpoint_survives_a_kill_mid_write(tmp_path):
    """A process rewriting a checkpoint in a loop is SIGKILLed at an arbitrary moment: what is on
    disk always loads, and no temporary file is mistaken for it."""
    target = tmp_path / "last.safetensors"
    script = f"""
import torch
from mobilenets import create_model
from mobilenets.checkpoint import save_checkpoint
model = create_model("mobilenet_v2", num_classes=10)
save_checkpoint({str(target)!r}, model, metadata={{"epoch": 0}})
print("ready", flush=True)
for epoch in range(1, 100000):
    save_checkpoint({str(target)!r}, model, metadata={{"epoch": epoch}})
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoint = load_checkpoint(target)
    assert checkpoint.metadata["epoch"] >= 0
    assert all(not name.endswith(".safetensors") or name == target.name for name in os.listdir(tmp_path))


def test_two_process_ddp_on_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port: other test processes (xdist workers, other runs) may train too
        "--nproc_per_node",
        "2",
        "-m",
        "mobilenets",
        "train",
        "--data",
        "digits",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "0.1",
        "--width",
        "0.25",
        "--output",
        str(out),
        "--no-progress",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2 and history[-1]["val_top1"] > 0.5  # global batch 32, as the single-process run
    # each rank ran half of the 1,617 images per epoch: 50 steps of 16
    assert read_header(out / "last.safetensors")["schedule"]["global_step"] == 2 * 50


def test_eval_and_predict_on_the_trained_checkpoint(trained, tmp_path, capsys):
    out, result = trained
    png = tmp_path / "confusion.png"
    assert (
        main(["eval", str(out / "best.safetensors"), "--data", "digits", "-o", str(png), "--format", "json"])
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["images"] == 180 and metrics["top1"] == pytest.approx(
        max(r["val_top1"] for r in result.history)
    )
    assert len(metrics["per_class"]) == 10 and png.is_file()
    from sklearn.datasets import load_digits

    digit = load_digits().images[0]  # a "0"
    image = tmp_path / "zero.png"
    Image.fromarray((digit * 255 / 16).astype(np.uint8)).convert("RGB").save(image)
    assert main(["predict", str(out / "best.safetensors"), str(image), "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image) and len(lines) == 4 and lines[1].strip().endswith("0")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "/nonexistent/images"], "does not exist"),
        (["train", "resnet50"], "unknown model 'resnet50'"),
        (["train", "--epochs", "0"], "epochs must be a positive integer"),
        (["train", "--width", "-1"], "width_mult must be a positive number"),
        (["train", "--resume", "--output", "/tmp/mobilenets-no-such-run"], "no checkpoint at"),
        (["eval", "/tmp/missing.safetensors", "--data", "digits"], "no checkpoint at"),
        (["predict", "/tmp/missing.safetensors", "x.png"], "no checkpoint at"),
    ],
)
def test_cli_errors_exit_2(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # a failed command leaves no runs/ (or anything) behind


def test_cli_refuses_to_overwrite_a_run_and_rejects_empty_folders(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out, _ = trained
    assert main(["train", "--output", str(out), "--epochs", "1"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty")]) == 2
    assert "no images found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nor the parent of the default --output runs/train
    assert main(["train", "--data", str(tmp_path / "empty"), "-o", str(tmp_path / "a" / "b" / "c")]) == 2
    assert not (tmp_path / "a").exists()
    assert main(["predict", str(out / "last.safetensors"), str(tmp_path / "nope.png")]) == 2
    assert "no image at" in capsys.readouterr().err


def test_provenance_sees_an_uncommitted_change_anywhere_in_the_package(monkeypatch):
    # It once looked at training/ alone and called a run of a changed cli/ or layers.py clean.
    import mobilenets
    from mobilenets.training import train as train_module

    package = os.path.dirname(os.path.realpath(mobilenets.__file__))
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        out = "abc123\n" if "rev-parse" in command else " M src/mobilenets/layers.py\n"
        return subprocess.CompletedProcess(command, 0, stdout=out, stderr="")

    monkeypatch.setattr(train_module.subprocess, "run", fake_run)
    record = train_module.provenance()
    assert record["git_commit"] == "abc123" and record["git_dirty"] is True
    assert all(command[command.index("-C") + 1] == str(package) for command in calls)
