"""Where the time goes: per-layer time of a model next to its mult-adds and bytes moved, on this
machine, against the machine's measured compute and bandwidth ceilings (a roofline).

    mobilenets profile mobilenet_v1 --backend torch --batch-size 1 --compare conv_mobilenet_v1 -o roofline.png

Method:
- torch backends: a forward pre-hook and a forward hook on every leaf module (convolution,
  BatchNorm, activation, pooling, FC) read the clock before and after it runs; with --train, full
  backward hooks time each module's backward too (activations run out of place there, which
  backward hooks need). What no module covers (the head's mean pool, residual additions, Python
  between modules, with --train the loss and autograd's bookkeeping) is the gap between the sum of
  the rows and an end-to-end timing of the same model and batch without hooks, printed as a check.
- onnxruntime: its own per-node profiling (SessionOptions.enable_profiling); Conv and Gemm nodes
  (BatchNorm and activations fused into them) are matched, in execution order, to the model's
  layers, and the weight shape ONNX Runtime reports is checked against the layer's.
- hooked and plain runs (and --compare's second model) alternate round by round in one process
  (`timing.time_interleaved`), so load from other programs hits them alike; every time reported is
  the fastest of the rounds (see `timing.best`), per layer and end to end.
- bytes moved per layer: its input and output feature maps and its weights (+ bias) at 4 bytes
  (float32), the minimum traffic if nothing stays in cache. Arithmetic intensity = mult-adds / bytes.
- ceilings, measured at start: a 512×512 float32 matrix multiply (compute, GMAC/s) and a 64 MB
  copy (bandwidth, GB/s: bytes read + written), each the best of 30 runs.
Set OMP_WAIT_POLICY=PASSIVE before starting Python on a shared machine (see bench.py).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..costs.analysis import CostReport, LayerCost, cost, render_rows
from ..costs.reference import AnyModel, create_reference_model, is_reference_model, layer_type, reference_cost
from ..factory import create_model
from ..figures import figure
from ..fuse import fuse_bn
from ..zoo import list_models
from .cpu import machine_description
from .export import export_onnx, ort_session
from .timing import best, measuring, time_interleaved

PROFILE_BACKENDS = ("torch", "torch-channels-last", "onnxruntime")
FORMATS = ("table", "markdown", "csv", "json")
DTYPE_BYTES = 4  # float32
SKIPPED_MODULES = (nn.Identity, nn.Dropout, nn.Flatten)  # no work, or none in eval mode
# Small enough that a run often finds the cores free on a shared machine (5 ms, 25 ms), big
# enough to be compute-bound (the operands fit in cache) and memory-bound (4× a 16 MB L3).
MATMUL_SIZE = 512
COPY_BYTES = 64 << 20
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class LayerTime:
    name: str  # module path ("features.3.pw.conv"), ONNX Runtime node name, or "loss"/"optimizer step"
    type: str  # "Conv 1×1", "Conv DW 3×3", "BatchNorm", "ReLU", "FC", ... (cost's names for convs and FC)
    mult_adds: int  # for the whole batch, forward pass
    params: int
    bytes: int  # forward: input + output feature maps + weights, float32
    forward_ms: list[float] = field(default_factory=list)  # one per round
    backward_ms: list[float] = field(default_factory=list)  # --train only

    @property
    def block(self) -> str:
        parts = self.name.split(".")
        return ".".join(parts[:2]) if parts[0] == "features" and len(parts) > 1 else parts[0]

    @property
    def time_ms(self) -> float:
        return self.forward_time_ms + (best(self.backward_ms) if self.backward_ms else 0.0)

    @property
    def forward_time_ms(self) -> float:
        return best(self.forward_ms) if self.forward_ms else 0.0

    @property
    def intensity(self) -> float | None:
        return self.mult_adds / self.bytes if self.bytes and self.mult_adds else None

    @property
    def gmacs(self) -> float | None:  # achieved, forward
        return (
            self.mult_adds / self.forward_time_ms / 1e6 if self.mult_adds and self.forward_time_ms else None
        )

    @property
    def gbs(self) -> float | None:
        return self.bytes / self.forward_time_ms / 1e6 if self.bytes and self.forward_time_ms else None


@dataclass
class Ceilings:
    gmacs: float  # dense float32 matrix multiply
    gbs: float  # large copy, read + write

    def bound(self, intensity: float) -> float:
        """The roofline: the most GMAC/s a layer of this intensity (MAC/byte) can reach here."""
        return min(self.gmacs, self.gbs * intensity)


@dataclass
class ModelProfile:
    model: str
    backend: str
    batch: int
    resolution: int
    train: bool
    rows: list[LayerTime]
    end_to_end_ms: list[float]

    @property
    def layers_ms(self) -> float:
        return sum(row.time_ms for row in self.rows)

    @property
    def total_ms(self) -> float:
        return best(self.end_to_end_ms)

    @property
    def layers_run_ms(self) -> float:
        """The fastest hooked run's per-layer times added up. (The sum of every layer's own fastest
        time, `layers_ms`, is lower still: each layer picks its luckiest round.)"""
        series = [row.forward_ms for row in self.rows] + [
            row.backward_ms for row in self.rows if row.backward_ms
        ]
        rounds = min(len(times) for times in series)
        return best([sum(times[i] for times in series) for i in range(rounds)])

    @property
    def coverage(self) -> float:
        """The check, |1 - coverage| ≤ 15%: the fastest hooked run's layer times summed over the
        fastest end-to-end run without hooks. Whole runs against whole runs, because load from
        other programs can stretch a run several times over and no single layer escapes it."""
        return self.layers_run_ms / self.total_ms

    @property
    def mult_adds(self) -> int:
        return sum(row.mult_adds for row in self.rows)

    def by_type(self) -> list[dict]:
        groups: dict[str, dict] = {}
        for row in self.rows:
            entry = groups.setdefault(
                row.type,
                {
                    "type": row.type,
                    "layers": 0,
                    "mult_adds": 0,
                    "bytes": 0,
                    "time_ms": 0.0,
                    "forward_ms": 0.0,
                },
            )
            entry["layers"] += 1
            entry["mult_adds"] += row.mult_adds
            entry["bytes"] += row.bytes
            entry["time_ms"] += row.time_ms
            entry["forward_ms"] += row.forward_time_ms
        for entry in groups.values():
            entry["mult_adds_percent"] = 100 * entry["mult_adds"] / max(self.mult_adds, 1)
            entry["time_percent"] = 100 * entry["time_ms"] / self.layers_ms
            entry["gmacs"] = entry["mult_adds"] / entry["forward_ms"] / 1e6 if entry["forward_ms"] else None
        return sorted(groups.values(), key=lambda e: -e["time_ms"])

    def by_block(self) -> dict[str, dict]:
        blocks: dict[str, dict] = {}
        for row in self.rows:
            entry = blocks.setdefault(row.block, {"mult_adds": 0, "time_ms": 0.0})
            entry["mult_adds"] += row.mult_adds
            entry["time_ms"] += row.time_ms
        return blocks

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "backend": self.backend,
            "batch": self.batch,
            "resolution": self.resolution,
            "train": self.train,
            "layers_ms": self.layers_ms,
            "layers_run_ms": self.layers_run_ms,
            "end_to_end_ms": self.total_ms,
            "coverage": self.coverage,
            "mult_adds": self.mult_adds,
            "rows": [
                {
                    "name": r.name,
                    "type": r.type,
                    "block": r.block,
                    "mult_adds": r.mult_adds,
                    "params": r.params,
                    "bytes": r.bytes,
                    "intensity": r.intensity,
                    "time_ms": r.time_ms,
                    "forward_ms": r.forward_time_ms,
                    "gmacs": r.gmacs,
                    "gbs": r.gbs,
                    "share": r.time_ms / self.layers_ms,
                }
                for r in self.rows
            ],
            "by_type": self.by_type(),
        }


# --------------------------------------------------------------------------------------------
# The machine's ceilings
# --------------------------------------------------------------------------------------------
def measure_ceilings(
    threads: int, repeats: int = 30, clock: Callable[[], float] = time.perf_counter
) -> Ceilings:
    """Best-of-`repeats` dense matmul GMAC/s and copy GB/s with `threads` intra-op threads."""
    with measuring(threads, 0, repeats):
        a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
        source, target = torch.ones(COPY_BYTES // 4), torch.empty(COPY_BYTES // 4)
        target.copy_(source)  # touch every page before timing
        matmul, copy_ = [], []
        for _ in range(repeats):
            start = clock()
            torch.mm(a, b)
            matmul.append(clock() - start)
            start = clock()
            target.copy_(source)
            copy_.append(clock() - start)
    return Ceilings(gmacs=MATMUL_SIZE**3 / min(matmul) / 1e9, gbs=2 * COPY_BYTES / min(copy_) / 1e9)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------
def build_model(name: str, options: dict, seed: int = 0) -> tuple[AnyModel, CostReport]:
    """A zoo MobileNet (with `options`) or a reference model, with random weights, and its cost."""
    if is_reference_model(name):
        if options:
            raise ValueError(
                f"model options ({', '.join(sorted(options))}) apply to MobileNets, not to the "
                f"reference model {name}; drop them"
            )
        reference = create_reference_model(name, seed)
        return reference, reference_cost(reference)
    if name not in list_models():
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(list_models())}, and the reference "
            f"models vgg16, googlenet, alexnet, squeezenet, resnet50"
        )
    torch.manual_seed(seed)
    model = create_model(name, **options).eval()
    return model, cost(model.config)


def layer_bytes(row: LayerCost, batch: int) -> int:
    """What a layer of the cost table must read and write at least: input and output feature maps
    for the batch, and its weights and bias once, float32."""
    feature_maps = int(np.prod(row.input_shape)) + int(np.prod(row.output_shape))
    return DTYPE_BYTES * (batch * feature_maps + row.params)


def _module_type(module: nn.Module) -> str:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return layer_type(module)
    if isinstance(module, nn.BatchNorm2d):
        return "BatchNorm"
    return type(module).__name__.removesuffix("2d")


def _tensor_bytes(values: object) -> int:
    tensors = values if isinstance(values, (tuple, list)) else (values,)
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


class LayerTimer:
    """Hooks on every leaf module that time it (forward, and with `backward` its backward) and
    record its batch mult-adds and bytes the first time it runs."""

    def __init__(
        self,
        model: nn.Module,
        types: dict[str, str],
        backward: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.clock = clock
        self.rows: dict[str, LayerTime] = {}
        self.enabled = True
        self._start: dict[str, float] = {}
        self._pending: dict[str, float] = {}  # backward of a module whose input needs no gradient
        self._handles = []
        for name, module in model.named_modules():
            if list(module.children()) or isinstance(module, SKIPPED_MODULES):
                continue
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name, module, types.get(name))))
            if backward:
                self._handles.append(module.register_full_backward_pre_hook(self._backward_pre(name)))
                self._handles.append(module.register_full_backward_hook(self._backward_post(name)))

    def _pre(self, name):
        def hook(module, inputs):
            if self.enabled:
                self._start[name] = self.clock()

        return hook

    def _post(self, name, module, known_type):
        def hook(module_, inputs, output):
            if not self.enabled:
                return
            elapsed = 1e3 * (self.clock() - self._start[name])
            row = self.rows.get(name)
            if row is None:
                mult_adds = (
                    output.numel() * module.weight[0].numel()
                    if isinstance(module, (nn.Conv2d, nn.Linear))
                    else 0
                )
                params = sum(p.numel() for p in module.parameters(recurse=False))
                weights = _tensor_bytes(
                    list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
                )
                row = self.rows[name] = LayerTime(
                    name,
                    known_type or _module_type(module),
                    mult_adds,
                    params,
                    _tensor_bytes(inputs) + _tensor_bytes(output) + weights,
                )
            row.forward_ms.append(elapsed)

        return hook

    def _backward_pre(self, name):
        def hook(module, grad_output):
            if self.enabled:
                self._start[name] = self.clock()

        return hook

    def _backward_post(self, name):
        def hook(module, grad_input, grad_output):
            if not self.enabled:
                return
            if all(g is None for g in grad_input):  # fires before the weight gradient: time it to the end
                self._pending[name] = self._start[name]
                return
            self.rows[name].backward_ms.append(1e3 * (self.clock() - self._start[name]))

        return hook

    def backward_done(self) -> None:
        now = self.clock()
        for name, start in self._pending.items():
            self.rows[name].backward_ms.append(1e3 * (now - start))
        self._pending.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _check_against_cost(rows: dict[str, LayerTime], report: CostReport, batch: int) -> None:
    """Every conv/FC row's mult-adds and bytes, measured on the tensors, equal the cost table's."""
    for layer in report.rows:
        row = rows.get(layer.name)
        if row is None:
            raise RuntimeError(f"profile: layer {layer.name} of the cost table never ran")
        expected = (layer.mult_adds * batch, layer_bytes(layer, batch))
        if (row.mult_adds, row.bytes) != expected:
            raise RuntimeError(
                f"profile: {layer.name} measured {row.mult_adds} mult-adds / {row.bytes} bytes; "
                f"the cost table says {expected[0]} / {expected[1]}"
            )


# --------------------------------------------------------------------------------------------
# Runners: a plain one (end to end) and a hooked one (per layer) per model
# --------------------------------------------------------------------------------------------
@dataclass
class Target:
    """One model being profiled: its runners and where the hooked runs leave their times."""

    name: str
    report: CostReport
    plain: Callable[[], object]
    hooked: Callable[[], object]
    collect: Callable[[], list[LayerTime]]  # in execution order
    close: Callable[[], object] | None = None


def _inputs(model: AnyModel, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    size = model.config.resolution
    num_classes = model.config.num_classes
    if num_classes is None:
        raise ValueError(f"{model.config.name} is a feature extractor (no classifier); profile needs one")
    images = torch.randn(batch, model.config.in_channels, size, size, generator=generator)
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    return images, labels


def _torch_target(
    name: str,
    model: AnyModel,
    report: CostReport,
    backend: str,
    batch: int,
    train: bool,
    seed: int,
    clock: Callable[[], float] = time.perf_counter,
) -> Target:
    images, labels = _inputs(model, batch, seed)
    channels_last = backend == "torch-channels-last"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    types = {row.name: row.type for row in report.rows}
    if not train:
        if channels_last:  # as bench's torch-channels-last: BatchNorm folded, NHWC
            # torch's overloads of Module.to leave out memory_format, which it takes (and documents)
            model = fuse_bn(model).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        model = model.eval()

        def forward():
            with torch.inference_mode():
                return model(images.contiguous(memory_format=memory_format))

        timer = LayerTimer(model, types, clock=clock)
        timer.enabled = False

        def hooked():
            timer.enabled = True
            try:
                forward()
            finally:
                timer.enabled = False

        def collect():
            rows = dict(timer.rows)
            if channels_last:  # folded: the conv carries the BatchNorm's bias now
                return list(rows.values())
            _check_against_cost(rows, report, batch)
            return list(rows.values())

        return Target(name, report, forward, hooked, collect, timer.remove)

    # Training: forward, cross-entropy, backward, SGD step. Backward hooks cannot wrap in-place ops.
    model = copy.deepcopy(model).train().to(memory_format=memory_format)  # type: ignore[call-overload]  # (as above)
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False  # type: ignore[assignment]  # an activation's flag, which nn.Module does not declare
    images = images.contiguous(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    extra = {
        "loss": LayerTime("loss", "Loss", 0, 0, 0),
        "optimizer step": LayerTime("optimizer step", "Optimizer", 0, 0, 0),
    }

    def step(timed: bool) -> None:
        logits = model(images)
        before_loss = clock()
        loss = F.cross_entropy(logits, labels)
        after_loss = clock()
        optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # the stem's input needs no gradient: see LayerTimer._backward_post
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        if timed:
            timer.backward_done()
        before_step = clock()
        optimizer.step()
        end = clock()
        if timed:
            extra["loss"].forward_ms.append(1e3 * (after_loss - before_loss))
            extra["optimizer step"].forward_ms.append(1e3 * (end - before_step))

    timer = LayerTimer(model, types, backward=True, clock=clock)
    timer.enabled = False

    def hooked_step():
        timer.enabled = True
        try:
            step(True)
        finally:
            timer.enabled = False

    def collect_step():
        rows = dict(timer.rows)
        _check_against_cost(rows, report, batch)
        return list(rows.values()) + list(extra.values())

    return Target(name, report, lambda: step(False), hooked_step, collect_step, timer.remove)


def _ort_target(
    name: str, model: AnyModel, report: CostReport, batch: int, threads: int, seed: int, workdir: Path
) -> Target:
    import onnxruntime as ort

    images, _ = _inputs(model, batch, seed)
    feed = {"input": images.numpy()}
    path = export_onnx(model, workdir / f"{name}.onnx", dynamic_batch=True)
    plain = ort_session(path, threads=threads, spinning=False)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / f"{name}-profile")
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    profiled = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    state = {"calls": 0}

    def hooked():
        state["calls"] += 1
        profiled.run(None, feed)

    def collect():
        with open(profiled.end_profiling()) as handle:
            events = [
                e for e in json.load(handle) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
            ]
        return ort_rows(events, report, batch, state["calls"])

    return Target(name, report, lambda: plain.run(None, feed), hooked, collect)


ORT_MATMUL_OPS = ("Conv", "FusedConv", "Gemm", "MatMul", "FusedGemm")


def ort_rows(events: list[dict], report: CostReport, batch: int, calls: int) -> list[LayerTime]:
    """Per-node rows from ONNX Runtime profile events of `calls` runs: the last `calls` times of
    each node; Conv/Gemm nodes named after the cost table's layers, matched in execution order and
    checked by weight shape."""
    by_node: dict[str, dict] = {}
    for event in events:
        node = by_node.setdefault(event["name"].removesuffix("_kernel_time"), {"event": event, "times": []})
        node["times"].append(event["dur"] / 1e3)
    layers = iter(report.rows)
    rows = []
    for node_name, node in by_node.items():
        args = node["event"]["args"]
        op = args.get("op_name", "?")
        times = node["times"][-calls:]
        if op in ORT_MATMUL_OPS:
            layer = next(layers, None)
            shapes = [
                next(iter(s.values()))
                for s in args.get("input_type_shape", []) + args.get("output_type_shape", [])
            ]
            if layer is None or not _same_layer(layer, shapes):
                raise RuntimeError(
                    f"profile: ONNX Runtime node {node_name} ({op}, shapes {shapes}) does not "
                    f"match the next layer of the cost table ({layer and layer.name})"
                )
            rows.append(
                LayerTime(
                    layer.name,
                    layer.type,
                    layer.mult_adds * batch,
                    layer.params,
                    layer_bytes(layer, batch),
                    times,
                )
            )
        else:
            size = sum(int(args.get(key, 0)) for key in ("activation_size", "parameter_size", "output_size"))
            rows.append(LayerTime(node_name, op, 0, 0, size, times))
    return rows


def _same_channels(actual: int, expected: int) -> bool:
    """ONNX Runtime's NCHWc layout rounds a convolution's channels up to its block size (8 with
    AVX2, 16 with AVX-512), so its profile lists e.g. 16 where the layer has 8."""
    return actual == expected or any(actual == -(-expected // block) * block for block in (8, 16))


def _same_layer(layer: LayerCost, shapes: list[list[int]]) -> bool:
    """Whether an ONNX Runtime node's input (first) and output (last) shapes, NCHW, are the
    layer's, and for a convolution its weight shape too."""
    (height, width, channels), (out_h, out_w, out_c) = layer.input_shape, layer.output_shape
    if layer.type == "FC":  # Gemm: (N, in) → (N, out); ORT prepacks the weight and does not list it
        return shapes[0][1:] == [channels] and shapes[-1][1:] == [out_c]
    (_, in_seen, *in_size), (_, out_seen, *out_size) = shapes[0], shapes[-1]
    if in_size != [height, width] or out_size != [out_h, out_w]:
        return False
    if not (_same_channels(in_seen, channels) and _same_channels(out_seen, out_c)):
        return False
    kernel = layer.filter_shape[0]
    per_group = layer.filter_shape[2] if len(layer.filter_shape) == 4 else 1  # depthwise: K×K×M
    weight_out, weight_in, *weight_size = shapes[1]
    return (
        _same_channels(weight_out, out_c)
        and _same_channels(weight_in, per_group)
        and weight_size == [kernel, kernel]
    )


