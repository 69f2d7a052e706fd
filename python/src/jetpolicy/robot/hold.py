"""`jetpolicy hold` / `jetpolicy release-hold`: an operator's "do not switch this robot now".

The hold is one small JSON file that `jetpolicy busy` (and so the deploy, before it switches a
robot) reads. Its default place is under /run, a tmpfs: a reboot clears it, which is what a hold on
a running robot means. It is not in /run/jetpolicy, because systemd removes that directory (the
runner unit's RuntimeDirectory=) whenever the runner stops, and a hold must outlive a restart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.common.schema import describe_problems, load_schema, version_problem

__all__ = [
    "DEFAULT_HOLD_FILE",
    "HOLD_SCHEMA",
    "HOLD_SCHEMA_VERSION",
    "RELEASE_COMMAND",
    "Hold",
    "HoldFileError",
    "describe_hold",
    "held_by",
    "read_hold",
    "register",
    "release_hold",
    "set_hold",
]

DEFAULT_HOLD_FILE = Path("/run/jetpolicy-hold/hold")
HOLD_SCHEMA = "operator-hold"
HOLD_SCHEMA_VERSION = 1
# What clears a hold, named in every message that reports one.
RELEASE_COMMAND = "sudo jetpolicy release-hold"


class HoldFileError(JetpolicyError):
    """The hold file cannot be read, written or removed, or is not a hold this jetpolicy wrote."""


@dataclass(frozen=True)
class Hold:
    """Who held the robot, why and since when (unix seconds), and the pid of the `hold` command."""

    reason: str
    by: str
    since: float
    pid: int

    def to_dict(self) -> Dict[str, Any]:
        return {"schema_version": HOLD_SCHEMA_VERSION, **asdict(self)}


def held_by(env: Mapping[str, str]) -> str:
    """The person behind the command: under sudo the one who ran sudo, not root."""
    for name in ("SUDO_USER", "USER", "LOGNAME"):
        if env.get(name):
            return env[name]
    return f"uid {os.getuid()}"


def describe_hold(hold: Hold) -> str:
    """One sentence for messages: who, why, since when."""
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(hold.since))
    why = f"reason: {hold.reason}" if hold.reason else "no reason given"
    return f"held by {hold.by} since {since} ({why})"


def read_hold(path: Path) -> Optional[Hold]:
    """The hold in `path`, or None where there is none; a file that is there but is not a hold
    raises HoldFileError (readers count it as a hold: whoever wrote it meant one)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HoldFileError(
            f"cannot read the hold file {path}: {exc.strerror}", "run it with sudo"
        ) from exc
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        what = "is empty" if not raw.strip() else "is not JSON"
        raise _malformed(path, what) from exc
    if not isinstance(data, dict):
        raise _malformed(path, f"holds a JSON {type(data).__name__}, not an object")
    problem = version_problem(data, "schema_version", HOLD_SCHEMA_VERSION)
    if problem:
        raise _malformed(path, problem)
    problems = load_schema(HOLD_SCHEMA).problems(data)
    if problems:
        raise _malformed(path, f"does not match its schema: {describe_problems(problems, HOLD_SCHEMA)}")
    return Hold(reason=data["reason"], by=data["by"], since=float(data["since"]), pid=data["pid"])


def _malformed(path: Path, what: str) -> HoldFileError:
    return HoldFileError(
        f"the hold file {path} {what}",
        f"look at it, then clear it with `{RELEASE_COMMAND}` (or set a new one with `sudo jetpolicy hold`)",
    )


def set_hold(path: Path, hold: Hold) -> str:
    """Write `hold` atomically (mode 0644, readable by every check); returns what it replaced:
    "" where there was no hold, else a sentence describing the old one."""
    try:
        previous = read_hold(path)
        replaced = f"replaced the earlier hold, {describe_hold(previous)}" if previous is not None else ""
    except HoldFileError as exc:
        replaced = f"replaced a hold file that was not readable as one ({exc.cause})"
    _make_directory(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(fd, 0o644)  # whatever the umask: `busy` may run as another user
            os.write(fd, (json.dumps(hold.to_dict(), sort_keys=True) + "\n").encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise _write_error(path, exc, "hold") from exc
    return replaced


def _make_directory(directory: Path) -> None:
    """Create the hold's directory 0755 (whatever the umask); an existing one is left as it is."""
    try:
        directory.mkdir(parents=True, mode=0o755)
    except FileExistsError:
        return
    except OSError as exc:
        raise _write_error(directory, exc, "hold") from exc
    os.chmod(directory, 0o755)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def release_hold(path: Path) -> Optional[str]:
    """Remove the hold; returns a sentence describing the hold removed, None where none was set."""
    try:
        hold = read_hold(path)
    except HoldFileError as exc:
        previous = f"a hold file that was not readable as one ({exc.cause})"
    else:
        if hold is None:
            return None
        previous = describe_hold(hold)
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _write_error(path, exc, "release-hold") from exc
    return previous


def _write_error(path: Path, exc: OSError, command: str) -> HoldFileError:
    if isinstance(exc, PermissionError):
        return HoldFileError(
            f"cannot change the hold file {path}: permission denied",
            f"run it with sudo (sudo jetpolicy {command})",
        )
    if isinstance(exc, IsADirectoryError):
        return HoldFileError(f"the hold file {path} is a directory", "pass --hold-file the path of a file")
    return HoldFileError(
        f"cannot change the hold file {path}: {exc.strerror}",
        f"check that {path.parent} is a writable directory, or pass --hold-file PATH",
    )


def register(subparsers: Any) -> None:
    """Add `jetpolicy hold [--reason TEXT]` and `jetpolicy release-hold`."""
    hold = subparsers.add_parser("hold", help="keep deploys from switching this robot until release-hold")
    hold.add_argument("--reason", default="", metavar="TEXT", help="why; shown where a deploy defers it")
    release = subparsers.add_parser("release-hold", help="remove the operator hold (exit 0 if none was set)")
    for parser, handler in ((hold, hold_command), (release, release_command)):
        parser.add_argument(
            "--hold-file", type=Path, default=DEFAULT_HOLD_FILE, metavar="PATH", help="default: %(default)s"
        )
        parser.set_defaults(handler=handler)


def hold_command(args: argparse.Namespace, now: Callable[[], float] = time.time) -> int:
    hold = Hold(reason=args.reason, by=held_by(os.environ), since=round(now(), 3), pid=os.getpid())
    replaced = set_hold(args.hold_file, hold)
    print(f"jetpolicy hold: {describe_hold(hold)}; deploys defer this robot until `{RELEASE_COMMAND}`")
    if replaced:
        print(f"jetpolicy hold: {replaced}")
    return 0


def release_command(args: argparse.Namespace) -> int:
    released = release_hold(args.hold_file)
    if released is None:
        print(f"jetpolicy release-hold: no hold was set ({args.hold_file} does not exist); nothing to do")
    else:
        print(f"jetpolicy release-hold: released the hold: {released}")
    return 0
