"""ExecuTorch export (.pte, XNNPACK delegate): float32 parity with PyTorch through ExecuTorch's
Python runtime, the whole network in one delegated segment, int8 agreement on a small trained
model, any number of images through the runner, and the error messages."""

import sys

import numpy as np
import pytest
import torch

from mobilenets import create_model
from mobilenets.checkpoint import load_checkpoint
from mobilenets.data import list_images
from mobilenets.deploy.base import MAX_DYNAMIC_BATCH, DeployableClassifier, load_images, run_torch
from mobilenets.deploy.executorch import ExecutorchRunner, check_one_segment, export_executorch
from mobilenets.fuse import fuse_bn

from helpers import native_stderr, randomized

pytest.importorskip("executorch.runtime")

pytestmark = pytest.mark.usefixtures("one_thread")

RELATIVE_TOLERANCE = 1e-4  # float32 logits against PyTorch's, relative to the largest logit


def images(count: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, size, size), dtype=np.float32)


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def segments(path) -> tuple[int, list[str]]:
    """The delegated segments of a .pte file's forward method and the operators it runs outside them."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    plan = deserialize_pte_binary(path.read_bytes()).program.execution_plan[0]
    return len(plan.delegates), [operator.name for operator in plan.operators]


@pytest.fixture(scope="module")
def v1_file(tmp_path_factory):
    """A MobileNetV1 0.25 at 32×32 with trained-like weights, exported once for the tests below."""
    model = randomized(create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10))
    return model, export_executorch(model, tmp_path_factory.mktemp("pte") / "v1.pte", batch_size=2)


def test_float32_matches_pytorch(v1_file):
    model, path = v1_file
    batch = images(3, 32)
    logits = ExecutorchRunner(path, threads=1).run(batch)
    assert logits.dtype == np.float32 and logits.shape == (3, 10)
    assert relative_difference(logits, run_torch(model, batch)) <= RELATIVE_TOLERANCE


@pytest.mark.parametrize(
    "name, width, resolution",
    [
        ("mobilenet_v2", 0.35, 64),
        # V3's hard-sigmoid, as F.hardsigmoid, left scalar-constant copies outside the delegate.
        ("mobilenet_v3_small", 0.75, 64),
    ],
)
def test_v2_and_v3_float32_match_pytorch_in_one_segment(tmp_path, name, width, resolution):
    model = randomized(create_model(name, width_mult=width, resolution=resolution, num_classes=10))
    path = export_executorch(model, tmp_path / f"{name}.pte")  # traced at batch 1, yet dynamic
    assert segments(path) == (1, [])
    batch = images(2, resolution)
    runner = ExecutorchRunner(path)
    assert runner.input_shape == (None, 3, resolution, resolution)
    logits = runner.run(batch)
    assert relative_difference(logits, run_torch(model, batch)) <= RELATIVE_TOLERANCE


def test_the_whole_network_is_one_delegated_segment(v1_file):
    assert segments(v1_file[1]) == (1, [])


def test_the_models_own_head_would_split_the_network():
    """Why DeployableClassifier exists: lowered as it is, the head's mean((2, 3)) stays outside
    XNNPACK, and check_one_segment says so."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model = create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10).eval()
    program = torch.export.export(fuse_bn(model), (torch.randn(1, 3, 32, 32),))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    with pytest.raises(RuntimeError, match="segments"):
        check_one_segment(lowered.exported_program().graph_module)


def test_deployable_classifier_computes_the_models_logits():
    model = randomized(create_model("mobilenet_v3_small", width_mult=0.5, resolution=32, num_classes=7))
    batch = torch.from_numpy(images(2, 32))
    with torch.no_grad():
        assert torch.allclose(DeployableClassifier(model)(batch), model(batch), atol=1e-5)


def test_the_batch_is_dynamic_and_the_runner_takes_any_number_of_images(v1_file):
    model, path = v1_file
    runner = ExecutorchRunner(path)
    assert runner.input_shape == (None, 3, 32, 32)
    many = images(MAX_DYNAMIC_BATCH + 3, 32)  # more than one call can take: split into chunks
    expected = run_torch(model, many)
    for count in (1, 5, len(many)):
        assert relative_difference(runner.run(many[:count]), expected[:count]) <= RELATIVE_TOLERANCE


def test_wrong_image_shape_is_one_clear_error(v1_file):
    with pytest.raises(ValueError, match=r"takes N×3×32×32 images; got shape \(2, 3, 64, 64\)"):
        ExecutorchRunner(v1_file[1]).run(images(2, 64))


def test_int8_agrees_with_float_on_a_trained_model(digits, v1_file, tmp_path):  # noqa: F811
    checkpoint, folder = digits
    model = load_checkpoint(checkpoint).model.eval()
    found = list_images(folder)
    held_out = load_images(found.paths, {"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3})
    path = export_executorch(model, tmp_path / "digits_int8.pte", int8=True, calibration=held_out[:64])
    assert segments(path) == (1, [])
    quantized = ExecutorchRunner(path).run(held_out)
    expected = run_torch(model, held_out)
    agreement = (quantized.argmax(1) == expected.argmax(1)).mean()
    accuracy = (quantized.argmax(1) == np.asarray(found.labels)).mean()
    float_accuracy = (expected.argmax(1) == np.asarray(found.labels)).mean()
    assert agreement >= 0.95 and accuracy >= float_accuracy - 0.03, (agreement, accuracy, float_accuracy)
    # int8, not float: the file is about a quarter of the float one's size (v1_file: the float export
    # of the same network, other weights; the size depends on the shapes only)
    float_model, float_path = v1_file
    assert float_model.config.name == model.config.name
    assert [p.shape for p in float_model.parameters()] == [p.shape for p in model.parameters()]
    assert path.stat().st_size < 0.5 * float_path.stat().st_size


def test_int8_needs_calibration_images(tmp_path):
    model = create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10)
    with pytest.raises(ValueError, match="calibration images"):
        export_executorch(model, tmp_path / "x.pte", int8=True)
    with pytest.raises(ValueError, match=r"calibration images must be N×3×32×32"):
        export_executorch(model, tmp_path / "x.pte", int8=True, calibration=images(4, 64))
    assert not (tmp_path / "x.pte").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_file_is_one_clear_error(v1_file, tmp_path, damage):
    data = v1_file[1].read_bytes()
    bad = tmp_path / "bad.pte"
    damaged = {"truncated": data[: len(data) // 3], "garbage": b"not a program" * 100, "empty": b""}
    bad.write_bytes(damaged[damage])
    with pytest.raises(ValueError, match=r"bad\.pte is not a valid ExecuTorch program .*--format executorch"):
        ExecutorchRunner(bad)


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ExecuTorch program at .*nothing.pte"):
        ExecutorchRunner(tmp_path / "nothing.pte")


def test_a_missing_package_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "executorch", None)  # import executorch now raises ImportError
    model = create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10)
    with pytest.raises(ValueError, match=r"pip install 'mobilenets\[executorch\]'"):
        export_executorch(model, tmp_path / "x.pte")
    with pytest.raises(ValueError, match=r"pip install 'mobilenets\[executorch\]'"):
        ExecutorchRunner(tmp_path / "x.pte")


@pytest.mark.parametrize("verbose", [False, True])
def test_native_log_lines_are_silenced_unless_verbose(v1_file, verbose):
    """The runtime's own log lines (written to the file descriptors, past sys.stderr) are dropped;
    `mobilenets -v` (MOBILENETS_VERBOSE=1) lets them through."""
    assert (native_stderr("executorch", "ExecutorchRunner", v1_file[1], verbose).strip() != "") == verbose
