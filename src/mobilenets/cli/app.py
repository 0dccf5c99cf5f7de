"""The `mobilenets` command: one parser whose command groups register their subcommands (core,
pretrained, deploy, explain), and the error handling every command shares: a user's mistake is one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ..deploy.base import VERBOSE_ENV
from ..training.train import Diverged, Interrupted
from . import core, deploy, explain, pretrained
from .options import resolve_old_spellings

EXIT_IO = 1  # the machine refused: disk full, permissions, read-only file system, output in use
EXIT_USAGE = 2  # bad input: argparse's own convention
EXIT_DIVERGED = 3  # training stopped at a non-finite loss; the checkpoints on disk are the last finite ones
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenets",
        description="MobileNets: models and their cost, training, published weights, deployment.",
        epilog="`mobilenets COMMAND --help` describes each command's flags.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="native runtimes' own log lines too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for group in (core, pretrained, deploy, explain):  # the order of `mobilenets --help`
        group.register(sub)
    return parser


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    return f"mobilenets: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # the user needs the message, not our source line
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"
    try:
        resolve_old_spellings(args)
        output = args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"mobilenets {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Diverged as diverged:
        print(f"mobilenets {args.command}: error: {diverged}", file=sys.stderr)
        return EXIT_DIVERGED
    except Interrupted as interrupted:
        print(f"mobilenets {args.command}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:  # disk full, no permission, read-only file system, a path in use
        print(f"mobilenets {args.command}: error: {error}", file=sys.stderr)
        return EXIT_IO
    except KeyboardInterrupt:  # outside the places that save state (loading data, writing plots, ...)
        print(f"mobilenets {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if output:
        try:
            print(output, flush=True)
        except BrokenPipeError:  # `mobilenets weights | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 0
