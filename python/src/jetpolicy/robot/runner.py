"""The policy service: a fixed-rate control loop from observations to actions.

Per tick: wait for the absolute release -> take the newest observation -> policy.step (or the
safe action when the input is stale) -> publish what the miss policy allows (an action ready
after its deadline is never published; docs/miss-policy.md) -> record timing. Status/metrics writes, watchdog
pings and progress reporting run after the action is out and only when the slack before the next
release allows, so they never delay an action.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple, Union

import numpy as np

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.common.manifest import TensorSpec
from jetpolicy.robot.config import (
    RunnerConfig,
    TransportConfig,
    default_spin_us,
    engine_for_release,
    load_config,
)
from jetpolicy.robot.miss_policy import DECAY, FRESH, HOLD, SAFE, MissPolicy, MissPolicyConfig
from jetpolicy.robot.realtime import RealtimeResult, apply_realtime
from jetpolicy.robot.scheduler import DeadlineScheduler, TickTiming
from jetpolicy.robot.sdnotify import SdNotifier
from jetpolicy.robot.sources import ReplaySource, SyntheticSource
from jetpolicy.robot.stats import LatencyHistogram, LoopStats, Ring
from jetpolicy.robot.status import STATUS_SCHEMA_VERSION, StatusWriter
from jetpolicy.robot.transport import REJECT_REASONS, DatagramTransport, StaleTracker

__all__ = [
    "HOUSEKEEPING_BUDGET_NS",
    "ActionSink",
    "ControlLoop",
    "NullSink",
    "ObservationSource",
    "PolicyLike",
    "Runner",
    "build_io",
    "last_observation_at",
    "loaded_deployment",
    "loop_metrics",
    "main",
    "register",
    "run_command",
    "warm_up",
]

# Housekeeping (percentiles + two small file writes) measured at ~0.3 ms here; only start it when
# at least this much time is left before the next release, otherwise defer it by a tick.
HOUSEKEEPING_BUDGET_NS = 600_000


class PolicyLike(Protocol):
    """What the loop needs from jetpolicy.robot.policy.Policy (a fake in tests)."""

    @property
    def observation_specs(self) -> List[TensorSpec]: ...

    @property
    def action_specs(self) -> List[TensorSpec]: ...

    @property
    def backend_name(self) -> str: ...

    @property
    def backend_reason(self) -> str: ...

    def step(self, observations: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]: ...

    def safe_action(self) -> Dict[str, np.ndarray]: ...

    def reset_state(self) -> None: ...


class ObservationSource(Protocol):
    def poll(self) -> Optional[Dict[str, np.ndarray]]: ...

    def close(self) -> None: ...


class ActionSink(Protocol):
    def publish(self, actions: Mapping[str, np.ndarray], sequence: int, safe: bool = False) -> bool: ...


class NullSink:
    """Discards actions (bench, synthetic runs without a robot)."""

    def publish(self, actions: Mapping[str, np.ndarray], sequence: int, safe: bool = False) -> bool:
        return True


class ControlLoop:
    """One tick of the service; the runner and the bench share it so the bench measures the runner.

    What is published: the safe action when the input is stale or the policy's output is not
    finite; otherwise what the miss policy says (robot/miss_policy.py): the fresh action when it is
    ready before the tick's deadline, never one that is late.
    """

    def __init__(
        self,
        policy: PolicyLike,
        scheduler: DeadlineScheduler,
        source: ObservationSource,
        sink: ActionSink,
        stale_after_ticks: int,
        stats: Optional[LoopStats] = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        miss_policy: Optional[MissPolicyConfig] = None,
    ) -> None:
        self.policy = policy
        self.scheduler = scheduler
        self.source = source
        self.sink = sink
        self.stale = StaleTracker(stale_after_ticks)
        self.stats = stats or LoopStats(scheduler.period_ns)
        self.inference = Ring(self.stats.latency.capacity)
        # Every inference since the start, in fixed buckets: `jetpolicy window` takes the
        # difference of two status snapshots to judge exactly the ticks between them.
        self.inference_histogram = LatencyHistogram()
        self.miss_policy = MissPolicy(miss_policy or MissPolicyConfig())
        self._clock_ns = clock_ns
        # Copied once: the safe action must not change if the policy reuses its buffers.
        self._safe = {name: np.array(value, copy=True) for name, value in policy.safe_action().items()}
        # The last action published other than by hold/decay (what they hold and decay from), and
        # the buffers for the blend and the finiteness check: allocated here, not per tick.
        self._held = {name: np.array(value, copy=True) for name, value in self._safe.items()}
        self._blend = {name: np.empty_like(value) for name, value in self._safe.items()}
        self._finite = {name: np.empty(value.shape, dtype=bool) for name, value in self._safe.items()}
        self._observation: Optional[Mapping[str, np.ndarray]] = None
        # When the last fresh observation was taken (the loop clock's ns; None before the first):
        # `jetpolicy busy` reads it from the status to tell a robot in use from an idle one.
        self.last_observation_ns: Optional[int] = None
        # A synthetic or replayed source is not a robot in use: only live input makes it busy.
        self._live_source = bool(getattr(source, "live", True))
        self.safe_actions = 0
        self.late_actions_dropped = 0  # inference results ready after their deadline, not published
        self.nonfinite_outputs = 0  # ticks whose policy output held NaN or Inf
        self.sequence = 0  # sequence echoed in action packets: the observation's, else our tick count

    def tick(self) -> TickTiming:
        timing = self.scheduler.wait()
        observation = self.source.poll()
        fresh = observation is not None
        if fresh:
            self._observation = observation
            if self._live_source:
                # The tick's own wake-up stamp: no extra clock read, and no allocation in the loop.
                self.last_observation_ns = timing.start_ns
        stale = self.stale.update(fresh)
        observed = None if stale else self._observation
        inferred = observed is not None
        actions: Mapping[str, np.ndarray] = self._safe
        force_safe = not inferred
        if observed is not None:
            before = self._clock_ns()
            actions = self.policy.step(observed)
            took_ns = self._clock_ns() - before
            self.inference.push(took_ns)
            self.inference_histogram.add(took_ns)
            if not self._all_finite(actions):
                # NaN fed back through a recurrent state would stay there: start it afresh.
                self.nonfinite_outputs += 1
                self.policy.reset_state()
                force_safe = True
        late = self._clock_ns() > timing.deadline_ns
        what = self.miss_policy.update(timing.skipped, late)
        if inferred and late and not force_safe:
            self.late_actions_dropped += 1
        self.sequence = getattr(self.source, "last_sequence", timing.index)
        if force_safe or what == SAFE:
            self._publish_kept(self._safe, True)
        elif what == FRESH:
            self._publish_kept(actions, False)
        elif what == HOLD:
            self.sink.publish(self._held, self.sequence, False)
        elif what == DECAY:
            self.sink.publish(self._decayed(self.miss_policy.blend), self.sequence, False)
        timing = self.scheduler.end_tick()
        self.stats.record(timing.start_ns, timing.release_ns, timing.latency_ns)
        return timing

    def _publish_kept(self, actions: Mapping[str, np.ndarray], safe: bool) -> None:
        if safe:
            self.safe_actions += 1
        self.sink.publish(actions, self.sequence, safe)
        for name, held in self._held.items():
            np.copyto(held, actions[name], casting="same_kind")

    def _all_finite(self, actions: Mapping[str, np.ndarray]) -> bool:
        for name, flags in self._finite.items():
            np.isfinite(actions[name], out=flags)
            if not flags.all():
                return False
        return True

    def _decayed(self, blend: float) -> Dict[str, np.ndarray]:
        """held + blend * (safe - held): both ends lie within the action limits, so does the blend."""
        for name, out in self._blend.items():
            held = self._held[name]
            np.subtract(self._safe[name], held, out=out)
            np.multiply(out, blend, out=out, casting="same_kind")
            np.add(out, held, out=out)
        return self._blend

    def publish_safe(self) -> None:
        self._publish_kept(self._safe, True)

    def slack_ns(self) -> int:
        return self.scheduler.next_release_ns - self._clock_ns()

    def observation_age_ns(self) -> Optional[int]:
        """How long ago, on the loop's clock, the last fresh observation was taken (None: never)."""
        if self.last_observation_ns is None:
            return None
        return max(0, self._clock_ns() - self.last_observation_ns)


