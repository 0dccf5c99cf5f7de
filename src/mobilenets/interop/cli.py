"""The command-line side of interop, as plain functions that mobilenets.cli wires in:

    mobilenets convert --from keras|torchvision|timm SRC OUT [--model NAME] [--width W] ...
    mobilenets predict --weights keras-imagenet --model mobilenet_v2 IMAGE...

Each run_* returns the text to print; user mistakes raise ValueError or FileNotFoundError.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..models import MobileNet
from .imagenet import imagenet_class_names, predict_imagenet
from .mapping import describe
from .weights import default_model

SOURCES = ("keras", "torchvision", "timm")
CONVERTIBLE = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")


def convert(source: str, src: str | os.PathLike, name: str | None = None, width_mult: float | None = None,
            resolution: int | None = None, timm_name: str | None = None) -> MobileNet:
    """Our model from a `source` ("keras", "torchvision" or "timm") weights file."""
    from .keras import from_keras
    from .timm import from_timm
    from .torchvision import from_torchvision

    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}; got {source!r}")
    if not Path(src).is_file():
        raise FileNotFoundError(f"no {source} weights file at {src}")
    if source != "timm" and timm_name:
        raise ValueError("timm_name (--timm-model) applies to --from timm only")
    if source == "keras":
        return from_keras(src, name=name, width_mult=width_mult, resolution=resolution)
    if resolution is not None:
        raise ValueError(f"resolution (--resolution) applies to --from keras only; {source} models are "
                         f"trained at 224 and run at any size")
    if source == "torchvision":
        return from_torchvision(src, name=name, width_mult=width_mult)
    model = from_timm(src, timm_name=timm_name, name=name)
    if width_mult is not None and abs(width_mult - model.config.width_mult) > 1e-9:
        raise ValueError(f"{src} is {describe(model.config)}, not width_mult={width_mult:g}")
    return model


def save_converted(model: MobileNet, out: str | os.PathLike) -> Path:
    """Write a converted model in our checkpoint format, with ImageNet class names and the source's
    preprocessing, so `mobilenets predict/eval/export` can use it like a trained checkpoint."""
    from ..checkpoint import save_checkpoint

    extra = model.config.extra
    class_names = imagenet_class_names() if extra.get("class_names") == "imagenet-1k" else None
    return save_checkpoint(out, model, class_names=class_names, preprocessing=extra.get("preprocessing"),
                           metadata={"converted_from": extra.get("source")})


def configure_convert_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("convert", help="convert Keras, torchvision or timm MobileNet weights to a "
                                                   "mobilenets checkpoint (safetensors + config JSON)")
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES, help="the library SRC comes from")
    parser.add_argument("src", metavar="SRC", help="Keras .h5/.keras, or a .pth/.pt/.safetensors state dict")
    parser.add_argument("out", metavar="OUT", help="the checkpoint to write (.safetensors)")
    parser.add_argument("--model", choices=CONVERTIBLE, help="what SRC must be (default: read from SRC)")
    parser.add_argument("--width", dest="width_mult", type=float, metavar="WIDTH_MULT",
                        help="the width SRC must have (default: read from SRC)")
    parser.add_argument("--resolution", type=int, help="Keras only: nominal input size to record "
                                                       "(default: the Keras model's, else 224)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists (never SRC itself)")
    parser.add_argument("--timm-model", dest="timm_name", metavar="NAME",
                        help="timm only: the timm model name, e.g. tf_mobilenetv3_large_100 (default: from SRC's "
                             "file name); it decides padding and BN epsilon")
    parser.set_defaults(run=run_convert)
    return parser


def check_convert_output(src: str | os.PathLike, out: str | os.PathLike, force: bool) -> None:
    """OUT may not be SRC (that would destroy the source), nor an existing file unless forced."""
    src, out = Path(src), Path(out)
    if out.is_dir():
        raise ValueError(f"OUT {out} is a folder; name the checkpoint file to write")
    if out.exists() and src.exists() and os.path.samefile(src, out):
        raise ValueError(f"OUT {out} is the source file itself; name another OUT")
    if out.exists() and not force:
        raise ValueError(f"OUT {out} exists; pass --force to overwrite it, or name another OUT")


def run_convert(args: argparse.Namespace) -> str:
    check_convert_output(args.src, args.out, args.force)  # before the conversion, not after it
    model = convert(args.source, args.src, name=args.model, width_mult=args.width_mult,
                    resolution=args.resolution, timm_name=args.timm_name)
    out = save_converted(model, args.out)
    config = model.config
    recipe = config.extra["preprocessing"]
    return (f"converted {args.source} {args.src} → {out}\n"
            f"  {describe(config)}, padding={config.padding!r}, bn_eps={config.bn_eps:g}\n"
            f"  input: resize {recipe['resize']}, crop {recipe['size']}, mean {recipe['mean']}, std {recipe['std']}")


def configure_predict_weights(parser: argparse.ArgumentParser) -> None:
    """Add --weights (and the options that pick a published file) to the predict parser."""
    group = parser.add_argument_group("published weights (instead of a checkpoint)")
    group.add_argument("--weights", metavar="KEY|PATH|URL",
                       help="e.g. cifar10, keras-imagenet, torchvision-imagenet-v1, timm-imagenet, a file or a URL; "
                            "then every positional argument is an image")
    group.add_argument("--model", choices=CONVERTIBLE, help="with --weights: the model (default: the weights' only model, else mobilenet_v2)")
    group.add_argument("--width", dest="width_mult", type=float, metavar="WIDTH_MULT", help="with --weights")
    group.add_argument("--resolution", type=int, help="with --weights (Keras MobileNet/V2 files exist per size)")
    group.add_argument("--minimalistic", action="store_true", default=None, help="with --weights: V3 minimalistic")


def run_predict_weights(args: argparse.Namespace, images: list[str]) -> str:
    """ImageNet top-k for image files with published weights (`mobilenets predict --weights ...`)."""
    from ..models import create_model

    options = {k: getattr(args, k) for k in ("width_mult", "resolution", "minimalistic")
               if getattr(args, k, None) is not None}
    model = create_model(args.model or default_model(args.weights) or "mobilenet_v2", weights=args.weights,
                         **options)
    names = model.config.extra.get("class_names")
    lines = []
    for result in predict_imagenet(model, images, args.top_k, class_names=names if isinstance(names, list) else None):
        lines.append(result["image"])
        lines += [f"  {100 * p:6.2f}%  {name}" for name, p in result["top"]]
    return "\n".join(lines)


__all__ = ["configure_convert_parser", "configure_predict_weights", "convert", "run_convert",
           "run_predict_weights", "save_converted"]
