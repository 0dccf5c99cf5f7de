"""The GPU check of issue 15, in one call: the kernel tests compiled for the GPU, then every figure
of the issue's "Figures to reach", measured side by side in this process (bf16, channels_last,
CUDA events), written to one JSON with the GPU, the versions and pass/fail against each target.

    python benchmarks/gpu.py                                  # ~5-7 min on an H100/H200
    python benchmarks/gpu.py --quick --out /tmp/gpu.json      # a smoke run of every section, ~2 min

Sections:
1. tests: pytest tests/test_kernels.py without the interpreter (kernels compiled for this GPU).
2. copy: device-to-device copy bandwidth (read + write), the yardstick of the depthwise target.
3. depthwise: cuDNN vs the Triton kernel, forward and backward, at the issue's six shapes (batch 128).
4. blocks: the fused depthwise → pointwise kernel vs cuDNN depthwise + pointwise vs the full 3×3
   convolution, at the issue's anchor shapes and at all 13 MobileNetV1 1.0-224 blocks (batch 128).
5. models: MobileNetV1 1.0-224 batch 256 inference and training (eager, torch.compile, Triton
   backend, full-convolution twin) and MobileNetV2 inference, under bf16 autocast.

Without CUDA it prints one line and exits 2. The JSON is rewritten after every section, so a run cut
short keeps what it measured.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if torch.cuda.is_available():  # before triton is imported: compile the kernels, never interpret them
    os.environ.pop("TRITON_INTERPRET", None)

from mobilenets import create_model  # noqa: E402
from mobilenets.kernels import use_backend  # noqa: E402
from mobilenets.kernels.triton_depthwise import depthwise_conv2d  # noqa: E402
from mobilenets.kernels.triton_separable import separable_conv2d  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "gpu.json"
SECTIONS = ("tests", "copy", "depthwise", "blocks", "models")

# The shapes: (channels, input size, stride) of the depthwise anchors, batch 128.
DEPTHWISE_SHAPES = [(32, 112, 1), (64, 112, 2), (128, 56, 1), (256, 28, 1), (512, 14, 1), (1024, 7, 1)]
# (in, out, input size, stride) of the separable-vs-full anchors (same C in and out).
ANCHOR_BLOCKS = [
    (32, 32, 112, 1),
    (128, 128, 56, 1),
    (256, 256, 28, 1),
    (512, 512, 14, 1),
    (1024, 1024, 7, 1),
]
# Targets of the issue (H100, bf16, channels_last).
DEPTHWISE_BANDWIDTH_SHARE = 0.85  # of the measured copy bandwidth, forward
BACKWARD_OVER_FORWARD = 2.5
FUSED_OVER_CUDNN_SPEEDUP = 1.5
V1_INFERENCE_IMAGES_PER_S = 100_000
V1_TRAINING_IMAGES_PER_S = 25_000
OVER_TWIN = 3.0
V2_OVER_COMPILE = 1.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"JSON to write (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        metavar="SECTION",
        help=f"what to run, of {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: fewer rounds, batch 32 for the models, no torch.compile",
    )
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        parser.error(
            f"--out {args.out}: directory {args.out.parent} does not exist; create it or pick another"
        )
    return args


# --- timing --------------------------------------------------------------------------------------


def _graphed(runner, calls: int):
    """`calls` calls of runner captured in one CUDA graph; returns its replay. Kernel-level figures
    are timed so, to measure the GPU rather than Python's launch overhead (at the small shapes a
    launch takes longer than the kernel)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # as PyTorch asks: warm up on a side stream before capturing
        for _ in range(2):
            runner()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            runner()
    return graph.replay


