"""`mobilenets convert` and `mobilenets predict --weights`: published weights on the command line.

    mobilenets convert --from keras|torchvision|timm SRC OUT [--model NAME] [--width W] ...
    mobilenets predict --weights keras-imagenet --model mobilenet_v2 IMAGE...

Each run_* returns the text to print; user mistakes raise ValueError or FileNotFoundError.
"""

from __future__ import annotations

import argparse

from ..factory import create_model
from ..pretrained.convert import CONVERTIBLE, SOURCES, check_convert_output, convert, save_converted
from ..pretrained.imagenet import predict_imagenet
from ..pretrained.slots import describe
from ..pretrained.weights import default_model
from .output import render_top_k


def register(subparsers) -> None:
    """Add this group's commands to `mobilenets`."""
    configure_convert_parser(subparsers)


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
    parser.add_argument("out", metavar="OUT", help="the checkpoint to write (.safetensors)")
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
    group.add_argument(
        "--model",
        choices=CONVERTIBLE,
        help="with --weights: the model (default: the weights' only model, else mobilenet_v2)",
    )
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
        args.model or default_model(args.weights) or "mobilenet_v2", weights=args.weights, **options
    )
    return render_top_k(predict_imagenet(model, images, args.top_k))
