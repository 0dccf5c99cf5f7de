"""`mobilenets weights`, `convert` and `predict --weights`: published weights on the command line.

    mobilenets weights [KEY] [--model NAME] [--width W] [--format table|json]
    mobilenets convert --from keras|torchvision|timm SRC OUT [--model NAME] [--width W] ...
    mobilenets predict --weights keras-imagenet --model mobilenet_v2 IMAGE...

Each run_* returns the text to print; user mistakes raise ValueError or FileNotFoundError.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..costs.analysis import cost
from ..factory import create_model
from ..pretrained.convert import CONVERTIBLE, SOURCES, check_convert_output, convert, save_converted
from ..pretrained.download import cache_dir
from ..pretrained.imagenet import predict_imagenet
from ..pretrained.registry import (
    UnknownWeightsError,
    Weights,
    bundled_file,
    list_weights,
    weight_keys,
)
from ..pretrained.slots import describe
from ..training.transfer import weights_model_name
from ..zoo import list_models
from .options import add_option, deprecated, warn_deprecated
from .output import render_top_k


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's commands to `mobilenets`."""
    configure_convert_parser(subparsers)
    configure_weights_parser(subparsers)


def configure_weights_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "weights",
        help="the published weights: key, model, accuracy, size, source",
        description="List the weights registry, or show one key's entries in full.",
    )
    parser.add_argument(
        "key", nargs="?", metavar="KEY", help="show this key's weights in full (e.g. cifar10)"
    )
    parser.add_argument("--model", choices=list_models(), help="only the weights of this model")
    parser.add_argument(
        "--width", dest="width_mult", type=float, metavar="WIDTH_MULT", help="only this width"
    )
    parser.add_argument("--format", default="table", choices=("table", "json"))
    parser.set_defaults(run=run_weights)
    return parser


def _groups(entries: list[Weights]) -> list[list[Weights]]:
    """Entries that differ only in input size or classifier (Keras's per-size, with/without-top
    files) as one row."""
    groups: dict[tuple, list[Weights]] = {}
    for entry in entries:
        groups.setdefault((entry.key, entry.model, entry.width_mult, entry.minimalistic), []).append(entry)
    return list(groups.values())


def _where(entry: Weights) -> str:
    if entry.package_file:
        return f"in the package ({bundled_file(entry).stat().st_size / 1e6:.1f} MB)"
    cached = (cache_dir() / entry.cache_name).is_file()
    return f"{entry.source}, {'downloaded' if cached else 'downloads once'}"


def _summary(group: list[Weights]) -> dict:
    entry = group[0]
    options: dict[str, Any] = {"width_mult": entry.width_mult, "minimalistic": entry.minimalistic}
    resolutions = sorted({e.resolution for e in group if e.resolution})
    params = cost(entry.model, num_classes=entry.num_classes, **options).params
    return {
        "key": entry.key,
        "model": entry.model + (" minimalistic" if entry.minimalistic else ""),
        "width_mult": entry.width_mult,
        "resolutions": resolutions or "any",
        "data": f"{entry.dataset} ({entry.num_classes} classes)",
        "top1": entry.metrics.get("top1"),
        "params": params,
        "where": _where(entry),
    }