def time_side_by_side(
    runners: dict, rounds: int, calls: int, device: torch.device, graphs: bool = False
) -> tuple[dict[str, float], dict[str, str]]:
    """Median milliseconds per call of every runner, and how each was timed. One untimed warm-up
    call each (compiles, tunes), then `rounds` rounds in which each runner is timed over `calls`
    calls with CUDA events on a GPU: replaying a CUDA graph of them if `graphs` (falling back to
    plain calls, and saying so, where capture fails), else calling them."""
    timed, methods = {}, {}
    for name, runner in runners.items():
        runner()
        timed[name], methods[name] = (lambda runner=runner: [runner() for _ in range(calls)]), "calls"
        if graphs and device.type == "cuda":
            try:
                timed[name], methods[name] = _graphed(runner, calls), "cuda_graph"
            except Exception as error:  # noqa: BLE001 - a runner that cannot be captured is timed plainly
                torch.cuda.synchronize()
                methods[name] = f"calls (graph capture failed: {type(error).__name__}: {str(error)[:200]})"
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in timed.items():
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                samples[name].append(start.elapsed_time(end) / calls)
            else:
                started = time.perf_counter()
                run()
                samples[name].append((time.perf_counter() - started) * 1000 / calls)
    return {name: statistics.median(values) for name, values in samples.items()}, methods


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    peak = expected.float().abs().max().clamp_min(1e-12)
    return float((actual.float() - expected.float()).abs().max() / peak)


