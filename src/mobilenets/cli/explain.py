"""`mobilenets profile` and `mobilenets choose`: where the time goes, and which model fits a budget.

Each run_* returns the text to print; user mistakes raise ValueError.
"""

from __future__ import annotations

import argparse

from ..deploy.bench import BACKENDS
from ..deploy.choose import FORMATS as CHOOSE_FORMATS
from ..deploy.choose import choose, parse_families, plot
from ..deploy.choose import render as render_choice
from ..deploy.profile import CLOCKS, PROFILE_BACKENDS, is_reference_model, plot_roofline, profile
from ..deploy.profile import FORMATS as PROFILE_FORMATS
from ..deploy.profile import render as render_profile
from ..files import check_new_output
from .options import add_model_options, add_option, model_options_from_args


# --------------------------------------------------------------------------------------------
# Command line: `mobilenets profile`
# --------------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's commands to `mobilenets`."""
    configure_profile_parser(subparsers)
    configure_choose_parser(subparsers)


def configure_profile_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("profile", help="per-layer time, mult-adds, bytes and roofline on this machine")
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a zoo model or a reference model (vgg16, googlenet, alexnet, squeezenet, resnet50)",
    )
    p.add_argument(
        "--backend", default="torch", help=f"one of: {', '.join(PROFILE_BACKENDS)} (default torch)"
    )
    add_option(p, "--batch-size", dest="batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument(
        "--train", action="store_true", help="profile forward + backward + SGD step (torch backends)"
    )
    p.add_argument(
        "--compare",
        metavar="MODEL",
        help="a second model side by side (e.g. conv_mobilenet_v1, "
        "which gets the same model options), with per-block speedups",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--clock",
        default="wall",
        choices=tuple(CLOCKS),
        help="wall: latency; cpu: this process's CPU time, unaffected by other programs' load "
        "(with --threads 1, the latency of an idle machine); torch backends only",
    )
    p.add_argument(
        "--repeats", type=int, default=10, help="interleaved timed rounds; the fastest is kept (default 10)"
    )
    add_option(
        p,
        "--warmup-calls",
        dest="warmup",
        type=int,
        default=2,
        help="untimed calls per runner first (default 2)",
    )
    p.add_argument("--format", default="table", choices=PROFILE_FORMATS)
    add_option(
        p, "--output", dest="png", aliases=("--png",), metavar="PNG", help="write the roofline plot here"
    )
    p.add_argument("--force", action="store_true", help="replace an existing -o file")
    add_model_options(p)
    p.set_defaults(run=run_profile)
    return p


def run_profile(args: argparse.Namespace) -> str:
    if args.warmup < 0:
        raise ValueError(f"--warmup-calls must be 0 or more; got {args.warmup}")
    if args.png:  # before minutes of measuring, not after
        check_new_output(args.png, args.force)
    options = model_options_from_args(args)
    models = [(args.model, options)]
    if args.compare:
        shared = {k: v for k, v in options.items() if k != "depth_multiplier"}
        models.append((args.compare, {} if is_reference_model(args.compare) else shared))
    report = profile(
        models,
        args.backend,
        args.batch,
        args.train,
        args.threads,
        args.repeats,
        args.warmup,
        clock=args.clock,
        progress=True,
    )
    text = render_profile(report, args.format)
    if args.png:
        path = plot_roofline(report, args.png)
        if args.format != "json":
            text += f"\n\nroofline: {path}"
    return text


# --------------------------------------------------------------------------------------------
# Command line: `mobilenets choose`
# --------------------------------------------------------------------------------------------
def configure_choose_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "choose",
        help="the most accurate MobileNet within a latency budget here",
    )
    p.add_argument("--budget-ms", type=float, required=True, help="latency budget per batch, milliseconds")
    p.add_argument(
        "--backend",
        default="torch",
        help=f"one of: {', '.join(BACKENDS)} (default torch; the "
        "onnxruntime ones export every model first: minutes)",
    )
    add_option(p, "--batch-size", dest="batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--families", default="v1,v2,v3", help="comma-separated from v1,v2,v3 (default: v1,v2,v3)")
    p.add_argument("--with-popular", action="store_true", help="add ResNet-50, GoogLeNet and VGG16")
    p.add_argument("--measure-only", action="store_true", help="measure and print; draw no plot")
    add_option(
        p,
        "--output",
        dest="png",
        aliases=("--png",),
        metavar="PNG",
        help="the plot (default: choose-BACKEND-batchN.png here)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing plot")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="interleaved timed rounds; the fastest is the latency (default 5)",
    )
    p.add_argument("--format", default="table", choices=CHOOSE_FORMATS)
    p.set_defaults(run=run_choose)
    return p


def run_choose(args: argparse.Namespace) -> str:
    families = parse_families(args.families)
    png = None if args.measure_only else args.png or f"choose-{args.backend}-batch{args.batch}.png"
    if png:  # before minutes of measuring, not after
        check_new_output(png, args.force)
    choice = choose(
        args.budget_ms,
        args.backend,
        args.batch,
        families,
        args.with_popular,
        args.threads,
        args.repeats,
        progress=True,
    )
    text = render_choice(choice, args.format)
    if png:
        path = plot(choice, png)
        if args.format in ("table", "markdown"):
            text += f"\nplot: {path}"
    return text
