"""`mobilenets profile`: per-layer rows that agree with the cost table, times that add up to an
end-to-end run, the ONNX Runtime per-node path, training, the twin comparison, output formats,
the roofline PNG and bad options."""

import csv
import io
import json
import os

import pytest

from mobilenets import cost
from mobilenets.cli import main
from mobilenets.deploy.profile import Ceilings, ort_rows, profile

SMALL = {"width_mult": 0.25, "resolution": 96}
SLOW = pytest.mark.skipif(os.environ.get("MOBILENETS_FAST") == "1", reason="slow (MOBILENETS_FAST=1)")


def expected_bytes(layer, batch):
    """Independent of profile.layer_bytes: feature maps from the cost table's shapes, float32."""
    (h, w, c), (oh, ow, oc) = layer.input_shape, layer.output_shape
    return 4 * (batch * (h * w * c + oh * ow * oc) + layer.weights + layer.bias)


@pytest.mark.parametrize(
    "name, options",
    [("mobilenet_v1", SMALL), ("mobilenet_v2", SMALL), ("mobilenet_v3_small", {"resolution": 96})],
)
def test_every_layer_matches_the_cost_table(name, options):
    batch = 3
    report = profile([(name, options)], "torch", batch, threads=1, repeats=2, warmup=1)
    rows = {row.name: row for row in report.profiles[0].rows}
    table = cost(name, **options)
    for layer in table.rows:
        assert rows[layer.name].mult_adds == layer.mult_adds * batch
        assert rows[layer.name].bytes == expected_bytes(layer, batch)
        assert rows[layer.name].type == layer.type
    assert {
        "BatchNorm",
        "ReLU" if name == "mobilenet_v1" else "ReLU6" if name == "mobilenet_v2" else "Hardswish",
    } <= {row.type for row in rows.values()}
    assert all(row.time_ms > 0 for row in rows.values())


def test_reference_model_rows_match_hook_costs():
    report = profile([("squeezenet", {})], "torch", 1, threads=1, repeats=1, warmup=0)
    rows = {row.name: row for row in report.profiles[0].rows}
    assert sum(row.mult_adds for row in rows.values()) == 818_924_576
    assert rows["features.0"].type == "Conv 7×7" and rows["features.0"].params == 96 * 3 * 49 + 96


# CPU time for the torch backends: on a shared machine other programs' load stretches wall-clock runs
# several times over (measured: 50 to 186 ms for one 28 ms forward pass), CPU time hardly. The
# training step is slow-marked: with the machine at its busiest (a training run, another test run
# and ONNX exports) its layers once added up to only 76% of a step (86-102% otherwise).
@pytest.mark.parametrize(
    "backend, clock, train, batch",
    [
        ("torch", "cpu", False, 8),
        pytest.param("torch", "cpu", True, 8, marks=[pytest.mark.slow, SLOW]),
        # ONNX Runtime reports wall time only: batch 1 (2 ms runs) finds unloaded moments more often
        # than batch 8 (25 ms runs, once 60% here with the machine busy, 92-102% otherwise).
        pytest.param("onnxruntime", "wall", False, 1, marks=[pytest.mark.slow, SLOW]),
    ],
)
def test_layer_times_add_up_to_the_end_to_end_time(backend, clock, train, batch):
    report = profile(
        [("mobilenet_v1", {"width_mult": 0.5, "resolution": 128})],
        backend,
        batch,
        train=train,
        threads=1,
        repeats=10,
        warmup=1,
        clock=clock,
    )
    assert abs(1 - report.profiles[0].coverage) <= 0.15


@pytest.mark.slow
@SLOW
def test_onnxruntime_nodes_are_named_after_the_layers():
    batch = 2
    report = profile([("mobilenet_v2", SMALL)], "onnxruntime", batch, threads=1, repeats=2, warmup=1)
    table = cost("mobilenet_v2", **SMALL)
    rows = {row.name: row for row in report.profiles[0].rows}
    for layer in table.rows:
        assert rows[layer.name].mult_adds == layer.mult_adds * batch
        assert rows[layer.name].bytes == expected_bytes(layer, batch)
    assert report.profiles[0].mult_adds == table.mult_adds * batch


def stem_event(out_channels: int) -> dict:
    """An ONNX Runtime profile event of a 3×3 stride-2 convolution of a 96×96 RGB image."""
    return {
        "name": "stem_kernel_time",
        "dur": 5,
        "args": {
            "op_name": "Conv",
            "input_type_shape": [{"float": [1, 3, 96, 96]}, {"float": [out_channels, 3, 3, 3]}],
            "output_type_shape": [{"float": [1, out_channels, 48, 48]}],
        },
    }


@pytest.mark.parametrize("padded, accepted", [(8, True), (16, True), (24, False), (12, False)])
def test_onnxruntime_nchwc_channel_padding_is_the_same_layer(padded, accepted):
    # mobilenet_v2 at width 0.25: an 8-channel stem, which ONNX Runtime's NCHWc layout runs as
    # 16 channels with AVX-512 (8 with AVX2) and lists so in its profile.
    table = cost("mobilenet_v2", **SMALL)
    if accepted:
        assert ort_rows([stem_event(padded)], table, 1, 1)[0].name == "features.0.conv"
    else:
        with pytest.raises(RuntimeError, match="does not match the next layer"):
            ort_rows([stem_event(padded)], table, 1, 1)


def test_onnxruntime_node_that_is_not_the_next_layer_is_refused():
    table = cost("mobilenet_v1", **SMALL)  # an 8-channel stem: 9 is no NCHWc rounding of it
    with pytest.raises(RuntimeError, match="does not match the next layer of the cost table"):
        ort_rows([stem_event(9)], table, 1, 1)


