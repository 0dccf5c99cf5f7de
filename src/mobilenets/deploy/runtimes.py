"""The inference runtimes a model can be exported to, and the exported files eval/predict/bench run.

Each runtime is one `Runtime` entry in `RUNTIMES`: its file suffix, the pip extra that installs it,
the precisions it offers, an export function and a runner. Everything else (the command's flags,
eval, predict, bench, the accuracy gates) goes through this table, so a new runtime is one module
with `export_<format>()` and a runner class, plus one entry here (docs/architecture.md).

Every exported file gets a sidecar, `<file>.json`, written after the file and atomically: the
model's config, class names and preprocessing (what eval and predict need to feed it images), the
precision, the batch, the validation split of the checkpoint it came from, and the SHA-256 of every
file the export wrote. A file that was truncated or replaced after export no longer matches its
hashes and is refused with one line instead of a runtime's stack trace. Where the format has room
for metadata (ONNX metadata_props, OpenVINO rt_info) the same JSON is embedded in the file too.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from ..files import write_atomically
from ..models import MobileNet
from . import sidecar
from .base import ModelSource, native_output_silenced, require
from .executorch import ExecutorchRunner, export_executorch
from .export import ONNX_PRECISIONS, OnnxRunner, export_onnx_model
from .openvino import PRECISIONS as OPENVINO_PRECISIONS
from .openvino import OpenVINORunner, cpu_capabilities, export_openvino
from .tflite import TfliteRunner, export_tflite

METADATA_KEY = "mobilenets"


class FileRunner(Protocol):
    """What `Runtime.open` returns: an exported file ready to run (OnnxRunner, OpenVINORunner, ...)."""

    def run(self, images: np.ndarray) -> np.ndarray:
        """float32 N×C×H×W normalized images in, float32 logits out."""
        ...


@dataclass(frozen=True)
class Runtime:
    format: str  # the name `--format` takes
    title: str  # how messages name it
    suffix: str  # of the file eval/predict/bench are given
    companions: tuple[str, ...]  # suffixes of the files written beside it (OpenVINO's .bin)
    extra: str  # pip install 'mobilenets[EXTRA]'
    packages: tuple[str, ...]  # the modules that extra provides
    precisions: tuple[str, ...]  # the first is the default
    dynamic_batch: bool  # can a file take any batch size (else it records one)
    export: Callable[..., Path]  # (model, path, *, precision, calibration, batch_size, resolution)
    open: Callable[..., FileRunner]  # (path, threads, precision) -> runner with input_shape and run()
    embed: Callable[[Path, str], None] | None = None  # writes the sidecar's JSON into the file
    # Its native runtime aborts the process (SIGABRT, SIGSEGV) on some malformed files that pass
    # the first-bytes check: such a file is opened and run once in a child process first, while
    # this process imports `probe_imports` (safe: no file is parsed), so the two overlap.
    may_abort: bool = False
    probe_imports: str | None = None

    def files(self, path: Path) -> list[Path]:
        return [path, *(path.with_suffix(suffix) for suffix in self.companions)]


def _with_precision(export: Callable[..., Path]) -> Callable[..., Path]:
    """An export_<format>(..., int8=bool) called the registry's way, with `precision`."""

    def adapted(
        model: MobileNet,
        path: str | os.PathLike,
        *,
        precision: str,
        calibration: np.ndarray | None,
        batch_size: int,
        resolution: int,
    ) -> Path:
        return export(
            model,
            path,
            int8=precision == "int8",
            calibration=calibration,
            batch_size=batch_size,
            resolution=resolution,
        )

    return adapted


def _embed_onnx(path: Path, text: str) -> None:
    import onnx

    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    onnx.helper.set_model_props(model, {**dict(kept), METADATA_KEY: text})
    onnx.save(model, str(path))


