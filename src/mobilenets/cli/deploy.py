"""`mobilenets export`, `mobilenets bench` and `mobilenets serve`: the command line of deploy/."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..costs.reference import AnyModel, create_reference_model, is_reference_model
from ..data import ImageFolder, list_images
from ..deploy.base import (
    ModelSource,
    compare_predictions,
    default_preprocessing,
    labels_for_model,
    load_images,
    load_source,
    run_torch,
)
from ..deploy.bench import BACKENDS, DEFAULT_BACKENDS, render_text, run_benchmark
from ..deploy.export import (
    DEFAULT_OPSET,
    INT8_SETTINGS,
    MAX_OPSET,
    MIN_OPSET,
    check_opset,
    compare_with_torch,
    export_onnx_model,
    ort_session,
    quantize_int8,
    run_session,
    summarize_graph,
)
from ..deploy.runtimes import (
    RUNTIMES,
    Runtime,
    bf16_unavailable_reason,
    check_precision,
    export_model,
    load_exported,
    require_runtime,
    runtime_for_format,
    sidecar_path,
)
from ..deploy.web import (
    WEB_RUNTIME_ENV,
    assemble,
    check_web_target,
    find_web_runtime,
    make_server,
    runtime_version,
)
from ..files import replace_folder, umask
from ..zoo import list_models
from .options import OLD, add_model_options, add_option, deprecated, model_options_from_args

CALIBRATION_IMAGES = 512  # enough for min-max ranges to settle (docs/deployment.md)


def add_calibration_options(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--calibration", metavar="DATA", help=help)
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=CALIBRATION_IMAGES,
        metavar="N",
        help=f"images drawn from DATA to calibrate on (default {CALIBRATION_IMAGES})",
    )


# --------------------------------------------------------------------------------------------
# Command line: `mobilenets export`
# --------------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's commands to `mobilenets`."""
    configure_export_parser(subparsers)
    configure_bench_parser(subparsers)
    configure_serve_parser(subparsers)


def configure_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="ONNX, OpenVINO, ExecuTorch, LiteRT (float, int8) or web")
    p.add_argument(
        "model",
        metavar="MODEL_OR_FILE",
        help=f"a checkpoint file, or a zoo model name ({', '.join(list_models())}) with random weights",
    )
    p.add_argument(
        "--format",
        default="onnx",
        help=f"output format: {', '.join(RUNTIMES)}, or web (a "
        "folder: page + ONNX model + ONNX Runtime Web, see --web-runtime) (default onnx)",
    )
    precisions = "; ".join(f"{r.format}: {'|'.join(r.precisions)}" for r in RUNTIMES.values())
    p.add_argument("--precision", help=f"{precisions} (default f32; int8 needs --calibration)")
    add_option(
        p,
        "--output",
        help="the file to write (default: next to the checkpoint, or "
        "./NAME.SUFFIX for a zoo model: .onnx, .xml for OpenVINO, .pte, .tflite); its sidecar "
        "FILE.json goes beside it",
    )
    add_option(
        p,
        "--batch-size",
        dest="batch_size",
        type=int,
        metavar="N",
        help="fix the file's batch size at N (default: onnx 1, openvino any; executorch: "
        "any up to max(N, 64), N default 1; tflite: N, default 1)",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET}-{MAX_OPSET} (default {DEFAULT_OPSET})",
    )
    p.add_argument("--dynamic-batch", action="store_true", help="onnx: any batch size (default: fixed at 1)")
    p.add_argument(
        "--fp16",
        action="store_true",
        help="onnx: --precision f16, float16 weights and activations (float32 inputs/outputs)",
    )
    p.add_argument("--int8", action="store_true", help="--precision int8 (onnx: also writes the float model)")
    add_calibration_options(p, "image folder (class-per-folder or flat) for --int8")
    p.add_argument(
        "--int8-setting",
        default="default",
        metavar="NAME",
        help=f"one of: {', '.join(INT8_SETTINGS)} (default: default, see docs/deployment.md)",
    )
    p.add_argument(
        "--eval",
        metavar="DATA",
        help="labelled image folder for the int8 agreement and accuracy "
        "(default: other images of --calibration)",
    )
    p.add_argument(
        "--eval-images",
        type=int,
        default=1000,
        metavar="N",
        help="images used to compare int8 with float (default 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="which images are drawn; weights of zoo models")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace files an earlier export wrote (each is replaced only once its new version is complete)",
    )
    p.add_argument(
        "--web-runtime",
        metavar="DIR",
        help=f"--format web: an installed onnxruntime-web to "
        f"copy into the folder (default ${WEB_RUNTIME_ENV}, else ./.web-runtime from `make "
        f"web-runtime`)",
    )
    add_model_options(p)
    p.set_defaults(run=run_export)
    return p


