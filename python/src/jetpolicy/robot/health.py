"""Health check of a running policy service, read from the runner's own status file.

`systemctl is-active` only says a process exists; a policy is healthy when the runner it started
is the one writing the status, and ticks keep coming at the control rate over a window.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from jetpolicy.robot.status import StatusFileError, read_status

__all__ = ["HealthReport", "check", "judge", "loaded_release", "register"]


@dataclass
class HealthReport:
    healthy: bool
    reasons: List[str] = field(default_factory=list)
    ticks_per_s: float = 0.0
    expected_rate_hz: float = 0.0
    window_s: float = 0.0
    status: Dict[str, Any] = field(default_factory=dict)


def judge(
    first: Optional[Dict[str, Any]],
    second: Optional[Dict[str, Any]],
    elapsed_s: float,
    min_rate_fraction: float,
    expected_pid: Optional[int] = None,
    expected_release: Optional[str] = None,
) -> HealthReport:
    """Compare two status snapshots taken `elapsed_s` apart; with `expected_release`, the runner
    measured must also be the one that loaded that release (the one being gated)."""
    if first is None or second is None:
        return HealthReport(False, ["no status file: the runner has not written one (not started yet)"])
    rate = float(second.get("rate_hz") or 0.0)
    report = HealthReport(True, expected_rate_hz=rate, window_s=elapsed_s, status=second)
    if second.get("state") != "running":
        report.reasons.append(f"runner state is {second.get('state')!r}, not 'running'")
    if expected_pid is not None and second.get("pid") != expected_pid:
        report.reasons.append(
            f"status was written by pid {second.get('pid')}, "
            f"the service's main pid is {expected_pid} (stale status)"
        )
    if expected_release is not None:
        loaded = loaded_release(second)
        if loaded != expected_release:
            report.reasons.append(
                f"the runner measured loaded release {loaded or 'unknown'}, not {expected_release} "
                "(it was not restarted on the release being gated)"
            )
    miss = second.get("miss_policy")
    if isinstance(miss, dict) and miss.get("state") == "degraded":
        # Ticking, but the policy does not steer: the loop misses its deadlines and the miss
        # policy commands the safe action (docs/miss-policy.md).
        report.reasons.append(
            f"runner is degraded: it missed {miss.get('safe_after')} deadlines in a row and commands "
            f"the safe action; {miss.get('on_time_streak')} of {miss.get('recover_after')} on-time "
            "ticks to recover"
        )
    if first.get("pid") != second.get("pid"):
        report.reasons.append("the runner restarted during the health window")
    ticks = int(second.get("ticks", 0)) - int(first.get("ticks", 0))
    # The runner writes its status every status_interval_s; timing the tick count by the writes'
    # own timestamps (not by when this check read them) removes up to one interval of error.
    written_s = float(second.get("updated_at", 0.0)) - float(first.get("updated_at", 0.0))
    span_s = written_s if written_s > 0 else elapsed_s
    report.ticks_per_s = ticks / span_s if span_s > 0 else 0.0
    if written_s <= 0:
        report.reasons.append(f"the status file was not updated during the {elapsed_s:.1f} s window")
    if rate <= 0:
        report.reasons.append("status has no control rate")
    elif report.ticks_per_s < min_rate_fraction * rate:
        report.reasons.append(
            f"ticking at {report.ticks_per_s:.1f} Hz over {elapsed_s:.1f} s, needs at least "
            f"{min_rate_fraction * rate:.1f} Hz ({min_rate_fraction:.0%} of {rate:g} Hz)"
        )
    report.healthy = not report.reasons
    return report


def loaded_release(status: Dict[str, Any]) -> Optional[str]:
    """The release id the runner that wrote `status` loaded; from its `release` path for a runner
    older than `loaded` (a rollback to an older runtime is measured too)."""
    loaded = status.get("loaded")
    if isinstance(loaded, dict) and loaded.get("release"):
        return str(loaded["release"])
    release = status.get("release")
    return Path(str(release)).name if release else None


def check(
    status_file: Path,
    window_s: float,
    min_rate_fraction: float,
    expected_pid: Optional[int] = None,
    settle_timeout_s: float = 20.0,
    expected_release: Optional[str] = None,
) -> HealthReport:
    """Two status snapshots `window_s` apart, judged; an unreadable status is an unhealthy report
    whose reason is the reader's own error (so the role prints it like any other reason)."""
    try:
        return _measure(
            status_file, window_s, min_rate_fraction, expected_pid, settle_timeout_s, expected_release
        )
    except StatusFileError as exc:
        return HealthReport(False, [str(exc)], window_s=window_s)


def _measure(
    status_file: Path,
    window_s: float,
    min_rate_fraction: float,
    expected_pid: Optional[int],
    settle_timeout_s: float,
    expected_release: Optional[str] = None,
) -> HealthReport:
    deadline = time.monotonic() + settle_timeout_s
    first = read_status(status_file)
    # A freshly (re)started runner needs a moment before its first status write.
    while (
        first is None or (expected_pid is not None and first.get("pid") != expected_pid)
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
        first = read_status(status_file)
    start = time.monotonic()
    time.sleep(window_s)
    second = read_status(status_file)
    return judge(first, second, time.monotonic() - start, min_rate_fraction, expected_pid, expected_release)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("health", help="check that the running service ticks at its rate")
    parser.add_argument("--status", type=Path, default=Path("/run/jetpolicy/status.json"))
    parser.add_argument("--window-s", type=float, default=3.0)
    parser.add_argument("--min-rate-fraction", type=float, default=0.9)
    parser.add_argument("--pid", type=int, default=None, help="the service's MainPID")
    parser.add_argument("--settle-timeout-s", type=float, default=20.0)
    parser.add_argument("--release", help="the release id the runner must have loaded (the one gated)")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    report = check(
        args.status, args.window_s, args.min_rate_fraction, args.pid, args.settle_timeout_s, args.release
    )
    print(json.dumps(asdict(report)))
    return 0 if report.healthy else 1
