"""The command line: outputs in every format, flags generated from ModelOptions, error exit codes."""

import argparse
import csv
import io
import json
import subprocess
import sys

import pytest

from mobilenets.cli import main
from mobilenets.cli.app import build_parser
from mobilenets.cli.options import resolve_old_spellings


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cost_table_has_every_layer_and_totals(capsys):
    code, out, _ = run(capsys, "cost", "mobilenet_v1")
    assert code == 0
    assert "features.13.pw.conv" in out and "head.fc" in out
    assert "568,740,352" in out and "4,210,088" in out and "4,231,976" in out


def test_cost_json_with_width_and_resolution(capsys):
    code, out, _ = run(
        capsys,
        "cost",
        "mobilenet_v1",
        "--width",
        "0.75",
        "--resolution",
        "192",
        "--format",
        "json",
        "--by-type",
    )
    assert code == 0
    data = json.loads(out)
    assert data["resolution"] == [192, 192]
    assert data["mult_adds"] == sum(row["mult_adds"] for row in data["rows"])
    assert {entry["type"] for entry in data["by_type"]} == {"Conv 1×1", "Conv DW 3×3", "Conv 3×3", "FC"}
    assert len(data["separable"]) == 13


def test_cost_compare_prints_both_and_the_ratio(capsys):
    code, out, _ = run(
        capsys, "cost", "mobilenet_v1", "--compare", "conv_mobilenet_v1", "--format", "markdown"
    )
    assert code == 0
    assert "| conv_mobilenet_v1 |" in out and "8.56× the mult-adds" in out


def test_cost_csv_parses(capsys):
    code, out, _ = run(capsys, "cost", "mobilenet_v2", "--format", "csv")
    assert code == 0
    lines = out.splitlines()
    table = list(csv.reader(io.StringIO("\n".join(lines[1 : lines.index("")]))))
    assert table[0][:2] == ["layer", "type"]
    assert sum(int(row[-1]) for row in table[1:]) == 300_774_272


def test_by_type_table(capsys):
    code, out, _ = run(capsys, "cost", "mobilenet_v1", "--by-type")
    assert code == 0 and "94.86%" in out and "24.33%" in out


