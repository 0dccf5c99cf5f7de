"""The runtime registry: every float32 path matches PyTorch, int8 paths agree with float on a small
trained model, exported files carry what eval/predict need (sidecar), eval/predict/bench run them,
and every fault (missing package, missing or corrupt sidecar, truncated file) is one line, exit 2."""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenets import create_model
from mobilenets.cli import main
from mobilenets.config import ModelConfig
from mobilenets.deploy.base import ModelSource, default_preprocessing, run_torch
from mobilenets.deploy.gates import describe, load_gates, verdict
from mobilenets.deploy.openvino import supports_bf16
from mobilenets.deploy.runtimes import (
    BACKENDS,
    RUNTIMES,
    export_model,
    load_exported,
    sidecar_path,
)

from helpers import TOLERANCE, one_error_line, randomized

pytestmark = pytest.mark.usefixtures("one_thread")

# The phone runtimes' converters take minutes per export on a small machine; their own parity
# tests are tests/test_executorch.py and tests/test_tflite.py, so here they run with the slow tests.
SLOW_FORMATS = ("executorch", "tflite")


def formats(*values) -> list:
    """Every registered format (followed by `values`) as parameters, the slow ones marked slow."""
    return [
        pytest.param(name, *values, marks=[pytest.mark.slow] if name in SLOW_FORMATS else [])
        for name in RUNTIMES
    ]


FLOAT_PATHS = formats("f32")


def source_of(name: str, **options) -> ModelSource:
    torch.manual_seed(0)
    model = randomized(create_model(name, width_mult=0.25, resolution=32, num_classes=10, **options))
    return ModelSource(model, name, default_preprocessing(model), [f"class{i}" for i in range(10)])


@pytest.fixture(scope="module")
def v1_source():
    return source_of("mobilenet_v1")


# --------------------------------------------------------------------------------------------
# Parity and the registry's promises
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("format_name, precision", FLOAT_PATHS)
@pytest.mark.parametrize("batch_size", [None, 2])
def test_float32_paths_match_pytorch(format_name, precision, batch_size, v1_source, tmp_path):
    runtime = RUNTIMES[format_name]
    path = export_model(
        v1_source, runtime, tmp_path / f"m{runtime.suffix}", precision=precision, batch_size=batch_size
    )
    exported = load_exported(path, threads=1)
    if runtime.dynamic_batch:  # the batch is fixed where asked, else any
        assert exported.runner.input_shape == (batch_size, 3, 32, 32)
    assert tuple(exported.runner.input_shape[1:]) == (3, 32, 32)
    images = np.random.default_rng(0).standard_normal((5, 3, 32, 32), dtype=np.float32)  # 5: pads at batch 2
    expected = run_torch(v1_source.model, images)
    actual = exported.runner.run(images)
    assert actual.shape == (5, 10) and actual.dtype == np.float32
    assert np.abs(expected).max() > 0.1  # outputs of order 1: the tolerance means something
    assert np.abs(actual - expected).max() < TOLERANCE
    # The same through the module eval uses, on torch tensors.
    through_module = exported.model(torch.from_numpy(images))
    assert torch.allclose(through_module, torch.from_numpy(expected), atol=TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("name, options", [("mobilenet_v2", {"padding": "same"}), ("mobilenet_v3_small", {})])
@pytest.mark.parametrize("format_name", formats())
def test_float32_paths_match_pytorch_for_v2_and_v3(name, options, format_name, tmp_path):
    source = source_of(name, **options)
    runtime = RUNTIMES[format_name]
    exported = load_exported(export_model(source, runtime, tmp_path / f"m{runtime.suffix}", precision="f32"))
    images = np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)
    assert np.abs(exported.runner.run(images) - run_torch(source.model, images)).max() < TOLERANCE


