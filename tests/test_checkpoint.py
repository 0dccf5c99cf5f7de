"""The checkpoint file: round trip, extra state, atomic replacement, clear errors."""

import os

import pytest
import torch

from mobilenets import create_model
from mobilenets.checkpoint import load_checkpoint, load_model, read_header, save_checkpoint


def test_round_trip_restores_weights_config_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", width_mult=0.75, num_classes=4).eval()
    path = save_checkpoint(
        tmp_path / "ckpt.safetensors",
        model,
        class_names=list("abcd"),
        preprocessing={"size": 64, "mean": [0.5] * 3, "std": [0.25] * 3},
        metadata={"epoch": 3},
        tensors={"optimizer.0.momentum": torch.ones(5)},
    )
    checkpoint = load_checkpoint(path)
    assert checkpoint.class_names == list("abcd")
    assert checkpoint.preprocessing["size"] == 64
    assert checkpoint.metadata["epoch"] == 3
    torch.testing.assert_close(checkpoint.tensors["optimizer.0.momentum"], torch.ones(5))
    assert checkpoint.model.config == model.config
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_model(path)(x), model(x), rtol=0, atol=0)


def test_replacing_a_checkpoint_leaves_no_temporary_files(tmp_path):
    model = create_model("mobilenet_v1", width_mult=0.25, num_classes=2)
    target = tmp_path / "last.safetensors"
    for epoch in range(3):
        save_checkpoint(target, model, metadata={"epoch": epoch})
    assert read_header(target)["epoch"] == 2
    assert sorted(os.listdir(tmp_path)) == ["last.safetensors"]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = create_model("mobilenet_v1", width_mult=0.25, num_classes=2)
    target = tmp_path / "last.safetensors"
    save_checkpoint(target, model, metadata={"epoch": 1})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C or a kill arriving mid-write

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, model, metadata={"epoch": 2})
    assert read_header(target)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.safetensors"]


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, str(plain))
    with pytest.raises(ValueError, match="not a mobilenets checkpoint"):
        load_checkpoint(plain)
