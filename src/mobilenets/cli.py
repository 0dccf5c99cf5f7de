"""Command-line interface: each subcommand parses its flags and calls one plain function.

Model flags are generated from the fields of `config.ModelOptions`, so the CLI and
`create_model(name, **options)` always accept the same options.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from .cost import FORMATS, cost, render
from .config import ModelOptions
from .zoo import list_models, model_config

EXIT_USAGE = 2  # bad input: argparse's own convention


class CLIError(Exception):
    """A user mistake: printed as one line on stderr, exit code 2."""


def _option_type(field: dataclasses.Field):
    hint = typing.get_type_hints(ModelOptions)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0]


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """One flag per `ModelOptions` field, named by its metadata."""
    group = parser.add_argument_group("model options")
    for field in dataclasses.fields(ModelOptions):
        meta = field.metadata
        kind = _option_type(field)
        if kind is bool:
            group.add_argument(meta["flag"], dest=field.name, action="store_true", default=None, help=meta["help"])
        else:
            group.add_argument(meta["flag"], dest=field.name, type=kind, default=None, metavar=field.name.upper(),
                               choices=meta.get("choices"), help=f"{meta['help']} (default: {field.default})")


def model_options_from_args(args: argparse.Namespace) -> dict:
    """The options the user set (unset flags keep each model's own defaults)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(ModelOptions)
            if getattr(args, f.name, None) is not None}


def run_list(args: argparse.Namespace) -> str:
    lines = []
    for name in list_models():
        report = cost(name)
        lines.append(f"{name:<22} {report.mult_adds / 1e6:8.1f}M mult-adds {report.params / 1e6:6.2f}M params")
    return "\n".join(lines)


def run_cost(args: argparse.Namespace) -> str:
    options = model_options_from_args(args)
    reports = [cost(args.model, **options)]
    if args.compare:
        other = {k: v for k, v in options.items() if k not in ("depth_multiplier",)}
        reports.append(cost(args.compare, **other))
    return render(reports, args.format, by_type=args.by_type)


def run_config(args: argparse.Namespace) -> str:
    return json.dumps(model_config(args.model, **model_options_from_args(args)).to_dict(), indent=2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobilenets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="the models in the registry with their cost at 224").set_defaults(run=run_list)

    p = sub.add_parser("cost", help="per-layer params and mult-adds computed from the architecture")
    p.add_argument("model", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--by-type", action="store_true", help="breakdown by layer type (paper Table 2)")
    p.add_argument("--compare", metavar="MODEL", help="a second model, with the same options, side by side")
    p.add_argument("--format", default="table", choices=FORMATS)
    add_model_options(p)
    p.set_defaults(run=run_cost)

    p = sub.add_parser("config", help="print a model's config as JSON")
    p.add_argument("model", help=f"one of: {', '.join(list_models())}")
    add_model_options(p)
    p.set_defaults(run=run_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        output = args.run(args)
    except (ValueError, FileNotFoundError, CLIError) as error:
        print(f"mobilenets {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