# --------------------------------------------------------------------------------------------
# Profiling
# --------------------------------------------------------------------------------------------
@dataclass
class ProfileReport:
    machine: dict
    settings: dict
    ceilings: Ceilings
    profiles: list[ModelProfile]  # the model, then --compare's

    def block_speedups(self) -> list[dict]:
        """Per block present in both models: the second's mult-adds and time over the first's."""
        if len(self.profiles) < 2:
            return []
        first, second = self.profiles[0].by_block(), self.profiles[1].by_block()
        if set(first) != set(second):  # different architectures (e.g. against ResNet-50): no block pairs
            return []
        rows = []
        for block, entry in first.items():
            other = second.get(block)
            if other is None or not entry["mult_adds"] or not entry["time_ms"]:
                continue
            rows.append(
                {
                    "block": block,
                    "mult_adds": entry["mult_adds"],
                    "other_mult_adds": other["mult_adds"],
                    "time_ms": entry["time_ms"],
                    "other_time_ms": other["time_ms"],
                    "theoretical": other["mult_adds"] / entry["mult_adds"],
                    "realized": other["time_ms"] / entry["time_ms"],
                }
            )
        return rows

    def to_dict(self) -> dict:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "ceilings": {"gmacs": self.ceilings.gmacs, "gbs": self.ceilings.gbs},
            "profiles": [p.to_dict() for p in self.profiles],
            "block_speedups": self.block_speedups(),
        }


