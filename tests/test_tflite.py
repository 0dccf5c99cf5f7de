"""LiteRT export through litert-torch: float32 parity with PyTorch through the ai-edge-litert
interpreter, int8 agreement on a small trained model, any number of images through the runner,
the runner's quantization of integer inputs, and the error messages."""

import sys

import numpy as np
import pytest

from mobilenets import create_model
from mobilenets.checkpoint import load_checkpoint
from mobilenets.data import list_images
from mobilenets.deploy.base import MAX_DYNAMIC_BATCH, load_images, run_torch
from mobilenets.deploy.tflite import TfliteRunner, dequantize, export_tflite, quantize

from helpers import native_stderr, randomized

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert.interpreter")

pytestmark = pytest.mark.usefixtures("one_thread")

RELATIVE_TOLERANCE = 1e-4  # float32 logits against PyTorch's, relative to the largest logit


def images(count: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, size, size), dtype=np.float32)


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def v1_file(tmp_path_factory):
    """A MobileNetV1 0.25 at 32×32 with trained-like weights, exported once for the tests below."""
    model = randomized(create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10))
    return model, export_tflite(model, tmp_path_factory.mktemp("tflite") / "v1.tflite", batch_size=2)


def test_float32_matches_pytorch(v1_file):
    model, path = v1_file
    batch = images(3, 32)
    logits = TfliteRunner(path, threads=1).run(batch)
    assert logits.dtype == np.float32 and logits.shape == (3, 10)
    assert relative_difference(logits, run_torch(model, batch)) <= RELATIVE_TOLERANCE


@pytest.mark.parametrize(
    "name, width, resolution", [("mobilenet_v2", 0.35, 64), ("mobilenet_v3_small", 0.75, 64)]
)
def test_v2_and_v3_float32_match_pytorch(tmp_path, name, width, resolution):
    model = randomized(create_model(name, width_mult=width, resolution=resolution, num_classes=10))
    path = export_tflite(model, tmp_path / f"{name}.tflite")  # traced at batch 1, yet dynamic
    batch = images(2, resolution)
    runner = TfliteRunner(path)
    assert runner.input_shape == (None, 3, resolution, resolution)
    assert relative_difference(runner.run(batch), run_torch(model, batch)) <= RELATIVE_TOLERANCE


def test_the_batch_is_dynamic_and_the_runner_takes_any_number_of_images(v1_file):
    model, path = v1_file
    runner = TfliteRunner(path)
    assert runner.input_shape == (None, 3, 32, 32)
    many = images(MAX_DYNAMIC_BATCH + 3, 32)  # more than one call takes: split into chunks
    expected = run_torch(model, many)
    for count in (1, 5, len(many), 2):  # the interpreter's tensors are resized each time
        assert relative_difference(runner.run(many[:count]), expected[:count]) <= RELATIVE_TOLERANCE


def test_wrong_image_shape_is_one_clear_error(v1_file):
    with pytest.raises(ValueError, match=r"takes N×3×32×32 images; got shape \(2, 3, 64, 64\)"):
        TfliteRunner(v1_file[1]).run(images(2, 64))


def test_int8_agrees_with_float_on_a_trained_model(digits, v1_file, tmp_path):  # noqa: F811
    checkpoint, folder = digits
    model = load_checkpoint(checkpoint).model.eval()
    found = list_images(folder)
    held_out = load_images(found.paths, {"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3})
    path = export_tflite(model, tmp_path / "digits_int8.tflite", int8=True, calibration=held_out[:64])
    quantized = TfliteRunner(path).run(held_out)
    expected = run_torch(model, held_out)
    agreement = (quantized.argmax(1) == expected.argmax(1)).mean()
    accuracy = (quantized.argmax(1) == np.asarray(found.labels)).mean()
    float_accuracy = (expected.argmax(1) == np.asarray(found.labels)).mean()
    assert agreement >= 0.95 and accuracy >= float_accuracy - 0.03, (agreement, accuracy, float_accuracy)
    # int8 weights, not float (v1_file: the float export of the same network, other weights; the size
    # depends on the shapes only)
    float_model, float_path = v1_file
    assert float_model.config.name == model.config.name
    assert [p.shape for p in float_model.parameters()] == [p.shape for p in model.parameters()]
    assert path.stat().st_size < 0.5 * float_path.stat().st_size


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_integer_tensors_are_quantized_and_dequantized_with_their_parameters(dtype):
    tensor = {"dtype": dtype, "quantization": (0.05, 3)}
    values = np.array([-100.0, -1.0, -0.024, 0.0, 0.026, 1.0, 100.0], dtype=np.float32)
    info = np.iinfo(dtype)
    expected = np.clip(np.array([-2000, -20, 0, 0, 1, 20, 2000]) + 3, info.min, info.max)
    quantized = quantize(values, tensor)
    assert quantized.dtype == dtype and quantized.tolist() == expected.tolist()
    restored = dequantize(quantized, tensor)
    assert restored.dtype == np.float32
    assert np.allclose(restored, (expected - 3) * 0.05)
    float_tensor = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert np.array_equal(quantize(values, float_tensor), values)


def test_int8_needs_calibration_images(tmp_path):
    model = create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10)
    with pytest.raises(ValueError, match="calibration images"):
        export_tflite(model, tmp_path / "x.tflite", int8=True)
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_file_is_one_clear_error(v1_file, tmp_path, damage):
    data = v1_file[1].read_bytes()
    bad = tmp_path / "bad.tflite"
    damaged = {"truncated": data[: len(data) // 3], "garbage": b"not a model" * 100, "empty": b""}
    bad.write_bytes(damaged[damage])
    with pytest.raises(ValueError, match=r"bad\.tflite is not a valid LiteRT model .*--format tflite"):
        TfliteRunner(bad)


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no LiteRT model at .*nothing.tflite"):
        TfliteRunner(tmp_path / "nothing.tflite")


@pytest.mark.parametrize("package", ["litert_torch", "ai_edge_litert"])
def test_a_missing_package_names_the_install(monkeypatch, tmp_path, package):
    monkeypatch.setitem(sys.modules, package, None)  # importing it now raises ImportError
    with pytest.raises(ValueError, match=r"pip install 'mobilenets\[tflite\]'"):
        if package == "litert_torch":
            export_tflite(create_model("mobilenet_v1", width_mult=0.25, resolution=32), tmp_path / "x.tflite")
        else:
            TfliteRunner(tmp_path / "x.tflite")


@pytest.mark.parametrize("verbose", [False, True])
def test_native_log_lines_are_silenced_unless_verbose(v1_file, verbose):
    """The runtime's own log lines (written to the file descriptors, past sys.stderr) are dropped;
    `mobilenets -v` (MOBILENETS_VERBOSE=1) lets them through."""
    assert (native_stderr("tflite", "TfliteRunner", v1_file[1], verbose).strip() != "") == verbose