def run_weights(args: argparse.Namespace) -> str:
    if args.key is not None and args.key not in weight_keys():
        raise UnknownWeightsError(f"unknown weights {args.key!r}; published: {', '.join(weight_keys())}")
    entries = [
        e
        for e in list_weights(args.model, args.key)
        if args.width_mult is None or abs(e.width_mult - args.width_mult) < 1e-9
    ]
    if not entries:
        raise ValueError("no published weights match; `mobilenets weights` lists them all")
    if args.key is not None:
        return _details(entries, args.format)
    rows = [_summary(group) for group in _groups(entries)]
    if args.format == "json":
        return json.dumps(rows, indent=2)
    header = ("key", "model", "width", "input", "trained on", "top-1", "params", "file")
    table = [header] + [
        (
            row["key"],
            row["model"],
            f"{row['width_mult']:g}",
            row["resolutions"]
            if isinstance(row["resolutions"], str)
            else ",".join(map(str, row["resolutions"])),
            row["data"],
            "—" if row["top1"] is None else f"{100 * row['top1']:.2f}%",
            f"{row['params'] / 1e6:.2f}M",
            row["where"],
        )
        for row in rows
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    lines.append(
        "top-1: as measured here (mobilenets) or stated by the publisher (torchvision); — where neither. "
        "`mobilenets weights KEY` shows one key in full."
    )
    return "\n".join(lines)


def _input(resolutions: list[int] | str, recipe: dict | None) -> str:
    sizes = resolutions if isinstance(resolutions, str) else ", ".join(map(str, resolutions))
    if not recipe:
        return f"{sizes}; preprocessing: the source's, read from the file by the converter"
    mean, std = (", ".join(f"{v:.3f}" for v in recipe[k]) for k in ("mean", "std"))
    return (
        f"{sizes}; resize {recipe['resize']}, crop {recipe['size']}, mean ({mean}), std ({std}) on 0..1 RGB"
    )


def _details(entries: list[Weights], output_format: str) -> str:
    documents = []
    for group in _groups(entries):
        entry = group[0]
        names = list(entry.class_names) if entry.class_names else None
        documents.append(
            {
                **_summary(group),
                "source": entry.source,
                "url": entry.url,
                "sha256": entry.sha256,
                "md5": entry.md5,
                "files": len(group),
                "class_names": names,
                "preprocessing": entry.preprocessing,
                "metrics": entry.metrics,
                "lineage": list(entry.lineage),
            }
        )
    if output_format == "json":
        return json.dumps(documents, indent=2)
    lines = []
    for doc in documents:
        metrics = doc["metrics"]
        lines += [
            f"{doc['key']}: {doc['model']} width {doc['width_mult']:g}",
            f"  trained on     {doc['data']}",
            f"  input          {_input(doc['resolutions'], doc['preprocessing'])}",
            "  classes        "
            + (
                ", ".join(doc["class_names"][:10]) + (" ..." if len(doc["class_names"]) > 10 else "")
                if doc["class_names"]
                else "ImageNet-1k's 1000"
            ),
            "  accuracy       "
            + (
                f"top-1 {100 * metrics['top1']:.2f}%"
                + (f", top-5 {100 * metrics['top5']:.2f}%" if metrics.get("top5") is not None else "")
                + f" on {metrics['on']} ({metrics['by']})"
                if metrics.get("top1") is not None
                else "not stated by the publisher, not measured here"
            ),
            f"  parameters     {doc['params']:,}",
            f"  file           {doc['where']}: {doc['url']}"
            + (f" ({doc['files']} files: one per input size and classifier)" if doc["files"] > 1 else ""),
            "  hash           "
            + (
                f"sha256 {doc['sha256']}"
                if doc["sha256"]
                else f"md5 {doc['md5']}"
                if doc["md5"]
                else "none published"
            ),
        ]
        for index, run in enumerate(doc["lineage"], start=1):
            result = f", top-1 {100 * run['val_top1']:.2f}%" if run.get("val_top1") is not None else ""
            lines.append(
                f"  run {index}          {run.get('command') or run.get('url') or run.get('weights')} "
                f"({run.get('epochs', '?')} epochs{result}, commit {(run.get('git_commit') or '?')[:10]})"
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def configure_convert_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="Keras, torchvision or timm weights to a checkpoint",
        description="Convert Keras, torchvision or timm MobileNet weights to a "
        "mobilenets checkpoint (safetensors + config JSON).",
    )
    parser.add_argument(
        "--from", dest="source", required=True, choices=SOURCES, help="the library SRC comes from"
    )
    parser.add_argument("src", metavar="SRC", help="Keras .h5/.keras, or a .pth/.pt/.safetensors state dict")
    add_option(parser, "--output", dest="out", metavar="OUT", help="the checkpoint to write (.safetensors)")
    # The old spelling: OUT as a second positional argument.
    parser.add_argument("out_positional", nargs="?", metavar="OUT", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=CONVERTIBLE, help="what SRC must be (default: read from SRC)")
    parser.add_argument(
        "--width",
        dest="width_mult",
        type=float,
        metavar="WIDTH_MULT",
        help="the width SRC must have (default: read from SRC)",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        help="Keras only: nominal input size to record (default: the Keras model's, else 224)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists (never SRC itself)")
    parser.set_defaults(out=None)
    parser.add_argument(
        "--timm-model",
        dest="timm_name",
        metavar="NAME",
        help="timm only: the timm model name, e.g. tf_mobilenetv3_large_100 (default: from SRC's "
        "file name); it decides padding and BN epsilon",
    )
    parser.set_defaults(run=run_convert)
    return parser


def run_convert(args: argparse.Namespace) -> str:
    if args.out_positional is not None:
        if args.out not in (None, args.out_positional):
            raise ValueError(f"OUT given twice ({args.out_positional!r} and -o {args.out!r}); give it once")
        warn_deprecated(
            "mobilenets convert", "OUT as a second positional argument", f"-o {args.out_positional}"
        )
        args.out = args.out_positional
    if args.out is None:
        raise ValueError("convert needs -o OUT, the checkpoint to write (.safetensors)")
    check_convert_output(args.src, args.out, args.force)  # before the conversion, not after it
    model = convert(
        args.source,
        args.src,
        name=args.model,
        width_mult=args.width_mult,
        resolution=args.resolution,
        timm_name=args.timm_name,
    )
    out = save_converted(model, args.out)
    config = model.config
    recipe = config.extra["preprocessing"]
    return (
        f"converted {args.source} {args.src} → {out}\n"
        f"  {describe(config)}, padding={config.padding!r}, bn_eps={config.bn_eps:g}\n"
        f"  input: resize {recipe['resize']}, crop {recipe['size']}, mean {recipe['mean']}, std "
        f"{recipe['std']}"
    )


def configure_predict_weights(parser: argparse.ArgumentParser) -> None:
    """Add --weights (and the options that pick a published file) to the predict parser."""
    group = parser.add_argument_group("published weights (instead of a checkpoint)")
    group.add_argument(
        "--weights",
        metavar="KEY|PATH|URL",
        help="e.g. cifar10, keras-imagenet, torchvision-imagenet-v1, timm-imagenet, a file or a URL; "
        "then every positional argument is an image",
    )
    deprecated(
        group,
        "--model",
        "the positional MODEL_OR_FILE (predict MODEL --weights KEY IMAGE...)",
        dest="model",
        choices=CONVERTIBLE,
    )
    parser.set_defaults(model=None)
    group.add_argument("--width", dest="width_mult", type=float, metavar="WIDTH_MULT", help="with --weights")
    group.add_argument(
        "--resolution", type=int, help="with --weights (Keras MobileNet/V2 files exist per size)"
    )
    group.add_argument(
        "--minimalistic", action="store_true", default=None, help="with --weights: V3 minimalistic"
    )


def run_predict_weights(args: argparse.Namespace, images: list[str]) -> str:
    """ImageNet top-k for image files with published weights (`mobilenets predict --weights ...`)."""
    options = {
        k: getattr(args, k)
        for k in ("width_mult", "resolution", "minimalistic")
        if getattr(args, k, None) is not None
    }
    model = create_model(
        args.model or weights_model_name(args.weights) or "mobilenet_v2", weights=args.weights, **options
    )
    return render_top_k(predict_imagenet(model, images, args.top_k))