def profile(
    models: list[tuple[str, dict]],
    backend: str = "torch",
    batch: int = 1,
    train: bool = False,
    threads: int = 2,
    repeats: int = 10,
    warmup: int = 2,
    seed: int = 0,
    clock: str = "wall",
    progress: bool = False,
) -> ProfileReport:
    """Profile each (name, options) model on `backend`, all interleaved round by round.

    clock "wall" measures latency; "cpu" measures this process's CPU time (all its threads), which
    other programs' load does not stretch: with threads=1 it is the latency of an idle machine.
    """
    _check_settings(backend, clock, train, batch, threads, repeats)
    with measuring(threads, warmup, repeats) as conditions:
        ceilings = measure_ceilings(threads, clock=CLOCKS[clock])
        with tempfile.TemporaryDirectory(prefix="mobilenets-profile-") as workdir:
            targets = _targets(models, backend, batch, train, threads, seed, clock, Path(workdir))
            times = _time_targets(targets, warmup, repeats, clock, progress)
            profiles = [
                _model_profile(target, backend, batch, train, repeats, times[(index, "plain")])
                for index, target in enumerate(targets)
            ]
    settings = {
        "backend": backend,
        "batch": batch,
        "train": train,
        "clock": clock,
        "dtype": "float32",
        **conditions,
    }
    return ProfileReport(machine_description(), settings, ceilings, profiles)


