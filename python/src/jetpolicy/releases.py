"""Release bookkeeping on the robot: the `current` symlink, atomic switches, and their history.

A release is `<root>/releases/<id>/`; `<root>/current` points at the active one. Every switch and
rollback appends one JSON line to `<root>/history.jsonl` (time, from, to, reason), which is also
how a rollback finds the release to return to.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import JetpolicyError

REQUIRED_FILES = ("policy.onnx", "policy.json")


@dataclass(frozen=True)
class SwitchResult:
    changed: bool
    previous: Optional[str]
    current: str
    action: str
    reason: str


def current_release(root: Path) -> Optional[str]:
    link = root / "current"
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def read_history(root: Path) -> List[Dict[str, Any]]:
    path = root / "history.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line after power loss must not block a rollback
    return records


def _append_history(root: Path, record: Dict[str, Any]) -> None:
    with (root / "history.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _check_release(root: Path, release_id: str) -> None:
    release = root / "releases" / release_id
    missing = [name for name in REQUIRED_FILES if not (release / name).is_file()]
    if not release.is_dir() or missing:
        raise JetpolicyError(
            f"release {release_id} is not complete in {root}/releases "
            f"(missing {', '.join(missing) or 'directory'})",
            "stage it with deploy.yml before switching",
        )


def _swap_current(root: Path, release_id: str) -> None:
    tmp = root / f".current.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(f"releases/{release_id}", tmp)
    # rename(2) replaces the link atomically: readers see the old or the new release, never neither.
    os.replace(tmp, root / "current")
    dir_fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def switch_release(root: Path, release_id: str, reason: str, action: str = "switch") -> SwitchResult:
    _check_release(root, release_id)
    previous = current_release(root)
    if previous == release_id:
        return SwitchResult(False, previous, release_id, action, reason)
    _swap_current(root, release_id)
    _append_history(
        root,
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "action": action,
            "from": previous,
            "to": release_id,
            "reason": reason,
        },
    )
    return SwitchResult(True, previous, release_id, action, reason)


def rollback_target(root: Path) -> str:
    """The release that was active before the current one was switched to."""
    current = current_release(root)
    if current is None:
        raise JetpolicyError(f"{root}/current does not exist", "deploy a release first")
    for record in reversed(read_history(root)):
        if record.get("action") == "switch" and record.get("to") == current and record.get("from"):
            return str(record["from"])
    raise JetpolicyError(
        f"no release before {current} in {root}/history.jsonl", "there is nothing to roll back to"
    )


def rollback(root: Path, reason: str) -> SwitchResult:
    return switch_release(root, rollback_target(root), reason, action="rollback")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("release", help="switch, roll back or show releases on this robot")
    parser.add_argument("--root", type=Path, default=Path("/opt/jetpolicy"))
    sub = parser.add_subparsers(dest="release_command", required=True)
    switch = sub.add_parser("switch", help="point current at a staged release (atomic)")
    switch.add_argument("release_id")
    switch.add_argument("--reason", default="deploy")
    back = sub.add_parser("rollback", help="return to the release active before the current one")
    back.add_argument("--reason", default="manual rollback")
    sub.add_parser("show", help="current release, rollback target and history as JSON")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    root: Path = args.root
    if args.release_command == "switch":
        print(json.dumps(asdict(switch_release(root, args.release_id, args.reason))))
    elif args.release_command == "rollback":
        print(json.dumps(asdict(rollback(root, args.reason))))
    else:
        try:
            target: Optional[str] = rollback_target(root)
        except JetpolicyError:
            target = None
        print(
            json.dumps(
                {"current": current_release(root), "rollback_target": target, "history": read_history(root)}
            )
        )
    return 0
