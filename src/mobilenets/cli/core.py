"""The core commands: list, config, cost, train, eval, predict and compare.

Each parses its flags (model flags generated from the fields of `config.ModelOptions`, so the CLI
and `create_model(name, **options)` always accept the same options) and calls one plain function.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from ..checkpoint import read_header
from ..costs.analysis import FORMATS, cost
from ..costs.reference import REFERENCE_MODELS, compare_costs, render_cost_comparison
from ..deploy.runtimes import RUNTIMES
from ..files import check_new_output
from ..pretrained.registry import bundled_checkpoint
from ..training.compare import compare_twins, format_compare, write_compare_report
from ..training.evaluate import collapse_warning, evaluate_checkpoint, predict
from ..training.train import TrainConfig, train
from ..training.transfer import weights_model_name
from ..zoo import check_model_name, list_models, model_config
from .options import (
    OLD,
    add_dataclass_options,
    add_model_options,
    add_option,
    deprecated,
    model_options_from_args,
    options_from_args,
    warn_deprecated,
)
from .output import render_top_k
from .pretrained import configure_predict_weights, run_predict_weights

EXPORTED_SUFFIXES = ", ".join(runtime.suffix for runtime in RUNTIMES.values())


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the core commands to `mobilenets`."""
    subparsers.add_parser("list", help="the models in the registry, with their cost at 224").set_defaults(
        run=run_list
    )

    p = subparsers.add_parser("config", help="a model's config as JSON")
    p.add_argument("model", metavar="MODEL", help=f"one of: {', '.join(list_models())}")
    add_model_options(p)
    p.set_defaults(run=run_config)

    p = subparsers.add_parser("cost", help="per-layer params and mult-adds of a model")
    p.add_argument(
        "model", metavar="MODEL", help=f"one of: {', '.join(list_models() + list(REFERENCE_MODELS))}"
    )
    p.add_argument("--by-type", action="store_true", help="breakdown by layer type (paper Table 2)")
    p.add_argument(
        "--compare",
        metavar="MODEL[,MODEL]",
        help="models side by side: MobileNets get the same "
        f"options, reference models ({', '.join(REFERENCE_MODELS)}) their paper's input size",
    )
    p.add_argument("--format", default="table", choices=FORMATS)
    add_model_options(p)
    p.set_defaults(run=run_cost)

    p = subparsers.add_parser("train", help="train on an image folder, CIFAR-10 or digits")
    p.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help=f"one of: {', '.join(list_models())} (default: "
        "mobilenet_v1; with --weights the weights' model; with --resume the run's own)",
    )
    deprecated(p, "--model", "the positional MODEL", dest="model" + OLD)
    add_dataclass_options(p, TrainConfig, "training options")
    add_model_options(p)
    p.set_defaults(run=run_train)

    p = subparsers.add_parser("eval", help="accuracy of a checkpoint or an exported file")
    p.add_argument(
        "checkpoint",
        nargs="?",
        metavar="MODEL_OR_FILE",
        help=f"a checkpoint file, an exported "
        f"model ({EXPORTED_SUFFIXES}, with the sidecar FILE.json export wrote), or with --weights "
        f"the model of those weights ({', '.join(list_models())})",
    )
    p.add_argument(
        "--weights",
        metavar="KEY",
        help="weights this project ships (cifar10): with MODEL and "
        "--width choosing among them (default: the key's first)",
    )
    p.add_argument("--data", required=True, help="image folder PATH, 'digits' or 'cifar10:PATH'")
    p.add_argument(
        "--split",
        default="val",
        choices=("val", "all"),
        help="val: the checkpoint's own validation split; all: every image of --data",
    )
    add_option(
        p,
        "--output",
        aliases=("--confusion",),
        metavar="PNG",
        help="where to write the confusion matrix (default: beside the checkpoint, rewritten by each eval)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --output PNG")
    add_option(p, "--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--format",
        default="table",
        choices=("table", "json"),
        help="table, or json: every metric (default table)",
    )
    deprecated(p, "--json", "--format json", dest="format", value="json")
    p.add_argument("--skip-bad-images", action="store_true", help="warn about and skip unreadable images")
    deprecated(p, "--model", "the positional MODEL_OR_FILE", dest="checkpoint" + OLD)
    p.add_argument(
        "--width", dest="width_mult", type=float, metavar="WIDTH_MULT", help="with --weights: which width"
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="also report flip test-time augmentation (each image "
        "and its mirror; on its own line, the plain figures stay as they are)",
    )
    p.set_defaults(run=run_eval)

    p = subparsers.add_parser("predict", help="top-k classes of image files")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="[MODEL_OR_FILE] IMAGE",
        help=f"a checkpoint or an exported model ({EXPORTED_SUFFIXES}), then image files; with "
        "--weights, optionally the model of those weights, then image files",
    )
    p.add_argument("--top-k", type=int, default=5)
    configure_predict_weights(p)
    p.set_defaults(run=run_predict)

    p = subparsers.add_parser(
        "compare",
        help="MobileNetV1 against its full-conv twin (Table 4)",
        description="Train MobileNetV1 and its full-convolution twin alike; compare cost, speed "
        "and accuracy (paper Table 4).",
    )
    add_dataclass_options(
        p,
        TrainConfig,
        "training options (compare defaults: "
        + ", ".join(f"{k}={v}" for k, v in COMPARE_DEFAULTS.items())
        + ", width 0.5)",
    )
    add_model_options(p)
    p.set_defaults(run=run_compare)