def _check_settings(backend: str, clock: str, train: bool, batch: int, threads: int, repeats: int) -> None:
    """The ValueError for a setting `profile` cannot measure, before anything is built."""
    if backend not in PROFILE_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; profile supports {', '.join(PROFILE_BACKENDS)}")
    if clock not in CLOCKS:
        raise ValueError(f"--clock must be one of {', '.join(CLOCKS)}; got {clock!r}")
    if clock == "cpu" and backend == "onnxruntime":
        raise ValueError("--clock cpu applies to the torch backends; ONNX Runtime reports wall time per node")
    if train and backend == "onnxruntime":
        raise ValueError(
            "--train profiles PyTorch's training step; use --backend torch or torch-channels-last"
        )
    for label, value in (("--batch-size", batch), ("--threads", threads), ("--repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive integer; got {value!r}")


def _targets(
    models: list[tuple[str, dict]],
    backend: str,
    batch: int,
    train: bool,
    threads: int,
    seed: int,
    clock: str,
    workdir: Path,
) -> list[Target]:
    """Each (name, options) model built and made ready to run on `backend`."""
    targets = []
    for name, options in models:
        model, report = build_model(name, options, seed)
        if backend == "onnxruntime":
            targets.append(_ort_target(name, model, report, batch, threads, seed, workdir))
        else:
            targets.append(_torch_target(name, model, report, backend, batch, train, seed, CLOCKS[clock]))
    return targets


def _time_targets(targets: list[Target], warmup: int, repeats: int, clock: str, progress: bool) -> dict:
    """Every target's plain and hooked runner timed interleaved, round by round: the times by
    (index, "plain" or "hooked")."""
    runners = {}
    for index, target in enumerate(targets):
        runners[(index, "plain")] = target.plain
        runners[(index, "hooked")] = target.hooked
    for target in targets:  # warm up with hooks off, so the hooked rounds hold `repeats` times
        for _ in range(warmup):
            target.plain()
    for target in targets:
        target.hooked()  # one untimed call records the layers; its times are dropped in _model_profile
    return time_interleaved(
        runners,
        warmup=0,
        repeats=repeats,
        clock=CLOCKS[clock],
        progress="profile" if progress else None,
    )


def _model_profile(
    target: Target, backend: str, batch: int, train: bool, repeats: int, plain_times: list[float]
) -> ModelProfile:
    """A timed target's layers (the last `repeats` hooked calls of each) and its plain latencies;
    the target is closed."""
    rows = target.collect()
    for row in rows:
        row.forward_ms = row.forward_ms[-repeats:]
        row.backward_ms = row.backward_ms[-repeats:]
    if target.close:
        target.close()
    return ModelProfile(
        target.name,
        backend,
        batch,
        target.report.resolution[0],
        train,
        rows,
        [1e3 * t for t in plain_times],
    )


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def render_layers(profile_: ModelProfile, fmt: str) -> str:
    header = [
        "layer",
        "type",
        "mult-adds (M)",
        "params",
        "MB moved",
        "MAC/byte",
        "ms",
        "GMAC/s",
        "GB/s",
        "share",
    ]
    if profile_.train:
        header[6:7] = ["fwd ms", "fwd+bwd ms"]
    rows = []
    for r in profile_.rows:
        times = [_num(r.forward_time_ms, 3), _num(r.time_ms, 3)] if profile_.train else [_num(r.time_ms, 3)]
        rows.append(
            [
                r.name,
                r.type,
                _num(r.mult_adds / 1e6),
                f"{r.params:,}",
                _num(r.bytes / 1e6, 3),
                _num(r.intensity),
                *times,
                _num(r.gmacs, 1),
                _num(r.gbs, 1),
                f"{100 * r.time_ms / profile_.layers_ms:.1f}%",
            ]
        )
    return render_rows(header, rows, fmt)


def render_types(profile_: ModelProfile, fmt: str) -> str:
    header = ["type", "layers", "mult-adds", "ms", "time", "GMAC/s"]
    rows = [
        [
            e["type"],
            e["layers"],
            f"{e['mult_adds_percent']:.1f}%",
            _num(e["time_ms"], 3),
            f"{e['time_percent']:.1f}%",
            _num(e["gmacs"], 1),
        ]
        for e in profile_.by_type()
    ]
    return render_rows(header, rows, fmt)


def render_blocks(report: ProfileReport, fmt: str) -> str:
    first, second = report.profiles[0].model, report.profiles[1].model
    header = ["block", f"{first} ms", f"{second} ms", "mult-adds ratio", "time ratio", "realized / theory"]
    rows = [
        [
            b["block"],
            _num(b["time_ms"], 3),
            _num(b["other_time_ms"], 3),
            f"{b['theoretical']:.2f}×",
            f"{b['realized']:.2f}×",
            f"{100 * b['realized'] / b['theoretical']:.0f}%",
        ]
        for b in report.block_speedups()
    ]
    return render_rows(header, rows, fmt)


def summary_lines(report: ProfileReport) -> list[str]:
    s, m, c = report.settings, report.machine, report.ceilings
    mode = "training step (forward, backward, SGD)" if s["train"] else "inference"
    lines = [
        f"{m['cpu']}, {m['cores']} cores ({', '.join(m['cpu_features'])}); torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime']}",
        f"backend {s['backend']}, batch {s['batch']}, {mode}, {s['threads']} threads, {s['clock']} clock, "
        f"fastest of {s['repeats']} interleaved rounds; load average {s['load_average_before']} → "
        f"{s['load_average_after']}; OMP_WAIT_POLICY {s['omp_wait_policy']}",
        f"ceilings: compute {c.gmacs:.1f} GMAC/s ({MATMUL_SIZE}² float32 matmul), bandwidth {c.gbs:.1f} GB/s "
        f"({COPY_BYTES >> 20} MB copy); ridge point {c.gmacs / c.gbs:.1f} MAC/byte",
    ]
    for p in report.profiles:
        verdict = "within 15%" if abs(1 - p.coverage) <= 0.15 else "NOT within 15%"
        lines.append(
            f"{p.model}: end to end {p.total_ms:.3f} ms; the layers of a run add up to "
            f"{p.layers_run_ms:.3f} ms, {100 * p.coverage:.0f}% of it ({verdict}); each layer's fastest "
            f"time summed: {p.layers_ms:.3f} ms"
        )
    if len(report.profiles) == 2:
        a, b = report.profiles
        lines.append(
            f"{b.model} / {a.model}: {b.mult_adds / a.mult_adds:.2f}× the mult-adds, "
            f"{b.total_ms / a.total_ms:.2f}× the time end to end"
        )
    return lines


def render(report: ProfileReport, fmt: str = "table") -> str:
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2)
    if fmt == "csv":  # one table: every layer of every model
        parts = []
        for p in report.profiles:
            parts.append(f"# {p.model}\n" + render_layers(p, "csv"))
        return "\n".join(parts)
    heading = (lambda text: f"## {text}") if fmt == "markdown" else (lambda text: text)
    parts = ["\n".join(summary_lines(report))]
    for p in report.profiles:
        parts.append(heading(f"{p.model} at {p.resolution}×{p.resolution}, per layer"))
        parts.append(render_layers(p, fmt))
        parts.append(heading(f"{p.model}, by layer type"))
        parts.append(render_types(p, fmt))
    if report.block_speedups():
        parts.append(heading(f"per block: {report.profiles[1].model} against {report.profiles[0].model}"))
        parts.append(render_blocks(report, fmt))
    return "\n\n".join(parts)