def test_training_times_forward_and_backward_of_every_layer():
    report = profile([("mobilenet_v1", SMALL)], "torch", 4, train=True, threads=1, repeats=2, warmup=1)
    rows = {row.name: row for row in report.profiles[0].rows}
    for layer in cost("mobilenet_v1", **SMALL).rows:
        assert len(rows[layer.name].backward_ms) == 2, (
            layer.name
        )  # the stem's too (its input needs no gradient)
    assert (
        rows["features.1.dw.norm"].backward_ms
        and rows["loss"].forward_ms
        and rows["optimizer step"].forward_ms
    )


def test_channels_last_has_batchnorm_folded():
    report = profile([("mobilenet_v1", SMALL)], "torch-channels-last", 1, threads=1, repeats=1, warmup=0)
    assert "BatchNorm" not in {row.type for row in report.profiles[0].rows}


def test_compare_with_the_twin_gives_per_block_theory():
    report = profile(
        [("mobilenet_v1", SMALL), ("conv_mobilenet_v1", SMALL)], "torch", 1, threads=1, repeats=1, warmup=0
    )
    separable, standard = cost("mobilenet_v1", **SMALL), cost("conv_mobilenet_v1", **SMALL)
    blocks = {row["block"]: row for row in report.block_speedups()}
    for index in (1, 6, 13):
        ours = sum(r.mult_adds for r in separable.rows if r.name.startswith(f"features.{index}."))
        theirs = sum(r.mult_adds for r in standard.rows if r.name.startswith(f"features.{index}."))
        assert blocks[f"features.{index}"]["theoretical"] == pytest.approx(theirs / ours)
        assert blocks[f"features.{index}"]["realized"] > 0


def test_compare_with_a_popular_model_has_no_block_pairs():
    models = [("mobilenet_v1", SMALL), ("squeezenet", {})]
    report = profile(models, "torch", 1, threads=1, repeats=1, warmup=0)
    assert report.block_speedups() == []
    assert report.profiles[1].mult_adds == 818_924_576


def test_roofline_bound():
    ceilings = Ceilings(gmacs=40.0, gbs=10.0)
    assert ceilings.bound(0.5) == 5.0 and ceilings.bound(4.0) == 40.0 and ceilings.bound(100) == 40.0


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_formats_and_png(capsys, tmp_path):
    common = [
        "profile",
        "mobilenet_v1",
        "--width",
        "0.25",
        "--resolution",
        "96",
        "--repeats",
        "1",
        "--warmup-calls",
        "0",
        "--threads",
        "1",
        "--compare",
        "conv_mobilenet_v1",
    ]
    png = tmp_path / "roofline.png"
    code, out, _ = _run(capsys, *common, "--output", str(png))
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for text in (
        "ceilings: compute",
        "GMAC/s",
        "by layer type",
        "Conv DW 3×3",
        "per block",
        "features.13",
        "realized / theory",
    ):
        assert text in out
    code, out, _ = _run(capsys, *common, "--format", "json")
    data = json.loads(out)
    assert [p["model"] for p in data["profiles"]] == ["mobilenet_v1", "conv_mobilenet_v1"]
    assert (
        data["ceilings"]["gmacs"] > 0 and data["ceilings"]["gbs"] > 0 and len(data["block_speedups"]) == 15
    )  # 14 blocks and the head
    code, out, _ = _run(capsys, *common, "--format", "csv")
    body = [line for line in out.splitlines() if not line.startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(body))))
    assert rows[0][:2] == ["layer", "type"] and any(r[0] == "features.1.dw.conv" for r in rows)
    code, out, _ = _run(capsys, *common, "--format", "markdown")
    assert "| layer | type |" in out and "## mobilenet_v1" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--backend", "tensorrt"], "unknown backend 'tensorrt'"),
        (["--backend", "onnxruntime", "--train"], "--train profiles PyTorch's training step"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--repeats", "0"], "--repeats must be a positive integer"),
        (["--backend", "onnxruntime", "--clock", "cpu"], "--clock cpu applies to the torch backends"),
    ],
)
def test_cli_bad_options_are_one_line_exit_2(capsys, tmp_path, argv, message):
    png = tmp_path / "keep.png"
    png.write_bytes(b"old")
    code, out, err = _run(capsys, "profile", "mobilenet_v1", *argv, "--output", str(png), "--force")
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
    assert png.read_bytes() == b"old"


@pytest.mark.parametrize("command", [["profile", "mobilenet_v1"], ["choose", "--budget-ms", "5"]])
def test_an_existing_plot_is_kept_unless_force(capsys, tmp_path, command):
    png = tmp_path / "keep.png"
    png.write_bytes(b"old")
    code, out, err = _run(capsys, *command, "--output", str(png))
    assert code == 2 and "pass --force" in err and len(err.strip().splitlines()) == 1
    assert png.read_bytes() == b"old"


def test_figures_are_written_atomically(tmp_path, monkeypatch):
    """A failure while rendering leaves the old PNG whole and no temporary file beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilenets.files import write_figure

    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    figure = plt.figure()
    monkeypatch.setattr(
        "mobilenets.files.write_atomically",
        lambda path, data: (_ for _ in ()).throw(OSError(28, "No space left on device")),
    )
    with pytest.raises(OSError):
        write_figure(figure, target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]
    monkeypatch.undo()
    write_figure(figure, target)
    assert target.read_bytes()[:4] == b"\x89PNG"
    plt.close(figure)


def test_cli_unknown_model(capsys):
    code, _, err = _run(capsys, "profile", "mobilenet_v9")
    assert code == 2 and "unknown model 'mobilenet_v9'" in err