def test_the_sidecar_records_what_eval_and_predict_need(v1_source, tmp_path):
    path = export_model(v1_source, RUNTIMES["openvino"], tmp_path / "m.xml", precision="f32", batch_size=4)
    info = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path).name == "m.xml.json"
    assert info["runtime"] == "openvino" and info["precision"] == "f32" and info["batch"] == 4
    assert info["input"] == [3, 32, 32] and info["class_names"][3] == "class3"
    assert info["preprocessing"] == v1_source.preprocessing
    assert ModelConfig.from_dict(info["config"]) == v1_source.model.config
    assert set(info["files"]) == {"m.xml", "m.bin"}
    # embedded in the IR too, where other OpenVINO tools can read it
    import openvino as ov

    embedded = ov.Core().read_model(str(path)).get_rt_info(["mobilenets"]).astype(str)
    assert json.loads(embedded)["class_names"] == info["class_names"]
    # and nothing else left in the folder (no temporaries)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml", "m.xml.json"]


def test_a_failed_export_leaves_the_earlier_file_untouched(v1_source, tmp_path):
    path = export_model(v1_source, RUNTIMES["onnx"], tmp_path / "m.onnx", precision="f32")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(model, staged, **_):  # writes half a file, then fails
        staged.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        export_model(v1_source, RUNTIMES["onnx"], path, precision="f32", build=broken)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_the_registry_covers_every_runtime_backend():
    for backend, (format_name, precision) in BACKENDS.items():
        assert precision in RUNTIMES[format_name].precisions, backend
    assert set(RUNTIMES["openvino"].precisions) == {"f32", "bf16", "int8"}


def test_bf16_is_reported_as_what_the_cpu_runs(v1_source, tmp_path):
    path = export_model(v1_source, RUNTIMES["openvino"], tmp_path / "m.xml", precision="bf16")
    exported = load_exported(path, threads=1)
    assert exported.precision == "bf16"
    # bf16 where the CPU has it (AMX, AVX-512 BF16); elsewhere OpenVINO runs f32 and says so
    assert exported.runner.precision_in_effect == ("bf16" if supports_bf16() else "f32")


# --------------------------------------------------------------------------------------------
# The commands, on a small trained model (the `digits` fixture of conftest.py)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def openvino_int8(digits, tmp_path_factory):
    checkpoint, folder = digits
    out = tmp_path_factory.mktemp("openvino") / "digits.int8.xml"
    args = [
        "export",
        str(checkpoint),
        "--format",
        "openvino",
        "--precision",
        "int8",
        "--calibration",
        str(folder),
        "--calibration-images",
        "100",
        "--eval-images",
        "297",
        "--output",
        str(out),
    ]
    return out, args


