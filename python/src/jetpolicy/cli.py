"""The `jetpolicy` command: a thin dispatcher over command modules.

Each command module exposes `register(subparsers)`, which adds its parser and sets `handler`
(args -> exit code). Adding a command is one line in COMMAND_MODULES.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from . import __version__
from .errors import JetpolicyError

__all__ = ["COMMAND_MODULES", "OPTIONAL_COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES = [
    "jetpolicy.example",
    "jetpolicy.export",
    "jetpolicy.validation",
    "jetpolicy.parity",
    "jetpolicy.releases",
    "jetpolicy.health",
    "jetpolicy.report",
    "jetpolicy.rollout",
]
# Modules written in parallel by other work; until they exist the CLI works without them.
OPTIONAL_COMMAND_MODULES = [
    "jetpolicy.runner",
    "jetpolicy.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jetpolicy", description="Trained control policies on Jetson robots"
    )
    parser.add_argument("--version", action="version", version=f"jetpolicy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for name in OPTIONAL_COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but one of its imports is missing: a real bug
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except JetpolicyError as exc:
        line = f"jetpolicy: error: {exc.cause}"
        if exc.fix:
            line += f"; fix: {exc.fix}"
        print(" ".join(line.split("\n")), file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
