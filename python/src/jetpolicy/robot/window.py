"""`jetpolicy window`: the live runner's own in-loop timing over a window, for the timing gate.

The gate used to run `jetpolicy bench` as a second root process beside the service: it measured a
process that competes with the service for the CPU, its caches and the GPU, and that is not the
service. This reads what the service itself measured: two snapshots of its status `--duration`
apart, and the differences of their cumulative counters and inference histogram, so exactly the
ticks between the two writes count (neither the ring's last 4096 ticks nor the start-up ones).

It prints one JSON object shaped like `jetpolicy bench`'s where the gate and the report read it
(`inference_us`, `deadline_miss_rate`, `backend`, `ticks`, `rate_hz`), and refuses (exit 2, cause
and fix on stderr) a window it cannot vouch for: no or a stale status, another process than the
one expected or one that restarted inside the window, another release, too few ticks. While it
waits it samples the conditions the window ran under (jetpolicy.robot.conditions: tegrastats on
L4T, /proc and thermal zones elsewhere).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.robot.busy import DEFAULT_STALE_AFTER_S
from jetpolicy.robot.conditions import (
    ConditionSampler,
    ConditionSource,
    add_conditions_option,
    select_sampler,
)
from jetpolicy.robot.health import loaded_release
from jetpolicy.robot.process_info import describe_process
from jetpolicy.robot.stats import histogram_percentiles_us
from jetpolicy.robot.status import read_status

__all__ = [
    "DEFAULT_MIN_TICKS",
    "DEFAULT_WARMUP_TICKS",
    "SOURCE",
    "ConditionSampler",  # re-exported: jetpolicy.robot.conditions is its home
    "WindowError",
    "histogram_delta",
    "measure_window",
    "register",
    "window_command",
    "window_result",
]

SOURCE = "live runner"
# A p99 needs a hundred samples to be one; 5 s at 50 Hz gives 250.
DEFAULT_MIN_TICKS = 100
# Ticks the runner must have run before the window opens: the first ones after a start carry the
# cold caches and lazy initialisation that warm-up does not reach.
DEFAULT_WARMUP_TICKS = 100
DEFAULT_POLL_S = 0.25
DEFAULT_STATUS = Path("/run/jetpolicy/status.json")
QUANTILES = (50, 90, 99)
BENCH_FALLBACK = "or measure with a second process instead (policy_gate_timing_source: bench)"


class WindowError(JetpolicyError):
    """The window cannot be measured, or what it measured is not one runner's own loop."""


class NoLiveInputError(WindowError):
    """The runner ran (almost) no inference in the window: it had no fresh observations to run on.

    Its own exit code, so `policy_bench source=auto` can measure with a second process instead:
    an idle robot (the only kind the deploy switches) with a live transport infers nothing.
    """


# `jetpolicy window`'s exit code for NoLiveInputError (module_utils/jetpolicy_bench.py NO_LIVE_INPUT_RC).
NO_LIVE_INPUT_EXIT = 4


# ---- The two snapshots -------------------------------------------------------------------------


Scheme = Tuple[float, float, int]  # (first_edge_us, ratio, buckets)


def _histogram(status: Mapping[str, Any], what: str) -> Tuple[Scheme, Dict[int, int]]:
    """(scheme, counts by bucket index) of a status's inference histogram."""
    histogram = status.get("inference_histogram")
    if not isinstance(histogram, Mapping):
        raise WindowError(
            f"the {what} status has no inference_histogram: the runner is a runtime older than it",
            f"deploy a runtime with it (the release's own), {BENCH_FALLBACK}",
        )
    scheme = (float(histogram["first_edge_us"]), float(histogram["ratio"]), int(histogram["buckets"]))
    counts: Dict[int, int] = {}
    for key, count in histogram["counts"].items():
        if not str(key).isdigit() or int(key) >= scheme[2]:
            raise WindowError(
                f"the {what} status's inference_histogram has bucket {key!r} outside 0..{scheme[2] - 1}",
                "only the runner writes the status; restart the service",
            )
        counts[int(key)] = int(count)
    return scheme, counts