def test_openvino_int8_agrees_with_float(openvino_int8, capsys):
    out, args = openvino_int8
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (OpenVINO, int8, batch any, input 3×32×32" in text
    assert "int8: calibrated on 100 images" in text
    line = next(line for line in text.splitlines() if line.startswith("int8 vs float"))
    assert "(PyTorch float32) on 297 images" in line
    assert float(line.rsplit(" ", 1)[1].rstrip("%")) >= 95.0, text
    accuracy = next(line for line in text.splitlines() if line.startswith("accuracy:"))
    float_acc = float(accuracy.split("float ")[1].split("%")[0])
    int8_acc = float(accuracy.split("int8 ")[1].split("%")[0])
    assert float_acc >= 70.0 and int8_acc >= float_acc - 5.0, text
    assert out.with_suffix(".bin").is_file() and sidecar_path(out).is_file()


def eval_json(capsys, model: str, folder: Path) -> dict:
    assert (
        main(
            [
                "eval",
                model,
                "--data",
                str(folder),
                "--split",
                "all",
                "--format",
                "json",
                "--workers",
                "0",
                "--output",
                str(folder.parent / "confusion.png"),
                "--force",  # each call replaces the last one's matrix
            ]
        )
        == 0
    )
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("format_name", formats())
def test_eval_and_predict_of_an_exported_file_match_the_checkpoint(format_name, digits, tmp_path, capsys):
    checkpoint, folder = digits
    exported = tmp_path / f"digits{RUNTIMES[format_name].suffix}"
    assert main(["export", str(checkpoint), "--format", format_name, "--output", str(exported)]) == 0
    capsys.readouterr()
    expected, actual = eval_json(capsys, str(checkpoint), folder), eval_json(capsys, str(exported), folder)
    assert actual["images"] == expected["images"] == 397  # the held-out digits
    assert actual["class_names"] == expected["class_names"]
    assert actual["top1"] == expected["top1"] and actual["confusion"] == expected["confusion"]
    assert actual["loss"] == pytest.approx(expected["loss"], abs=1e-4)
    images = [str(p) for p in sorted(folder.glob("*/*.png"))[:3]]
    outputs = []
    for model in (checkpoint, exported):
        assert main(["predict", str(model), *images, "--top-k", "3"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]  # same classes, same probabilities to 0.01%


# --------------------------------------------------------------------------------------------
# Faults: one line, exit code 2, nothing lost
# --------------------------------------------------------------------------------------------
class ExportedFiles:
    """One exported file per format of a tiny model, with its sidecar, written on first use;
    `copy_to` gives a test its own copy to damage."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.source = source_of("mobilenet_v1")

    def path(self, format_name: str) -> Path:
        runtime = RUNTIMES[format_name]
        path = self.folder / f"m{runtime.suffix}"
        if not sidecar_path(path).is_file():
            export_model(self.source, runtime, path, precision="f32")
        return path

    def copy_to(self, format_name: str, folder: Path) -> Path:
        original = self.path(format_name)
        for file in [*RUNTIMES[format_name].files(original), sidecar_path(original)]:
            shutil.copy(file, folder / file.name)
        return folder / original.name


@pytest.fixture(scope="module")
def exported_files(tmp_path_factory):
    return ExportedFiles(tmp_path_factory.mktemp("exported"))


def images_for_predict(folder: Path) -> str:
    from PIL import Image

    path = folder / "photo.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(path)
    return str(path)


def damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_no_sidecar(path: Path) -> None:
    sidecar_path(path).unlink()


def damage_sidecar_json(path: Path) -> None:
    sidecar_path(path).write_text("{not json")


def damage_sidecar_fields(path: Path) -> None:
    sidecar_path(path).write_text(json.dumps({"format": "something else"}))


def damage_garbage_with_its_hash(path: Path) -> None:
    """Bytes that are no model, with a sidecar that vouches for them: the runtime must never parse them."""
    import hashlib

    path.write_bytes(bytes(range(256)) * 64)
    info = json.loads(sidecar_path(path).read_text())
    info["files"][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar_path(path).write_text(json.dumps(info))


DAMAGES = {
    "garbage with its hash": (damage_garbage_with_its_hash, "file (bytes"),
    "truncated": (damage_truncate, "does not match its sidecar"),
    "no sidecar": (damage_no_sidecar, "has no sidecar"),
    "sidecar not JSON": (damage_sidecar_json, "is not valid JSON"),
    "not our sidecar": (damage_sidecar_fields, "is not a mobilenets sidecar"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("format_name", formats())
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_damaged_exported_files_are_one_line(command, format_name, damage, exported_files, tmp_path, capsys):
    path = exported_files.copy_to(format_name, tmp_path)
    function, fragment = DAMAGES[damage]
    function(path)
    argv = (
        ["eval", str(path), "--data", "digits"]
        if command == "eval"
        else ["predict", str(path), images_for_predict(tmp_path)]
    )
    assert main(argv) == 2
    line = one_error_line(capsys, fragment, "export it again")
    assert "Traceback" not in line


# A child that opens and runs one-byte mutations of FILE in turn, printing each index first: a
# native abort ends it right after the index of the file that crashed the runtime.
FIND_CRASH = """
import random, sys
import numpy as np
from mobilenets.deploy.runtimes import RUNTIMES
runtime, source, scratch = RUNTIMES[sys.argv[1]], open(sys.argv[2], "rb").read(), sys.argv[3]
rng = random.Random(0)
for index in range(300):
    damaged = bytearray(source)
    damaged[rng.randrange(8, min(len(source), 20000))] = rng.randrange(256)
    open(scratch, "wb").write(damaged)
    print(index, flush=True)
    try:
        runner = runtime.open(scratch, 1, "f32")
        runner.run(np.zeros([1 if n is None else n for n in runner.input_shape], dtype=np.float32))
    except Exception:
        pass
"""


def crashing_copy(path: Path, format_name: str) -> Path:
    """`path` with one byte changed so that its runtime aborts while reading it, and a sidecar that
    vouches for the changed bytes: it passes every check that can be made without parsing it."""
    import hashlib
    import subprocess

    scratch = path.with_name("scratch" + path.suffix)
    child = subprocess.run(
        [sys.executable, "-c", FIND_CRASH, format_name, str(path), str(scratch)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert child.returncode != 0, "no one-byte change in 300 crashed the runtime"
    shutil.move(scratch, path)
    info = json.loads(sidecar_path(path).read_text())
    info["files"][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar_path(path).write_text(json.dumps(info))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_file_that_crashes_its_runtime_is_one_line_and_the_cli_survives(
    command, exported_files, tmp_path, capsys
):
    """ExecuTorch aborts (SIGABRT/SIGSEGV) on some malformed programs that pass the first-bytes check
    and the sidecar's hash: the file is opened in a child process first, so the CLI answers."""
    pytest.importorskip("executorch")
    path = crashing_copy(exported_files.copy_to("executorch", tmp_path), "executorch")
    argv = (
        ["eval", str(path), "--data", "digits"]
        if command == "eval"
        else ["predict", str(path), images_for_predict(tmp_path)]
    )
    assert main(argv) == 2
    line = one_error_line(capsys, "ExecuTorch crashed (SIG", str(path), "child process", "export it again")
    assert "Traceback" not in line


@pytest.mark.slow
def test_a_healthy_file_is_probed_once_per_process(exported_files, tmp_path, monkeypatch):
    import subprocess

    from mobilenets.deploy import runtimes

    pytest.importorskip("executorch")
    format_name = "executorch"
    path = exported_files.copy_to(format_name, tmp_path)
    calls = []
    real_popen = subprocess.Popen
    monkeypatch.setattr(runtimes.subprocess, "Popen", lambda *a, **k: calls.append(a) or real_popen(*a, **k))
    for _ in range(2):
        load_exported(path)
    assert len(calls) == 1  # the second open trusts the unchanged file


def test_a_missing_bin_is_named(exported_files, tmp_path, capsys):
    exported_files.copy_to("openvino", tmp_path)
    (tmp_path / "m.bin").unlink()
    assert main(["predict", str(tmp_path / "m.xml"), images_for_predict(tmp_path)]) == 2
    one_error_line(capsys, "m.bin is missing")


def test_a_sidecar_written_for_other_bytes_is_caught_by_the_runtime(exported_files, tmp_path, capsys):
    """Hashes match (someone rewrote the sidecar for a broken file): the runtime's own error, one line."""
    import hashlib

    path = exported_files.copy_to("onnx", tmp_path)
    damage_truncate(path)
    info = json.loads(sidecar_path(path).read_text())
    info["files"]["m.onnx"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar_path(path).write_text(json.dumps(info))
    assert main(["predict", str(path), images_for_predict(tmp_path)]) == 2
    one_error_line(capsys, "ONNX Runtime cannot load", str(path))


@pytest.mark.parametrize(
    "format_name, package",
    [
        ("openvino", "openvino"),
        ("openvino", "nncf"),
        ("onnx", "onnxruntime"),
        pytest.param("executorch", "executorch", marks=pytest.mark.slow),
    ],
)
def test_a_missing_package_names_the_pip_install(
    format_name, package, exported_files, monkeypatch, capsys, tmp_path
):
    extra = RUNTIMES[format_name].extra
    path = exported_files.path(format_name)  # exported before the package goes missing
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if it were not installed
    assert (
        main(
            [
                "export",
                "mobilenet_v1",
                "--width",
                "0.25",
                "--format",
                format_name,
                "--output",
                str(tmp_path / f"x{RUNTIMES[format_name].suffix}"),
            ]
        )
        == 2
    )
    one_error_line(capsys, f"pip install 'mobilenets[{extra}]'", repr(package))
    assert main(["predict", str(path), images_for_predict(tmp_path)]) == 2
    one_error_line(capsys, f"pip install 'mobilenets[{extra}]'")
    assert not list(tmp_path.glob("x*"))


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--format", "openvino", "--precision", "f16"], "exports precisions f32, bf16, int8"),
        (["--format", "onnx", "--precision", "bf16"], "exports precisions f32, f16, int8; got 'bf16'"),
        (["--format", "openvino", "--precision", "int8"], "--int8 needs --calibration DATA"),
        (["--format", "openvino", "--output", "m.onnx"], "--output must end in .xml for --format openvino"),
        (["--format", "openvino", "--opset", "19"], "--opset applies to --format onnx only"),
        (["--int8", "--precision", "f32"], "--int8 contradicts --precision f32"),
        (["--format", "openvino", "--batch-size", "0"], "--batch-size must be a positive integer"),
    ],
)
def test_export_flags_are_checked_first(argv, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "mobilenet_v1", "--width", "0.25", *argv]) == 2
    one_error_line(capsys, fragment)
    assert not list(tmp_path.iterdir())