def _precision(args: argparse.Namespace) -> str:
    """--precision, or what --int8 / --fp16 (the older spellings) ask for."""
    implied = [p for p, flag in (("int8", args.int8), ("f16", args.fp16)) if flag]
    if len(implied) > 1:
        raise ValueError("--int8 and --fp16 are alternatives; choose one")
    if args.precision and implied and implied[0] != args.precision:
        raise ValueError(f"--{'fp16' if args.fp16 else 'int8'} contradicts --precision {args.precision}")
    return args.precision or (implied[0] if implied else "f32")


def _default_stem(source: ModelSource) -> Path:
    """Where an export goes unless -o says: beside the checkpoint, or ./NAME for a zoo model."""
    return Path(source.label).with_suffix("") if source.from_checkpoint else Path(source.label)


def _output_path(args: argparse.Namespace, source: ModelSource, runtime: Runtime, precision: str) -> Path:
    if args.output:
        return Path(args.output)
    # ONNX: the float file keeps the plain name (its int8 sibling is NAME.int8.onnx)
    tag = "" if precision == "f32" or runtime.format == "onnx" else f".{precision}"
    stem = _default_stem(source)
    return stem.with_name(stem.name + tag + runtime.suffix)


def _check_export_args(args: argparse.Namespace) -> tuple[Runtime, str]:
    runtime = runtime_for_format(args.format)
    precision = _precision(args)
    check_precision(runtime, precision)
    check_opset(args.opset)
    if precision == "int8" and not args.calibration:
        raise ValueError(
            "--int8 needs --calibration DATA, a folder of images like the ones the model will see"
        )
    if precision != "int8" and (args.calibration or args.eval):
        raise ValueError("--calibration and --eval apply with --int8 only")
    if args.int8_setting not in INT8_SETTINGS:
        raise ValueError(
            f"unknown --int8-setting {args.int8_setting!r}; available: {', '.join(INT8_SETTINGS)}"
        )
    if runtime.format != "onnx":
        onnx_only = [
            flag
            for flag, used in (
                ("--opset", args.opset != DEFAULT_OPSET),
                ("--dynamic-batch", args.dynamic_batch),
                ("--int8-setting", args.int8_setting != "default"),
            )
            if used
        ]
        if onnx_only:
            raise ValueError(f"{onnx_only[0]} applies to --format onnx only")
    for flag, value in (
        ("--calibration-images", args.calibration_images),
        ("--eval-images", args.eval_images),
        ("--batch-size", 1 if args.batch_size is None else args.batch_size),
    ):
        if value < 1:
            raise ValueError(f"{flag} must be a positive integer; got {value}")
    if args.batch_size is not None and args.batch_size > MAX_EXPORT_BATCH:
        raise ValueError(
            f"--batch-size {args.batch_size:,} is more than {MAX_EXPORT_BATCH:,}: the exporters trace the "
            f"model on a batch that size (at 224 px, 1,000,000 images are 600 GB); fix a smaller batch, or "
            f"use --dynamic-batch (onnx) or omit it (openvino: any batch)"
        )
    return runtime, precision


MAX_EXPORT_BATCH = 4096  # a fixed batch beyond this is a typo: the trace alone would allocate gigabytes


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


@dataclass
class Int8Images:
    """The images --int8 calibrates on, and the held-out ones its agreement is measured on."""

    calibration_folder: ImageFolder
    calibration: np.ndarray
    eval_folder: ImageFolder
    eval_images: np.ndarray
    eval_labels: np.ndarray | None