def run_list(args: argparse.Namespace) -> str:
    lines = []
    for name in list_models():
        report = cost(name)
        lines.append(
            f"{name:<22} {report.mult_adds / 1e6:8.1f}M mult-adds {report.params / 1e6:6.2f}M params"
        )
    return "\n".join(lines)


def run_cost(args: argparse.Namespace) -> str:
    options = model_options_from_args(args)
    reports = compare_costs(args.model, args.compare, options)
    return render_cost_comparison(reports, options, args.format, by_type=args.by_type)


def run_config(args: argparse.Namespace) -> str:
    return json.dumps(model_config(args.model, **model_options_from_args(args)).to_dict(), indent=2)


def _train_config(args: argparse.Namespace, **defaults: Any) -> TrainConfig:
    values = {**defaults, **options_from_args(args, TrainConfig)}
    model_options = {**values.pop("model_options", {}), **model_options_from_args(args)}
    if getattr(args, "model", None):
        values["model"] = args.model
    return TrainConfig(**values, model_options=model_options)


def _resumed_run(args: argparse.Namespace) -> dict:
    """With --resume, the options the command does not repeat are those of the run it continues
    (so `--out DIR --resume` is enough, and a changed default never breaks an old run)."""
    if not args.resume:
        return {}
    last = Path(args.out or TrainConfig.out) / "last.safetensors"
    if not last.is_file():
        return {}  # train() says what is missing
    saved = read_header(last).get("train_config") or {}
    names = {field.name for field in dataclasses.fields(TrainConfig)} - {"resume", "out", "force"}
    return {name: value for name, value in saved.items() if name in names}


def run_train(args: argparse.Namespace) -> str:
    resumed = _resumed_run(args)
    if args.weights and not args.model and "model" not in resumed:  # the weights' own model
        resumed["model"] = weights_model_name(args.weights) or TrainConfig.model
    config = _train_config(args, **resumed)
    check_model_name(config.model)
    result = train(config)
    if result.rank != 0:  # under torchrun rank 0 alone reports
        return ""
    if result.epochs_trained == 0:
        return f"nothing to do: {result.out} already holds all {len(result.history)} epochs"
    last = result.history[-1]
    skipped = f"; skipped {result.skipped_images} unreadable images" if result.skipped_images else ""
    collapsed = collapse_warning(result.last_metrics, result.class_names) if result.last_metrics else None
    return (f"{collapsed}\n" if collapsed else "") + (
        f"trained {config.model} for {last['epoch']} epochs: validation top-1 {100 * last['val_top1']:.2f}% "
        f"(best {100 * result.best_val_top1:.2f}%), top-5 {100 * last['val_top5']:.2f}%{skipped}\n"
        f"checkpoints, metrics.csv/jsonl and curves.png in {result.out}"
    )


