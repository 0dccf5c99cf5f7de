"""`mobilenets choose`: the Pareto front, the choice within a budget, the cited top-1, the plot,
and bad options."""

import json

import pytest

import mobilenets.deploy.choose as choose_module
from mobilenets.cli import main
from mobilenets.costs.accuracy import accuracy_data
from mobilenets.deploy.choose import Candidate, choose, pareto_front


def _candidate(label, top1, ms):
    return Candidate(label, "m", {"width_mult": 1.0}, top1, "s", 1, 1, [ms])


@pytest.mark.parametrize(
    "points",
    [
        [("a", 60, 1.0), ("b", 70, 2.0), ("c", 65, 3.0), ("d", 75, 4.0), ("e", 74, 5.0)],
        [("a", 70, 1.0), ("b", 60, 2.0), ("c", 70, 3.0)],
        [("a", 50, 3.0), ("b", 60, 2.0), ("c", 70, 1.0)],
    ],
)
def test_pareto_front_is_what_nothing_dominates(points):
    candidates = [_candidate(*p) for p in points]
    front = {c.label for c in pareto_front(candidates)}
    dominated = {
        c.label
        for c in candidates
        for o in candidates
        if o is not c
        and o.top1 >= c.top1
        and o.latency_ms <= c.latency_ms
        and (o.top1 > c.top1 or o.latency_ms < c.latency_ms)
    }
    assert front == {c.label for c in candidates} - dominated


@pytest.fixture(scope="module")
def v3_choice():
    return choose(1e6, "torch", 1, ("v3",), threads=1, repeats=2, progress=False)


def test_measures_every_published_v3_and_chooses_the_most_accurate(v3_choice):
    labels = {c.label for c in v3_choice.candidates}
    assert labels == {
        "mobilenet_v3_large 1 224",
        "mobilenet_v3_large 0.75 224",
        "mobilenet_v3_small 1 224",
        "mobilenet_v3_small 0.75 224",
        "mobilenet_v3_large 1 224 minimalistic",
        "mobilenet_v3_small 1 224 minimalistic",
    }
    assert v3_choice.chosen.label == "mobilenet_v3_large 1 224" and v3_choice.chosen.top1 == 75.2
    assert all(len(c.times_ms) == 2 and c.latency_ms > 0 for c in v3_choice.candidates)
    latencies = [c.latency_ms for c in v3_choice.candidates]
    assert latencies == sorted(latencies)
    small = next(c for c in v3_choice.candidates if c.label == "mobilenet_v3_small 1 224")
    assert round(small.mult_adds / 1e6, 1) == 56.5  # the cost table's exact count


def test_every_top1_is_the_cited_data_files(v3_choice):
    rows = {(r["model"], r["width_mult"], r["minimalistic"]): r for r in accuracy_data()["published_weights"]}
    for c in v3_choice.candidates:
        row = rows[(c.model, c.options["width_mult"], c.options.get("minimalistic", False))]
        assert (c.top1, c.source) == (row["top1"], row["source"])


def test_budget_nothing_meets_names_the_fastest(v3_choice, capsys):
    v3_choice.settings["budget_ms"] = 1e-6
    v3_choice.chosen = None
    text = choose_module.render(v3_choice)
    assert f"nothing meets 1e-06 ms: the fastest is {v3_choice.candidates[0].label}" in text


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_with_popular_plot_and_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(choose_module, "POPULAR", ("resnet50",))  # VGG16 and GoogLeNet take minutes here
    png = tmp_path / "pareto.png"
    code, out, _ = _run(
        capsys,
        "choose",
        "--budget-ms",
        "100000",
        "--families",
        "v3",
        "--with-popular",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--output",
        str(png),
    )
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    assert "within 100000 ms the most accurate is resnet50: top-1 76.13%" in out
    assert "torchvision_resnet50" in out and "tf_slim_mobilenet_v2_v3" in out
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(
        capsys,
        "choose",
        "--budget-ms",
        "100000",
        "--families",
        "V3",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--measure-only",
        "--format",
        "json",
    )
    data = json.loads(out)
    assert code == 0 and data["chosen"] == "mobilenet_v3_large 1 224" and len(data["candidates"]) == 6
    assert not list(tmp_path.glob("choose-*.png"))  # --measure-only draws nothing


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--budget-ms", "0"], "--budget-ms must be a positive number"),
        (["--budget-ms", "-5"], "--budget-ms must be a positive number"),
        (["--budget-ms", "10", "--backend", "coreml"], "unknown backend 'coreml'"),
        (["--budget-ms", "10", "--families", "v1,v4"], "unknown family 'v4'"),
        (["--budget-ms", "10", "--batch-size", "0"], "--batch-size must be a positive integer"),
    ],
)
def test_cli_bad_options_are_one_line_exit_2(capsys, argv, message):
    code, out, err = _run(capsys, "choose", *argv)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
