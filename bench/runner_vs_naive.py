"""The jetpolicy control loop versus a naive `sleep(period - elapsed)` loop, in one process.

Both loops run the same ONNX MLP (48->256->256->12, written by `jetpolicy.controller.example`) on the same
synthetic observations at each rate, and both are scored by the same code against an absolute
grid: tick k of a run is due at t0 + k*period and must finish by t0 + (k+1)*period (for the
runner, t0 + its release slot, so skipped periods are not forgiven: they show up in drift).

    .venv/bin/python bench/runner_vs_naive.py [--rates 50 500 1000] [--duration-s 4] [--spin-us N]

Columns: drift % (mean actual period vs nominal), period error p99 (|actual period - nominal|),
deadline-miss rate (work ended after its absolute deadline), inference p50/p99 (policy.step).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jetpolicy.controller.example import build_example
from jetpolicy.robot.bench import measured_loop
from jetpolicy.robot.config import default_spin_us
from jetpolicy.robot.policy import Policy, load_policy
from jetpolicy.robot.realtime import set_fifo_priority
from jetpolicy.robot.runner import warm_up
from jetpolicy.robot.sources import SyntheticSource


class Trace:
    """Preallocated per-tick timestamps, scored the same way for both loops."""

    def __init__(self, capacity: int) -> None:
        self.start = np.zeros(capacity, dtype=np.int64)
        self.end = np.zeros(capacity, dtype=np.int64)
        self.deadline = np.zeros(capacity, dtype=np.int64)
        self.inference = np.zeros(capacity, dtype=np.int64)
        self.n = 0

    def score(self, period_ns: int) -> dict[str, float]:
        n = self.n
        start, end, deadline = self.start[:n], self.end[:n], self.deadline[:n]
        mean_period = (start[-1] - start[0]) / (n - 1)
        period_error = np.abs(np.diff(start) - period_ns)
        return {
            "ticks": float(n),
            "drift_pct": (mean_period - period_ns) / period_ns * 100.0,
            "period_error_p99_us": float(np.percentile(period_error, 99)) / 1e3,
            "deadline_miss_rate": float(np.mean(end > deadline)),
            "inference_p50_us": float(np.percentile(self.inference[:n], 50)) / 1e3,
            "inference_p99_us": float(np.percentile(self.inference[:n], 99)) / 1e3,
        }


def run_runner_loop(policy: Policy, rate_hz: float, duration_s: float, spin_us: int) -> Trace:
    """The service's own ControlLoop + DeadlineScheduler, timestamps copied out after each tick."""
    loop = measured_loop(policy, rate_hz, duration_s, spin_us)
    scheduler = loop.scheduler
    capacity = int(duration_s * rate_hz) + 16
    trace = Trace(capacity)
    scheduler.start()
    end_ns = scheduler.first_release_ns + int(duration_s * 1e9)
    while trace.n < capacity:
        timing = loop.tick()
        i = trace.n
        trace.start[i] = timing.start_ns
        trace.end[i] = timing.end_ns
        trace.deadline[i] = timing.deadline_ns
        trace.n += 1
        if timing.end_ns >= end_ns:
            break
    trace.inference[: trace.n] = loop.inference.values()[: trace.n]
    return trace


def run_naive_loop(policy: Policy, rate_hz: float, duration_s: float) -> Trace:
    """The baseline: step, then sleep whatever is left of the period measured from this tick's start."""
    period_ns = round(1e9 / rate_hz)
    source = SyntheticSource(policy.observation_specs, rate_hz)
    capacity = int(duration_s * rate_hz) + 16
    trace = Trace(capacity)
    t0 = time.monotonic_ns()
    stop = t0 + int(duration_s * 1e9)
    while trace.n < capacity:
        start = time.monotonic_ns()
        observation = source.poll()
        assert observation is not None
        before = time.monotonic_ns()
        policy.step(observation)
        after = time.monotonic_ns()
        i = trace.n
        trace.start[i] = start
        trace.end[i] = after
        trace.deadline[i] = t0 + (i + 1) * period_ns  # absolute, like the runner's
        trace.inference[i] = after - before
        trace.n += 1
        if after >= stop:
            break
        elapsed = time.monotonic_ns() - start
        if elapsed < period_ns:
            time.sleep((period_ns - elapsed) / 1e9)
    return trace


def ratio(a: float, b: float) -> str:
    if b == 0:
        return "n/a" if a == 0 else "inf"
    return f"{a / b:.3f}"


def table(rate: float, runner: dict[str, float], naive: dict[str, float]) -> str:
    rows = [
        ("ticks", "ticks", "{:.0f}"),
        ("mean-period drift %", "drift_pct", "{:+.4f}"),
        ("period error p99 us", "period_error_p99_us", "{:.1f}"),
        ("deadline-miss rate", "deadline_miss_rate", "{:.4f}"),
        ("inference p50 us", "inference_p50_us", "{:.1f}"),
        ("inference p99 us", "inference_p99_us", "{:.1f}"),
    ]
    lines = [f"### {rate:g} Hz", "", "| metric | runner | naive | runner/naive |", "|---|---:|---:|---:|"]
    for label, key, fmt in rows:
        lines.append(
            f"| {label} | {fmt.format(runner[key])} | {fmt.format(naive[key])} "
            f"| {ratio(runner[key], naive[key])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 500.0, 1000.0])
    parser.add_argument("--duration-s", type=float, default=4.0, help="measured seconds per loop and rate")
    parser.add_argument("--spin-us", type=int, default=None, help="default: the runner's auto spin")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument(
        "--fifo-priority", type=int, default=None, help="run BOTH loops under SCHED_FIFO at this priority"
    )
    args = parser.parse_args(argv)
    if args.fifo_priority is not None:
        # Same priority for both loops so the comparison stays about the loop design.
        print(set_fifo_priority(args.fifo_priority).detail + " (both loops)", flush=True)
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="jetpolicy-bench-") as tmp:
        release = Path(tmp)
        build_example(release, obs=48, hidden=(256, 256), act=12)
        policy = load_policy(release, backend="onnxruntime")
        try:
            for rate in args.rates:
                spin = args.spin_us if args.spin_us is not None else default_spin_us(rate)
                warm_up(policy, 200)
                runner = run_runner_loop(policy, rate, args.duration_s, spin).score(round(1e9 / rate))
                policy.reset_state()
                naive = run_naive_loop(policy, rate, args.duration_s).score(round(1e9 / rate))
                results[f"{rate:g}"] = {"runner": runner, "naive": naive}
                print(table(rate, runner, naive), flush=True)
        finally:
            policy.close()
    sched = f"SCHED_FIFO {args.fifo_priority}" if args.fifo_priority is not None else "SCHED_OTHER"
    print(
        f"{sched}, spin_us={args.spin_us if args.spin_us is not None else 'auto'}, "
        f"duration {args.duration_s:g} s per loop, python {sys.version.split()[0]}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
