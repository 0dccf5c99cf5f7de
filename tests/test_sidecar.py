"""The sidecar schema (deploy/sidecar.py): what `build` writes, `read` accepts; every damaged field is
one SidecarError naming it; a newer format is refused with the upgrade; no file names of the split
and no folders of the exporting machine are written."""

import copy
import json

import pytest

from mobilenets import create_model
from mobilenets.deploy import sidecar

AGAIN = "export it again"


@pytest.fixture(scope="module")
def good():
    config = create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=3, stem_stride=1).config
    info = sidecar.build(
        runtime="onnx",
        precision="f32",
        batch=None,
        config=config,
        class_names=["cat", "dog", "owl"],
        preprocessing={"size": 32, "resize": 32, "mean": [0.5] * 3, "std": [0.25] * 3},
        split={"kind": "held_out", "seed": 0, "val_fraction": 0.1, "val_files": ["cat/1.png", "dog/2.png"]},
        source="/home/someone/runs/mine/best.safetensors",
        calibration_images=None,
    )
    return {**info, "files": {"m.onnx": "0" * 64}}


def write(tmp_path, info):
    path = tmp_path / "m.onnx.json"
    path.write_text(info if isinstance(info, str) else json.dumps(info))
    return path


def test_what_build_writes_read_accepts_without_names_or_folders(good, tmp_path):
    info = sidecar.read(write(tmp_path, good), AGAIN)
    assert info["format"] == sidecar.FORMAT and info["source"] == "best.safetensors"
    assert "val_files" not in info["split"] and info["split"]["count"] == 2
    assert info["split"]["val_files_sha256"] == sidecar.names_digest(["dog/2.png", "cat/1.png"])
    assert "/home/" not in json.dumps(info)


def changed(info, dotted, value):
    info = copy.deepcopy(info)
    *parents, last = dotted.split(".")
    target = info
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return info


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("preprocessing.std", [0.25, 0.0, 0.25], "preprocessing.std must be positive"),
        ("preprocessing.std", [-1, 1, 1], "preprocessing.std must be positive"),
        ("preprocessing.mean", [0.5, 0.5], "preprocessing.mean must be 3 finite numbers"),
        ("preprocessing.mean", "0.5", "preprocessing.mean must be 3 finite numbers"),
        ("preprocessing.size", 64, "the model's input is 32×32"),
        ("preprocessing.size", "32", "preprocessing.size must be a positive integer"),
        ("preprocessing.resize", 16, "must be an integer of at least the crop 32"),
        ("preprocessing.resize", "x", "must be an integer of at least the crop 32"),
        ("class_names", ["a", "b", "c", "d"], "lists 4 names but the model has 3 outputs"),
        ("class_names", "cat dog owl", "must be a list of strings"),
        ("batch", 0, "batch must be a positive integer or null"),
        ("batch", True, "batch must be a positive integer or null"),
        ("input", [1, 32, 32], "has 1 channels but the model reads 3"),
        ("input", [3, 32], r"must be \[channels, height, width\]"),
        ("config", {"name": "x"}, "config is no valid model config"),
        ("config", [], "config is no valid model config"),
        ("runtime", 7, "must be strings"),
        ("files", {}, "files must map each file name"),
        ("preprocessing", KeyError, "missing preprocessing"),
    ],
)
def test_each_damaged_field_is_one_line_naming_it(good, tmp_path, field, value, fragment):
    with pytest.raises(sidecar.SidecarError, match=fragment) as error:
        sidecar.read(write(tmp_path, changed(good, field, value)), AGAIN)
    assert "\n" not in str(error.value) and AGAIN in str(error.value)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "a JSON list"),
        (json.dumps({"format": "mobilenets.exported/x"}), "not a mobilenets sidecar"),
    ],
)
def test_what_is_no_sidecar_is_one_line(tmp_path, text, fragment):
    with pytest.raises(sidecar.SidecarError, match=fragment):
        sidecar.read(write(tmp_path, text), AGAIN)


def test_a_newer_format_asks_for_an_upgrade(good, tmp_path):
    newer = {**good, "format": f"{sidecar.FORMAT_PREFIX}{sidecar.VERSION + 1}"}
    with pytest.raises(sidecar.SidecarError, match="written by a newer mobilenets .* upgrade mobilenets"):
        sidecar.read(write(tmp_path, newer), AGAIN)


def test_resize_may_be_absent(good, tmp_path):
    info = changed(good, "preprocessing.resize", KeyError)
    assert "resize" not in sidecar.read(write(tmp_path, info), AGAIN)["preprocessing"]


def test_the_first_format_is_still_read(good, tmp_path):
    older = {**good, "format": f"{sidecar.FORMAT_PREFIX}1", "split": {"kind": "held_out", "val_files": ["a"]}}
    assert sidecar.read(write(tmp_path, older), AGAIN)["split"]["val_files"] == ["a"]


def test_an_exported_zoo_model_reads_back(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from mobilenets.cli import main

    pytest.importorskip("onnxruntime")
    out = tmp_path / "zoo.onnx"
    assert main(["export", "mobilenet_v1", "--width", "0.25", "--resolution", "32", "-o", str(out)]) == 0
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(image)
    capsys.readouterr()
    assert main(["predict", str(out), str(image), "--top-k", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