def _eval_source(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(weights key, model) or (None, file) from MODEL_OR_FILE and --weights; `eval cifar10`, the
    older spelling of `eval --weights cifar10`, still works with one deprecation line."""
    target, weights = args.checkpoint, args.weights
    if (
        weights is None
        and target is not None
        and not Path(target).exists()
        and target not in list_models()
        and bundled_checkpoint(target) is not None
    ):
        warn_deprecated("mobilenets eval", f"`eval {target}`", f"--weights {target}")
        return target, None
    if weights is not None:
        if target is not None and target not in list_models():
            raise ValueError(
                f"with --weights, MODEL_OR_FILE is a model ({', '.join(list_models())}); got {target!r}"
            )
        return weights, target
    if target is None:
        raise ValueError("eval needs MODEL_OR_FILE (a checkpoint or an exported file) or --weights KEY")
    if args.width_mult:
        raise ValueError(f"--width chooses among a key's weights (--weights); {target} is a file")
    return None, target


def run_eval(args: argparse.Namespace) -> str:
    # A file path, or the key of weights this project trained and ships (e.g. cifar10); the
    # package file is hash-checked once.
    key, model_or_file = _eval_source(args)
    shipped = None if key is None else bundled_checkpoint(key, model_or_file, args.width_mult)
    if key is not None and shipped is None:
        raise ValueError(
            f"--weights {key}: eval scores the weights this project trained and ships "
            f"(cifar10); for others, convert them to a checkpoint first (mobilenets convert)"
        )
    checkpoint = shipped or model_or_file
    assert checkpoint is not None  # _eval_source refuses a command with neither a file nor --weights
    if args.output and Path(args.output).is_file():  # a file the user named is never replaced unasked
        check_new_output(args.output, args.force, "--output")  # (the default one is eval's own)
    if shipped is not None:
        png = args.output or f"{shipped.stem}_confusion.png"  # e.g. cifar10_mobilenet_v1_0.25_...
    else:
        png = args.output or str(Path(checkpoint).with_suffix("")) + "_confusion.png"
    metrics = evaluate_checkpoint(
        checkpoint, args.data, args.split, args.batch_size, args.workers, png, args.skip_bad_images, args.tta
    )
    if args.format == "json":
        return json.dumps(metrics, indent=2)
    width = max(len(n) for n in metrics["class_names"])
    lines = [
        f"{metrics['images']} images ({metrics['scope']})",
        f"top-1 {100 * metrics['top1']:.2f}%  top-5 {100 * metrics['top5']:.2f}%  loss {metrics['loss']:.4f}",
    ]
    collapsed = collapse_warning(metrics, metrics["class_names"])
    if collapsed:
        lines.append(collapsed)
    if "tta" in metrics:
        tta = metrics["tta"]
        lines.append(
            f"with flip TTA (2 passes per image): top-1 {100 * tta['top1']:.2f}%  top-5 "
            f"{100 * tta['top5']:.2f}%  loss {tta['loss']:.4f}"
        )
    lines.append("per-class accuracy:")
    lines += [
        f"  {name:<{width}}  {100 * acc:6.2f}%"
        for name, acc in zip(metrics["class_names"], metrics["per_class"], strict=True)
    ]
    lines.append(f"confusion matrix: {png}")
    return "\n".join(lines)


def run_predict(args: argparse.Namespace) -> str:
    if args.weights:
        images = args.inputs
        if len(images) > 1 and images[0] in list_models() and not Path(images[0]).exists():
            if args.model not in (None, images[0]):
                raise ValueError(f"MODEL given twice ({images[0]!r} and {args.model!r}); give it once")
            args.model, images = images[0], images[1:]  # `predict MODEL --weights KEY IMAGE...`
        return run_predict_weights(args, images)
    if len(args.inputs) < 2:
        raise ValueError("predict needs a checkpoint and at least one image (or --weights and images)")
    checkpoint, images = args.inputs[0], args.inputs[1:]
    return render_top_k(predict(checkpoint, images, args.top_k))


COMPARE_DEFAULTS = {"epochs": 5, "batch_size": 32, "lr": 0.1, "out": "runs/compare"}


def run_compare(args: argparse.Namespace) -> str:
    options = model_options_from_args(args)
    options.setdefault("width_mult", 0.5)
    recipe = _train_config(args, **COMPARE_DEFAULTS)
    recipe = dataclasses.replace(recipe, model_options=options)
    results = compare_twins(recipe)
    text = format_compare(results)
    written = write_compare_report(results, text, recipe.out)
    return text + "\n" + f"table and curves: {', '.join(map(str, written))}"
