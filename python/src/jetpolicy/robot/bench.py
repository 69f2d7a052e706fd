"""`jetpolicy bench`: the policy measured inside the runner's own loop at the target rate.

A tight-loop benchmark reports warm-cache numbers a robot never sees; here every tick waits for
its absolute release exactly like the service (same DeadlineScheduler, same ControlLoop), with
synthetic observations, so inference times include the cold caches that sleeping causes.

With `--config` it takes the runner's own configuration (release, backend, engine, rate, spin,
real-time settings): the timing gate runs it so in the runner's bench unit, as the runner's user
and under its scheduling, CPU affinity and sandbox. The result's `process` says what the kernel
reports for the process that measured (user, scheduler, CPUs, seccomp), whoever started it.

While the measured loop runs, the conditions (jetpolicy.robot.conditions: tegrastats on L4T, /proc
and thermal zones elsewhere) are sampled from a background thread into `conditions`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, TextIO

from jetpolicy.common.errors import ConfigError, JetpolicyError
from jetpolicy.robot.backends.base import BACKEND_KINDS
from jetpolicy.robot.conditions import (
    BackgroundSampling,
    ConditionSource,
    add_conditions_option,
    select_sampler,
)
from jetpolicy.robot.config import RealtimeConfig, default_spin_us, engine_for_release, load_config
from jetpolicy.robot.process_info import describe_process
from jetpolicy.robot.realtime import apply_realtime
from jetpolicy.robot.runner import ControlLoop, NullSink, loop_metrics
from jetpolicy.robot.scheduler import DeadlineScheduler
from jetpolicy.robot.sources import SyntheticSource
from jetpolicy.robot.stats import LoopStats

__all__ = ["bench_command", "measure_loop", "measured_loop", "register", "run_bench"]

if TYPE_CHECKING:
    from jetpolicy.robot.policy import Policy

# The progress bar is redrawn only when this much time is left before the next release.
_PROGRESS_SLACK_NS = 300_000
# How often the conditions are sampled beside the loop: a few /proc reads, off the loop's thread.
CONDITIONS_INTERVAL_S = 0.5


def _progress(stream: TextIO, done_s: float, total_s: float, ticks: int) -> None:
    width = 30
    frac = min(1.0, done_s / total_s) if total_s > 0 else 1.0
    filled = int(frac * width)
    bar = "#" * filled + "-" * (width - filled)
    stream.write(f"\r[{bar}] {frac * 100:5.1f}% {done_s:5.1f}/{total_s:.1f} s {ticks} ticks")
    stream.flush()


def measure_loop(
    loop: ControlLoop, duration_s: float, progress: Optional[TextIO] = None, label: str = ""
) -> None:
    """Run `loop` for `duration_s` of absolute-grid time, redrawing progress in the slack."""
    scheduler = loop.scheduler
    scheduler.start()
    start = scheduler.first_release_ns
    end = start + int(duration_s * 1e9)
    next_draw = start
    if progress is not None and label:
        progress.write(label + "\n")
    while True:
        timing = loop.tick()
        if timing.end_ns >= end:
            break
        if progress is not None and timing.end_ns >= next_draw and loop.slack_ns() > _PROGRESS_SLACK_NS:
            _progress(progress, (timing.end_ns - start) / 1e9, duration_s, scheduler.ticks)
            next_draw = timing.end_ns + 200_000_000
    if progress is not None:
        _progress(progress, duration_s, duration_s, scheduler.ticks)
        progress.write("\n")


def measured_loop(
    policy: Policy,
    rate_hz: float,
    duration_s: float,
    spin_us: int,
    now_ns: Callable[[], int] = time.monotonic_ns,
    sleep_s: Callable[[float], None] = time.sleep,
) -> ControlLoop:
    """The service's own loop on synthetic observations, with stats rings sized for the whole run
    so the percentiles cover every tick, not a recent window. The clock is injectable (tests)."""
    scheduler = DeadlineScheduler(1.0 / rate_hz, spin_us * 1e-6, now_ns=now_ns, sleep_s=sleep_s)
    return ControlLoop(
        policy,
        scheduler,
        SyntheticSource(policy.observation_specs, rate_hz),
        NullSink(),
        stale_after_ticks=1_000_000,
        stats=LoopStats(scheduler.period_ns, capacity=int(duration_s * rate_hz) + 16),
        clock_ns=now_ns,
    )


def run_bench(
    release_dir: Path,
    rate_hz: Optional[float] = None,
    duration_s: float = 10.0,
    backend: str = "auto",
    engine: Optional[Path] = None,
    warmup_s: float = 1.0,
    spin_us: Optional[int] = None,
    progress: Optional[TextIO] = None,
    now_ns: Callable[[], int] = time.monotonic_ns,
    sleep_s: Callable[[float], None] = time.sleep,
    realtime: Optional[RealtimeConfig] = None,
    sampler: Optional[ConditionSource] = None,
) -> Dict[str, Any]:
    """Measure the policy in the control loop; returns the `jetpolicy bench` JSON document.

    `now_ns`/`sleep_s` are the loop's clock (a fake one in tests, so tick counts are exact).
    `realtime` (the runner's settings) is applied after the warm-up, where the runner applies it.
    `sampler` samples the conditions of the measured loop (default: auto, this process's pid)."""
    from jetpolicy.robot.policy import load_policy

    if duration_s <= 0 or warmup_s < 0:
        raise ConfigError(f"duration {duration_s} s / warm-up {warmup_s} s out of range", "use duration > 0")
    policy = load_policy(release_dir, backend=backend, engine=engine)
    try:
        rate = float(rate_hz or policy.manifest.control_rate_hz)
        spin_us = spin_us if spin_us is not None else default_spin_us(rate)
        period_s = 1.0 / rate
        if warmup_s > 0:
            warm = ControlLoop(
                policy,
                DeadlineScheduler(period_s, spin_us * 1e-6, now_ns=now_ns, sleep_s=sleep_s),
                SyntheticSource(policy.observation_specs, rate),
                NullSink(),
                stale_after_ticks=1_000_000,
                clock_ns=now_ns,
            )
            measure_loop(warm, warmup_s)
        applied = apply_realtime(realtime) if realtime is not None else []
        policy.reset_state()
        loop = measured_loop(policy, rate, duration_s, spin_us, now_ns, sleep_s)
        conditions = sampler if sampler is not None else select_sampler("auto", os.getpid())
        with conditions, BackgroundSampling(conditions, CONDITIONS_INTERVAL_S):
            measure_loop(
                loop, duration_s, progress, label=f"bench {release_dir} at {rate:g} Hz for {duration_s:g} s"
            )
        metrics = loop_metrics(loop)
    finally:
        policy.close()
    return {
        "release": release_dir.resolve().name,
        "backend": policy.backend_name,
        "backend_reason": policy.backend_reason,
        "rate_hz": rate,
        "duration_s": duration_s,
        "spin_us": spin_us,
        "ticks": metrics["ticks"],
        "inference_us": metrics["inference_us"],
        "latency_us": metrics["latency_us"],
        "period_error_us": metrics["period_error_us"],
        "jitter_us": metrics["jitter_us"],
        "drift_pct": metrics["drift_pct"],
        "deadline_miss_rate": metrics["deadline_miss_rate"],
        "deadline_misses": metrics["deadline_misses"],
        "overruns": metrics["overruns"],
        "skipped_periods": metrics["skipped_periods"],
        "conditions": conditions.summary(),
        "measured_at": round(time.time(), 3),
        "realtime": [result.to_dict() for result in applied],
        "process": describe_process(),
    }


def _settings(args: argparse.Namespace) -> Dict[str, Any]:
    """run_bench's settings: the command line's, over the runner config's when --config is given."""
    if args.config is None:
        if args.release is None:
            raise ConfigError("no release to benchmark", "give --release DIR or --config RUNNER_JSON")
        return {"release_dir": args.release, "rate_hz": args.rate_hz, "backend": args.backend or "auto",
                "engine": args.engine, "spin_us": args.spin_us, "realtime": None}  # fmt: skip
    config = load_config(args.config)
    # Resolved once, as the runner does: `current` may be switched while this runs.
    release_dir = (args.release or config.release_dir).resolve()
    return {
        "release_dir": release_dir,
        "rate_hz": args.rate_hz if args.rate_hz is not None else config.rate_hz,
        "backend": args.backend or config.backend,
        "engine": args.engine or engine_for_release(config.engine, release_dir),
        "spin_us": args.spin_us if args.spin_us is not None else config.spin_us,
        "realtime": config.realtime,
    }


def bench_command(args: argparse.Namespace) -> int:
    try:
        result = run_bench(
            duration_s=args.duration_s,
            warmup_s=args.warmup_s,
            progress=None if args.quiet else sys.stderr,
            **_settings(args),
            sampler=select_sampler(args.conditions, os.getpid()),
        )
    except JetpolicyError as exc:
        print(f"jetpolicy bench: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0


def register(subparsers: Any) -> None:
    """Add `jetpolicy bench (--release DIR | --config RUNNER_JSON) [--rate-hz N] [--duration-s S] ...`."""
    parser = subparsers.add_parser(
        "bench", help="measure the policy inside the real-time loop (JSON on stdout)"
    )
    parser.add_argument(
        "--release", type=Path, default=None, help="release dir with policy.onnx + policy.json"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the runner's config: its release, backend, engine, rate, spin and real-time settings "
        "(each option given here wins)",
    )
    parser.add_argument("--rate-hz", type=float, default=None, help="loop rate (default: the manifest's)")
    parser.add_argument("--duration-s", type=float, default=10.0, help="measured time")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="unmeasured loop time first")
    parser.add_argument("--backend", choices=BACKEND_KINDS, default=None, help="default: auto")
    parser.add_argument("--engine", type=Path, default=None, help="TensorRT engine file")
    parser.add_argument("--spin-us", type=int, default=None, help="busy-wait before each release (auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    add_conditions_option(parser)
    parser.set_defaults(handler=bench_command)
