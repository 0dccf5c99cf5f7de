"""Command-line flags generated from dataclass fields: the CLI and the library accept the same options."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from ..config import ModelOptions

# Old spellings that keep working, declared once: canonical flag → aliases.
ALIASES = {"--batch-size": ("--batch",)}


def flag_names(canonical: str) -> tuple[str, ...]:
    """The flag and its aliases, for `add_argument`."""
    return (canonical, *ALIASES.get(canonical, ()))


def _option_type(owner: type, field: dataclasses.Field):
    hint = typing.get_type_hints(owner)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0]


def add_dataclass_options(parser: argparse.ArgumentParser, owner: type, title: str) -> None:
    """One flag per field of the dataclass `owner` that carries a "flag" in its metadata.

    Defaults are None ("not set"), so each function keeps its own defaults for what the user
    did not say; `options_from_args` collects what was set.
    """
    group = parser.add_argument_group(title)
    for field in dataclasses.fields(owner):
        meta = field.metadata
        if "flag" not in meta:
            continue
        kind = _option_type(owner, field)
        if kind is bool:
            action = (
                argparse.BooleanOptionalAction if meta.get("negatable") else meta.get("action", "store_true")
            )
            group.add_argument(
                *flag_names(meta["flag"]),
                dest=field.name,
                action=action,
                default=None,
                help=meta["help"].replace("%", "%%"),
            )  # argparse formats help with %
        else:
            group.add_argument(
                *flag_names(meta["flag"]),
                dest=field.name,
                type=kind,
                default=None,
                metavar=field.name.upper(),
                choices=meta.get("choices"),
                help=f"{meta['help']} (default: {field.default})".replace("%", "%%"),
            )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, ModelOptions, "model options")


def options_from_args(args: argparse.Namespace, owner: type) -> dict:
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(owner)
        if "flag" in f.metadata and getattr(args, f.name, None) is not None
    }


def model_options_from_args(args: argparse.Namespace) -> dict:
    """The model options the user set (unset flags keep each model's own defaults)."""
    return options_from_args(args, ModelOptions)