def _int8_images(
    args: argparse.Namespace, source: ModelSource, calibration_folder: ImageFolder, eval_folder: ImageFolder
) -> Int8Images:
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(calibration_folder.paths))
    calibration_paths = [calibration_folder.paths[i] for i in order[: args.calibration_images]]
    if eval_folder is calibration_folder:  # the images not used to calibrate
        eval_indices = order[args.calibration_images : args.calibration_images + args.eval_images]
    else:
        eval_indices = rng.permutation(len(eval_folder.paths))[: args.eval_images]
    labels = labels_for_model(eval_folder, source.class_names, source.model.config.num_classes)
    return Int8Images(
        calibration_folder,
        load_images(calibration_paths, source.preprocessing, "calibration images"),
        eval_folder,
        load_images(
            [eval_folder.paths[i] for i in eval_indices],
            source.preprocessing,
            "images to compare int8 with float",
        ),
        None if labels is None else labels[eval_indices],
    )


def _calibration_note(images: Int8Images, requested: int) -> list[str]:
    """One line when the folder held fewer calibration images than asked for and recommended."""
    count = len(images.calibration)
    if count >= min(requested, CALIBRATION_IMAGES):
        return []
    return [
        f"note: calibrated on {count} image{'s' if count != 1 else ''} (all the folder holds), fewer "
        f"than the {CALIBRATION_IMAGES} "
        "recommended: the activation ranges may not settle; a larger --calibration folder of images "
        "like the model will see gives a more faithful int8 model"
    ]


def _agreement_lines(
    images: Int8Images, float_logits: np.ndarray, int8_logits: np.ndarray, reference: str
) -> list[str]:
    if len(images.eval_images) == 0:
        return ["int8 vs float: no images left to compare on (pass --eval DATA)"]
    result = compare_predictions(float_logits, int8_logits, images.eval_labels)
    lines = [
        f"int8 vs float ({reference}) on {result.images} images from {images.eval_folder.root}: "
        f"top-1 agreement {_percent(result.top1_agreement)}"
    ]
    if result.float_accuracy is not None and result.quantized_accuracy is not None:  # (set together)
        lines.append(
            f"accuracy: float {_percent(result.float_accuracy)}, int8 {_percent(result.quantized_accuracy)} "
            f"({100 * (result.quantized_accuracy - result.float_accuracy):+.2f} points)"
        )
    else:
        lines.append("accuracy: n/a (the images are unlabelled or their classes do not match the model's)")
    return lines


def run_export(args: argparse.Namespace) -> str:
    if args.format == "web":
        return run_web_export(args)
    if args.web_runtime:
        raise ValueError("--web-runtime applies to --format web only")
    runtime, precision = _check_export_args(args)
    calibration_folder, eval_folder, source = _export_inputs(args, runtime, precision)
    output = _output_path(args, source, runtime, precision)
    if output.suffix != runtime.suffix:
        raise ValueError(f"--output must end in {runtime.suffix} for --format {runtime.format}; got {output}")
    targets = _export_targets(runtime, output, precision)
    existing = [path for path in targets if path.exists()]
    if existing and not args.force:
        more = f" (and {len(existing) - 1} more files of this export)" if len(existing) > 1 else ""
        raise ValueError(f"{existing[0]} exists{more}: pass --force to replace it, or choose another -o")
    try:
        return _run_export(args, runtime, precision, source, output, calibration_folder, eval_folder)
    except BaseException:
        for path in targets:  # a failed export leaves no file of its own behind
            if path not in existing and path.exists():
                path.unlink()
        raise


def _export_inputs(
    args: argparse.Namespace, runtime: Runtime, precision: str
) -> tuple[ImageFolder | None, ImageFolder | None, ModelSource]:
    """The runtime's packages, the calibration and evaluation folders and the model: everything the
    user named must exist before minutes of export and calibration start."""
    require_runtime(runtime)
    calibration_folder = list_images(args.calibration) if precision == "int8" else None
    eval_folder = list_images(args.eval) if precision == "int8" and args.eval else calibration_folder
    source = load_source(args.model, model_options_from_args(args), seed=args.seed)
    return calibration_folder, eval_folder, source