def _embed_openvino(path: Path, text: str) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    model.set_rt_info(text, [METADATA_KEY])
    # The model reads its weights from the .bin while it lives: write beside it, then move over it.
    rewritten = path.with_name(path.stem + ".embedded.xml")
    ov.save_model(model, str(rewritten), compress_to_fp16=False)
    del model
    os.replace(rewritten.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(rewritten, path)


RUNTIMES: dict[str, Runtime] = {
    runtime.format: runtime
    for runtime in (
        Runtime(
            "onnx",
            "ONNX Runtime",
            ".onnx",
            (),
            "export",
            ("onnx", "onnxscript", "onnxruntime"),
            ONNX_PRECISIONS,
            True,
            export_onnx_model,
            lambda path, threads, precision: OnnxRunner(path, threads),
            _embed_onnx,
        ),
        Runtime(
            "openvino",
            "OpenVINO",
            ".xml",
            (".bin",),
            "openvino",
            ("openvino", "nncf", "onnx", "onnxscript"),
            OPENVINO_PRECISIONS,
            True,
            export_openvino,
            OpenVINORunner,
            _embed_openvino,
        ),
        # The phone formats are exported for one batch size (dynamic_batch False: 1 unless asked):
        # ExecuTorch files take any batch up to max(batch_size, 64), LiteRT files exactly theirs.
        Runtime(
            "executorch",
            "ExecuTorch",
            ".pte",
            (),
            "executorch",
            ("executorch",),
            ("f32", "int8"),
            False,
            _with_precision(export_executorch),
            lambda path, threads, precision: ExecutorchRunner(path, threads),
            may_abort=True,
            probe_imports="executorch.runtime",
        ),
        Runtime(
            "tflite",
            "LiteRT",
            ".tflite",
            (),
            "tflite",
            ("litert_torch", "ai_edge_litert"),
            ("f32", "int8"),
            False,
            _with_precision(export_tflite),
            lambda path, threads, precision: TfliteRunner(path, threads),
            may_abort=True,
            probe_imports="ai_edge_litert.interpreter",
        ),
    )
}

# bench backend -> (format, precision): the runtime paths `bench` times and the accuracy gates judge.
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("onnx", "f32"),
    "onnxruntime-int8": ("onnx", "int8"),
    "openvino": ("openvino", "f32"),
    "openvino-bf16": ("openvino", "bf16"),
    "openvino-int8": ("openvino", "int8"),
    "executorch": ("executorch", "f32"),
    "executorch-int8": ("executorch", "int8"),
    "tflite": ("tflite", "f32"),
    "tflite-int8": ("tflite", "int8"),
}


def runtime_for_format(name: str) -> Runtime:
    if name not in RUNTIMES:
        raise ValueError(f"unsupported --format {name!r}; supported: {', '.join(RUNTIMES)}")
    return RUNTIMES[name]


def runtime_for_file(path: str | os.PathLike) -> Runtime | None:
    """The runtime whose files end like `path`, or None (then it is a checkpoint, or nothing)."""
    suffix = Path(path).suffix.lower()
    return next((r for r in RUNTIMES.values() if r.suffix == suffix), None)


def require_runtime(runtime: Runtime) -> None:
    """Fail with the one `pip install` that fixes it when the runtime's packages are missing."""
    for package in runtime.packages:
        require(package, runtime.extra, runtime.title)


def check_precision(runtime: Runtime, precision: str) -> None:
    if precision not in runtime.precisions:
        raise ValueError(
            f"{runtime.title} ({runtime.format}) exports precisions "
            f"{', '.join(runtime.precisions)}; got {precision!r}"
        )