def test_bench_runs_the_openvino_backends(capsys):
    assert (
        main(
            [
                "bench",
                "mobilenet_v1",
                "--width",
                "0.25",
                "--resolution",
                "32",
                "--compare",
                "none",
                "--backend",
                "onnxruntime,openvino,openvino-bf16,openvino-int8",
                "--repeats",
                "1",
                "--warmup-calls",
                "1",
                "--threads",
                "1",
                "--format",
                "json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)  # stdout holds nothing but the JSON (nncf is quiet)
    results = {row["backend"]: row for row in report["results"]}
    assert results["openvino"]["error"] is None and results["openvino"]["median_ms"] > 0
    assert results["openvino-int8"]["error"] is None
    if supports_bf16():
        assert results["openvino-bf16"]["error"] is None
    else:
        assert "not measured: OpenVINO runs bf16 as f32 on this CPU" in results["openvino-bf16"]["error"]
    assert "openvino" in report["machine"]
    gates = report["accuracy_gates"]
    assert gates["openvino"] == gates["onnxruntime"] == {"status": "reference"}
    assert gates["openvino-int8"] == verdict("openvino-int8", "int8", load_gates())


@pytest.mark.parametrize(
    "entry, status",
    [
        ({"top1_agreement": 0.995, "accuracy_change_points": -0.3}, "recommended"),
        ({"top1_agreement": 0.99, "accuracy_change_points": 0.5}, "recommended"),  # both limits included
        ({"top1_agreement": 0.989, "accuracy_change_points": 0.0}, "fails gate"),
        ({"top1_agreement": 0.999, "accuracy_change_points": -0.51}, "fails gate"),
        ({"top1_agreement": 0.999, "accuracy_change_points": 0.6}, "fails gate"),  # a change either way
        ({"error": "not measured: OpenVINO runs bf16 as f32 on this CPU"}, "not measured"),
        (None, "not measured"),
    ],
)
def test_the_accuracy_gate(entry, status):
    gates = {"measured_on": {"cpu": "test"}, "backends": {} if entry is None else {"openvino-int8": entry}}
    result = verdict("openvino-int8", "int8", gates)
    assert result["status"] == status
    assert verdict("openvino", "f32", gates) == {"status": "reference"}  # float32 paths are not gated
    assert describe(result).startswith(status)
