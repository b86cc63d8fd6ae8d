"""The `flaxnets` command line: parses, validates, calls the library.

Each sub-command lives in its own module under `flaxnets.commands`, which defines
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`. Command modules import
heavy dependencies (JAX, Grain, ...) inside `run` so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from flaxnets import commands
from flaxnets.errors import FlaxnetsError


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"flaxnets.commands.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-parser per command module."""
    parser = argparse.ArgumentParser(
        prog="flaxnets",
        description="Train, evaluate and inspect ImageNet classifiers in JAX/Flax.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `flaxnets` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args._run(args) or 0)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (`flaxnets models | head`): stop quietly, as Unix tools do, and
        # point stdout at /dev/null so the interpreter's final flush does not fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except FlaxnetsError as e:
        print(f"flaxnets {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        # One line, no traceback; a command may say what it kept (`flaxnets train`'s second Ctrl-C).
        print(f"flaxnets {args.command}: {e or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
