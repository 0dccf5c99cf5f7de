"""`mobilenets export` and `mobilenets bench`: the command line of deploy/."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from ..costs.reference import create_reference_model, is_reference_model
from ..deploy.bench import BACKENDS, DEFAULT_BACKENDS, render_text, run_benchmark
from ..deploy.export import (
    DEFAULT_OPSET,
    FORMATS,
    INT8_SETTINGS,
    MAX_OPSET,
    MIN_OPSET,
    ImageFolder,
    ModelSource,
    check_opset,
    compare_predictions,
    compare_with_torch,
    default_preprocessing,
    export_onnx,
    labels_for_model,
    list_images,
    load_images,
    load_source,
    ort_session,
    quantize_int8,
    run_session,
    summarize_graph,
)
from ..zoo import list_models
from .options import add_model_options, flag_names, model_options_from_args

CALIBRATION_IMAGES = 512  # enough for min-max ranges to settle (docs/deployment.md)


def add_calibration_options(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--calibration", metavar="DATA", help=help)
    parser.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES, metavar="N",
                        help=f"images drawn from DATA to calibrate on (default {CALIBRATION_IMAGES})")


# --------------------------------------------------------------------------------------------
# Command line: `mobilenets export`
# --------------------------------------------------------------------------------------------
def configure_export_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="fold BN, export to ONNX (float32, float16, int8)")
    p.add_argument("model", metavar="CHECKPOINT", help=f"a checkpoint file, or a zoo model name "
                   f"({', '.join(list_models())}) with random weights")
    p.add_argument("--format", default="onnx", help="output format; supported: onnx (default)")
    p.add_argument("--output", "-o", help="the .onnx file to write (default: next to the checkpoint, "
                   "or ./NAME.onnx for a zoo model)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, {MIN_OPSET}-{MAX_OPSET} "
                   f"(default {DEFAULT_OPSET})")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size (default: fixed at 1)")
    p.add_argument(
        "--fp16", action="store_true", help="float16 weights and activations (float32 inputs/outputs)"
    )
    p.add_argument("--int8", action="store_true", help="also write an int8 model (static quantization, QDQ)")
    add_calibration_options(p, "image folder (class-per-folder or flat) for --int8")
    p.add_argument("--int8-setting", default="default", metavar="NAME",
                   help=f"one of: {', '.join(INT8_SETTINGS)} (default: default, see docs/deployment.md)")
    p.add_argument("--eval", metavar="DATA", help="labelled image folder for the int8 agreement and accuracy "
                   "(default: other images of --calibration)")
    p.add_argument("--eval-images", type=int, default=1000, metavar="N",
                   help="images used to compare int8 with float (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="which images are drawn; weights of zoo models")
    add_model_options(p)
    p.set_defaults(run=run_export)
    return p


def _output_path(args: argparse.Namespace, source: ModelSource) -> Path:
    if args.output:
        return Path(args.output)
    if source.from_checkpoint:
        return Path(source.label).with_suffix(".onnx")
    return Path(f"{source.label}.onnx")


def _check_export_args(args: argparse.Namespace) -> None:
    if args.format not in FORMATS:
        raise ValueError(f"unsupported --format {args.format!r}; supported: {', '.join(FORMATS)}")
    check_opset(args.opset)
    if args.int8 and args.fp16:
        raise ValueError("--int8 and --fp16 are alternatives; choose one")
    if args.int8 and not args.calibration:
        raise ValueError(
            "--int8 needs --calibration DATA, a folder of images like the ones the model will see"
        )
    if not args.int8 and (args.calibration or args.eval):
        raise ValueError("--calibration and --eval apply with --int8 only")
    if args.int8_setting not in INT8_SETTINGS:
        raise ValueError(
            f"unknown --int8-setting {args.int8_setting!r}; available: {', '.join(INT8_SETTINGS)}"
        )
    for flag, value in (
        ("--calibration-images", args.calibration_images),
        ("--eval-images", args.eval_images),
    ):
        if value < 1:
            raise ValueError(f"{flag} must be a positive integer; got {value}")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def run_export(args: argparse.Namespace) -> str:
    _check_export_args(args)
    # Everything the user named must exist before minutes of export and calibration start.
    calibration_folder = list_images(args.calibration) if args.int8 else None
    eval_folder = list_images(args.eval) if args.int8 and args.eval else calibration_folder
    source = load_source(args.model, model_options_from_args(args), seed=args.seed)
    model, size = source.model, int(source.preprocessing["size"])
    output = _output_path(args, source)
    if output.suffix != ".onnx":
        raise ValueError(f"--output must end in .onnx; got {output}")

    export_onnx(
        model,
        output,
        resolution=size,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch or args.int8,
        fp16=args.fp16,
    )
    summary = summarize_graph(output)
    rng = np.random.default_rng(args.seed)
    probe = rng.standard_normal((1 if summary.batch_dim == 1 else 4, model.config.in_channels, size, size),
                                dtype=np.float32)
    parity = compare_with_torch(output, model, probe)
    ops = ", ".join(f"{op} {count}" for op, count in summary.op_counts.items())
    lines = [
        f"wrote {output} ({'float16' if args.fp16 else 'float32'}, opset {summary.opset}, "
        f"batch {summary.batch_dim}, input {model.config.in_channels}×{size}×{size}, "
        f"{os.path.getsize(output) / 1e6:.1f} MB)",
        f"graph: {sum(summary.op_counts.values())} nodes ({ops}); "
        f"{summary.depthwise_convs} depthwise convolutions, each one grouped Conv; BatchNorm folded",
        "onnx.checker: ok",
        f"ONNX Runtime vs PyTorch on {len(probe)} random inputs: max abs diff {parity.max_abs_diff:.3g} "
        f"({parity.relative:.2g} of the largest output), top-1 agreement {_percent(parity.top1_agreement)}",
    ]
    if args.int8:
        lines += _export_int8(args, source, output, calibration_folder, eval_folder)
    return "\n".join(lines)


def _export_int8(args: argparse.Namespace, source: ModelSource, float_path: Path,
                 calibration_folder: ImageFolder, eval_folder: ImageFolder) -> list[str]:
    setting = INT8_SETTINGS[args.int8_setting]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(calibration_folder.paths))
    calibration_paths = [calibration_folder.paths[i] for i in order[:args.calibration_images]]
    if eval_folder is calibration_folder:  # the images not used to calibrate
        eval_indices = order[args.calibration_images:args.calibration_images + args.eval_images]
    else:
        eval_indices = rng.permutation(len(eval_folder.paths))[:args.eval_images]
    int8_path = float_path.with_name(float_path.stem + ".int8.onnx")
    quantize_int8(float_path, int8_path, load_images(calibration_paths, source.preprocessing), setting)
    lines = [f"wrote {int8_path} (int8: {setting.describe()}; calibrated on {len(calibration_paths)} images "
             f"from {calibration_folder.root}, {os.path.getsize(int8_path) / 1e6:.1f} MB)"]
    if len(eval_indices) == 0:
        return lines + ["int8 vs float: no images left to compare on (pass --eval DATA)"]
    images = load_images([eval_folder.paths[i] for i in eval_indices], source.preprocessing)
    labels = labels_for_model(eval_folder, source.class_names, source.model.config.num_classes)
    result = compare_predictions(run_session(ort_session(float_path), images),
                                 run_session(ort_session(int8_path), images),
                                 None if labels is None else labels[eval_indices])
    lines.append(f"int8 vs float on {result.images} images from {eval_folder.root}: "
                 f"top-1 agreement {_percent(result.top1_agreement)}")
    if result.float_accuracy is not None:
        lines.append(
            f"accuracy: float {_percent(result.float_accuracy)}, int8 {_percent(result.quantized_accuracy)} "
            f"({100 * (result.quantized_accuracy - result.float_accuracy):+.2f} points)"
        )
    else:
        lines.append("accuracy: n/a (the images are unlabelled or their classes do not match the model's)")
    return lines


# --------------------------------------------------------------------------------------------
# Command line: `mobilenets bench`
# --------------------------------------------------------------------------------------------
def configure_bench_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="CPU latency per backend, beside the full-conv twin")
    p.add_argument("--model", required=True, metavar="NAME|CHECKPOINT",
                   help="a zoo model name or a reference model (vgg16, googlenet, alexnet, squeezenet, "
                        "resnet50), random weights; or a checkpoint file")
    p.add_argument(
        "--backend",
        default=",".join(DEFAULT_BACKENDS),
        help=f"comma-separated, from: {', '.join(BACKENDS)} (default: {','.join(DEFAULT_BACKENDS)})",
    )
    p.add_argument(*flag_names("--batch-size"), dest="batch", default="1",
                   help="comma-separated batch sizes (default: 1)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every backend (default 2)")
    p.add_argument(
        "--repeats", type=int, default=10, help="timed rounds; the median is reported (default 10)"
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per runner first (default 3)")
    p.add_argument("--no-twin", dest="twin", action="store_false",
                   help="skip the full-convolution twin (conv_mobilenet_v1 for the V1 family)")
    add_calibration_options(
        p, "image folder to calibrate onnxruntime-int8 (default: random images; speed only)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
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
    backends = tuple(part.strip() for part in args.backend.split(",") if part.strip())
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(
            f"unknown backend {(unknown or [args.backend])[0]!r}; available: {', '.join(BACKENDS)}"
        )
    batches = _int_list("--batch-size", args.batch)
    if args.warmup < 0:
        raise ValueError(f"--warmup must be 0 or more; got {args.warmup}")
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
        order = np.random.default_rng(0).permutation(len(folder.paths))[:args.calibration_images]
        calibration = load_images([folder.paths[i] for i in order], source.preprocessing)
    report = run_benchmark(source, backends, batches, threads=args.threads, repeats=args.repeats,
                           warmup=args.warmup, twin=args.twin, calibration=calibration)
    return json.dumps(report.to_dict(), indent=2) if args.json else render_text(report)
