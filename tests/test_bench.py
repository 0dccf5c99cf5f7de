"""`bench`: well-formed JSON on a tiny configuration, the twin, the timing protocol, bad input.
(Timings themselves are not tested: benchmarks/cpu_inference.py measures them.)"""

import argparse
import json

import pytest
import torch

from mobilenets.cli.deploy import configure_bench_parser
from mobilenets.costs import cost
from mobilenets.deploy.bench import BACKENDS, full_conv_twin, time_interleaved
from mobilenets.zoo import model_config


def run_bench_cli(*argv: str) -> str:
    parser = argparse.ArgumentParser(prog="mobilenets")
    configure_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *argv])
    return args.run(args)


def test_tiny_bench_json_is_well_formed(two_threads):
    previous = torch.get_num_threads()
    out = run_bench_cli(
        "mobilenet_v1",
        "--width",
        "0.25",
        "--resolution",
        "32",
        "--num-classes",
        "5",
        "--backend",
        "torch,torch-channels-last,onnxruntime",
        "--batch-size",
        "1,2",
        "--threads",
        "1",
        "--repeats",
        "2",
        "--warmup-calls",
        "1",
        "--format",
        "json",
    )
    assert torch.get_num_threads() == previous  # restored
    data = json.loads(out)
    assert set(data) == {
        "machine",
        "settings",
        "models",
        "results",
        "speedups",
        "accuracy_gates",
        "accuracy_gates_measured_on",
    }
    assert data["accuracy_gates"] == {"onnxruntime": {"status": "reference"}}  # float32: not gated
    assert data["machine"]["cores"] >= 1 and "cpu" in data["machine"] and "onnxruntime" in data["machine"]
    assert data["settings"]["threads"] == 1 and data["settings"]["batches"] == [1, 2]
    assert [m["name"] for m in data["models"]] == ["mobilenet_v1", "conv_mobilenet_v1"]
    assert (
        data["models"][0]["mult_adds"]
        == cost("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=5).mult_adds
    )
    assert len(data["results"]) == 2 * 3 * 2  # models × backends × batches
    for row in data["results"]:
        assert row["error"] is None, row
        assert len(row["times_ms"]) == 2 and row["median_ms"] > 0
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["median_ms"] * 1e3, rel=1e-3)
    assert len(data["speedups"]) == 3 * 2
    theory = data["models"][1]["mult_adds"] / data["models"][0]["mult_adds"]
    for row in data["speedups"]:
        assert row["theoretical"] == pytest.approx(theory, rel=1e-3) and row["measured"] > 0


def test_text_output_for_a_model_without_a_twin():
    out = run_bench_cli(
        "mobilenet_v3_small",
        "--width",
        "0.5",
        "--resolution",
        "32",
        "--backend",
        "torch",
        "--threads",
        "1",
        "--repeats",
        "1",
        "--warmup-calls",
        "0",
    )
    assert "torch" in out and "img/s" in out and "load average" in out
    assert "mobilenet_v3_small has no depthwise separable blocks, so no full-convolution twin" in out


def test_the_full_convolution_twin_of_mobilenet_v1_is_conv_mobilenet_v1():
    for options in ({}, {"width_mult": 0.5, "resolution": 160, "num_classes": 10}):
        assert full_conv_twin(model_config("mobilenet_v1", **options)) == model_config(
            "conv_mobilenet_v1", **options
        )
    assert full_conv_twin(model_config("mobilenet_v2")) is None
    theory = cost(full_conv_twin(model_config("mobilenet_v1"))).mult_adds / cost("mobilenet_v1").mult_adds
    assert round(theory, 2) == 8.56


def test_runners_are_timed_round_robin_after_their_warm_up():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = time_interleaved(runners, warmup=2, repeats=3)
    assert calls == list("aabbcc") + list("abc") * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}


@pytest.mark.parametrize(
    "argv, error, message",
    [
        (["nowhere.safetensors"], FileNotFoundError, "no checkpoint at nowhere.safetensors"),
        (
            ["mobilenet_v1", "--backend", "torch,tensorrt"],
            ValueError,
            f"unknown backend 'tensorrt'; available: {', '.join(BACKENDS)}",
        ),
        (
            ["mobilenet_v1", "--batch-size", "0"],
            ValueError,
            "--batch-size takes comma-separated positive integers",
        ),
        (
            ["mobilenet_v1", "--batch-size", "1,x"],
            ValueError,
            "--batch-size takes comma-separated positive integers",
        ),
        (["mobilenet_v1", "--threads", "0"], ValueError, "threads must be a positive integer"),
        (
            ["mobilenet_v1", "--calibration", "no/such/folder", "--backend", "onnxruntime-int8"],
            FileNotFoundError,
            "no image folder at no/such/folder",
        ),
    ],
)
def test_bench_errors_name_what_was_wrong(argv, error, message):
    with pytest.raises(error, match=message):
        run_bench_cli(*argv)