def channels_last(*shape: int, dtype: torch.dtype, device: torch.device, requires_grad: bool = False):
    x = torch.randn(*shape, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(requires_grad)


# --- sections ------------------------------------------------------------------------------------


def run_tests() -> dict:
    """The kernel tests (including the slow sweeps), compiled for this GPU, one fixed config per
    kernel (tuning every test shape would take longer than the tests)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "MOBILENETS_FAST")}
    env["MOBILENETS_KERNELS_AUTOTUNE"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(REPO / "tests" / "test_kernels.py"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = result.stdout.strip().splitlines()
    return {
        "returncode": result.returncode,
        "summary": lines[-1] if lines else result.stderr.strip()[-500:],
        "failures": [line for line in lines if line.startswith("FAILED")][:20],
        "seconds": round(time.perf_counter() - started, 1),
    }


def measure_copy(device: torch.device, dtype: torch.dtype, elements: int, rounds: int) -> dict:
    source = torch.randn(elements, device=device).to(dtype)
    target = torch.empty_like(source)
    ms = time_side_by_side({"copy": lambda: target.copy_(source)}, rounds, 10, device)[0]["copy"]
    moved = 2 * source.numel() * source.element_size()
    return {"bytes": moved, "ms": ms, "tb_per_s": moved / ms / 1e9}


def measure_depthwise(
    shapes, batch: int, dtype: torch.dtype, device: torch.device, rounds: int, graphs: bool = True
) -> list[dict]:
    """cuDNN (F.conv2d, groups=C) against the Triton kernel, 3×3, padding 1, no epilogue."""
    return [_measure_depthwise_shape(shape, batch, dtype, device, rounds, graphs) for shape in shapes]


def _measure_depthwise_shape(
    shape, batch: int, dtype: torch.dtype, device: torch.device, rounds: int, graphs: bool
) -> dict:
    """measure_depthwise's row for one (channels, size, stride) (a function of its own so that the
    runners it times close over this shape's tensors rather than over a loop's variables)."""
    channels, size, stride = shape
    x = channels_last(batch, channels, size, size, dtype=dtype, device=device, requires_grad=True)
    weight = torch.randn(channels, 1, 3, 3, device=device).to(dtype).requires_grad_()
    ours = lambda: depthwise_conv2d(x, weight, None, None, stride, (1, 1, 1, 1))  # noqa: E731
    cudnn = lambda: F.conv2d(x, weight, None, stride, 1, 1, channels)  # noqa: E731
    with torch.no_grad():
        expected, actual = cudnn(), ours()
        forward, methods = time_side_by_side({"cudnn": cudnn, "triton": ours}, rounds, 10, device, graphs)
    grad = torch.randn_like(expected)
    # Forward + backward in one runner (a graph captures the backward only with its forward);
    # the backward's time is the difference.
    both, both_methods = time_side_by_side(
        {
            name: (lambda f=f: torch.autograd.grad(f(), (x, weight), grad))
            for name, f in (("cudnn", cudnn), ("triton", ours))
        },
        rounds,
        5,
        device,
        graphs,
    )
    moved = (x.numel() + expected.numel()) * x.element_size()
    row = {
        "channels": channels,
        "size": size,
        "stride": stride,
        "batch": batch,
        "max_relative_error": relative_error(actual, expected),
    }
    for name in ("cudnn", "triton"):
        backward = both[name] - forward[name]
        row[name] = {
            "forward_ms": forward[name],
            "forward_tb_per_s": moved / forward[name] / 1e9,
            "backward_ms": backward,
            "backward_over_forward": backward / forward[name],
            "timing": {"forward": methods[name], "forward_backward": both_methods[name]},
        }
    return row


def mobilenet_v1_blocks(resolution: int = 224) -> list[tuple[int, int, int, int]]:
    """(in, out, input size, stride) of every separable block of MobileNetV1 1.0 at `resolution`."""
    blocks, size = [], resolution
    for block in create_model("mobilenet_v1", resolution=resolution).config.blocks:
        if block.kind == "separable":
            blocks.append((block.in_channels, block.out_channels, size, block.stride))
        size = -(-size // block.stride)
    return blocks


def measure_blocks(
    shapes, batch: int, dtype: torch.dtype, device: torch.device, rounds: int, graphs: bool = True
) -> list[dict]:
    """Inference of one block (BN folded into biases, ReLU): fused Triton vs cuDNN depthwise +
    pointwise vs the full 3×3 convolution it replaces."""
    return [_measure_block(block, batch, dtype, device, rounds, graphs) for block in shapes]


def _measure_block(
    block, batch: int, dtype: torch.dtype, device: torch.device, rounds: int, graphs: bool
) -> dict:
    """measure_blocks's row for one (in, out, input size, stride) block (a function of its own so
    that the runners it times close over this block's tensors rather than over a loop's variables)."""
    in_channels, out_channels, size, stride = block

    def param(*shape):
        return (torch.randn(*shape, device=device) / (shape[1] * shape[-1] ** 2) ** 0.5).to(dtype)

    x = channels_last(batch, in_channels, size, size, dtype=dtype, device=device)
    dw, pw, full = (
        param(in_channels, 1, 3, 3),
        param(out_channels, in_channels, 1, 1),
        param(out_channels, in_channels, 3, 3),
    )
    dw_bias, pw_bias = (torch.randn(c, device=device).to(dtype) for c in (in_channels, out_channels))
    runners = {
        "triton_fused": lambda: separable_conv2d(
            x, dw, None, dw_bias, pw, None, pw_bias, stride, (1, 1, 1, 1), 1, "relu", "relu"
        ),
        "cudnn_separable": lambda: F.relu(
            F.conv2d(F.relu(F.conv2d(x, dw, dw_bias, stride, 1, 1, in_channels)), pw, pw_bias),
            inplace=True,
        ),
        "cudnn_full": lambda: F.relu(F.conv2d(x, full, pw_bias, stride, 1), inplace=True),
    }
    with torch.inference_mode():
        error = relative_error(runners["triton_fused"](), runners["cudnn_separable"]())
        ms, methods = time_side_by_side(runners, rounds, 10, device, graphs)
    return {
        "in_channels": in_channels,
        "out_channels": out_channels,
        "size": size,
        "stride": stride,
        "batch": batch,
        "ms": ms,
        "timing": methods,
        "max_relative_error": error,
        "fused_speedup_over_cudnn_separable": ms["cudnn_separable"] / ms["triton_fused"],
        "fused_speedup_over_full": ms["cudnn_full"] / ms["triton_fused"],
    }


def _model_runners(
    name: str,
    batch: int,
    resolution: int,
    device: torch.device,
    dtype: torch.dtype,
    train: bool,
    variants: list[str],
) -> tuple[dict, dict]:
    """Runners (one inference batch or one training step each) for every variant of model `name`,
    and the errors of variants that could not be built. Variants: eager, compile, triton."""
    base = create_model(name, resolution=resolution).to(device).to(memory_format=torch.channels_last)
    x = channels_last(batch, 3, resolution, resolution, dtype=torch.float32, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    runners, errors = {}, {}
    for variant in variants:
        try:
            model = copy.deepcopy(base).train(train)
            if variant == "triton":
                use_backend(model, "triton", strict=True)
            forward = torch.compile(model) if variant == "compile" else model
            if train:
                optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

                def step(forward=forward, optimizer=optimizer):
                    optimizer.zero_grad(set_to_none=True)
                    with torch.autocast(device.type, dtype):
                        loss = F.cross_entropy(forward(x), labels)
                    loss.backward()
                    optimizer.step()

                runners[variant] = step
            else:

                def infer(forward=forward):
                    with torch.inference_mode(), torch.autocast(device.type, dtype):
                        return forward(x)

                runners[variant] = infer
            runners[variant]()  # builds (compiles, tunes) here, so a failure is recorded, not raised
        except Exception as error:  # noqa: BLE001 - one variant failing must not lose the others
            runners.pop(variant, None)
            errors[variant] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    return runners, errors


def measure_models(
    batch: int, resolution: int, device: torch.device, dtype: torch.dtype, rounds: int, compile_models: bool
) -> dict:
    variants = ["eager", "triton"] + (["compile"] if compile_models else [])
    results = {}
    for label, name, train, wanted in [
        ("mobilenet_v1_inference", "mobilenet_v1", False, variants),
        ("conv_mobilenet_v1_inference", "conv_mobilenet_v1", False, ["eager"]),
        ("mobilenet_v1_training", "mobilenet_v1", True, variants),
        ("conv_mobilenet_v1_training", "conv_mobilenet_v1", True, ["eager"]),
        ("mobilenet_v2_inference", "mobilenet_v2", False, variants),
    ]:
        runners, errors = _model_runners(name, batch, resolution, device, dtype, train, wanted)
        # Whole models are timed as they run: plain calls, launch overhead included.
        ms, _ = time_side_by_side(runners, rounds, 3, device) if runners else ({}, {})
        entry = {
            "batch": batch,
            "resolution": resolution,
            "ms": ms,
            "errors": errors,
            "images_per_s": {variant: batch / value * 1000 for variant, value in ms.items()},
        }
        if not train and {"eager", "triton"} <= runners.keys():
            entry["triton_vs_eager_logits_max_relative_error"] = relative_error(
                runners["triton"](), runners["eager"]()
            )
        results[label] = entry
    return results


# --- targets and report --------------------------------------------------------------------------


def check_targets(results: dict) -> list[dict]:
    """Every figure of the issue's list with its target and whether this run met it."""
    checks = []

    def check(figure: str, value: float | None, target: str, passed: bool | None):
        checks.append({"figure": figure, "value": value, "target": target, "passed": passed})

    copy_tb = results.get("copy", {}).get("tb_per_s")
    for row in results.get("depthwise", []):
        shape = f"depthwise C={row['channels']} H={row['size']} s{row['stride']}"
        ours = row["triton"]
        if copy_tb:
            share = ours["forward_tb_per_s"] / copy_tb
            check(
                f"{shape}: forward share of copy bandwidth",
                share,
                f"≥ {DEPTHWISE_BANDWIDTH_SHARE}",
                share >= DEPTHWISE_BANDWIDTH_SHARE,
            )
        check(
            f"{shape}: backward / forward",
            ours["backward_over_forward"],
            f"≤ {BACKWARD_OVER_FORWARD}",
            ours["backward_over_forward"] <= BACKWARD_OVER_FORWARD,
        )
    for row in results.get("blocks", {}).get("mobilenet_v1", []):
        shape = f"block {row['in_channels']}→{row['out_channels']} H={row['size']} s{row['stride']}"
        speedup = row["fused_speedup_over_cudnn_separable"]
        check(
            f"{shape}: fused vs cuDNN dw+pw",
            speedup,
            f"≥ {FUSED_OVER_CUDNN_SPEEDUP}×",
            speedup >= FUSED_OVER_CUDNN_SPEEDUP,
        )
        over_full = row["fused_speedup_over_full"]
        check(f"{shape}: fused vs full 3×3", over_full, "> 1×", over_full > 1)
    models = results.get("models", {})

    def images(label, variant):
        return models.get(label, {}).get("images_per_s", {}).get(variant)

    for label, target in (
        ("mobilenet_v1_inference", V1_INFERENCE_IMAGES_PER_S),
        ("mobilenet_v1_training", V1_TRAINING_IMAGES_PER_S),
    ):
        ours, twin = images(label, "triton"), images("conv_" + label, "eager")
        check(
            f"{label}: Triton backend img/s", ours, f"≥ {target:,}", None if ours is None else ours >= target
        )
        ratio = None if ours is None or twin is None else ours / twin
        check(
            f"{label}: Triton backend / full-convolution twin",
            ratio,
            f"≥ {OVER_TWIN}×",
            None if ratio is None else ratio >= OVER_TWIN,
        )
    ours, compiled = images("mobilenet_v2_inference", "triton"), images("mobilenet_v2_inference", "compile")
    ratio = None if ours is None or compiled is None else ours / compiled
    check(
        "mobilenet_v2_inference: Triton backend / torch.compile",
        ratio,
        f"≥ {V2_OVER_COMPILE}×",
        None if ratio is None else ratio >= V2_OVER_COMPILE,
    )
    return checks


