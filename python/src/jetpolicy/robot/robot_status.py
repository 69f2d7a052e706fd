"""`jetpolicy status`: what this robot's links select, what its runner loaded, what its history says.

The three should name one deployment, committed. When they do not (a deploy cut off after its
switch, a runner not restarted, a boot that recovered) this says which disagrees, as JSON on
stdout and one line on stderr, and exits 1, so a person or a script sees it without reading three
files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional

from jetpolicy.robot.deployment_state import (
    COMMITTED,
    Deployment,
    commit_state,
    record_matches,
    running_deployment,
    why_not_done,
)
from jetpolicy.robot.releases import current_deployment, read_history

__all__ = ["main_pid", "register", "robot_status"]


def main_pid(unit: str) -> Optional[int]:
    """The unit's MainPID from systemd (0: not running); None where systemctl cannot say."""
    try:
        proc = subprocess.run(
            ["systemctl", "show", "--property=MainPID", "--value", unit],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = proc.stdout.strip()
    return int(text) if proc.returncode == 0 and text.isdigit() else None


def robot_status(root: Path, status_file: Path, pid: Optional[int]) -> Dict[str, Any]:
    """The three views side by side, and the list of what disagrees (empty: all agree)."""
    links = current_deployment(root)
    history = read_history(root)
    loaded, runner_why = running_deployment(status_file, pid)
    last = history[-1] if history else None
    problems: List[str] = []
    if links.release is None:
        problems.append(f"{root}/current does not exist: nothing deployed")
    else:
        problems += why_not_done(links, links, history, (loaded, runner_why))
        if last is not None and not record_matches(last, links):
            problems.append(f"the last history entry names {last.get('to')}, the links {links.release}")
    return {
        "links": asdict(links),
        "loaded": asdict(loaded) if isinstance(loaded, Deployment) else None,
        "runner": runner_why or "running",
        "last_history": last,
        "committed": links.release is not None and commit_state(history, links) == COMMITTED,
        "agree": not problems,
        "problems": problems,
    }


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status", help="links vs running release vs history on this robot; exit 1 when they disagree"
    )
    parser.add_argument("--root", type=Path, default=Path("/opt/jetpolicy"))
    parser.add_argument("--status", type=Path, default=Path("/run/jetpolicy/status.json"))
    parser.add_argument("--unit", default="jetpolicy-runner", help="the runner's systemd unit (its MainPID)")
    parser.add_argument("--pid", type=int, help="the runner's pid; default: the unit's MainPID")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    pid = args.pid if args.pid is not None else main_pid(args.unit)
    report = robot_status(args.root, args.status, pid)
    print(json.dumps(report, sort_keys=True))
    if report["problems"]:
        print(f"jetpolicy status: disagree: {'; '.join(report['problems'])}", file=sys.stderr)
        return 1
    return 0