# --------------------------------------------------------------------------------------------
# Export: the file(s), then the sidecar
# --------------------------------------------------------------------------------------------
def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_model(
    source: ModelSource,
    runtime: Runtime,
    path: str | os.PathLike,
    *,
    precision: str,
    calibration: np.ndarray | None = None,
    batch_size: int | None = None,
    build: Callable[..., Path] | None = None,
) -> Path:
    """Export `source.model` for `runtime` at `path` with its sidecar; returns `path`.

    build: what writes the file, when not `runtime.export` (same arguments), e.g. ONNX int8
    quantizing a float file already written.
    The files are written in a temporary folder beside `path` and moved into place only when the
    export succeeded, so a failed export leaves any earlier file at `path` untouched. batch_size
    None: any batch where the runtime allows it, else 1.
    """
    require_runtime(runtime)
    check_precision(runtime, precision)
    path = Path(path)
    if path.suffix.lower() != runtime.suffix:
        raise ValueError(f"--output for {runtime.title} must end in {runtime.suffix}; got {path}")
    if batch_size is None and not runtime.dynamic_batch:
        batch_size = 1
    size = int(source.preprocessing["size"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        staged = (build or runtime.export)(
            source.model,
            Path(tmp) / path.name,
            precision=precision,
            calibration=calibration,
            batch_size=batch_size,
            resolution=size,
        )
        info = sidecar.build(
            runtime=runtime.format,
            precision=precision,
            batch=batch_size,
            config=source.model.config,
            class_names=source.class_names,
            preprocessing=source.preprocessing,
            split=source.split,
            source=source.label,
            calibration_images=None if calibration is None or precision != "int8" else len(calibration),
        )
        if runtime.embed is not None:
            runtime.embed(staged, json.dumps(info))
        info["files"] = {p.name: _sha256(p) for p in runtime.files(staged)}
        for staged_file, final in zip(runtime.files(staged)[::-1], runtime.files(path)[::-1], strict=True):
            os.replace(staged_file, final)  # companions first: the main file appears last
    write_atomically(sidecar_path(path), json.dumps(info, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Exported files: check, open, run
# --------------------------------------------------------------------------------------------
class RunnerModule(nn.Module):
    """A runner as a module (torch tensors in and out), so `evaluate` runs an exported file the way
    it runs a checkpoint's model."""

    def __init__(self, runner: FileRunner, config: ModelConfig):
        super().__init__()
        self.runner = runner
        self.config = config  # as a MobileNet has it: num_classes, resolution, ...

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runner.run(images.detach().cpu().contiguous().numpy()))


@dataclass
class ExportedModel:
    """An exported file ready to run, with what its sidecar says (the fields a `Checkpoint` has that
    evaluate and predict read: model, class_names, preprocessing, metadata)."""

    path: Path
    runtime: Runtime
    info: dict  # the sidecar
    runner: FileRunner
    model: RunnerModule

    @property
    def class_names(self) -> list[str] | None:
        return self.info["class_names"]

    @property
    def preprocessing(self) -> dict:
        return self.info["preprocessing"]

    @property
    def metadata(self) -> dict:
        return {"split": self.info["split"]} if self.info.get("split") else {}

    @property
    def precision(self) -> str:
        return self.info["precision"]


def read_sidecar(path: str | os.PathLike, runtime: Runtime) -> dict:
    """The sidecar of `path`, checked field by field (sidecar.py) and against the file(s) it describes."""
    path = Path(path)
    again = f"export it again (mobilenets export CHECKPOINT --format {runtime.format})"
    if not sidecar_path(path).is_file():
        raise ValueError(
            f"{path} has no sidecar {sidecar_path(path).name} beside it (it records the "
            f"preprocessing, class names and precision that eval and predict need); {again}"
        )
    info = sidecar.read(sidecar_path(path), again)
    if info["runtime"] != runtime.format:
        raise ValueError(
            f"{sidecar_path(path)} describes a {info['runtime']} file, not {runtime.format}; {again}"
        )
    try:
        check_precision(runtime, info["precision"])
    except ValueError as error:
        raise ValueError(f"{sidecar_path(path)}: {error}; {again}") from None
    for file in runtime.files(path):
        if not file.is_file():
            raise ValueError(f"{file} is missing ({runtime.title} needs it beside {path.name}); {again}")
        if info["files"].get(file.name) != _sha256(file):
            raise ValueError(
                f"{file} does not match its sidecar {sidecar_path(path).name} (SHA-256 "
                f"differs): it was changed or truncated after export; {again}"
            )
    return info


# Where each format's files begin and what they begin with, checked before a native runtime parses
# the bytes: ExecuTorch and LiteRT abort the whole process (SIGABRT) on a malformed file.
SIGNATURES = {
    "onnx": (0, b"\x08"),  # protobuf field 1 (ir_version), a varint
    "openvino": (0, b"<"),  # XML
    "executorch": (4, b"ET"),  # flatbuffer file identifier "ET12", "ET13", ...
    "tflite": (4, b"TFL3"),  # flatbuffer file identifier
}


def check_signature(path: Path, runtime: Runtime, again: str) -> None:
    """Raise ValueError when `path` does not begin as a file of its format does."""
    offset, expected = SIGNATURES.get(runtime.format, (0, b""))
    with open(path, "rb") as handle:
        head = handle.read(offset + len(expected))
    if head[offset:] != expected:
        where = f"bytes {offset}-{offset + len(expected) - 1}"
        raise ValueError(
            f"{path} is not a {runtime.title} file ({where} are {head[offset:]!r}, a "
            f"{runtime.suffix} file has {expected!r} there); {again}"
        )


PROBE_ENV = "MOBILENETS_IN_PROBE"  # set in the child: it opens the file directly
PROBE_TIMEOUT_S = 300
_PROBED: set[tuple[str, int, int]] = set()  # files this process has seen open and run safely
_PROBE = """
import sys
import numpy as np
from mobilenets.deploy.runtimes import RUNTIMES
runtime, path, precision = RUNTIMES[sys.argv[1]], sys.argv[2], sys.argv[3]
runner = runtime.open(path, 1, precision)
shape = [1 if size is None else size for size in runner.input_shape]
runner.run(np.zeros(shape, dtype=np.float32))
"""


def check_in_child(path: Path, runtime: Runtime, precision: str, again: str) -> None:
    """Open `path` and run one batch in a child process; raise one ValueError when the runtime
    dies there from a signal (a native abort would otherwise end the CLI with exit 134 and no
    message). A Python error in the child is left to the in-process load, which names it. A file
    seen healthy is not probed again by this process until it changes."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if os.environ.get(PROBE_ENV) or key in _PROBED:
        return
    env = {**os.environ, PROBE_ENV: "1", "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", _PROBE, runtime.format, str(path), precision]
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if runtime.probe_imports:  # meanwhile, what this process needs anyway (seconds for ExecuTorch)
            with native_output_silenced():
                importlib.import_module(runtime.probe_imports)
        returncode = child.wait(timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ValueError(
            f"{runtime.title} did not finish opening {path} within {PROBE_TIMEOUT_S} s (in a child "
            f"process); the file is damaged or not a model: {again}"
        ) from None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if returncode < 0 or returncode in (134, 139):  # killed by a signal (134: abort(), 139: SIGSEGV)
        number = -returncode if returncode < 0 else returncode - 128
        name = signal.Signals(number).name if number in {s.value for s in signal.Signals} else number
        raise ValueError(
            f"{runtime.title} crashed ({name}) reading {path}, in a child process, so nothing else "
            f"was affected: the file is damaged; {again}"
        )
    if returncode == 0:
        _PROBED.add(key)


def load_exported(path: str | os.PathLike, threads: int | None = None) -> ExportedModel:
    """Open an exported file (.onnx, .xml, ...) with its runtime, after checking it against its sidecar."""
    path = Path(path)
    runtime = runtime_for_file(path)
    if runtime is None:
        suffixes = ", ".join(r.suffix for r in RUNTIMES.values())
        raise ValueError(f"{path} is not an exported model file (expected one of {suffixes})")
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    require_runtime(runtime)
    info = read_sidecar(path, runtime)
    config = ModelConfig.from_dict(info["config"])  # checked by read_sidecar
    again = f"export it again (mobilenets export CHECKPOINT --format {runtime.format})"
    check_signature(path, runtime, again)
    if runtime.may_abort:
        check_in_child(path, runtime, info["precision"], again)
    try:
        runner = runtime.open(path, threads, info["precision"])
    except Exception as error:  # each runtime raises its own types for a file it cannot read
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise ValueError(f"{runtime.title} cannot load {path}: {first}; {again}") from None
    return ExportedModel(path, runtime, info, runner, RunnerModule(runner, config))


def bf16_unavailable_reason() -> str | None:
    """Why OpenVINO cannot run bf16 here, or None when it can."""
    capabilities = cpu_capabilities()
    if "BF16" in capabilities:
        return None
    return (
        f"this CPU has no bf16 support in OpenVINO (capabilities: {', '.join(capabilities)}; bf16 needs "
        f"AVX-512 BF16 or AMX): OpenVINO would run it in f32"
    )