def plot_roofline(report: ProfileReport, path: str | os.PathLike) -> Path:
    """Each layer with mult-adds a point (intensity, achieved GMAC/s) under the measured roofline."""
    c, s = report.ceilings, report.settings
    points = [(r.intensity, r.gmacs) for p in report.profiles for r in p.rows if r.intensity and r.gmacs]
    low = min([i for i, _ in points] + [0.1]) / 2
    high = max([i for i, _ in points] + [c.gmacs / c.gbs]) * 2
    xs = np.geomspace(low, high, 200)
    with figure(path) as (_, axes):
        axes.plot(
            xs,
            [c.bound(x) for x in xs],
            color="black",
            linewidth=1.5,
            label=f"roofline: {c.gbs:.1f} GB/s, {c.gmacs:.1f} GMAC/s",
        )
        markers = ("o", "^", "s")
        colors: dict[str, str] = {}
        for index, p in enumerate(report.profiles):
            for r in p.rows:
                if not (r.intensity and r.gmacs):
                    continue
                color = colors.setdefault(r.type, f"C{len(colors) % 10}")
                axes.scatter(r.intensity, r.gmacs, color=color, marker=markers[index % 3], s=28, alpha=0.8)
        for kind, color in colors.items():
            axes.scatter([], [], color=color, label=kind)
        for index, p in enumerate(report.profiles):
            axes.scatter([], [], color="gray", marker=markers[index % 3], label=p.model)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("arithmetic intensity (mult-adds per byte moved)")
        axes.set_ylabel("achieved GMAC/s")
        axes.set_title(
            f"{', '.join(p.model for p in report.profiles)}: {s['backend']}, batch {s['batch']}, "
            f"{s['threads']} threads"
        )
        axes.legend(loc="lower right")
    return Path(path)
