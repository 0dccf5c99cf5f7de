"""Command-line flags generated from dataclass fields: the CLI and the library accept the same options."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Sequence
from typing import Any

from ..config import ModelOptions

# One spelling per concept (docs/cli.md); the old spellings keep working for one release, hidden
# from --help, each printing one deprecation line: canonical flag → its old spellings.
ALIASES = {
    "--batch-size": ("--batch",),
    "--output": ("--out",),
    "--warmup-epochs": ("--warmup",),
    "--warmup-calls": ("--warmup",),
}
SHORT = {"--output": "-o"}  # the one short form


def warn_deprecated(prog: str, old: str, new: str) -> None:
    """The one line an old spelling prints: what to use instead, and that it goes."""
    print(f"{prog}: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


class DeprecatedSpelling(argparse.Action):
    """An old spelling: does what the new one does, hidden from --help, one line on stderr."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, new: str, value: Any = None, **kwargs: Any
    ) -> None:
        self.new, self.value = new, value
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        assert option_string is not None  # `deprecated` only adds optional arguments (--old)
        warn_deprecated(parser.prog, option_string, self.new)
        setattr(namespace, self.dest, self.value if self.nargs == 0 else values)


# What argparse's add_argument is on: a parser or an argument group.
Container = argparse._ActionsContainer


def deprecated(parser: Container, old: str, new: str, dest: str, value: Any = None, **kwargs: Any) -> None:
    """`old` as a hidden, deprecated spelling of `new` (a flag with value=..., else an option)."""
    if value is not None:
        kwargs["nargs"] = 0
    parser.add_argument(old, dest=dest, action=DeprecatedSpelling, new=new, value=value, **kwargs)


OLD = "__old"  # dest suffix of an old spelling of a positional argument (argparse would overwrite it)


def resolve_old_spellings(args: argparse.Namespace) -> None:
    """Move what an old spelling of a positional argument gave (`--model X` for MODEL) into it."""
    for name in [n for n in vars(args) if n.endswith(OLD)]:
        value, target = getattr(args, name), name[: -len(OLD)]
        if getattr(args, target, None) not in (None, value):
            raise ValueError(
                f"{target.upper()} given twice ({getattr(args, target)!r} and {value!r}); give it once"
            )
        setattr(args, target, value)
        delattr(args, name)


def add_option(
    parser: Container, canonical: str, *, aliases: tuple[str, ...] = (), **kwargs: Any
) -> argparse.Action:
    """The option `canonical` (with its short form), and its old spellings as deprecated ones."""
    names = (SHORT[canonical], canonical) if canonical in SHORT else (canonical,)
    action = parser.add_argument(*names, **kwargs)
    for old in (*ALIASES.get(canonical, ()), *aliases):
        if action.nargs == 0:
            deprecated(parser, old, canonical, action.dest, value=action.const)
        else:
            deprecated(
                parser,
                old,
                canonical,
                action.dest,
                type=action.type,
                nargs=action.nargs,
                metavar=action.metavar,
            )
    return action


def _option_type(owner: type, field: dataclasses.Field) -> Any:
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
            add_option(
                group,
                meta["flag"],
                dest=field.name,
                action=action,
                default=None,
                help=meta["help"].replace("%", "%%"),
            )  # argparse formats help with %
        else:
            add_option(
                group,
                meta["flag"],
                dest=field.name,
                type=kind,
                default=None,
                metavar=field.name.upper(),
                choices=meta.get("choices"),
                help=_with_default(meta["help"], field.default).replace("%", "%%"),
            )


def _with_default(text: str, default: object) -> str:
    """The help with its default, where there is one to state: None means "decided elsewhere", which
    the help itself says (per model, from the data, ...), never "(default: None)"."""
    return text if default is None else f"{text} (default: {default})"


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