def histogram_delta(first: Mapping[str, Any], second: Mapping[str, Any]) -> Tuple[Scheme, Dict[int, int]]:
    """The scheme and the counts added between two status snapshots of one runner."""
    scheme, before = _histogram(first, "first")
    scheme_after, after = _histogram(second, "second")
    if scheme != scheme_after:
        raise WindowError(
            f"the inference histogram's buckets changed within the window ({scheme} -> {scheme_after})",
            "measure again: the runner was replaced by one of another runtime",
        )
    delta = {i: after.get(i, 0) - before.get(i, 0) for i in set(before) | set(after)}
    if any(n < 0 for n in delta.values()):
        raise WindowError(
            "the inference histogram lost counts within the window: the runner restarted",
            "measure again once the service runs steadily",
        )
    return scheme, {i: n for i, n in delta.items() if n > 0}


def _count(status: Mapping[str, Any], key: str) -> int:
    value = status.get(key, 0)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def window_result(
    first: Mapping[str, Any], second: Mapping[str, Any], duration_s: float, min_ticks: int = DEFAULT_MIN_TICKS
) -> Dict[str, Any]:
    """The window JSON from two snapshots of one runner's status (both already checked as its)."""
    scheme, delta = histogram_delta(first, second)
    first_edge_us, ratio, buckets = scheme
    deltas = {
        key: _count(second, key) - _count(first, key)
        for key in ("ticks", "deadline_misses", "skipped_periods", "overruns", "stale_ticks",
                    "safe_actions", "late_actions_dropped", "nonfinite_outputs")
    }  # fmt: skip
    ticks = deltas["ticks"]
    if ticks < 0:
        raise WindowError("the tick count went down within the window: the runner restarted",
                          "measure again once the service runs steadily")  # fmt: skip
    window_s = float(second["updated_at"]) - float(first["updated_at"])
    if ticks < min_ticks:
        raise WindowError(
            f"only {ticks} ticks fell in the {window_s:.2f} s window (at least {min_ticks} needed for a p99)",
            "measure a longer window (policy_gate_bench_duration_s / --duration), or lower --min-ticks",
        )
    inferences = sum(delta.values())
    if inferences < min_ticks:
        raise NoLiveInputError(
            f"only {inferences} of the window's {ticks} ticks ran the policy (the others had no fresh "
            f"observation: {deltas['stale_ticks']} stale ticks), at least {min_ticks} needed",
            f"feed the runner observations during the gate, {BENCH_FALLBACK}",
        )
    # As `jetpolicy bench` (DeadlineScheduler.deadline_miss_rate): missed deadlines (late ticks plus
    # periods skipped by overruns) per release (ticks run plus periods skipped). A skipped period is
    # a missed action for the robot; counting only late ticks over run ticks would hide overruns.
    missed = deltas["deadline_misses"] + deltas["skipped_periods"]
    releases = ticks + deltas["skipped_periods"]
    triple = second.get("loaded")
    loaded: Mapping[str, Any] = triple if isinstance(triple, Mapping) else {}
    return {
        "source": SOURCE,
        "pid": second.get("pid"),
        "release": loaded_release(dict(second)),
        "runtime": loaded.get("runtime"),
        "config": loaded.get("config"),
        "backend": second.get("backend", ""),
        "backend_reason": second.get("backend_reason", ""),
        "rate_hz": float(second.get("rate_hz") or 0.0),
        "duration_s": duration_s,
        "window_s": round(window_s, 3),
        "updated_at": {"start": first["updated_at"], "end": second["updated_at"]},
        "ticks_per_s": round(ticks / window_s, 2) if window_s > 0 else 0.0,
        "inferences": inferences,
        "inference_us": histogram_percentiles_us(delta, first_edge_us, ratio, buckets, QUANTILES),
        # Samples above the last edge: a percentile among them is that edge, a lower bound.
        "inference_overflow": delta.get(buckets - 1, 0),
        "histogram": {
            "first_edge_us": first_edge_us,
            "ratio": ratio,
            "buckets": buckets,
            "estimate": "bucket upper edge (at most ratio - 1 above the sample)",
        },
        "deadline_miss_rate": round(missed / releases, 6) if releases else 0.0,
        "missed_deadlines": missed,
        **deltas,
    }


