"""CPU inference benchmark: median latency and images/s of one model on several backends, and of
its full-convolution twin, measured side by side in one process.

    mobilenets bench --model mobilenet_v1 --backend torch,torch-channels-last,onnxruntime \
        --batch-size 1,32 --threads 2

Method (the machine is shared and noisy, so only side-by-side numbers are comparable):
- every backend gets the same NCHW float32 batch and returns logits; any layout change
  (channels_last) happens inside the timed call, as it would in an application;
- all runners are built and warmed up first (compilation, ONNX export and quantization are not
  timed), then timed round-robin: round r times every runner once before round r+1 starts, so a
  burst of load from another process hits all of them alike;
- reported: the median over rounds (and min/max), images/s = batch / median.
- ONNX Runtime's worker threads sleep between ops instead of spinning, and PyTorch's OpenMP
  threads should too (OMP_WAIT_POLICY=PASSIVE, set before torch is imported): with another
  process on one of two cores, spinning threads slow PyTorch down 30× and ONNX Runtime 2×, and a
  runtime's spinning threads steal the cores from the next runner (docs/benchmarks.md).

Backends (each the library's best path of its kind):
  torch                 eager PyTorch, NCHW, BatchNorm as trained: the reference
  torch-fused           eager, BatchNorm folded (`fuse_bn`), NCHW
  torch-channels-last   eager, BatchNorm folded, channels_last (NHWC) weights and activations
  torch-compile         torch.compile (inductor, freezing) of the folded channels_last model
  onnxruntime           ONNX Runtime CPU, float32, all graph optimizations (NCHWc layout)
  onnxruntime-int8      ONNX Runtime CPU, int8 QDQ (export.INT8_DEFAULT), calibrated on --calibration
                        images or, for timing only, on random ones
  openvino              OpenVINO CPU, float32 forced (INFERENCE_PRECISION_HINT f32), one stream
  openvino-bf16         OpenVINO CPU, bf16 inference precision: fails ("not measured") on a CPU that
                        would silently run it in float32 (no AVX-512 BF16 / AMX)
  openvino-int8         OpenVINO CPU, nncf int8, calibrated like onnxruntime-int8
  executorch            ExecuTorch .pte, XNNPACK delegate, float32
  executorch-int8       ExecuTorch .pte, XNNPACK PT2E int8, calibrated like onnxruntime-int8
  tflite                LiteRT .tflite (litert-torch converter, ai-edge-litert interpreter), float32
  tflite-int8           LiteRT .tflite, PT2E int8 (int8 input: the runner quantizes), calibrated alike
The runtime backends (runtimes.BACKENDS) run the file `export` writes for them, through the runner
eval and predict use, with the same float32 NCHW batch.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from ..costs.analysis import cost
from ..costs.reference import AnyModel, ReferenceModel, reference_cost
from ..fuse import fuse_bn
from ..models import MobileNet
from ..zoo import full_conv_twin
from .base import ModelSource, default_preprocessing
from .cpu import machine_description
from .export import INT8_DEFAULT, export_onnx, ort_session, quantize_int8
from .gates import MAX_CHANGE_POINTS, MIN_AGREEMENT, describe, load_gates, verdict
from .runtimes import BACKENDS as RUNTIME_BACKENDS
from .runtimes import RUNTIMES, Runtime, export_model
from .timing import Runner, measuring, time_interleaved

BACKENDS = ("torch", "torch-fused", "torch-channels-last", "torch-compile", *RUNTIME_BACKENDS)
DEFAULT_BACKENDS = ("torch", "torch-channels-last", "onnxruntime")
SYNTHETIC_CALIBRATION_IMAGES = 32


# --------------------------------------------------------------------------------------------
# Runners: one callable per (model, backend, batch), each taking the NCHW batch it is given
# --------------------------------------------------------------------------------------------
T = TypeVar("T")


@dataclass
class PreparedModel:
    """What the backends of one model share: the eager models and the ONNX files."""

    model: AnyModel
    resolution: int
    workdir: Path
    calibration: np.ndarray | None
    _cache: dict = field(default_factory=dict)

    def get(self, key: str, build: Callable[[], T]) -> T:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def fused(self) -> AnyModel:
        return self.get("fused", lambda: fuse_bn(self.model))

    def fused_channels_last(self) -> AnyModel:
        def build() -> AnyModel:
            # torch's overloads of Module.to leave out memory_format, which it takes (and documents)
            return fuse_bn(self.model).to(memory_format=torch.channels_last)  # type: ignore[call-overload]

        return self.get("fused_cl", build)

    def onnx_float(self) -> Path:
        path = self.workdir / f"{self.model.config.name}.onnx"
        return self.get(
            "onnx", lambda: export_onnx(self.model, path, resolution=self.resolution, dynamic_batch=True)
        )

    def calibration_images(self) -> np.ndarray:
        if self.calibration is not None:
            return self.calibration
        size = self.resolution  # for timing only: the scales do not change the speed
        return np.random.default_rng(0).standard_normal(
            (SYNTHETIC_CALIBRATION_IMAGES, self.model.config.in_channels, size, size), dtype=np.float32
        )

    def onnx_int8(self) -> Path:
        path = self.workdir / f"{self.model.config.name}.int8.onnx"
        return self.get(
            "int8", lambda: quantize_int8(self.onnx_float(), path, self.calibration_images(), INT8_DEFAULT)
        )

    def exported(self, runtime: Runtime, precision: str, batch: int) -> Path:
        """The file `export` writes for this runtime and precision (one per batch size where the
        runtime's files fix their batch)."""
        batch_size = None if runtime.dynamic_batch else batch
        name = f"{self.model.config.name}.{precision}.{batch_size or 'any'}{runtime.suffix}"
        source = ModelSource(
            self.model, self.model.config.name, {**default_preprocessing(self.model), "size": self.resolution}
        )
        calibration = self.calibration_images() if precision == "int8" else None
        return self.get(
            name,
            lambda: export_model(
                source,
                runtime,
                self.workdir / name,
                precision=precision,
                calibration=calibration,
                batch_size=batch_size,
            ),
        )


def make_runner(backend: str, prepared: PreparedModel, batch: torch.Tensor, threads: int) -> Runner:
    """A zero-argument callable that runs `batch` through `backend` once (built and compiled now)."""
    if backend == "torch":
        model = prepared.model.eval()
        return lambda: _no_grad(model, batch)
    if backend == "torch-fused":
        model = prepared.fused()
        return lambda: _no_grad(model, batch)
    if backend == "torch-channels-last":
        model = prepared.fused_channels_last()
        return lambda: _no_grad(model, batch.contiguous(memory_format=torch.channels_last))
    if backend == "torch-compile":
        return _compiled_runner(prepared.fused_channels_last(), batch)
    if backend in ("onnxruntime", "onnxruntime-int8"):
        path = prepared.onnx_float() if backend == "onnxruntime" else prepared.onnx_int8()
        session = ort_session(path, threads=threads, spinning=False)  # see ort_session and the module doc
        return lambda: session.run(None, {"input": batch.numpy()})[0]
    if backend in RUNTIME_BACKENDS:
        return _runtime_runner(backend, prepared, batch, threads)
    raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


def _runtime_runner(backend: str, prepared: PreparedModel, batch: torch.Tensor, threads: int) -> Runner:
    format_name, precision = RUNTIME_BACKENDS[backend]
    runtime = RUNTIMES[format_name]
    runner = runtime.open(prepared.exported(runtime, precision, len(batch)), threads, precision)
    in_effect = getattr(runner, "precision_in_effect", precision)
    if in_effect != precision:  # never report float32 figures under a bf16 name
        raise RuntimeError(f"not measured: {runtime.title} runs {precision} as {in_effect} on this CPU")
    images = batch.numpy()
    return lambda: runner.run(images)


def _no_grad(model: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(batch)


def _compiled_runner(model: AnyModel, batch: torch.Tensor) -> Runner:
    import torch._inductor.config as inductor_config

    # dynamic=False: one specialised graph per batch size (automatic dynamic shapes would switch
    # to slower symbolic-shape kernels when the second batch size arrives). freezing: weights
    # become constants, so inductor can prepack them for oneDNN and fold the conv bias/ReLU.
    compiled = torch.compile(model, dynamic=False)
    with inductor_config.patch(freezing=True):
        _no_grad(compiled, batch.contiguous(memory_format=torch.channels_last))  # compiles now, untimed
    return lambda: _no_grad(compiled, batch.contiguous(memory_format=torch.channels_last))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class Measurement:
    model: str
    backend: str
    batch: int
    times_ms: list[float] = field(default_factory=list)
    error: str | None = None  # why the backend could not run (e.g. no C++ compiler for inductor)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.times_ms) if self.times_ms else None

    @property
    def images_per_s(self) -> float | None:
        median_ms = self.median_ms  # None exactly when there are no times
        return None if median_ms is None else self.batch / (median_ms / 1e3)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "backend": self.backend,
            "batch": self.batch,
            "median_ms": _round(self.median_ms),
            "images_per_s": _round(self.images_per_s),
            "min_ms": _round(min(self.times_ms)) if self.times_ms else None,
            "max_ms": _round(max(self.times_ms)) if self.times_ms else None,
            "times_ms": [_round(t) for t in self.times_ms],
            "error": self.error,
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


@dataclass
class BenchReport:
    machine: dict
    settings: dict
    models: list[dict]  # name, role ("model" / "full-convolution twin"), mult_adds, params
    results: list[Measurement]
    # The accuracy gates of this CPU and the shipped weights, read once (gates.load_gates).
    gates: dict = field(default_factory=load_gates)

    def result(self, model: str, backend: str, batch: int) -> Measurement:
        return next(m for m in self.results if (m.model, m.backend, m.batch) == (model, backend, batch))

    def speedups(self) -> list[dict]:
        """Per backend and batch: the twin's latency over the model's, next to the mult-add ratio."""
        if len(self.models) < 2:
            return []
        model, twin = self.models[0], self.models[1]
        theory = twin["mult_adds"] / model["mult_adds"]
        rows = []
        for backend in self.settings["backends"]:
            for batch in self.settings["batches"]:
                fast, slow = (
                    self.result(model["name"], backend, batch),
                    self.result(twin["name"], backend, batch),
                )
                fast_ms, slow_ms = fast.median_ms, slow.median_ms
                measured = (
                    slow_ms / fast_ms
                    if not (fast.error or slow.error) and fast_ms is not None and slow_ms is not None
                    else None
                )
                fraction = None if measured is None else measured / theory
                rows.append(
                    {
                        "backend": backend,
                        "batch": batch,
                        "measured": _round(measured),
                        "theoretical": _round(theory),
                        "fraction_of_theory": _round(fraction),
                    }
                )
        return rows

    def accuracy_gates(self) -> dict:
        """Per runtime backend: "reference" (float32), "recommended", "fails gate" or "not measured"
        (gates.py: the shipped CIFAR-10 model's agreement and accuracy change, measured beforehand)."""
        return {
            backend: verdict(backend, RUNTIME_BACKENDS[backend][1], self.gates)
            for backend in self.settings["backends"]
            if backend in RUNTIME_BACKENDS
        }

    def to_dict(self) -> dict:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "models": self.models,
            "results": [m.to_dict() for m in self.results],
            "speedups": self.speedups(),
            "accuracy_gates": self.accuracy_gates(),
            "accuracy_gates_measured_on": self.gates["measured_on"],
        }


def run_benchmark(
    source: ModelSource,
    backends: tuple[str, ...] = DEFAULT_BACKENDS,
    batches: tuple[int, ...] = (1,),
    threads: int = 2,
    repeats: int = 10,
    warmup: int = 3,
    twin: bool = True,
    calibration: np.ndarray | None = None,
    seed: int = 0,
    progress: bool = False,
) -> BenchReport:
    """Time `source.model` (and its full-convolution twin) on every backend and batch size
    (progress: a bar on stderr, or one line when stderr is not a terminal)."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend {unknown[0]!r}; available: {', '.join(BACKENDS)}")
    for name, value in (("threads", threads), ("repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if not batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batches):
        raise ValueError(f"batch sizes must be positive integers; got {batches!r}")
    size = int(source.preprocessing["size"])
    model = source.model.eval()
    models: list[tuple[AnyModel, str]] = [(model, "model")]
    # (a reference model has no separable blocks, so no twin)
    twin_config = full_conv_twin(model.config) if twin and isinstance(model, MobileNet) else None
    if twin_config is not None:
        torch.manual_seed(seed)
        models.append((MobileNet(twin_config).eval(), "full-convolution twin"))

    with (
        measuring(threads, warmup, repeats) as conditions,
        tempfile.TemporaryDirectory(prefix="mobilenets-bench-") as workdir,
    ):
        generator = torch.Generator().manual_seed(seed)
        inputs = {
            b: torch.randn(b, model.config.in_channels, size, size, generator=generator) for b in batches
        }
        runners: dict[tuple, Runner] = {}
        results: dict[tuple, Measurement] = {}
        for net, _ in models:
            prepared = PreparedModel(net, size, Path(workdir) / net.config.name, calibration)
            for backend in backends:
                for batch in batches:
                    key = (net.config.name, backend, batch)
                    results[key] = Measurement(*key)
                    try:
                        runners[key] = make_runner(backend, prepared, inputs[batch], threads)
                    except Exception as error:  # a backend that cannot run here is reported, not fatal
                        results[key].error = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        times = time_interleaved(runners, warmup, repeats, progress="bench" if progress else None)
    for key, seconds in times.items():
        results[key].times_ms = [1e3 * s for s in seconds]

    settings = {
        "backends": list(backends),
        "batches": list(batches),
        "resolution": size,
        "dtype": "float32 in and out (int8 or bf16 inside the -int8 and -bf16 backends)",
        "input": "NCHW float32; channels_last backends convert inside the timed call",
        "int8_calibration": "none"
        if not any(b.endswith("-int8") for b in backends)
        else ("given images" if calibration is not None else "synthetic (random normal), for timing only"),
        "source": source.label,
        "twin": twin,
        "onnxruntime_spinning": False,
        **conditions,
    }
    model_rows = []
    for net, role in models:
        report = reference_cost(net) if isinstance(net, ReferenceModel) else cost(net.config, resolution=size)
        model_rows.append(
            {"name": net.config.name, "role": role, "mult_adds": report.mult_adds, "params": report.params}
        )
    return BenchReport(machine_description(), settings, model_rows, list(results.values()))


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def render_text(report: BenchReport) -> str:
    s, m = report.settings, report.machine
    names = [row["name"] for row in report.models]
    lines = [
        f"{m['cpu']}, {m['cores']} cores ({', '.join(m['cpu_features']) or 'no AVX-512/AMX'}); "
        f"torch {m['torch']}, onnxruntime {m['onnxruntime']}",
        f"{s['resolution']}×{s['resolution']} NCHW float32, {s['threads']} threads, "
        f"median of {s['repeats']} interleaved rounds after {s['warmup']} warm-up calls",
        f"load average before/after: {s['load_average_before']} / {s['load_average_after']}; "
        f"OMP_WAIT_POLICY {s['omp_wait_policy']}",
        "",
    ]
    header = f"{'backend':<21}{'batch':>6}" + "".join(f"{name:>34}" for name in names)
    speedups = {(row["backend"], row["batch"]): row for row in report.speedups()}
    gates = report.accuracy_gates()
    if speedups:
        theory = next(iter(speedups.values()))["theoretical"]
        header += f"   speedup (mult-add ratio {theory:.2f}×)"
    lines.append(header)
    for backend in s["backends"]:
        for batch in s["batches"]:
            line = f"{backend:<21}{batch:>6}"
            for name in names:
                result = report.result(name, backend, batch)
                cell = (
                    f"failed ({result.error[:24]})"
                    if result.error
                    else f"{result.median_ms:9.2f} ms {result.images_per_s:9.1f} img/s"
                )
                line += f"{cell:>34}"
            row = speedups.get((backend, batch))
            if row is not None:
                line += "   " + (
                    "n/a"
                    if row["measured"] is None
                    else f"{row['measured']:.2f}× ({100 * row['fraction_of_theory']:.0f}% of theory)"
                )
            if backend in gates:
                line += f"   {describe(gates[backend])}"
            lines.append(line)
    if any(g["status"] != "reference" for g in gates.values()):
        where = report.gates["measured_on"]
        measured = (
            f"{where['images']} images, measured on {where['cpu']} on {where['date']}"
            if where
            else report.gates["why"]
        )
        lines += [
            "",
            f"accuracy gate: top-1 agreement with float32 ≥ {100 * MIN_AGREEMENT:.0f}% and accuracy"
            f" change ≤ {MAX_CHANGE_POINTS} points on the cifar10 model's validation split "
            f"({measured}; benchmarks/runtimes.py); only paths that pass are recommended",
        ]
    if any(row["measured"] is not None and row["fraction_of_theory"] > 1 for row in speedups.values()):
        lines += [
            "",
            "speedup: the full-convolution twin's time over MobileNet's; above 100% of the mult-add ratio "
            "means the twin ran fewer mult-adds per second than MobileNet (its large dense layers can "
            "spill the caches or miss the runtime's fast kernels), not that MobileNet beat arithmetic",
        ]
    if len(names) == 1 and s["twin"]:
        lines += [
            "",
            f"({names[0]} has no depthwise separable blocks, so no full-convolution twin to compare)",
        ]
    return "\n".join(lines)
