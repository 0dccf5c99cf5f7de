"""A checkpoint written by an earlier version of the code (before the package was reorganised)
must keep loading: the model, its header and the trainer's state, so that a run can resume."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mobilenets import ModelConfig, create_model, model_config
from mobilenets.checkpoint import load_checkpoint, read_header, save_checkpoint
from mobilenets.cli import main
from mobilenets.models import MobileNet
from mobilenets.pretrained import imagenet_class_names

# Written by `mobilenets train --data digits --epochs 1 --batch-size 512 --lr 0.05 --width 0.125
# --image-size 32 --no-progress --workers 0` at commit f754fd0; outputs recorded then.
FIXTURE = Path(__file__).parent / "fixtures" / "mobilenet_v1_w0.125_digits32_epoch1.safetensors"
OUTPUTS = json.loads(FIXTURE.with_suffix(".outputs.json").read_text())
TRAIN_ARGS = [
    "train",
    "--data",
    "digits",
    "--batch-size",
    "512",
    "--lr",
    "0.05",
    "--width",
    "0.125",
    "--image-size",
    "32",
    "--no-progress",
    "--workers",
    "0",
]


def fixture_input() -> torch.Tensor:
    scale = torch.tensor([0.5, 1, 2, 4]).view(4, 1, 1, 1)
    return torch.sin(torch.arange(4 * 3 * 64 * 64, dtype=torch.float32) * 0.37).reshape(4, 3, 64, 64) * scale


def test_old_checkpoint_header_and_trainer_state():
    header = read_header(FIXTURE)
    assert header["format"] == "mobilenets.checkpoint/1"
    assert header["class_names"] == [str(digit) for digit in range(10)]
    assert header["preprocessing"]["size"] == 32
    assert (header["epoch"], header["step"]) == (1, 0)
    assert header["train_config"]["model_options"] == {"width_mult": 0.125}
    checkpoint = load_checkpoint(FIXTURE)
    config = checkpoint.model.config
    assert config == ModelConfig.from_dict(header["config"])
    assert (config.name, config.width_mult, config.head.num_classes) == ("mobilenet_v1", 0.125, 10)
    parameters = list(checkpoint.model.parameters())
    assert len(checkpoint.metadata["optimizer"]["state"]) == len(parameters)
    for index, parameter in enumerate(parameters):
        assert checkpoint.tensors[f"optimizer.{index}.momentum_buffer"].shape == parameter.shape
    assert checkpoint.tensors["rng.torch"].dtype == torch.uint8


def test_old_checkpoint_gives_the_outputs_recorded_when_it_was_written():
    model = load_checkpoint(FIXTURE).model.eval()
    x = fixture_input()
    with torch.no_grad():
        eval_logits = model(x)
        train_mode_logits = model.train()(x)  # batch statistics: every convolution weight matters
    torch.testing.assert_close(eval_logits, torch.tensor(OUTPUTS["eval_logits"]), rtol=0, atol=2e-6)
    torch.testing.assert_close(
        train_mode_logits, torch.tensor(OUTPUTS["train_mode_logits"]), rtol=0, atol=2e-6
    )


def test_an_old_run_resumes(tmp_path):
    shutil.copy(FIXTURE, tmp_path / "last.safetensors")
    old_history = read_header(FIXTURE)["history"]
    assert main([*TRAIN_ARGS, "--epochs", "2", "--output", str(tmp_path), "--resume"]) == 0
    header = read_header(tmp_path / "last.safetensors")
    assert header["epoch"] == 2
    assert header["history"][0] == old_history[0] and len(header["history"]) == 2


def test_a_converted_checkpoint_in_the_old_format_loads(tmp_path):
    """Before `minimalistic` was a ModelConfig field and class names a list, `save_converted` wrote
    {"minimalistic": true, "class_names": "imagenet-1k"} into the config's extra (the header's own
    class_names held the list). Such files load with the field set and the names themselves."""
    torch.manual_seed(0)
    model = MobileNet(model_config("mobilenet_v3_small", width_mult=0.5, minimalistic=True)).eval()
    recipe = {"size": 224, "resize": 256, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"}
    path = save_checkpoint(
        tmp_path / "new.safetensors",
        model,
        class_names=imagenet_class_names(),
        preprocessing=recipe,
        metadata={"converted_from": {"library": "keras"}},
    )
    header = read_header(path)
    assert header["config"]["minimalistic"] is True
    del header["config"]["minimalistic"]
    header["config"]["extra"] = {
        "source": {"library": "keras"},
        "preprocessing": recipe,
        "class_names": "imagenet-1k",
        "minimalistic": True,
    }
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata={"mobilenets": json.dumps(header)})

    loaded = load_checkpoint(old).model.eval()
    assert loaded.config.minimalistic and "minimalistic" not in loaded.config.extra
    assert loaded.config.extra["class_names"] == imagenet_class_names()
    assert loaded.config.replace(extra={}) == model.config
    x = fixture_input()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # As published weights: the options they fix are checked against the recorded field.
    assert create_model("mobilenet_v3_small", weights=str(old), minimalistic=True).config.minimalistic
    with pytest.raises(ValueError, match="minimalistic=False does not fit"):
        create_model("mobilenet_v3_small", weights=str(old), minimalistic=False)
