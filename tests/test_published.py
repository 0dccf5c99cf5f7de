"""Weights this project trains and ships inside the package (`weights="cifar10"`): the mechanism on a
stand-in checkpoint, and the shipped file itself where it exists."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mobilenets
import mobilenets.pretrained.download as download
import mobilenets.pretrained.registry as registry
from mobilenets import create_model
from mobilenets.checkpoint import read_header, release_checkpoint, save_checkpoint
from mobilenets.cli import main

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "train"


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """A 10-class mobilenet_v1 checkpoint registered as the package's weights "standin"."""
    return register_stand_in(tmp_path, monkeypatch, NAMES)


def register_stand_in(tmp_path, monkeypatch, names):
    torch.manual_seed(0)
    model = create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10, stem_stride=1).eval()
    training = save_checkpoint(
        tmp_path / "last.safetensors",
        model,
        class_names=names,
        preprocessing={"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "resize": 32},
        metadata={
            "optimizer": {"state": {}},
            "step": 0,
            "epoch": 1,
            "split": {"kind": "held_out", "val_fraction": 0.1, "seed": 0},
        },
        tensors={"optimizer.0.momentum_buffer": torch.zeros(3)},
    )
    packaged = tmp_path / "package" / "standin.safetensors"
    release_checkpoint(
        training, packaged, {"provenance": {"command": "mobilenets train ...", "git_commit": "abc"}}
    )
    digest = hashlib.sha256(packaged.read_bytes()).hexdigest()
    entry = registry.published_entry("standin", packaged, digest)
    monkeypatch.setattr(registry, "_package_file", lambda name: tmp_path / "package" / name)
    monkeypatch.setattr(registry, "_REGISTRY", [*registry.registered(), entry])
    return model, packaged


def test_release_drops_training_state_and_keeps_the_record(stand_in):
    _, packaged = stand_in
    header = read_header(packaged)
    assert "optimizer" not in header and "step" not in header
    assert (
        header["epoch"] == 1 and header["split"]["seed"] == 0 and header["provenance"]["git_commit"] == "abc"
    )
    from safetensors import safe_open

    with safe_open(str(packaged), framework="pt") as handle:
        # SIM118 does not apply: a safe_open handle is not iterable; keys() is how it lists its tensors
        assert all(key.startswith("model.") for key in handle.keys())  # noqa: SIM118


def test_create_model_loads_shipped_weights_with_their_names_and_preprocessing(stand_in):
    model, _ = stand_in
    loaded = create_model("mobilenet_v1", weights="standin")
    assert loaded.training  # one mode rule: train, with or without weights (timm's, torchvision's)
    loaded.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.config.extra["class_names"] == NAMES
    assert loaded.config.extra["preprocessing"]["std"] == [0.25] * 3
    assert loaded.config.extra["weights"]["weights"] == "standin"
    assert registry.default_model("standin") == "mobilenet_v1"
    adapted = create_model("mobilenet_v1", weights="standin", num_classes=3)  # fine-tuning start
    assert adapted.config.num_classes == 3 and adapted.config.extra["class_names"] is None
    # The V1 options the weights fix are read from the V1 blocks (relu: the stand-in's default).
    assert create_model("mobilenet_v1", weights="standin", activation="relu").config == loaded.config
    with pytest.raises(ValueError, match="activation='relu6' does not fit .* activation='relu'"):
        create_model("mobilenet_v1", weights="standin", activation="relu6")


def test_a_changed_package_file_is_refused(stand_in):
    _, packaged = stand_in
    data = bytearray(packaged.read_bytes())
    data[-1] ^= 1
    packaged.write_bytes(bytes(data))
    with pytest.raises(download.HashMismatch, match="reinstall mobilenets"):
        create_model("mobilenet_v1", weights="standin")


def test_predict_takes_the_weights_key(stand_in, tmp_path, capsys):
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)
    assert main(["predict", "--weights", "standin", str(image), "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image) and len(lines) == 4
    assert all(line.split("%  ")[1] in NAMES for line in lines[1:])


def test_eval_takes_the_weights_key(tmp_path, monkeypatch, capsys):
    register_stand_in(tmp_path, monkeypatch, [str(d) for d in range(10)])
    assert (
        main(
            [
                "eval",
                "--weights",
                "standin",
                "--data",
                "digits",
                "-o",
                str(tmp_path / "c.png"),
                "--format",
                "json",
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["images"] == 180 and len(metrics["per_class"]) == 10  # digits' 10% held out


def test_eval_checks_the_shipped_classes_against_the_data(stand_in, capsys):
    assert main(["eval", "--weights", "standin", "--data", "digits"]) == 2
    assert "the checkpoint ['zero'" in capsys.readouterr().err


def test_no_such_key_lists_what_is_published(capsys):
    assert main(["predict", "--weights", "nope", "x.png"]) == 2
    assert "there is no file 'nope'" in capsys.readouterr().err


SHIPPED = registry.bundled_checkpoint("cifar10") if "cifar10" in registry.weight_keys() else None


@pytest.mark.skipif(SHIPPED is None, reason="no cifar10 weights shipped in this checkout")
def test_the_shipped_cifar10_model_records_how_it_was_made():
    assert SHIPPED.stat().st_size <= 15e6
    header = read_header(SHIPPED)
    assert header["provenance"]["command"].startswith("mobilenets train")
    assert len(header["provenance"]["git_commit"]) == 40
    assert header["release"]["epochs"] == len(header["history"]) == header["train_config"]["epochs"]
    assert header["release"]["val_top1"] == header["history"][-1]["val_top1"]  # the end of the schedule
    assert header["train_config"]["seed"] == 0 and header["split"]["val_fraction"] == 0.1
    assert header["class_names"] == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    model = create_model("mobilenet_v1", weights="cifar10")
    assert model.config.width_mult >= 0.5 and model.config.resolution == 32


@pytest.mark.slow
@pytest.mark.skipif(
    SHIPPED is None or not SHARED_CIFAR.is_dir(), reason="needs the shipped weights and CIFAR-10"
)
def test_eval_of_the_shipped_cifar10_model_reproduces_its_recorded_accuracy(capsys, tmp_path):
    png = str(tmp_path / "confusion.png")
    assert (
        main(
            ["eval", "--weights", "cifar10", "--data", str(SHARED_CIFAR), "--format", "json", "--output", png]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["images"] == 5000  # the run's own held-out split (seed 0, 10%)
    # within 3 images: training evaluated in channels_last, eval in NCHW (summation order differs)
    assert metrics["top1"] == pytest.approx(read_header(SHIPPED)["release"]["val_top1"], abs=6e-4)


# --------------------------------------------------------------------------------------------
# The registry and `mobilenets weights`
# --------------------------------------------------------------------------------------------
def test_every_registered_entry_is_unique_and_a_duplicate_is_refused():
    entries = registry.registered()
    assert len(set(entries)) == len(entries)
    with pytest.raises(ValueError, match="are registered"):
        registry.register(entries[0])


def test_the_weights_command_lists_every_key_and_model(capsys):
    assert main(["weights", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["key"] for row in rows} == set(registry.weight_keys())
    assert {row["model"].split()[0] for row in rows} == set(mobilenets.list_models(pretrained=True))
    tv = [r for r in rows if r["key"] == "torchvision-imagenet-v1" and r["model"] == "mobilenet_v2"]
    assert tv[0]["top1"] == pytest.approx(0.71878)
    assert tv[0]["params"] == mobilenets.cost("mobilenet_v2").params
    assert main(["weights"]) == 0
    assert "keras-imagenet" in capsys.readouterr().out


def test_a_shipped_entry_reads_its_facts_from_its_own_header(stand_in, capsys):
    _, packaged = stand_in
    assert main(["weights", "standin", "--format", "json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["class_names"] == NAMES and doc["preprocessing"]["std"] == [0.25] * 3
    assert doc["model"] == "mobilenet_v1" and doc["width_mult"] == 0.25
    assert doc["lineage"][-1]["command"] == "mobilenets train ..."
    assert doc["where"].startswith("in the package")
    assert main(["weights", "standin"]) == 0
    assert "run 1" in capsys.readouterr().out


def test_a_key_with_several_models_defaults_to_its_first(tmp_path, monkeypatch):
    register_stand_in(tmp_path / "a", monkeypatch, NAMES)
    torch.manual_seed(1)
    twin = create_model("conv_mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10, stem_stride=1)
    packaged = tmp_path / "a" / "package" / "twin.safetensors"
    save_checkpoint(
        packaged,
        twin,
        class_names=NAMES,
        preprocessing={"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "resize": 32},
    )
    entry = registry.published_entry("standin", packaged, hashlib.sha256(packaged.read_bytes()).hexdigest())
    monkeypatch.setattr(registry, "_REGISTRY", [*registry.registered(), entry])
    assert registry.default_model("standin") == "mobilenet_v1"
    assert registry.bundled_checkpoint("standin").name == "standin.safetensors"
    assert registry.bundled_checkpoint("standin", "conv_mobilenet_v1", 0.25) == packaged
    loaded = create_model("conv_mobilenet_v1", weights="standin")
    assert loaded.config.name == "conv_mobilenet_v1"


def test_an_unknown_key_gets_one_line(capsys):
    assert main(["weights", "imagenet"]) == 2
    assert "unknown weights 'imagenet'; published: keras-imagenet" in capsys.readouterr().err
    with pytest.raises(registry.UnknownWeightsError):
        create_model("mobilenet_v1", weights="cifar-ten")


SHIPPED_ENTRIES = [e for e in registry.list_weights(key="cifar10") if e.source == "mobilenets"]


@pytest.mark.parametrize("entry", SHIPPED_ENTRIES, ids=lambda e: f"{e.model}-{e.width_mult:g}")
def test_every_shipped_model_loads_and_says_how_it_was_made(entry):
    path = registry.bundled_file(entry)
    header = read_header(path)
    assert path.stat().st_size <= 15e6 and entry.num_classes == 10
    assert entry.metrics["top1"] == header["release"]["val_top1"] == header["history"][-1]["val_top1"]
    assert entry.lineage[-1]["git_commit"] == header["provenance"]["git_commit"]
    assert len(header["provenance"]["git_commit"]) == 40
    model = create_model(entry.model, weights="cifar10", width_mult=entry.width_mult)
    assert model.config.name == entry.model and model.config.width_mult == entry.width_mult
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


@pytest.mark.skipif(len({e.model for e in SHIPPED_ENTRIES}) < 2, reason="no Table 4 pair shipped")
def test_the_table4_pair_ships_with_the_same_recipe():
    pair = {e.model: read_header(registry.bundled_file(e)) for e in SHIPPED_ENTRIES if e.width_mult == 0.25}
    assert set(pair) == {"mobilenet_v1", "conv_mobilenet_v1"}
    recipes = [
        {k: v for k, v in header["train_config"].items() if k not in ("model", "out")}
        for header in pair.values()
    ]
    assert recipes[0] == recipes[1] and recipes[0]["epochs"] >= 30
    assert pair["mobilenet_v1"]["split"]["val_files"] == pair["conv_mobilenet_v1"]["split"]["val_files"]


def test_weights_transforms_prepare_an_image_as_predict_does(tmp_path):
    """`Weights.transforms()` takes a PIL image, a file or a C×H×W tensor and gives the tensor
    `predict` feeds the model, for the same pixels."""
    import numpy as np
    from PIL import Image

    from mobilenets import Preprocess, list_weights
    from mobilenets.data import preprocess_image

    entry = next(e for e in list_weights(key="cifar10") if e.width_mult == 0.25 and e.model == "mobilenet_v1")
    transform = entry.transforms()
    assert isinstance(transform, Preprocess)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)  # resized: 40×48 → 32
    Image.fromarray(pixels).save(tmp_path / "x.png")
    expected = preprocess_image(tmp_path / "x.png", entry.preprocessing)[0]
    assert expected.shape == (3, 32, 32)
    for given in (
        Image.fromarray(pixels),
        tmp_path / "x.png",
        torch.from_numpy(pixels).permute(2, 0, 1),
        torch.from_numpy(pixels).permute(2, 0, 1).float() / 255,
    ):
        assert torch.allclose(transform(given), expected, atol=1e-6), type(given)
    with pytest.raises(TypeError, match="PIL image, a file path or a C×H×W tensor"):
        transform([1, 2, 3])
    with pytest.raises(ValueError, match="C×H×W with 1 or 3 channels"):
        transform(torch.zeros(4, 8, 8))
    keras = next(e for e in list_weights(key="keras-imagenet"))
    with pytest.raises(ValueError, match="Preprocess\\(model.config.extra"):
        keras.transforms()