def _export_targets(runtime: Runtime, output: Path, precision: str) -> list[Path]:
    """Every file an export to `output` writes: the runtime's files and the sidecars (ONNX int8 also
    writes the float file and NAME.int8.onnx)."""
    outputs = [output]
    if runtime.format == "onnx" and precision == "int8":
        outputs.append(output.with_name(output.stem + ".int8.onnx"))
    return [path for out in outputs for path in (*runtime.files(out), sidecar_path(out))]


def _run_export(
    args: argparse.Namespace,
    runtime: Runtime,
    precision: str,
    source: ModelSource,
    output: Path,
    calibration_folder: ImageFolder | None,
    eval_folder: ImageFolder | None,  # None exactly when calibration_folder is
) -> str:
    images = (
        _int8_images(args, source, calibration_folder, eval_folder)
        if calibration_folder is not None and eval_folder is not None
        else None
    )
    if runtime.format == "onnx":
        return _export_onnx(args, source, output, precision, images)
    export_model(
        source,
        runtime,
        output,
        precision=precision,
        calibration=None if images is None else images.calibration,
        batch_size=args.batch_size,
    )
    exported = load_exported(output)
    model, (channels, size, _) = source.model, exported.info["input"]
    probe = np.random.default_rng(args.seed).standard_normal((4, channels, size, size), dtype=np.float32)
    expected, actual = run_torch(model, probe), exported.runner.run(probe)
    megabytes = sum(os.path.getsize(f) for f in runtime.files(output)) / 1e6
    lines = [
        f"wrote {output} ({runtime.title}, {precision}, batch {exported.info['batch'] or 'any'}, "
        f"input {channels}×{size}×{size}, {megabytes:.1f} MB) and its sidecar {sidecar_path(output).name}",
        f"{runtime.title} vs PyTorch on {len(probe)} random inputs: max abs diff "
        f"{np.abs(actual - expected).max():.3g} (largest output {np.abs(expected).max():.3g}), "
        f"top-1 agreement {_percent(float((actual.argmax(1) == expected.argmax(1)).mean()))}",
    ]
    in_effect = getattr(exported.runner, "precision_in_effect", precision)
    if in_effect != precision:
        lines.append(
            f"note: on this machine {runtime.title} runs this file in {in_effect}, not {precision} "
            f"({bf16_unavailable_reason() or 'the runtime chose so'}); the file keeps {precision} "
            "for machines that have it"
        )
    if images is not None:
        lines.insert(
            1, f"int8: calibrated on {len(images.calibration)} images from {images.calibration_folder.root}"
        )
        lines += _calibration_note(images, args.calibration_images)
        lines += _agreement_lines(
            images,
            run_torch(model, images.eval_images),
            exported.runner.run(images.eval_images),
            "PyTorch float32",
        )
    return "\n".join(lines)


def _export_onnx(
    args: argparse.Namespace, source: ModelSource, output: Path, precision: str, images: Int8Images | None
) -> str:
    model, size = source.model, int(source.preprocessing["size"])
    dynamic = args.dynamic_batch or precision == "int8"
    onnx = RUNTIMES["onnx"]
    export_model(
        source,
        onnx,
        output,
        precision="f16" if precision == "f16" else "f32",
        batch_size=None if dynamic else args.batch_size or 1,
        build=partial(export_onnx_model, opset=args.opset),
    )
    summary = summarize_graph(output)
    rng = np.random.default_rng(args.seed)
    probe = rng.standard_normal(
        (1 if summary.batch_dim == 1 else 4, model.config.in_channels, size, size), dtype=np.float32
    )
    parity = compare_with_torch(output, model, probe)
    ops = ", ".join(f"{op} {count}" for op, count in summary.op_counts.items())
    lines = [
        f"wrote {output} ({'float16' if precision == 'f16' else 'float32'}, opset {summary.opset}, "
        f"batch {summary.batch_dim}, input {model.config.in_channels}×{size}×{size}, "
        f"{os.path.getsize(output) / 1e6:.1f} MB) and its sidecar {sidecar_path(output).name}",
        f"graph: {sum(summary.op_counts.values())} nodes ({ops}); "
        f"{summary.depthwise_convs} depthwise convolutions, each one grouped Conv; BatchNorm folded",
        "onnx.checker: ok",
        f"ONNX Runtime vs PyTorch on {len(probe)} random inputs: max abs diff {parity.max_abs_diff:.3g} "
        f"({parity.relative:.2g} of the largest output), top-1 agreement {_percent(parity.top1_agreement)}",
    ]
    if images is None:
        return "\n".join(lines)
    setting = INT8_SETTINGS[args.int8_setting]
    int8_path = output.with_name(output.stem + ".int8.onnx")

    def quantize(model: AnyModel, path: str | os.PathLike, **_: Any) -> Path:
        # from the float file just written, not a second export
        return quantize_int8(output, path, images.calibration, setting)

    export_model(
        source,
        onnx,
        int8_path,
        precision="int8",
        calibration=images.calibration,
        batch_size=None,
        build=quantize,
    )
    lines.append(
        f"wrote {int8_path} (int8: {setting.describe()}; calibrated on {len(images.calibration)} "
        f"images from {images.calibration_folder.root}, {os.path.getsize(int8_path) / 1e6:.1f} MB)"
    )
    return "\n".join(
        lines
        + _calibration_note(images, args.calibration_images)
        + _agreement_lines(
            images,
            run_session(ort_session(output), images.eval_images),
            run_session(ort_session(int8_path), images.eval_images),
            "ONNX Runtime float32",
        )
    )