def warm_up(policy: PolicyLike, ticks: int) -> None:
    """Run the policy on zeros so first-call costs (allocation, lazy init) happen before the loop."""
    zeros = {spec.name: np.zeros(spec.shape, dtype=np.float32) for spec in policy.observation_specs}
    for _ in range(ticks):
        policy.step(zeros)
    policy.reset_state()


def build_io(
    transport: TransportConfig, policy: PolicyLike, rate_hz: float
) -> Tuple[ObservationSource, ActionSink, Optional[DatagramTransport]]:
    """The observation source and action sink for a transport config."""
    if transport.kind in ("udp", "unix"):
        socket_io = DatagramTransport(
            transport.kind,
            transport.bind,
            transport.action_to,
            policy.observation_specs,
            policy.action_specs,
            allowed_peers=transport.allowed_peers,
            max_packets_per_poll=transport.max_packets_per_tick,
            allow_wildcard_bind=transport.allow_wildcard_bind,
            allowed_uids=transport.allowed_uids,
        )
        return socket_io.receiver, socket_io.publisher, socket_io
    source: Union[SyntheticSource, ReplaySource]
    if transport.kind == "replay" and transport.path is not None:
        source = ReplaySource(transport.path, policy.observation_specs, loop=transport.loop)
    else:
        source = SyntheticSource(policy.observation_specs, rate_hz, seed=transport.seed)
    return source, NullSink(), None


