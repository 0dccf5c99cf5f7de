"""The popular models of the MobileNet paper's Tables 8 and 9, their counts against independent
published figures, the cited accuracy data, and `cost --compare` / `bench` on them."""

import json

import pytest
import torch

from mobilenets.cli import main
from mobilenets.costs.accuracy import accuracy_data, published_configurations
from mobilenets.costs.reference import (
    GOOGLENET_INCEPTIONS,
    REFERENCE_MODELS,
    create_reference_model,
    reference_cost,
)
from mobilenets.pretrained.registry import find_weights

# Parameter counts published by others for the same architectures (not derived from our code):
# VGG16 and ResNet-50 (with BatchNorm γ/β): torchvision's vgg16 / resnet50; SqueezeNet 1.0:
# torchvision's squeezenet1_0; AlexNet with its two groups and GoogLeNet without auxiliary heads:
# Caffe's bvlc_alexnet / bvlc_googlenet deploy models.
PUBLISHED_PARAMS = {
    "vgg16": 138_357_544,
    "resnet50": 25_557_032,
    "squeezenet": 1_248_424,
    "alexnet": 60_965_224,
    "googlenet": 6_998_552,
}
# Multiply-accumulates from the architecture papers or torchvision's metadata ("GFLOPS", which
# torchvision counts as MACs): ResNet-50 4.09G, SqueezeNet 1.0 0.82G, VGG16 15.47G.
PUBLISHED_GMACS = {"resnet50": 4.09, "squeezenet": 0.82, "vgg16": 15.47}


@pytest.fixture(scope="module")
def reports():
    return {name: reference_cost(name) for name in REFERENCE_MODELS}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_match_published_ones(reports, name):
    assert reports[name].params_with_norm == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_mult_adds_match_published_ones(reports, name):
    assert round(reports[name].mult_adds / 1e9, 2) == PUBLISHED_GMACS[name]


def test_vgg16_convolutions_are_the_papers_15300M(reports):
    convs = sum(r.mult_adds for r in reports["vgg16"].rows if r.type != "FC")
    assert round(convs / 1e8) == 153  # the MobileNet paper's 15300M counts the convolutions


def test_alexnet_groups_make_the_papers_720M(reports):
    report = reports["alexnet"]
    assert round(report.mult_adds / 1e7) == 72 and round(report.params / 1e6) == 61
    grouped = [r for r in report.rows if "groups" in r.type]
    assert [r.name for r in grouped] == ["features.4", "features.10", "features.12"]


# GoogLeNet paper Table 1, "ops" column (millions) of the inception modules 3a … 5b; 5a (54M
# printed, 51.1M by its own widths) is left out: the table is not consistent there.
GOOGLENET_INCEPTION_OPS = {
    "3a": 128,
    "3b": 304,
    "4a": 73,
    "4b": 88,
    "4c": 100,
    "4d": 119,
    "4e": 170,
    "5b": 71,
}


def test_googlenet_inceptions_match_table_1(reports):
    model = create_reference_model("googlenet")
    names = [n for n, widths in GOOGLENET_INCEPTIONS if widths is not None]
    indices = [i for i, m in enumerate(model.features) if type(m).__name__ == "Inception"]
    for label, index in zip(names, indices, strict=True):
        if label not in GOOGLENET_INCEPTION_OPS:
            continue
        ops = sum(r.mult_adds for r in reports["googlenet"].rows if r.name.startswith(f"features.{index}."))
        assert abs(ops / 1e6 - GOOGLENET_INCEPTION_OPS[label]) < 1.0, label
    assert not any("aux" in name for name, _ in model.named_modules())


@pytest.mark.parametrize("name", ["googlenet", "alexnet", "squeezenet", "resnet50"])
def test_forward_at_native_resolution(name):
    model = create_reference_model(name)
    size = model.config.resolution
    with torch.no_grad():
        assert model(torch.zeros(1, 3, size, size)).shape == (1, 1000)


def test_every_accuracy_row_cites_a_source_and_has_published_weights():
    data = accuracy_data()
    for row in data["paper_comparisons"] + data["published_weights"]:
        assert row["source"] in data["sources"], row
        assert 0 < row["top1"] < 100
    configurations = published_configurations()
    assert len(configurations) == 16 + 22 + 6
    for row in configurations:  # each is a configuration Keras publishes ImageNet weights for
        entry = find_weights(
            row["model"], "keras-imagenet", row["width_mult"], row["resolution"], row["minimalistic"]
        )
        assert entry.width_mult == row["width_mult"]


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cost_compare_reproduces_table_8(capsys):
    code, out, _ = _run(capsys, "cost", "mobilenet_v1", "--compare", "vgg16,googlenet")
    assert code == 0
    paper = out.split("ImageNet top-1")[1]
    for name, top1, ours in (
        ("mobilenet_v1", "70.6%", "568.7M"),
        ("vgg16", "71.5%", "15,470.3M"),
        ("googlenet", "69.8%", "1,582.7M"),
    ):
        line = next(line for line in paper.splitlines() if line.startswith(name))
        assert top1 in line and ours in line and "Table 8" in line
    assert "arXiv:1704.04861" in out


def test_cost_compare_reproduces_table_9_as_json(capsys):
    code, out, _ = _run(
        capsys,
        "cost",
        "mobilenet_v1",
        "--width",
        "0.5",
        "--resolution",
        "160",
        "--compare",
        "squeezenet,alexnet",
        "--format",
        "json",
    )
    assert code == 0
    entries = {e["model"]: e for e in json.loads(out)}
    assert (
        entries["mobilenet_v1"]["mult_adds"] == 76_524_800
        and entries["mobilenet_v1"]["published"]["top1"] == 60.2
    )
    assert entries["alexnet"]["resolution"] == [227, 227] and entries["alexnet"]["published"]["top1"] == 57.2
    assert entries["squeezenet"]["published"]["paper_mult_adds_millions"] == 1700


def test_cost_of_one_reference_model_as_json_is_one_object_with_its_published_row(capsys):
    code, out, _ = _run(capsys, "cost", "googlenet", "--format", "json")
    assert code == 0
    entry = json.loads(out)
    assert entry["model"] == "googlenet" and entry["published"]["table"] == "Table 8"
    assert "MobileNets" in entry["published"]["citation"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cost", "vgg16", "--width", "0.5"], "apply to MobileNets, not to the reference model vgg16"),
        (["cost", "mobilenet_v1", "--compare", "vgg17"], "unknown model 'vgg17'"),
    ],
)
def test_cost_compare_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_bench_times_a_reference_model(capsys):
    code, out, _ = _run(
        capsys,
        "bench",
        "squeezenet",
        "--backend",
        "torch",
        "--repeats",
        "1",
        "--warmup-calls",
        "1",
        "--threads",
        "1",
        "--format",
        "json",
    )
    assert code == 0
    report = json.loads(out)
    assert report["models"] == [
        {"name": "squeezenet", "role": "model", "mult_adds": 818_924_576, "params": 1_248_424}
    ]
    assert report["results"][0]["median_ms"] > 0