def run_web_export(args: argparse.Namespace) -> str:
    """--format web: the ONNX export (float32, or int8 with its agreement check) into a staging
    folder beside the target, then the page and ONNX Runtime Web's files; the folder appears whole."""
    onnx_args = argparse.Namespace(**{**vars(args), "format": "onnx"})
    runtime, precision = _check_export_args(onnx_args)
    if precision not in ("f32", "int8"):
        raise ValueError(f"--format web writes float32 or int8 (--int8); got --precision {precision}")
    dist = find_web_runtime(args.web_runtime)  # before minutes of export
    calibration_folder, eval_folder, source = _export_inputs(onnx_args, runtime, precision)
    stem = _default_stem(source)
    target = Path(args.output) if args.output else stem.with_name(stem.name + "_web")
    check_web_target(target, args.force)
    if not target.absolute().parent.is_dir():
        raise ValueError(
            f"-o {target}: folder {target.absolute().parent} does not exist; create it or pick another"
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.absolute().parent))
    try:
        output = staging / "model.onnx"
        report = _run_export(onnx_args, runtime, precision, source, output, calibration_folder, eval_folder)
        model_file = output
        if precision == "int8":  # the page loads the int8 file; the float one stays out of the folder
            model_file = staging / "model.int8.onnx"
            for path in (output, sidecar_path(output)):
                path.unlink()
        sizes = assemble(staging, model_file, dist)
        staging.chmod(0o777 & ~umask())  # as mkdir would make it, not mkdtemp's private 0700
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    text = report.replace(str(staging), str(target))
    mb = {key: value / 1e6 for key, value in sizes.items()}
    version = runtime_version(dist) or "(version unknown)"
    return "\n".join(
        [
            text,
            f"wrote {target}/ for the browser: index.html and app.js, {model_file.name} "
            f"({mb['model']:.1f} MB with its sidecar), ONNX Runtime Web {version} in ort/ (WebAssembly "
            f"{mb['runtime_wasm']:.1f} MB; WebGPU {mb['runtime_webgpu']:.1f} MB, fetched instead where the "
            "browser has WebGPU)",
            f"a visitor downloads {mb['model'] + mb['page'] + mb['runtime_wasm']:.1f} MB (WebAssembly) or "
            f"{mb['model'] + mb['page'] + mb['runtime_webgpu']:.1f} MB (WebGPU); the folder works from any "
            "static host",
            f"try it: mobilenets serve {target}",
        ]
    )


# --------------------------------------------------------------------------------------------
# Command line: `mobilenets serve`
# --------------------------------------------------------------------------------------------
def configure_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="serve a web export on this machine (for a browser or phone)")
    p.add_argument(
        "folder", metavar="DIR", help="the folder `mobilenets export ... --format web -o DIR` wrote"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this "
        "machine only; 0.0.0.0 for other devices on the network, where the camera needs https)",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="log each request")
    p.set_defaults(run=run_serve)
    return p