# --------------------------------------------------------------------------------------------
# Accuracy gates: one measurement per CPU feature set
# --------------------------------------------------------------------------------------------
def gate_measurement(cpu: str, features: list[str], agreement: float) -> dict:
    return {
        "measured_on": {
            "cpu": cpu,
            "cpu_features": features,
            "images": 10,
            "date": "today",
            "weights_file": "w.safetensors",
        },
        "backends": {"onnxruntime-int8": {"top1_agreement": agreement, "accuracy_change_points": 0.0}},
    }


def test_gates_are_judged_by_the_measurement_of_a_cpu_with_the_same_features(tmp_path):
    from mobilenets.deploy import gates

    def load_gates(path, features):
        return gates.load_gates(path, features, "w.safetensors")

    save_measurement, verdict = gates.save_measurement, gates.verdict
    path = tmp_path / "gates.json"
    save_measurement(gate_measurement("EPYC", ["avx2", "fma"], 0.98), path)
    save_measurement(gate_measurement("Xeon", ["avx2", "fma", "avx512_vnni"], 0.995), path)
    avx2 = load_gates(path, ["fma", "avx2"])  # order does not matter
    vnni = load_gates(path, ["avx2", "fma", "avx512_vnni"])
    assert verdict("onnxruntime-int8", "int8", avx2)["status"] == "fails gate"
    assert verdict("onnxruntime-int8", "int8", vnni)["status"] == "recommended"
    other = load_gates(path, ["avx2"])
    result = verdict("onnxruntime-int8", "int8", other)
    assert result["status"] == "not measured"
    assert "EPYC (avx2, fma)" in result["why"] and "Xeon" in result["why"]
    # Measuring again on a CPU replaces its entry and keeps the others.
    save_measurement(gate_measurement("EPYC again", ["avx2", "fma"], 0.999), path)
    assert load_gates(path, ["avx2", "fma"])["measured_on"]["cpu"] == "EPYC again"
    assert verdict("onnxruntime-int8", "int8", load_gates(path, ["avx2", "fma"]))["status"] == "recommended"
    assert load_gates(path, ["avx2", "fma", "avx512_vnni"])["measured_on"]["cpu"] == "Xeon"
    assert [p.name for p in tmp_path.iterdir()] == ["gates.json"]  # no temporary file left
    # A measurement of other weights (the shipped ones changed since) judges nothing.
    stale = gates.load_gates(path, ["avx2", "fma"], "new.safetensors")
    result = verdict("onnxruntime-int8", "int8", stale)
    assert result["status"] == "not measured"
    assert "other weights (w.safetensors), not the shipped new.safetensors" in result["why"]


def test_gates_without_a_file_or_in_an_old_format(tmp_path):
    from mobilenets.deploy.gates import load_gates, verdict

    missing = load_gates(tmp_path / "none.json", ["avx2"])
    expected = {"status": "not measured", "why": "no gate measurement"}
    assert verdict("openvino-int8", "int8", missing) == expected
    old = tmp_path / "old.json"
    old.write_text('{"measured_on": {"cpu": "x"}, "backends": {}}')
    with pytest.raises(ValueError, match="old.json: not an accuracy gates file.*--write-gates"):
        load_gates(old, ["avx2"])


def test_the_shipped_gates_file_reads():
    from mobilenets.deploy.gates import read_measurements

    measurements = read_measurements()
    assert measurements and all(m["measured_on"]["images"] == 5000 for m in measurements)
    assert all(m["measured_on"]["weights_file"].startswith("cifar10_") for m in measurements)
    assert len({tuple(sorted(m["measured_on"]["cpu_features"])) for m in measurements}) == len(measurements)


def test_gates_follow_the_bytes_of_the_weights_not_their_name(tmp_path):
    from mobilenets.deploy import gates

    path = tmp_path / "gates.json"
    measured = gate_measurement("Xeon", ["avx2"], 0.995)
    measured["measured_on"]["weights_sha256"] = "a" * 64
    gates.save_measurement(measured, path)
    same = gates.load_gates(path, ["avx2"], "w.safetensors", "a" * 64)
    retrained = gates.load_gates(path, ["avx2"], "w.safetensors", "b" * 64)  # same name, new bytes
    assert gates.verdict("onnxruntime-int8", "int8", same)["status"] == "recommended"
    assert gates.verdict("onnxruntime-int8", "int8", retrained)["status"] == "not measured"
    assert "SHA-256 aaaaaaaaaaaa" in retrained["why"]