def _refuse_unless_ours(
    status: Mapping[str, Any], what: str, expected_pid: Optional[int], expected_release: Optional[str]
) -> None:
    if expected_pid is not None and status.get("pid") != expected_pid:
        raise WindowError(
            f"the {what} status was written by pid {status.get('pid')}, the service's main pid is "
            f"{expected_pid}: the window would measure another process",
            "measure again once the service runs steadily (systemctl status jetpolicy-runner)",
        )
    if expected_release is not None:
        loaded = loaded_release(dict(status))
        if loaded != expected_release:
            raise WindowError(
                f"the runner loaded release {loaded or 'unknown'}, not {expected_release}: it was not "
                "restarted on the release being gated",
                "restart the service on the current release (the policy_service role does), then measure",
            )


def _read_live(status_file: Path, wall_s: float, stale_after_s: float, what: str) -> Dict[str, Any]:
    status = read_status(status_file)
    if status is None:
        raise WindowError(
            f"no runner status at {status_file}: the runner is not running",
            "start the service (systemctl start jetpolicy-runner) or pass the runner's --status file",
        )
    written_ago = wall_s - float(status["updated_at"])
    if abs(written_ago) > stale_after_s:
        raise WindowError(
            f"the {what} runner status {status_file} was written {written_ago:.1f} s ago (stale after "
            f"{stale_after_s:g} s): no runner rewrites it",
            "start the service, or check that the status file is the one its runner.json names",
        )
    if status.get("state") != "running":
        raise WindowError(
            f"the runner's state is {status.get('state')!r}, not 'running' ({status_file})",
            "measure a running service",
        )
    return status


def _second_status(
    status_file: Path,
    first: Mapping[str, Any],
    duration_s: float,
    stale_after_s: float,
    poll_s: float,
    sampler: ConditionSource,
    monotonic: Callable[[], float],
    sleep: Callable[[float], None],
) -> Dict[str, Any]:
    """Poll the status (sampling the conditions each time) until one written `duration_s` after
    `first` appears; refuse a window in which the runner stopped, restarted or got stuck."""
    pid = first.get("pid")
    started = monotonic()
    sampler.sample()
    while True:
        sleep(poll_s)
        sampler.sample()
        status = read_status(status_file)
        if status is None:
            raise WindowError(
                f"the runner status {status_file} disappeared within the window: the service stopped",
                "measure again once the service runs steadily (journalctl -u jetpolicy-runner)",
            )
        if status.get("pid") != pid:
            raise WindowError(
                f"the runner restarted within the window (pid {pid} -> {status.get('pid')}): it would "
                "measure two processes",
                "measure again once the service runs steadily (journalctl -u jetpolicy-runner)",
            )
        if status.get("state") != "running":
            raise WindowError(
                f"the runner's state turned {status.get('state')!r} within the window",
                "measure again once the service runs steadily (journalctl -u jetpolicy-runner)",
            )
        if float(status["updated_at"]) - float(first["updated_at"]) >= duration_s:
            return status
        if monotonic() - started > duration_s + stale_after_s:
            raise WindowError(
                f"the runner status {status_file} was not rewritten for {stale_after_s:g} s within the "
                "window: its loop is stuck or it writes no status",
                "check the service (jetpolicy health, journalctl -u jetpolicy-runner)",
            )


