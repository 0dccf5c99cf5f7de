"""benchmarks/gpu.py: its arguments, its answer on a machine without CUDA, and each measuring
section run small on CPU tensors (the kernels in Triton's interpreter), so that the one GPU run it
is written for does not fail on something a CPU could have caught."""

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu.py"
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cpu_only
def test_without_cuda_it_says_so_in_one_line_and_exits_2(gpu, tmp_path, capsys):
    # In this process rather than a subprocess: importing torch and triton again would be most of
    # the test's time on a loaded machine.
    out = tmp_path / "gpu.json"
    assert gpu.main(["--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "benchmarks/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing was measured\n"
    )
    assert captured.out == "" and not out.exists()


def test_arguments(gpu, tmp_path, capsys):
    args = gpu.parse_args(["--out", str(tmp_path / "x.json"), "--sections", "copy", "blocks", "--quick"])
    assert args.sections == ["copy", "blocks"] and args.quick and args.out == tmp_path / "x.json"
    assert gpu.parse_args([]).sections == list(gpu.SECTIONS)
    with pytest.raises(SystemExit) as exit_info:
        gpu.parse_args(["--out", str(tmp_path / "missing" / "x.json")])
    assert exit_info.value.code == 2
    assert f"directory {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        gpu.parse_args(["--sections", "everything"])
    assert exit_info.value.code == 2


def test_mobilenet_v1_blocks_are_the_papers_table(gpu):
    blocks = gpu.mobilenet_v1_blocks()
    assert len(blocks) == 13
    assert blocks[0] == (32, 64, 112, 1) and blocks[1] == (64, 128, 112, 2)
    assert blocks[-2] == (512, 1024, 14, 2) and blocks[-1] == (1024, 1024, 7, 1)


def test_sections_measure_and_agree_on_cpu(gpu):
    cpu = torch.device("cpu")
    copy = gpu.measure_copy(cpu, torch.float32, 1000, rounds=1)
    assert copy["bytes"] == 8000 and copy["tb_per_s"] > 0
    [row] = gpu.measure_depthwise([(5, 6, 2)], 2, torch.float32, cpu, rounds=1)
    assert row["max_relative_error"] < 1e-5
    assert row["triton"]["forward_ms"] > 0 and row["cudnn"]["forward_tb_per_s"] > 0
    # Without CUDA there is no graph to capture: plain calls (the backward's time is a difference of
    # two such timings, so its sign is not asserted on a shared CPU).
    assert row["triton"]["timing"] == {"forward": "calls", "forward_backward": "calls"}
    assert isinstance(row["triton"]["backward_over_forward"], float)
    [block] = gpu.measure_blocks([(5, 7, 6, 2)], 2, torch.float32, cpu, rounds=1)
    assert block["max_relative_error"] < 1e-5 and set(block["ms"]) == {
        "triton_fused",
        "cudnn_separable",
        "cudnn_full",
    }


def test_targets_pass_and_fail_as_the_issue_states(gpu):
    results = {
        "copy": {"tb_per_s": 3.0},
        "depthwise": [
            {
                "channels": 32,
                "size": 112,
                "stride": 1,
                "triton": {"forward_tb_per_s": 2.6, "backward_over_forward": 2.6},
            }
        ],
        "blocks": {
            "mobilenet_v1": [
                {
                    "in_channels": 32,
                    "out_channels": 64,
                    "size": 112,
                    "stride": 1,
                    "fused_speedup_over_cudnn_separable": 1.6,
                    "fused_speedup_over_full": 0.9,
                }
            ]
        },
        "models": {
            "mobilenet_v1_inference": {"images_per_s": {"triton": 120_000.0}},
            "conv_mobilenet_v1_inference": {"images_per_s": {"eager": 30_000.0}},
            "mobilenet_v2_inference": {"images_per_s": {"triton": 60_000.0}},
        },
    }
    passed = {row["figure"]: row["passed"] for row in gpu.check_targets(results)}
    assert passed == {
        "depthwise C=32 H=112 s1: forward share of copy bandwidth": True,  # 2.6 / 3.0 ≥ 0.85
        "depthwise C=32 H=112 s1: backward / forward": False,
        "block 32→64 H=112 s1: fused vs cuDNN dw+pw": True,
        "block 32→64 H=112 s1: fused vs full 3×3": False,
        "mobilenet_v1_inference: Triton backend img/s": True,
        "mobilenet_v1_inference: Triton backend / full-convolution twin": True,  # 4×
        "mobilenet_v1_training: Triton backend img/s": None,  # not measured
        "mobilenet_v1_training: Triton backend / full-convolution twin": None,
        "mobilenet_v2_inference: Triton backend / torch.compile": None,
    }
    table = gpu.summary_table({"targets": gpu.check_targets(results)})
    assert "| mobilenet_v1_inference: Triton backend img/s | 120,000 | ≥ 100,000 | yes |" in table