def run_serve(args: argparse.Namespace) -> str:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535; got {args.port}")
    try:
        server = make_server(args.folder, args.host, args.port, args.verbose)
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(
            f"cannot listen on {args.host}:{args.port} ({error.strerror or error}): "
            f"pass another --port (0 picks a free one)"
        ) from None
    host, port = server.server_address[:2]
    assert isinstance(host, str)  # once bound, getsockname()'s; typeshed also allows the bytes one may pass
    print(f"serving {args.folder} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return ""


# --------------------------------------------------------------------------------------------
# Command line: `mobilenets bench`
# --------------------------------------------------------------------------------------------
def configure_bench_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="CPU latency per backend, beside the full-conv twin")
    p.add_argument(
        "model",
        nargs="?",
        metavar="MODEL_OR_FILE",
        help="a zoo model name or a reference model (vgg16, googlenet, alexnet, squeezenet, "
        "resnet50), random weights; or a checkpoint file",
    )
    deprecated(p, "--model", "the positional MODEL_OR_FILE", dest="model" + OLD)
    p.add_argument(
        "--backend",
        default=",".join(DEFAULT_BACKENDS),
        help=f"comma-separated, from: {', '.join(BACKENDS)} (default: {','.join(DEFAULT_BACKENDS)})",
    )
    add_option(p, "--batch-size", dest="batch", default="1", help="comma-separated batch sizes (default: 1)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every backend (default 2)")
    p.add_argument(
        "--repeats", type=int, default=10, help="timed rounds; the median is reported (default 10)"
    )
    add_option(
        p,
        "--warmup-calls",
        dest="warmup",
        type=int,
        default=3,
        help="untimed calls per runner first (default 3)",
    )
    p.add_argument(
        "--compare",
        default="twin",
        choices=("twin", "none"),
        help="twin: beside the full-convolution twin (conv_mobilenet_v1 for the V1 family); "
        "none: the model alone (default twin)",
    )
    deprecated(p, "--no-twin", "--compare none", dest="compare", value="none")
    add_calibration_options(
        p, "image folder to calibrate onnxruntime-int8 (default: random images; speed only)"
    )
    p.add_argument(
        "--format", default="table", choices=("table", "json"), help="table, or json (default table)"
    )
    deprecated(p, "--json", "--format json", dest="format", value="json")
    add_model_options(p)
    p.set_defaults(run=run_bench)
    return p


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated positive integers, e.g. 1,32; got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag} takes comma-separated positive integers, e.g. 1,32; got {text!r}")
    return values


def run_bench(args: argparse.Namespace) -> str:
    if args.model is None:
        raise ValueError("bench needs MODEL_OR_FILE: a zoo or reference model name, or a checkpoint file")
    backends = tuple(part.strip() for part in args.backend.split(",") if part.strip())
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(
            f"unknown backend {(unknown or [args.backend])[0]!r}; available: {', '.join(BACKENDS)}"
        )
    batches = _int_list("--batch-size", args.batch)
    if args.warmup < 0:
        raise ValueError(f"--warmup-calls must be 0 or more; got {args.warmup}")
    if args.calibration_images < 1:
        raise ValueError(f"--calibration-images must be a positive integer; got {args.calibration_images}")
    if is_reference_model(args.model) and not model_options_from_args(args):  # VGG16, ResNet-50, ...
        reference = create_reference_model(args.model)
        source = ModelSource(reference, args.model, default_preprocessing(reference))
    else:
        source = load_source(args.model, model_options_from_args(args))
    calibration = None
    if args.calibration:
        folder = list_images(args.calibration)
        order = np.random.default_rng(0).permutation(len(folder.paths))[: args.calibration_images]
        calibration = load_images(
            [folder.paths[i] for i in order], source.preprocessing, "calibration images"
        )
    report = run_benchmark(
        source,
        backends,
        batches,
        threads=args.threads,
        repeats=args.repeats,
        warmup=args.warmup,
        twin=args.compare == "twin",
        calibration=calibration,
        progress=True,
    )
    return json.dumps(report.to_dict(), indent=2) if args.format == "json" else render_text(report)