def machine() -> dict:
    import triton  # optional dependency: only this GPU script and mobilenets.kernels need it

    properties = torch.cuda.get_device_properties(0)
    return {
        "gpu": properties.name,
        "capability": f"{properties.major}.{properties.minor}",
        "memory_gib": round(properties.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "triton": triton.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def summary_table(results: dict) -> str:
    lines = ["| figure | this run | target | met |", "|---|---:|---|---|"]
    for row in results["targets"]:
        value = row["value"]
        shown = "-" if value is None else f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"
        met = "n/a" if row["passed"] is None else "yes" if row["passed"] else "no"
        lines.append(f"| {row['figure']} | {shown} | {row['target']} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing was measured",
            file=sys.stderr,
        )
        return 2
    device, dtype = torch.device("cuda"), torch.bfloat16
    torch.backends.cudnn.benchmark = True
    rounds = 3 if args.quick else 7
    started = time.perf_counter()
    results = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "arguments": sys.argv[1:] if argv is None else argv,
        "machine": machine(),
        "dtype": "bfloat16",
        "memory_format": "channels_last",
        "quick": args.quick,
    }

    def save(section: str, value) -> None:
        results[section] = value
        results["targets"] = check_targets(results)
        results["seconds"] = round(time.perf_counter() - started, 1)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"[{results['seconds']:6.1f} s] {section} done", flush=True)

    if "tests" in args.sections:
        save("tests", run_tests())
    if "copy" in args.sections:
        save("copy", measure_copy(device, dtype, 2**28, rounds))
    if "depthwise" in args.sections:
        save("depthwise", measure_depthwise(DEPTHWISE_SHAPES, 128, dtype, device, rounds))
    if "blocks" in args.sections:
        save(
            "blocks",
            {
                "anchors": measure_blocks(ANCHOR_BLOCKS, 128, dtype, device, rounds),
                "mobilenet_v1": measure_blocks(mobilenet_v1_blocks(), 128, dtype, device, rounds),
            },
        )
    if "models" in args.sections:
        save(
            "models",
            measure_models(
                32 if args.quick else 256, 224, device, dtype, rounds, compile_models=not args.quick
            ),
        )
    print(summary_table(results))
    tests = results.get("tests", {})
    print(f"tests: {tests.get('summary', 'not run')}; wrote {args.out} in {results['seconds']} s")
    return 1 if tests.get("returncode", 0) != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
