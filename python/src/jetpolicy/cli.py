"""The `jetpolicy` command: one table of commands, each owned by the side of the package it runs on.

The robot's wheel ships only `jetpolicy.common` and `jetpolicy.robot`, so on a robot the controller
commands are absent by construction (not by a failed import): `jetpolicy --help` there lists
what the robot can do.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import List, Optional, Tuple

from jetpolicy import __version__
from jetpolicy.common.errors import JetpolicyError

__all__ = ["COMMANDS", "build_parser", "controller_installed", "main"]

CONTROLLER_PACKAGE = "jetpolicy.controller"

# (side, module): each module exposes `register(subparsers)`, which adds its parser and sets
# `handler` (args -> exit code). Adding a command is one line here.
COMMANDS: Tuple[Tuple[str, str], ...] = (
    ("robot", "jetpolicy.robot.runner"),
    ("robot", "jetpolicy.robot.bench"),
    ("robot", "jetpolicy.robot.window"),
    ("robot", "jetpolicy.robot.parity"),
    ("robot", "jetpolicy.robot.releases"),
    ("robot", "jetpolicy.robot.health"),
    ("robot", "jetpolicy.robot.robot_status"),
    ("robot", "jetpolicy.robot.safe_action"),
    ("robot", "jetpolicy.robot.hold"),
    ("robot", "jetpolicy.robot.busy"),
    ("controller", "jetpolicy.controller.example"),
    ("controller", "jetpolicy.controller.export"),
    ("controller", "jetpolicy.controller.importer"),
    ("controller", "jetpolicy.controller.validation"),
    ("controller", "jetpolicy.controller.reference"),
    ("controller", "jetpolicy.controller.signing"),
    ("controller", "jetpolicy.controller.bundle"),
    ("controller", "jetpolicy.controller.report"),
    ("controller", "jetpolicy.controller.rollout"),
)


def controller_installed() -> bool:
    """True where the controller side is installed (the development and controller install)."""
    return importlib.util.find_spec(CONTROLLER_PACKAGE) is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jetpolicy", description="Trained control policies on Jetson robots"
    )
    parser.add_argument("--version", action="version", version=f"jetpolicy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    sides = {"robot", "controller"} if controller_installed() else {"robot"}
    for side, name in COMMANDS:
        if side in sides:
            importlib.import_module(name).register(subparsers)
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
