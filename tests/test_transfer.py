"""Training from weights (`train --weights`, `--freeze-backbone`): a fine-tune beats the same run from
scratch, a new classifier for a new class count, a frozen backbone that stays bit-identical, the
parent's validation split kept out of training, the lineage recorded, and one line for weights
that do not fit."""

import hashlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenets import create_model
from mobilenets.checkpoint import load_checkpoint, read_header
from mobilenets.cli import main
from mobilenets.data import transforms
from mobilenets.training.train import TrainConfig, train

from helpers import one_error_line

TINY = {"width_mult": 0.25}


def digit_folder(root, digits, per_class=None):
    """scikit-learn's digits of the given classes as 32×32 RGB PNGs in class folders."""
    from sklearn.datasets import load_digits

    data = load_digits()
    for digit in digits:
        folder = root / f"digit{digit}"
        folder.mkdir(parents=True)
        images = data.images[data.target == digit][:per_class]
        for index, image in enumerate(images):
            pixels = (image * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).resize((32, 32), Image.NEAREST).convert("RGB").save(
                folder / f"{index:03d}.png"
            )
    return root


def run(out, data, **changes):
    base = dict(
        data=str(data),
        epochs=2,
        batch_size=16,
        lr=0.05,
        out=str(out),
        progress=False,
        workers=0,
        model_options=TINY,
    )
    return train(TrainConfig(**{**base, **changes}))


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A small model trained on the digits 0-6, and the folder of the digits 7-9 it never saw."""
    root = tmp_path_factory.mktemp("transfer")
    seen = digit_folder(root / "seen", range(7))
    unseen = digit_folder(root / "unseen", (7, 8, 9), per_class=60)
    result = run(root / "parent", seen, epochs=3, batch_size=32, lr=0.1)
    assert result.history[-1]["val_top1"] > 0.6
    return root / "parent" / "last.safetensors", seen, unseen


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fine_tuning_beats_scratch_on_new_classes(parent, tmp_path, capsys):
    checkpoint, _, unseen = parent
    scratch = run(tmp_path / "scratch", unseen)
    capsys.readouterr()
    tuned = run(tmp_path / "tuned", unseen, weights=str(checkpoint))
    assert "a new classifier for 3 classes replaces the 7-class one" in capsys.readouterr().err
    assert tuned.history[-1]["val_top1"] > scratch.history[-1]["val_top1"] + 0.1, (
        tuned.history,
        scratch.history,
    )
    header = read_header(tmp_path / "tuned" / "last.safetensors")
    assert header["config"]["head"]["num_classes"] == 3 and header["class_names"] == [
        "digit7",
        "digit8",
        "digit9",
    ]
    # The parent was given as an absolute path; the header records it relative to where the run started.
    assert header["parent"]["weights"] == os.path.relpath(checkpoint)
    recorded = header["train_config"]
    assert not [name for name in ("data", "out", "weights") if os.path.isabs(recorded[name])], recorded
    assert header["parent"]["sha256"] == sha256(checkpoint)
    parent_header = read_header(checkpoint)
    assert header["preprocessing"]["mean"] == parent_header["preprocessing"]["mean"]  # its input scaling
    (first,) = header["lineage"]  # the parent was trained from scratch: one run behind it
    assert first["epochs"] == 3 and first["sha256"] == sha256(checkpoint)
    assert first["command"] == parent_header["provenance"]["command"]


def test_frozen_backbone_stays_bit_identical(parent, tmp_path):
    checkpoint, _, unseen = parent
    result = run(tmp_path / "frozen", unseen, weights=str(checkpoint), freeze_backbone=True, epochs=1)
    before = load_checkpoint(checkpoint).model.state_dict()
    after = result.model.state_dict()
    backbone = [name for name in after if name.startswith("features.")]
    assert backbone and any("running_mean" in name for name in backbone)
    for name in backbone:
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(after["head.fc.bias"], torch.zeros(3))  # the classifier did train


def test_continuation_keeps_the_parents_validation_split(parent, tmp_path, capsys):
    checkpoint, seen, _ = parent
    # another seed and fraction would draw another split: the parent's must win
    run(tmp_path / "more", seen, weights=str(checkpoint), epochs=1, seed=5, val_fraction=0.3)
    assert "validation split" in capsys.readouterr().err
    child, parent_split = (
        read_header(p)["split"] for p in (tmp_path / "more" / "last.safetensors", checkpoint)
    )
    assert child["val_files"] == parent_split["val_files"] and child["from_parent"]
    lineage = read_header(tmp_path / "more" / "last.safetensors")["lineage"]
    assert len(lineage) == 1 and lineage[0]["val_top1"] == read_header(checkpoint)["history"][-1]["val_top1"]


def test_lineage_grows_with_each_generation(parent, tmp_path):
    checkpoint, _, unseen = parent
    run(tmp_path / "gen1", unseen, weights=str(checkpoint), epochs=1)
    run(tmp_path / "gen2", unseen, weights=str(tmp_path / "gen1" / "last.safetensors"), epochs=1)
    lineage = read_header(tmp_path / "gen2" / "last.safetensors")["lineage"]
    assert [entry["sha256"] for entry in lineage] == [
        sha256(checkpoint),
        sha256(tmp_path / "gen1" / "last.safetensors"),
    ]


def test_cli_trains_from_weights_and_infers_the_model(parent, tmp_path, capsys):
    checkpoint, _, unseen = parent
    out = tmp_path / "cli"
    assert (
        main(
            [
                "train",
                "--weights",
                str(checkpoint),
                "--data",
                str(unseen),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--width",
                "0.25",
                "--output",
                str(out),
                "--no-progress",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert "trained mobilenet_v1 for 1 epochs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["mobilenet_v2"], ("holds a mobilenet_v1, not mobilenet_v2",)),
        (["--width", "0.5"], ("width_mult=0.5 does not fit the weights",)),
    ],
)
def test_weights_that_do_not_fit_get_one_line(parent, tmp_path, capsys, argv, fragments):
    checkpoint, _, unseen = parent
    out = tmp_path / "bad"
    code = main(["train", "--weights", str(checkpoint), "--data", str(unseen), "--output", str(out), *argv])
    assert code == 2
    one_error_line(capsys, *fragments)
    assert not (out / "last.safetensors").exists()


def test_freeze_backbone_needs_weights(capsys):
    assert main(["train", "--freeze-backbone"]) == 2
    one_error_line(capsys, "--freeze-backbone needs --weights")


def test_create_model_keeps_the_backbone_with_a_new_head(parent):
    checkpoint, _, _ = parent
    model = create_model("mobilenet_v1", weights=str(checkpoint), num_classes=3)
    source = load_checkpoint(checkpoint).model.state_dict()
    for name, tensor in model.state_dict().items():
        if name.startswith("features."):
            assert torch.equal(tensor, source[name]), name
    assert model.head.fc.out_features == 3 and model.config.num_classes == 3


@pytest.mark.parametrize("size", [1, 8, 16])
@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (2, 1, 20, 28)])
def test_cutout_erases_at_most_one_square_per_image(shape, size):
    batch = torch.randn(shape).abs() + 1  # no zeros before
    erased = transforms.cutout(batch, size, torch.Generator().manual_seed(0))
    zeros = (erased == 0).all(1)  # N×H×W: erased on every channel
    for image in range(shape[0]):
        rows, cols = torch.nonzero(zeros[image], as_tuple=True)
        assert len(rows) <= size * size and (
            len(rows) == 0
            or (
                rows.max() - rows.min() < size
                and cols.max() - cols.min() < size
                and len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            )
        )
    untouched = ~zeros[:, None].expand_as(batch)
    assert torch.equal(erased[untouched], batch[untouched])
    again = transforms.cutout(batch, size, torch.Generator().manual_seed(0))
    assert torch.equal(erased, again)


def test_cutout_is_validated(capsys):
    assert main(["train", "--cutout", "-3"]) == 2
    one_error_line(capsys, "--cutout", "got -3")


def test_eval_reports_flip_tta_apart_from_the_plain_figures(parent, capsys):
    checkpoint, seen, _ = parent
    assert main(["eval", str(checkpoint), "--data", str(seen), "--format", "json", "--workers", "0"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert (
        main(["eval", str(checkpoint), "--data", str(seen), "--format=json", "--tta", "--workers", "0"]) == 0
    )
    both = json.loads(capsys.readouterr().out)
    assert "tta" not in plain and both["top1"] == plain["top1"] and both["loss"] == plain["loss"]
    assert 0 < both["tta"]["top1"] <= 1 and both["tta"]["kind"] == "horizontal flip"
    assert both["tta"]["top1"] != plain["top1"] or both["tta"]["loss"] != plain["loss"]  # a second pass ran
    assert main(["eval", str(checkpoint), "--data", str(seen), "--tta", "--workers", "0"]) == 0
    assert "with flip TTA" in capsys.readouterr().out
    assert main(["eval", str(checkpoint), "--data", "digits", "--tta"]) == 2
    one_error_line(capsys, "--tta", "not mirror-symmetric")