def measure_window(
    status_file: Path,
    duration_s: float,
    expected_pid: Optional[int] = None,
    expected_release: Optional[str] = None,
    warmup_ticks: int = DEFAULT_WARMUP_TICKS,
    min_ticks: int = DEFAULT_MIN_TICKS,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    poll_s: float = DEFAULT_POLL_S,
    sampler: Optional[ConditionSource] = None,
    make_sampler: Callable[[Optional[int]], ConditionSource] = ConditionSampler,
    wall: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Dict[str, Any]:
    """Read the status, wait until a status written `duration_s` later appears, judge the two.

    `wall` is the clock of the status's updated_at (staleness), `monotonic` the one the waits are
    timed by; both and `sleep` are injectable so tests run on a fake clock with a fake writer.
    The conditions are sampled at each poll of the window by `sampler`, or by `make_sampler(the
    runner's pid)`; it is stopped (a tegrastats process too) however the window ends."""
    if not duration_s > 0:
        raise WindowError(f"window duration {duration_s} s", "pass --duration > 0")
    first = _read_live(status_file, wall(), stale_after_s, "first")
    _refuse_unless_ours(first, "first", expected_pid, expected_release)
    pid = first.get("pid")
    rate = float(first.get("rate_hz") or 0.0)
    # A runner that just started: let it run its first ticks before the window opens.
    settle_until = monotonic() + stale_after_s + (warmup_ticks / rate if rate > 0 else 0.0)
    while _count(first, "ticks") < warmup_ticks:
        if monotonic() > settle_until:
            raise WindowError(
                f"the runner ran {_count(first, 'ticks')} of its {warmup_ticks} warm-up ticks in time",
                "check the service ticks (jetpolicy health), or lower --warmup-ticks",
            )
        sleep(poll_s)
        first = _read_live(status_file, wall(), stale_after_s, "first")
        _refuse_unless_ours(first, "first", pid, expected_release)
    _histogram(first, "first")  # a runtime without the histogram is refused before the wait
    runner_pid = pid if isinstance(pid, int) else None
    with sampler if sampler is not None else make_sampler(runner_pid) as conditions:
        second = _second_status(status_file, first, duration_s, stale_after_s, poll_s, conditions,
                                monotonic, sleep)  # fmt: skip
    _refuse_unless_ours(second, "second", pid, expected_release)
    result = window_result(first, second, duration_s, min_ticks)
    result["conditions"] = conditions.summary()  # after the sampler stopped: all its lines read
    if isinstance(pid, int):
        result["process"] = describe_process(pid)
    result["measured_at"] = round(wall(), 3)
    return result


def window_command(args: argparse.Namespace) -> int:
    def make_sampler(pid: Optional[int]) -> ConditionSource:
        return select_sampler(args.conditions, pid)

    try:
        result = measure_window(
            args.status,
            args.duration,
            expected_pid=args.pid,
            expected_release=args.release,
            warmup_ticks=args.warmup_ticks,
            min_ticks=args.min_ticks,
            stale_after_s=args.stale_after,
            poll_s=args.poll,
            make_sampler=make_sampler,
        )
    except NoLiveInputError as exc:
        print(f"jetpolicy window: {exc}", file=sys.stderr)
        return NO_LIVE_INPUT_EXIT
    except JetpolicyError as exc:
        print(f"jetpolicy window: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0


def register(subparsers: Any) -> None:
    """Add `jetpolicy window --status FILE --duration SECONDS [--pid PID] [--release ID] ...`."""
    parser = subparsers.add_parser(
        "window", help="the running service's own in-loop timing over a window (JSON on stdout)"
    )
    parser.add_argument(
        "--status", type=Path, default=DEFAULT_STATUS, metavar="FILE",
        help="the runner's status.json (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, required=True, metavar="SECONDS", help="window length")
    parser.add_argument("--pid", type=int, default=None, help="the service's MainPID: refuse another writer")
    parser.add_argument("--release", default=None, metavar="ID", help="refuse a runner on another release")
    parser.add_argument(
        "--warmup-ticks", type=int, default=DEFAULT_WARMUP_TICKS, metavar="N",
        help="ticks the runner must have run before the window opens (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--min-ticks", type=int, default=DEFAULT_MIN_TICKS, metavar="N",
        help="refuse a window with fewer ticks or inferences (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--stale-after", type=float, default=DEFAULT_STALE_AFTER_S, metavar="SECONDS",
        help="a status not rewritten for this long means no live loop (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--poll", type=float, default=DEFAULT_POLL_S, metavar="SECONDS",
        help="how often the status and the conditions are read (default: %(default)s)",
    )  # fmt: skip
    add_conditions_option(parser)
    parser.set_defaults(handler=window_command)
