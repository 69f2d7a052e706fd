"""`jetpolicy busy`: whether switching this robot now would interrupt someone.

Busy means an operator hold is set (`jetpolicy hold`), or the runner is live and receiving
observations: a robot driven by its policy right now. The deploy polls this before it switches a
robot and defers the robot when it stays busy; the command only reports (JSON on stdout, exit 0)
and the caller decides, unless `--exit-code` asks for exit 3 when busy.

Where it cannot tell it says busy (a hold file it cannot read or parse, a status it cannot read):
a deferred robot is a visible, harmless outcome; a robot switched under its operator is not.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from jetpolicy.robot.hold import (
    DEFAULT_HOLD_FILE,
    RELEASE_COMMAND,
    Hold,
    HoldFileError,
    describe_hold,
    read_hold,
)
from jetpolicy.robot.status import StatusFileError, read_status

__all__ = [
    "BUSY_EXIT_CODE",
    "DEFAULT_FRESH_WITHIN_S",
    "DEFAULT_STALE_AFTER_S",
    "BusyReport",
    "check_busy",
    "judge_hold",
    "judge_observations",
    "register",
]

BUSY_EXIT_CODE = 3
# An observation this close before the status's own updated_at counts as live input.
DEFAULT_FRESH_WITHIN_S = 2.0
# A status not rewritten for this long was left by a runner that no longer runs its loop (it
# rewrites it every status_interval_s: 0.5 s as deployed, 1 s by default).
DEFAULT_STALE_AFTER_S = 10.0

RUNNING, STOPPED, UNKNOWN = "running", "stopped", "unknown"


@dataclass
class BusyReport:
    """The verdict and every sentence behind it (busy ones first); `hold` is the hold file's
    content where it could be read, `runner` what the status says of the loop."""

    busy: bool = False
    reasons: List[str] = field(default_factory=list)
    hold: Optional[Dict[str, Any]] = None
    last_observation_age_s: Optional[float] = None
    runner: str = UNKNOWN
    # Seconds spent waiting for the robot to become idle (`--wait`), 0 when asked once.
    waited_s: float = 0.0


@dataclass
class _Finding:
    busy: bool
    reason: str


def judge_hold(hold_file: Path) -> Tuple[Optional[_Finding], Optional[Hold]]:
    """A finding when a hold file is there (busy, readable or not), None when there is none."""
    try:
        hold = read_hold(hold_file)
    except HoldFileError as exc:
        return _Finding(True, f"an operator hold file is there but is not usable ({exc.cause}): "
                              f"counted as a hold; fix: {exc.fix}"), None  # fmt: skip
    if hold is None:
        return None, None
    return _Finding(True, f"operator hold: {describe_hold(hold)}; `{RELEASE_COMMAND}` clears it"), hold


def judge_observations(
    status: Optional[Dict[str, Any]], now_s: float, fresh_within_s: float, stale_after_s: float
) -> Tuple[_Finding, str, Optional[float]]:
    """From a status snapshot: a finding, the runner's state and the last observation's age now."""
    if status is None:
        return _Finding(False, "no runner status file: the runner is not running a live loop"), STOPPED, None
    state = status.get("state")
    updated_at = float(status["updated_at"])
    written_ago = now_s - updated_at
    seen = status.get("last_observation_at")
    age = round(max(0.0, now_s - float(seen)), 3) if seen is not None else None
    if abs(written_ago) > stale_after_s:
        # Either sign: a status from "the future" was written before the clock stepped back, and
        # a live runner would have rewritten it since.
        stale = f"the runner status was written {written_ago:.1f} s ago (stale after {stale_after_s:g} s)"
        return _Finding(False, f"{stale}: the runner is not running a live loop"), STOPPED, age
    if state not in ("starting", "running"):
        return _Finding(False, f"the runner's state is {state}: no live loop"), STOPPED, age
    if "last_observation_at" not in status:
        return _Finding(False, "the runner does not report when observations arrive (a runtime older "
                               "than last_observation_at): not counted as busy"), RUNNING, None  # fmt: skip
    if seen is None:
        never = "the runner has received no live observation since it started"
        return _Finding(False, f"{never} (a synthetic or replayed source is not live input)"), RUNNING, None
    before_status = updated_at - float(seen)
    if before_status <= fresh_within_s:
        return _Finding(True, f"receiving observations: last one {age:.1f} s ago"), RUNNING, age
    return _Finding(False, f"not receiving observations: last one {age:.1f} s ago "
                           f"(busy within {fresh_within_s:g} s)"), RUNNING, age  # fmt: skip


def check_busy(
    status_file: Path,
    hold_file: Path = DEFAULT_HOLD_FILE,
    fresh_within_s: float = DEFAULT_FRESH_WITHIN_S,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    now: Callable[[], float] = time.time,
) -> BusyReport:
    """Both rules applied to the files as they are now."""
    report = BusyReport()
    hold_finding, hold = judge_hold(hold_file)
    report.hold = hold.to_dict() if hold is not None else None
    findings: List[_Finding] = [hold_finding] if hold_finding is not None else []
    try:
        status = read_status(status_file)
    except StatusFileError as exc:
        findings.append(_Finding(True, f"cannot tell whether the runner receives observations: {exc.cause}; "
                                       f"counted as busy; fix: {exc.fix}"))  # fmt: skip
    else:
        finding, report.runner, report.last_observation_age_s = judge_observations(
            status, now(), fresh_within_s, stale_after_s
        )
        findings.append(finding)
    report.busy = any(f.busy for f in findings)
    report.reasons = [f.reason for f in findings if f.busy] + [f.reason for f in findings if not f.busy]
    return report


def wait_until_idle(
    check: Callable[[], BusyReport],
    wait_s: float,
    poll_s: float,
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> BusyReport:
    """Ask `check` until the robot is idle or `wait_s` has passed; the last answer, with the wait.

    One call on the robot instead of a retry loop in the playbook: the deploy's switch waits for a
    robot that stops driving within the window and defers one that does not."""
    started = now()
    while True:
        report = check()
        waited = now() - started
        if not report.busy or waited >= wait_s:
            report.waited_s = round(waited, 3)
            return report
        sleep(max(0.0, min(poll_s, wait_s - waited)))


def register(subparsers: Any) -> None:
    """Add `jetpolicy busy --status FILE [--hold-file PATH] [--fresh-within S] [--stale-after S]`."""
    parser = subparsers.add_parser(
        "busy", help="is this robot in use (live observations or an operator hold)? JSON on stdout"
    )
    parser.add_argument(
        "--status", type=Path, default=Path("/run/jetpolicy/status.json"), metavar="FILE",
        help="the runner's status.json (default: %(default)s)",
    )
    parser.add_argument(
        "--hold-file", type=Path, default=DEFAULT_HOLD_FILE, metavar="PATH", help="default: %(default)s"
    )
    parser.add_argument(
        "--fresh-within", type=float, default=DEFAULT_FRESH_WITHIN_S, metavar="SECONDS",
        help="busy when an observation came this close before the status was written (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--stale-after", type=float, default=DEFAULT_STALE_AFTER_S, metavar="SECONDS",
        help="a status not rewritten for this long means no live loop (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help="while busy, ask again every --poll seconds for up to this long (default: ask once)",
    )  # fmt: skip
    parser.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help="default: %(default)s")
    parser.add_argument(
        "--exit-code", action="store_true", help=f"exit {BUSY_EXIT_CODE} when busy (for shell use), else 0"
    )
    parser.set_defaults(handler=busy_command)


def busy_command(args: argparse.Namespace, now: Callable[[], float] = time.time) -> int:
    def check() -> BusyReport:
        return check_busy(args.status, args.hold_file, args.fresh_within, args.stale_after, now)

    report = wait_until_idle(check, args.wait, args.poll) if args.wait > 0 else check()
    print(json.dumps(asdict(report), sort_keys=True))
    return BUSY_EXIT_CODE if report.busy and args.exit_code else 0
