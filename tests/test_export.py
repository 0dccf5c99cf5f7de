"""ONNX export (parity with PyTorch for every registry model, graph shape), int8 quantization of a
small trained model, and the `export` command's error messages."""

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mobilenets import DepthwiseConv2d, create_model, list_models
from mobilenets.cli import main
from mobilenets.cli.deploy import configure_export_parser
from mobilenets.data import list_images
from mobilenets.deploy.base import load_images
from mobilenets.deploy.export import (
    INT8_SETTINGS,
    MIN_OPSET,
    compare_with_torch,
    export_onnx,
    ort_session,
    quantize_int8,
    summarize_graph,
)

from helpers import randomize_batchnorm

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "train"


pytestmark = pytest.mark.usefixtures("one_thread")


def realistic(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-like BatchNorm statistics and a classifier whose logits are O(1), so that an absolute
    tolerance on the logits means something (fresh models output ~1e-9)."""
    randomize_batchnorm(model, seed)
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0, 1 / module.in_features**0.5, generator=generator)
    return model.eval()


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobilenets")
    configure_export_parser(parser.add_subparsers(dest="command"))
    return parser


def run_export_cli(*argv: str) -> str:
    args = export_parser().parse_args(["export", *argv])
    return args.run(args)


# TF "same" padding for V2 and V3-Small: their stride-2 layers pad asymmetrically at run time in PyTorch.
PADDING = {"mobilenet_v2": "same", "mobilenet_v3_small": "same"}


@pytest.mark.parametrize("name", list_models())
def test_onnx_matches_pytorch_for_every_registry_model(name, tmp_path):
    torch.manual_seed(0)
    model = realistic(create_model(name, width_mult=0.5, resolution=64, padding=PADDING.get(name, "torch")))
    path = export_onnx(model, tmp_path / f"{name}.onnx", dynamic_batch=True)
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64), dtype=np.float32)
    parity = compare_with_torch(path, model, x)
    assert parity.max_abs_output > 0.1
    assert parity.max_abs_diff < 1e-4 and parity.relative < 1e-5
    assert parity.top1_agreement == 1.0

    summary = summarize_graph(path)
    assert summary.opset == MIN_OPSET and summary.batch_dim == "dynamic (batch)"
    assert "BatchNormalization" not in summary.op_counts  # folded
    assert "Pad" not in summary.op_counts  # "same" padding became static, asymmetric Conv pads
    # Each depthwise convolution is one grouped Conv node, nothing split or decomposed.
    depthwise = sum(isinstance(m, DepthwiseConv2d) for m in model.modules())
    assert summary.depthwise_convs == depthwise
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert summary.op_counts["Conv"] == convs
    if name.startswith("mobilenet_v3"):  # native ops at the minimum opset, not x·clip(x+3)/6 chains
        assert summary.op_counts["HardSwish"] > 0 and summary.op_counts["HardSigmoid"] > 0
        assert "Clip" not in summary.op_counts and "Div" not in summary.op_counts


def test_export_command_for_a_zoo_model_in_float16(tmp_path):
    output = run_export_cli(
        "mobilenet_v1",
        "--width",
        "0.25",
        "--resolution",
        "32",
        "--num-classes",
        "7",
        "--fp16",
        "--output",
        str(tmp_path / "half.onnx"),
    )
    assert f"wrote {tmp_path / 'half.onnx'} (float16, opset 18, batch 1, input 3×32×32" in output
    assert "13 depthwise convolutions, each one grouped Conv" in output and "onnx.checker: ok" in output
    session = ort_session(tmp_path / "half.onnx")
    assert session.get_inputs()[0].type == "tensor(float)"  # float32 in and out, float16 inside
    assert session.get_outputs()[0].shape == [1, 7]


@pytest.mark.parametrize("opset", [13, 17, 99])
def test_opsets_outside_the_supported_range_are_refused(opset, tmp_path):
    with pytest.raises(ValueError, match=f"opset must be an integer from {MIN_OPSET}"):
        export_onnx(create_model("mobilenet_v1", width_mult=0.25), tmp_path / "x.onnx", opset=opset)


# --------------------------------------------------------------------------------------------
# int8 on a small trained model (scikit-learn's 8×8 digits, upscaled: bundled, no network)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_int8(digits, tmp_path_factory):
    """`mobilenets export CHECKPOINT --int8 --calibration FOLDER`, run once for the tests below."""
    checkpoint, folder = digits
    output_dir = tmp_path_factory.mktemp("digits_export")
    text = run_export_cli(
        str(checkpoint),
        "--output",
        str(output_dir / "digits.onnx"),
        "--int8",
        "--calibration",
        str(folder),
        "--calibration-images",
        "100",
        "--eval-images",
        "297",
    )
    return text, output_dir / "digits.onnx", output_dir / "digits.int8.onnx"


def test_int8_export_of_a_trained_model_agrees_with_float(digits_int8):
    output, float_path, int8_path = digits_int8
    assert float_path.is_file() and int8_path.is_file()
    assert "onnx.checker: ok" in output
    assert "13 depthwise convolutions, each one grouped Conv" in output
    assert "calibrated on 100 images" in output
    line = next(line for line in output.splitlines() if line.startswith("int8 vs float"))
    assert "on 297 images" in line  # the held-out images not used for calibration
    agreement = float(line.rsplit(" ", 1)[1].rstrip("%"))
    assert agreement >= 95.0, output
    accuracy = next(line for line in output.splitlines() if line.startswith("accuracy:"))
    float_acc = float(accuracy.split("float ")[1].split("%")[0])
    int8_acc = float(accuracy.split("int8 ")[1].split("%")[0])
    assert float_acc >= 70.0, output  # the model did learn (chance is 10%): the comparison means something
    assert int8_acc >= float_acc - 5.0, output


def test_the_int8_model_is_qdq_with_activations_folded(digits_int8):
    _, _, int8_path = digits_int8
    ops = summarize_graph(int8_path).op_counts
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0 and ops["Conv"] == 27  # QDQ format
    assert "Relu" not in ops  # folded into the quantization ranges of the Conv outputs
    default = INT8_SETTINGS["default"]
    assert default.per_channel and default.quant_format == "qdq" and default.activations == "uint8"
    assert default.keep_float == "none" and default.calibration == "minmax"
    assert default.reduce_range == "first_conv"


def test_the_default_reduces_the_first_convolutions_weights_to_7_bits(digits_int8):
    """Only the first Conv's weights stay within ±63 (7 bits); the others use the full ±127."""
    import onnx
    from onnx import numpy_helper

    _, _, int8_path = digits_int8
    graph = onnx.load(str(int8_path)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    dequantized_by = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    ranges = []
    for conv in (n for n in graph.node if n.op_type == "Conv"):
        weight = initializers[dequantized_by[conv.input[1]].input[0]]
        assert weight.dtype == np.int8
        ranges.append(int(np.abs(weight.astype(np.int32)).max()))
    assert ranges[0] <= 64, ranges
    assert max(ranges[1:]) == 127, ranges


def test_quantize_int8_rejects_bad_settings_and_no_images(digits_int8, tmp_path):
    _, float_path, _ = digits_int8
    with pytest.raises(
        ValueError, match="Int8Setting.calibration must be one of minmax, entropy, percentile"
    ):
        quantize_int8(
            float_path,
            tmp_path / "q.onnx",
            np.zeros((1, 3, 32, 32), np.float32),
            dataclasses.replace(INT8_SETTINGS["default"], calibration="kl"),
        )
    with pytest.raises(ValueError, match="needs at least one calibration image"):
        quantize_int8(float_path, tmp_path / "q.onnx", np.zeros((0, 3, 32, 32), np.float32))


def test_image_folders_flat_and_by_class(tmp_path):
    from PIL import Image

    for relative in (
        "flat/a.jpg",
        "flat/b.png",
        "classes/cat/1.jpg",
        "classes/dog/2.jpg",
        "classes/dog/3.JPEG",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        image_format = "PNG" if relative.endswith("png") else "JPEG"
        Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / relative, format=image_format)
    flat = list_images(tmp_path / "flat")
    assert len(flat.paths) == 2 and flat.labels is None
    classes = list_images(tmp_path / "classes")
    assert classes.class_names == ["cat", "dog"] and classes.labels == [0, 1, 1]
    batch = load_images(classes.paths, {"size": 24, "mean": [0.5] * 3, "std": [0.5] * 3})
    assert batch.shape == (3, 3, 24, 24) and batch.dtype == np.float32
    assert load_images(flat.paths, {"size": 16, "resize": 20, "mean": [0] * 3, "std": [1] * 3}).shape == (
        2,
        3,
        16,
        16,
    )
    assert np.allclose(batch[:, 0], 1.0, atol=0.02) and np.allclose(batch[:, 2], -1.0, atol=0.02)  # red


@pytest.mark.skipif(not CIFAR.is_dir(), reason=f"CIFAR-10 images not at {CIFAR}")
def test_the_cifar10_folder_reads_as_ten_labelled_classes():
    folder = list_images(CIFAR)
    assert len(folder.class_names) == 10 and len(folder.paths) == len(folder.labels) >= 10_000
    batch = load_images(folder.paths[:4], {"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3})
    assert batch.shape == (4, 3, 32, 32) and batch.min() >= -2.01 and batch.max() <= 2.01


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, error, message",
    [
        (["missing.safetensors"], FileNotFoundError, "no checkpoint at missing.safetensors"),
        (
            ["mobilenet_v1", "--format", "coreml"],
            ValueError,
            "unsupported --format 'coreml'; supported: onnx, openvino, executorch, tflite",
        ),
        (["mobilenet_v1", "--opset", "11"], ValueError, "opset must be an integer from 18"),
        (["mobilenet_v1", "--int8"], ValueError, "--int8 needs --calibration DATA"),
        (
            ["mobilenet_v1", "--int8", "--fp16", "--calibration", "x"],
            ValueError,
            "--int8 and --fp16 are alternatives",
        ),
        (
            ["mobilenet_v1", "--calibration", "x"],
            ValueError,
            "--calibration and --eval apply with --int8 only",
        ),
        (
            ["mobilenet_v1", "--int8", "--calibration", "x", "--int8-setting", "best"],
            ValueError,
            "unknown --int8-setting 'best'; available: default",
        ),
        (
            ["mobilenet_v1", "--int8", "--calibration", "{tmp}/nowhere"],
            FileNotFoundError,
            "no image folder at",
        ),
        (
            ["mobilenet_v1", "--int8", "--calibration", "{tmp}/empty"],
            ValueError,
            "image folder .*empty is empty",
        ),
        (["mobilenet_v1", "--output", "{tmp}/model.pt"], ValueError, "--output must end in .onnx"),
    ],
)
def test_export_errors_name_what_was_wrong(argv, error, message, tmp_path, monkeypatch):
    (tmp_path / "empty" / "cats").mkdir(parents=True)  # a class folder with no images in it
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message):
        run_export_cli(*[a.replace("{tmp}", str(tmp_path)) for a in argv])


def test_model_options_apply_to_zoo_names_only(digits):
    """Checked before anything is exported."""
    checkpoint, _ = digits
    with pytest.raises(ValueError, match="model options \\(width_mult\\) apply to zoo model names"):
        run_export_cli(str(checkpoint), "--width", "0.5")


def test_one_calibration_image_is_enough_and_says_so(tmp_path, capsys):
    """A folder of any size >= 1 calibrates; fewer images than recommended get one note, and with
    none left to compare on, the agreement line says so instead of failing."""
    from PIL import Image

    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
        folder / "a.png"
    )
    checkpoint = (
        Path(__file__).resolve().parents[1] / "src/mobilenets/published/cifar10_mobilenet_v1_0.25.safetensors"
    )
    assert (
        main(
            [
                "export",
                str(checkpoint),
                "-o",
                str(tmp_path / "m.onnx"),
                "--int8",
                "--calibration",
                str(folder),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "calibrated on 1 image (all the folder holds), fewer than the 512 recommended" in out
    assert "no images left to compare on" in out
    assert (tmp_path / "m.int8.onnx").is_file()