class Runner:
    """The service: setup, the loop, housekeeping and a clean stop."""

    def __init__(
        self,
        config: RunnerConfig,
        duration_s: Optional[float] = None,
        now_ns: Callable[[], int] = time.monotonic_ns,
        sleep_s: Callable[[float], None] = time.sleep,
        config_file: Optional[Path] = None,
        wall_s: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        # The runner config file as resolved at start (<root>/configs/<name>), for `loaded`.
        self.config_file = config_file
        # What this process loaded, resolved once when it loads: the links may move under it.
        self.release_dir: Optional[Path] = None
        self.loaded: Optional[Dict[str, Optional[str]]] = None
        self.duration_s = duration_s
        # The loop's clock (scheduler and tick timing); injectable so durations are tested exactly.
        self._now_ns = now_ns
        self._sleep_s = sleep_s
        # The wall clock of the status timestamps (started_at, updated_at, last_observation_at).
        self._wall_s = wall_s
        self.stop_requested = False
        self.stop_reason = ""
        self.realtime: List[RealtimeResult] = []
        self.notifier = SdNotifier()
        self.writer = StatusWriter(config.status_file, config.metrics_file)
        self.started_at = wall_s()
        self.state = "starting"
        self.error = ""

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Only set a flag: the tick in progress finishes and the loop exits at its boundary.
        self.stop_requested = True
        self.stop_reason = signal.Signals(signum).name

    def run(self) -> int:
        # Put back on the way out: a runner started in-process (tests) leaves the caller's handlers.
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._load_and_serve()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _load_and_serve(self) -> int:
        from jetpolicy.robot.policy import (
            load_policy,  # imported here so the loop logic is usable without a backend
        )

        config = self.config
        release_dir = config.release_dir.resolve()
        self.release_dir = release_dir
        self.loaded = loaded_deployment(release_dir, self.config_file)
        engine = engine_for_release(config.engine, release_dir)
        policy = load_policy(
            release_dir, backend=config.backend, engine=engine, use_cuda_graph=config.cuda_graph
        )
        self.socket_io: Optional[DatagramTransport] = None
        try:
            rate = config.rate_hz or policy.manifest.control_rate_hz
            source, sink, self.socket_io = build_io(config.transport, policy, rate)
            spin_us = config.spin_us if config.spin_us is not None else default_spin_us(rate)
            scheduler = DeadlineScheduler(
                1.0 / rate,
                spin_us * 1e-6,
                now_ns=self._now_ns,
                sleep_s=self._sleep_s,
                overrun_policy=config.overrun_policy,
            )
            stale_after = config.stale_after_ticks
            loop = ControlLoop(
                policy, scheduler, source, sink, stale_after, clock_ns=self._now_ns,
                miss_policy=config.miss_policy,
            )  # fmt: skip
            warm_up(policy, config.warmup_ticks)
            # Real-time settings after warm-up: the GC freeze then covers the loaded model.
            self.realtime = apply_realtime(config.realtime)
            return self.serve(loop, rate)
        finally:
            if self.socket_io is not None:
                self.socket_io.close()
            policy.close()

    def serve(self, loop: ControlLoop, rate_hz: float) -> int:
        """Run `loop` until a signal or the duration, with housekeeping in its slack; whatever ends
        it, the last action published is the safe one and the final status says why it stopped."""
        self.loop = loop
        self.receiver = loop.source
        self.rate_hz = rate_hz
        self.state = "running"
        self.writer.write(self.snapshot())
        self.notifier.ready(self.status_line())
        try:
            self._loop()
        except JetpolicyError as exc:
            self.state = "failed"
            self.error = str(exc)
        finally:
            self.loop.publish_safe()
            if self.state == "running":
                self.state = "stopped"
            self.writer.write(self.snapshot())
            self.notifier.stopping(self.status_line())
            self.notifier.close()
        if self.state == "failed":
            print(f"jetpolicy run: {self.error}", file=sys.stderr)
            return 1
        return 0

    def _loop(self) -> None:
        loop = self.loop
        scheduler = loop.scheduler
        interval_ns = int(self.config.status_interval_s * 1e9)
        watchdog_ns = int(self.notifier.watchdog_interval_s * 1e9) if self.config.watchdog else 0
        scheduler.start()
        start = scheduler.first_release_ns
        end = start + int(self.duration_s * 1e9) if self.duration_s is not None else None
        next_status = start + interval_ns
        next_ping = start
        degraded = False
        while not self.stop_requested:
            timing = loop.tick()
            now = timing.end_ns
            if loop.miss_policy.degraded != degraded:
                degraded = not degraded
                if degraded:
                    # Said at once: the safe action is out and the policy no longer steers, so
                    # this tick has nothing left to protect.
                    self.writer.write(self.snapshot())
                    self.notifier.status(self.status_line())
                    next_status = now + interval_ns
                else:
                    next_status = now  # recovered: reported at the next tick with slack
            if end is not None and now >= end:
                self.stop_reason = "duration reached"
                break
            if watchdog_ns and now >= next_ping:
                # Pinged from inside the loop: a stuck loop stops pinging and systemd restarts it.
                self.notifier.watchdog()
                next_ping = now + watchdog_ns
            # Deferred while a tick is due, but never past a second interval: a policy too slow
            # for its rate has no slack at all, and its status is exactly what must be seen.
            overdue = now >= next_status + interval_ns
            if now >= next_status and (loop.slack_ns() > HOUSEKEEPING_BUDGET_NS or overdue):
                self.writer.write(self.snapshot())
                self.notifier.status(self.status_line())
                next_status = now + interval_ns

    def snapshot(self) -> Dict[str, Any]:
        """The status document (schema in docs/architecture.md)."""
        loop: Optional[ControlLoop] = getattr(self, "loop", None)
        policy = loop.policy if loop is not None else None
        updated_at = self._wall_s()
        status: Dict[str, Any] = {
            "schema_version": STATUS_SCHEMA_VERSION,
            "state": self.state,
            "pid": _getpid(),
            # The release this process loaded; before it loads, what it is about to load.
            "release": str(self.release_dir or self.config.release_dir.resolve()),
            "backend": policy.backend_name if policy is not None else "",
            "backend_reason": policy.backend_reason if policy is not None else "",
            "rate_hz": getattr(self, "rate_hz", 0.0),
            "started_at": round(self.started_at, 3),
            "updated_at": round(updated_at, 3),
            "last_observation_at": last_observation_at(loop, updated_at),
            "realtime": [r.to_dict() for r in self.realtime],
            "warnings": [r.detail for r in self.realtime if not r.applied],
        }
        if self.loaded is not None:
            status["loaded"] = self.loaded
        if self.error:
            status["error"] = self.error
        if self.stop_reason:
            status["stop_reason"] = self.stop_reason
        status.update(loop_metrics(loop, getattr(self, "receiver", None)))
        return status

    def status_line(self) -> str:
        loop = getattr(self, "loop", None)
        ticks = loop.scheduler.ticks if loop is not None else 0
        misses = loop.scheduler.missed_deadlines if loop is not None else 0
        line = f"{ticks} ticks at {getattr(self, 'rate_hz', 0.0):g} Hz, {misses} missed deadlines"
        if loop is not None and self.state == "running" and loop.miss_policy.degraded:
            miss = loop.miss_policy
            return (
                f"degraded: safe action after {miss.config.safe_after} missed deadlines in a row; "
                f"{miss.on_time_streak}/{miss.config.recover_after} on-time ticks to recover; {line}"
            )
        return f"{self.state}: {line}"


def last_observation_at(loop: Optional[ControlLoop], now_s: float) -> Optional[float]:
    """The wall-clock time (unix seconds, ms) of the loop's last fresh observation; None before one.

    The loop keeps a monotonic stamp (cheap, immune to clock steps); it becomes wall time only here,
    as `now_s` minus its age, so readers compare it with `updated_at` written beside it.
    """
    age_ns = loop.observation_age_ns() if loop is not None else None
    if age_ns is None:
        return None
    return round(now_s - age_ns / 1e9, 3)


def loop_metrics(loop: Optional[ControlLoop], receiver: Any = None) -> Dict[str, Any]:
    """Counters and percentiles of a control loop (all zeros before it exists)."""
    by_reason: Dict[str, int] = dict(getattr(receiver, "rejected", {reason: 0 for reason in REJECT_REASONS}))
    capped = int(getattr(receiver, "capped_polls", 0))
    queue_drops = int(getattr(receiver, "queue_drops", 0))
    if loop is None:
        zero = {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
        return {
            "ticks": 0, "overruns": 0, "skipped_periods": 0, "deadline_misses": 0, "deadline_miss_rate": 0.0,
            "latency_us": zero, "inference_us": zero, "period_error_us": {"p50": 0.0, "p99": 0.0, "max": 0.0},
            "jitter_us": 0.0, "drift_pct": 0.0, "stale_ticks": 0, "rejected_packets": 0,
            "rejected_by_reason": by_reason, "capped_polls": capped, "queue_drops": queue_drops,
            "safe_actions": 0,
            "missed_deadlines": 0, "late_actions_dropped": 0, "nonfinite_outputs": 0,
            "miss_policy": MissPolicy(MissPolicyConfig()).to_dict(),
            "inference_histogram": LatencyHistogram().to_status(),
        }  # fmt: skip
    sched = loop.scheduler
    summary = loop.stats.summary_us()
    inference = {k: round(v / 1000.0, 1) for k, v in loop.inference.percentiles((50, 90, 99)).items()}
    return {
        "ticks": sched.ticks,
        "overruns": sched.overruns,
        "skipped_periods": sched.skipped_periods,
        "deadline_misses": sched.deadline_misses,
        "missed_deadlines": sched.missed_deadlines,
        "deadline_miss_rate": round(sched.deadline_miss_rate, 6),
        "latency_us": summary["latency_us"],
        "inference_us": inference,
        "period_error_us": summary["period_error_us"],
        "jitter_us": round(loop.stats.jitter_ns / 1000.0, 2),
        "drift_pct": round(loop.stats.drift_pct, 4),
        "stale_ticks": loop.stale.stale_ticks,
        "rejected_packets": sum(by_reason.values()),
        "rejected_by_reason": by_reason,
        "capped_polls": capped,
        "queue_drops": queue_drops,
        "safe_actions": loop.safe_actions,
        "late_actions_dropped": loop.late_actions_dropped,
        "nonfinite_outputs": loop.nonfinite_outputs,
        "miss_policy": loop.miss_policy.to_dict(),
        "inference_histogram": loop.inference_histogram.to_status(),
    }


def _getpid() -> int:
    return os.getpid()


def loaded_deployment(release_dir: Path, config_file: Optional[Path]) -> Dict[str, Optional[str]]:
    """The deployment this process runs, as `jetpolicy release switch` names it: the release id,
    the runtime virtualenv (this interpreter's, resolved) and the runner config's file name."""
    return {
        "release": release_dir.resolve().name,
        "runtime": os.path.realpath(sys.prefix),
        "config": config_file.resolve().name if config_file is not None else None,
    }


def run_command(args: argparse.Namespace) -> int:
    try:
        # Resolved before it is read: names under <root>/configs/ are content hashes, so the name
        # taken here is the content read next even if a switch renames the link in between.
        config_file = Path(args.config).resolve()
        config = load_config(args.config)
        return Runner(config, duration_s=args.duration_s, config_file=config_file).run()
    except JetpolicyError as exc:
        print(f"jetpolicy run: {exc}", file=sys.stderr)
        return 2


def register(subparsers: Any) -> None:
    """Add `jetpolicy run --config FILE [--duration-s S]`."""
    parser = subparsers.add_parser("run", help="run the policy service (the real-time control loop)")
    parser.add_argument("--config", type=Path, default=Path("/opt/jetpolicy/runner.json"), help="runner.json")
    parser.add_argument("--duration-s", type=float, default=None, help="stop after this many seconds (tests)")
    parser.set_defaults(handler=run_command)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="jetpolicy")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