def test_list_and_config(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "shallow_mobilenet_v1" in out
    code, out, _ = run(capsys, "config", "mobilenet_v3_small", "--minimalistic", "--num-classes", "10")
    assert code == 0 and json.loads(out)["head"]["num_classes"] == 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cost", "mobilenet_v9"], "unknown model 'mobilenet_v9'; available: mobilenet_v1"),
        (["cost", "mobilenet_v1", "--width", "0"], "width_mult must be a positive number"),
        (["cost", "mobilenet_v1", "--resolution", "16"], "resolution must be an integer ≥ 32"),
        (
            ["cost", "mobilenet_v2", "--depth-multiplier", "2"],
            "depth_multiplier applies to the MobileNetV1 family",
        ),
        (["cost", "mobilenet_v1", "--minimalistic"], "minimalistic applies to mobilenet_v3"),
    ],
)
def test_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["cost"],
        ["cost", "mobilenet_v1", "--width", "wide"],
        ["frobnicate"],
        ["cost", "mobilenet_v1", "--format", "xml"],
    ],
)
def test_argument_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "mobilenets", "cost", "shallow_mobilenet_v1", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mult_adds"] == 307_323_392
    bad = subprocess.run([sys.executable, "-m", "mobilenets", "cost", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown model" in bad.stderr


def test_help_lists_the_commands_in_order_with_one_line_each(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ")]
    assert listed == [
        "list",
        "config",
        "cost",
        "train",
        "eval",
        "predict",
        "compare",
        "convert",
        "weights",
        "export",
        "bench",
        "serve",
        "profile",
        "choose",
    ]
    assert all(
        len(line.split()) > 1 for line in out.splitlines() if line.startswith("    ")
    )  # help on the line


# The CLI convention of docs/cli.md, checked over every subcommand's visible options.
MODEL_METAVARS = {"MODEL", "MODEL_OR_FILE", "[MODEL_OR_FILE] IMAGE"}
TAKES_A_MODEL = {"config", "cost", "train", "eval", "predict", "export", "bench", "profile"}
OLD_SPELLINGS = {"--out", "--json", "--png", "--confusion", "--batch", "--warmup", "--no-twin"}
READABLE_FORMATS = {"table", "markdown", "csv", "json"}


def subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_command_follows_one_cli_convention():
    for name, command in subcommands().items():
        visible = [
            a
            for a in command._actions
            if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
        ]
        options = {o for a in visible for o in a.option_strings}
        assert not options & OLD_SPELLINGS, (name, options & OLD_SPELLINGS)
        positionals = [a for a in visible if not a.option_strings]
        if name in TAKES_A_MODEL:  # the model or file is the first positional, never --model
            assert positionals and positionals[0].metavar in MODEL_METAVARS, name
            assert "--model" not in options, name
        for action in visible:
            if action.dest in ("out", "png", "output") and action.option_strings:
                assert action.option_strings == ["-o", "--output"], (name, action.option_strings)
            if action.dest in ("batch", "batch_size"):
                assert action.option_strings == ["--batch-size"], (name, action.option_strings)
            if action.dest == "warmup":
                want = "--warmup-epochs" if name in ("train", "compare") else "--warmup-calls"
                assert action.option_strings == [want], (name, action.option_strings)
            if "--format" in action.option_strings and name != "export":  # export's names the file format
                assert set(action.choices) <= READABLE_FORMATS and action.default == "table", name
            if "--backend" in action.option_strings:
                assert action.dest == "backend", name


@pytest.mark.parametrize(
    "argv, dest, value, new",
    [
        (["bench", "mobilenet_v1", "--batch", "4"], "batch", "4", "--batch-size"),
        (["eval", "x.safetensors", "--data", "digits", "--batch", "7"], "batch_size", 7, "--batch-size"),
        (["train", "--out", "runs/x"], "out", "runs/x", "--output"),
        (["train", "--warmup", "2"], "warmup", 2.0, "--warmup-epochs"),
        (["bench", "mobilenet_v1", "--warmup", "5"], "warmup", 5, "--warmup-calls"),
        (["bench", "mobilenet_v1", "--json"], "format", "json", "--format json"),
        (["bench", "mobilenet_v1", "--no-twin"], "compare", "none", "--compare none"),
        (["eval", "x.safetensors", "--data", "d", "--json"], "format", "json", "--format json"),
        (["eval", "x.safetensors", "--data", "d", "--confusion", "c.png"], "output", "c.png", "--output"),
        (["profile", "mobilenet_v1", "--png", "r.png"], "png", "r.png", "--output"),
        (["choose", "--budget-ms", "5", "--png", "c.png"], "png", "c.png", "--output"),
        (["profile", "mobilenet_v1", "--batch", "3"], "batch", 3, "--batch-size"),
    ],
)
def test_old_spellings_still_work_with_one_deprecation_line(capsys, argv, dest, value, new):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deprecated" in err[0] and new in err[0], err


@pytest.mark.parametrize(
    "argv, dest, value",
    [
        (["train", "--model", "mobilenet_v2"], "model", "mobilenet_v2"),
        (["bench", "--model", "mobilenet_v1"], "model", "mobilenet_v1"),
    ],
)
def test_the_old_model_flag_fills_the_positional(capsys, argv, dest, value):
    args = build_parser().parse_args(argv)
    resolve_old_spellings(args)
    assert getattr(args, dest) == value
    assert "use the positional" in capsys.readouterr().err


def test_a_model_given_both_ways_must_agree():
    args = build_parser().parse_args(["train", "mobilenet_v1", "--model", "mobilenet_v2"])
    with pytest.raises(ValueError, match="given twice"):
        resolve_old_spellings(args)


def test_export_and_bench_share_one_calibration_default():
    parser = build_parser()
    export = parser.parse_args(["export", "mobilenet_v1"])
    bench = parser.parse_args(["bench", "mobilenet_v1"])
    assert export.calibration_images == bench.calibration_images


def test_every_stated_default_is_the_default():
    """Where a help string states a default, it is the value the command uses: argparse's own, or
    for options collected from TrainConfig and ModelOptions (argparse default None), the field's."""
    import dataclasses
    import re

    from mobilenets.config import ModelOptions
    from mobilenets.training.train import TrainConfig

    def flags(owner):
        return {f.metadata["flag"]: f.default for f in dataclasses.fields(owner) if "flag" in f.metadata}

    for name, command in subcommands().items():
        fields = {}  # the options add_dataclass_options made, by their group
        for group in command._action_groups:
            owner = (
                ModelOptions
                if group.title == "model options"
                else TrainConfig
                if group.title.startswith("training options")
                else None
            )
            if owner is not None:
                defaults = flags(owner)
                fields.update({o: defaults.get(o) for a in group._group_actions for o in a.option_strings})
        for action in command._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                continue
            stated = re.findall(r"\(default:? ([^);]+)", action.help)
            assert "(default: None)" not in action.help, (name, action.option_strings)
            assert len(stated) <= 1, (name, action.option_strings, stated)
            if not stated or isinstance(action.default, bool):
                continue
            flag = next((o for o in action.option_strings if o.startswith("--")), None)
            default = action.default if action.default is not None else fields.get(flag)
            if default is not None:
                assert stated[0].split(",")[0].split(" ")[0] == str(default).split(",")[0], (
                    name,
                    flag,
                    stated[0],
                    default,
                )
