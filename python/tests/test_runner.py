"""`jetpolicy run` as a real subprocess: status file, SIGTERM handling, safe action on stale input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import pytest
from fakeclock import MS, FakeClock

from jetpolicy.common.manifest import TensorSpec, load_manifest
from jetpolicy.robot.config import RunnerConfig, load_config
from jetpolicy.robot.runner import ControlLoop, NullSink, Runner
from jetpolicy.robot.scheduler import DeadlineScheduler
from jetpolicy.robot.sources import SyntheticSource
from jetpolicy.robot.status import read_status
from jetpolicy.robot.transport import PolicyClient

JETPOLICY = [sys.executable, "-m", "jetpolicy.cli"]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, release: Path, **overrides: Any) -> Path:
    config: Dict[str, Any] = {
        "release_dir": str(release),
        "backend": "onnxruntime",
        "rate_hz": 200,
        "status_file": str(tmp_path / "status.json"),
        "metrics_file": str(tmp_path / "jetpolicy.prom"),
        "status_interval_s": 0.2,
        "transport": {"kind": "synthetic"},
        "warmup_ticks": 10,
        "stale_after_ticks": 5,
    }
    config.update(overrides)
    path = tmp_path / "runner.json"
    path.write_text(json.dumps(config))
    return path


def start(config: Path, env: Optional[Dict[str, str]] = None, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*JETPOLICY, "run", "--config", str(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_status(path: Path, predicate: Any, timeout_s: float = 20.0) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = read_status(path)
        if status is not None and predicate(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"status never matched; last: {read_status(path)}")


def test_status_ticks_increase_and_sigterm_stops_cleanly(tmp_path: Path, example_release: Path) -> None:
    """Ticks grow while running; SIGTERM ends with exit 0, state stopped and a final safe action."""
    config = write_config(tmp_path, example_release)
    status_file = tmp_path / "status.json"
    proc = start(config)
    try:
        first = wait_status(status_file, lambda s: s["state"] == "running" and s["ticks"] > 0)
        second = wait_status(status_file, lambda s: s["ticks"] > first["ticks"] + 50)
        assert second["pid"] == proc.pid
        assert second["rate_hz"] == 200.0
        assert second["backend"] == "onnxruntime"
        assert second["latency_us"]["p50"] > 0
        assert second["stale_ticks"] == 0  # synthetic input is always fresh
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    final = read_status(status_file)
    assert final is not None
    assert final["state"] == "stopped" and final["stop_reason"] == "SIGTERM"
    assert final["ticks"] >= second["ticks"]
    assert final["safe_actions"] == 1  # the one published on the way out
    metrics = (tmp_path / "jetpolicy.prom").read_text()
    assert "jetpolicy_ticks_total" in metrics and 'jetpolicy_latency_seconds{quantile="0.99"}' in metrics


def test_stale_udp_input_gets_safe_actions(tmp_path: Path, example_release: Path) -> None:
    """Over UDP: the runner answers an observation with inference, and silence with flagged safe actions."""
    runner_port, client_port = free_udp_port(), free_udp_port()
    config = write_config(
        tmp_path,
        example_release,
        transport={
            "kind": "udp",
            "bind": f"127.0.0.1:{runner_port}",
            "action_to": f"127.0.0.1:{client_port}",
        },
    )
    manifest = load_manifest(example_release / "policy.json")
    client = PolicyClient(
        f"127.0.0.1:{runner_port}",
        f"127.0.0.1:{client_port}",
        manifest.observation_inputs,
        manifest.action_outputs,
    )
    proc = start(config, None, "--duration-s", "30")
    try:
        wait_status(tmp_path / "status.json", lambda s: s["state"] == "running")
        first = client.receive_action(timeout_s=5.0)
        assert first is not None and first.safe  # nothing sent yet: stale
        np.testing.assert_array_equal(first.actions["actions"], np.zeros((1, 12)))
        inferred = None
        for _ in range(50):
            client.drain()
            seq = client.send_observation(np.full(48, 0.3, dtype=np.float32))
            packet = client.receive_action(timeout_s=0.5)
            if packet is not None and not packet.safe and packet.sequence == seq:
                inferred = packet
                break
        assert inferred is not None, "no inference action came back for a fresh observation"
        assert np.all(np.abs(inferred.actions["actions"]) <= 1.0)  # manifest limits applied
        client.send_raw(b"garbage")
        status = wait_status(
            tmp_path / "status.json", lambda s: s["rejected_packets"] >= 1 and s["stale_ticks"] > 5
        )
        assert status["rejected_by_reason"]["short"] >= 1
        assert status["safe_actions"] >= status["stale_ticks"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()


def test_duration_and_bad_config_exit_codes(tmp_path: Path, example_release: Path) -> None:
    """--duration-s ends with exit 0, state stopped and "duration reached"; an invalid config exits
    2 with cause + fix.

    The tick count is bounded by the runner's own wall timestamps, not by a window: it can tick at
    most once per period between its start and its final write (so a loop running fast fails
    however loaded the machine), and it stops no earlier than the duration after its start. The
    exact count is checked with a fake clock below.
    """
    config = write_config(tmp_path, example_release, rate_hz=100, warmup_ticks=0)
    done = subprocess.run(
        [*JETPOLICY, "run", "--config", str(config), "--duration-s", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    final = read_status(tmp_path / "status.json")
    assert final is not None and final["state"] == "stopped"
    assert final["stop_reason"] == "duration reached"
    lived_s = final["updated_at"] - final["started_at"]
    assert lived_s >= 0.5 - 0.002  # both rounded to the millisecond
    releases = final["ticks"] + final["skipped_periods"]
    assert final["ticks"] >= 1 and releases <= lived_s * 100 + 1
    bad = write_config(tmp_path, example_release, rate_hz=-1)
    done = subprocess.run(
        [*JETPOLICY, "run", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "rate_hz" in done.stderr and "fix:" in done.stderr


@pytest.mark.parametrize(
    ("stalls", "ticks", "skipped"),
    [
        pytest.param({}, 51, 0, id="on-time"),
        # Preempted 35 ms while sleeping toward the 10th release: three releases pass unrun.
        pytest.param({10: 35 * MS}, 48, 3, id="preempted"),
    ],
)
def test_duration_covers_exactly_its_releases(
    tmp_path: Path, example_release: Path, stalls: Dict[int, int], ticks: int, skipped: int
) -> None:
    """0.5 s at 100 Hz on a fake clock: releases 0..50 (the one at the end stops the loop), each
    either run or counted as skipped, then the safe action and the final status."""
    config = load_config(write_config(tmp_path, example_release, rate_hz=100, warmup_ticks=0, watchdog=False,
                                      realtime={"gc_freeze": False}))  # fmt: skip
    clock = FakeClock(stalls=stalls)
    before = signal.getsignal(signal.SIGTERM)
    assert Runner(config, duration_s=0.5, now_ns=clock.now_ns, sleep_s=clock.sleep_s).run() == 0
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
    final = read_status(tmp_path / "status.json")
    assert final is not None
    assert (final["state"], final["stop_reason"]) == ("stopped", "duration reached")
    assert (final["ticks"], final["skipped_periods"]) == (ticks, skipped)
    assert final["overruns"] == (1 if skipped else 0)
    assert final["safe_actions"] == 1


class SlowPolicy:
    """Takes 1.5 periods of the fake clock per step: it overruns every period, on any machine."""

    backend_name = "fake"
    backend_reason = "test double"

    def __init__(self, clock: FakeClock, step_ns: int) -> None:
        self.observation_specs = [TensorSpec("obs", [1, 4])]
        self.action_specs = [TensorSpec("actions", [1, 2], role="action")]
        self.clock = clock
        self.step_ns = step_ns
        self._out = {"actions": np.zeros((1, 2), dtype=np.float32)}

    def step(self, observations: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.clock.work(self.step_ns)
        return self._out

    def safe_action(self) -> Dict[str, np.ndarray]:
        return {"actions": np.zeros((1, 2), dtype=np.float32)}

    def reset_state(self) -> None:
        pass


def test_policy_too_slow_for_its_rate_still_reports_status(tmp_path: Path) -> None:
    """A policy that overruns every period has no slack for housekeeping, yet its status is still
    written at least every second interval (overruns and all): the health gate sees a slow policy
    rather than a silent one."""
    clock = FakeClock()
    policy = SlowPolicy(clock, step_ns=1_500_000)
    scheduler = DeadlineScheduler(0.001, 0.0002, now_ns=clock.now_ns, sleep_s=clock.sleep_s)
    source = SyntheticSource(policy.observation_specs, 1000.0)
    loop = ControlLoop(policy, scheduler, source, NullSink(), stale_after_ticks=5, clock_ns=clock.now_ns)
    config = RunnerConfig(
        release_dir=tmp_path, status_file=tmp_path / "status.json", metrics_file=None, status_interval_s=0.2
    )
    runner = Runner(config, duration_s=2.0)
    assert runner.serve(loop, 1000.0) == 0
    # One write at start, one at stop, one when the miss policy turns degraded (within the first
    # 20 periods) and one per two intervals after it (0.4, 0.8, 1.2, 1.6 s).
    assert runner.writer.writes == 2 + 1 + 4
    final = read_status(config.status_file)
    assert final is not None and final["stop_reason"] == "duration reached"
    assert final["overruns"] > 0 and final["skipped_periods"] > 0
    assert final["deadline_misses"] == final["ticks"]  # 1.5 ms of work never fits a 1 ms deadline
    assert final["missed_deadlines"] == final["ticks"] + final["skipped_periods"]
    assert final["miss_policy"]["state"] == "degraded"
    assert final["late_actions_dropped"] == final["ticks"]  # not one late action went out


class QuietAfterSource:
    """A fresh observation on each of the first `fresh_polls` polls, then none (the peer went quiet)."""

    def __init__(self, fresh_polls: int) -> None:
        self.fresh_polls = fresh_polls
        self.polls = 0
        self._observation = {"obs": np.zeros((1, 4), dtype=np.float32)}

    def poll(self) -> Optional[Dict[str, np.ndarray]]:
        self.polls += 1
        return self._observation if self.polls <= self.fresh_polls else None

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("fresh_polls", "age_s"), [(100, 0.2), (0, None)], ids=["went-quiet", "never"])
def test_status_records_when_the_last_observation_came(
    tmp_path: Path, fresh_polls: int, age_s: Optional[float]
) -> None:
    """The loop stamps each fresh observation on its monotonic clock; the status turns the stamp
    into wall time beside updated_at (here 0.2 s before it: fresh for 0.1 s of a 0.3 s run), with
    a Prometheus timestamp gauge; before any observation the field is null and the gauge absent."""
    clock = FakeClock()
    policy = SlowPolicy(clock, step_ns=100_000)
    scheduler = DeadlineScheduler(0.001, 0.0002, now_ns=clock.now_ns, sleep_s=clock.sleep_s)
    source = QuietAfterSource(fresh_polls)
    loop = ControlLoop(policy, scheduler, source, NullSink(), 50, clock_ns=clock.now_ns)
    status_file, metrics_file = tmp_path / "status.json", tmp_path / "jetpolicy.prom"
    config = RunnerConfig(release_dir=tmp_path, status_file=status_file, metrics_file=metrics_file,
                          status_interval_s=0.05, watchdog=False)  # fmt: skip
    runner = Runner(config, duration_s=0.3, wall_s=lambda: 1_700_000_000.0 + clock.now / 1e9)
    assert runner.serve(loop, 1000.0) == 0
    final = read_status(status_file)
    assert final is not None
    metrics = metrics_file.read_text().splitlines()
    samples = [line for line in metrics if line.startswith("jetpolicy_last_observation")]
    if age_s is None:
        assert final["last_observation_at"] is None
        assert samples == []
        return
    assert final["updated_at"] - final["last_observation_at"] == pytest.approx(age_s, abs=0.002)
    assert samples == [f"jetpolicy_last_observation_timestamp_seconds {final['last_observation_at']:.3f}"]


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux only")
def test_required_realtime_refusal_fails_start(tmp_path: Path, example_release: Path) -> None:
    """A required setting the OS refuses (CPU 4095 does not exist) stops the runner with a clear error."""
    config = write_config(tmp_path, example_release, realtime={"cpu_affinity": [4095], "required": True})
    done = subprocess.run(
        [*JETPOLICY, "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "cpu_affinity" in done.stderr and "errno" in done.stderr



def test_a_synthetic_source_never_counts_as_live_input(tmp_path: Path) -> None:
    """Sim robots and bench runs feed the loop synthetic observations on every tick: they leave
    last_observation_at null, so `jetpolicy busy` never defers a robot for them."""
    clock = FakeClock()
    policy = SlowPolicy(clock, step_ns=100_000)
    scheduler = DeadlineScheduler(0.001, 0.0002, now_ns=clock.now_ns, sleep_s=clock.sleep_s)
    source = SyntheticSource(policy.observation_specs, 1000.0)
    loop = ControlLoop(policy, scheduler, source, NullSink(), 50, clock_ns=clock.now_ns)
    config = RunnerConfig(release_dir=tmp_path, status_file=tmp_path / "status.json", metrics_file=None,
                          status_interval_s=0.05, watchdog=False)  # fmt: skip
    runner = Runner(config, duration_s=0.2, wall_s=lambda: 1_700_000_000.0 + clock.now / 1e9)
    assert runner.serve(loop, 1000.0) == 0
    final = read_status(config.status_file)
    assert final is not None and final["ticks"] > 100
    assert final["last_observation_at"] is None


def test_a_runner_fed_live_observations_is_busy_until_they_stop(
    tmp_path: Path, example_release: Path
) -> None:
    """End to end: a real `jetpolicy run` over UDP, fed observations, is busy for `jetpolicy busy`;
    once the feed stops it is idle again within the fresh window (a status write or two later)."""
    from jetpolicy.robot.busy import check_busy

    runner_port, client_port = free_udp_port(), free_udp_port()
    transport = {"kind": "udp", "bind": f"127.0.0.1:{runner_port}", "action_to": f"127.0.0.1:{client_port}"}
    config = write_config(tmp_path, example_release, transport=transport)
    manifest = load_manifest(example_release / "policy.json")
    client = PolicyClient(f"127.0.0.1:{runner_port}", f"127.0.0.1:{client_port}",
                          manifest.observation_inputs, manifest.action_outputs)  # fmt: skip
    status_file, hold_file = tmp_path / "status.json", tmp_path / "hold"
    proc = start(config, None, "--duration-s", "30")
    try:
        wait_status(status_file, lambda s: s["state"] == "running")
        assert not check_busy(status_file, hold_file, fresh_within_s=1.0).busy  # nothing sent yet
        for _ in range(40):  # 0.8 s of observations at 50 Hz
            client.send_observation(np.full(48, 0.1, dtype=np.float32))
            client.drain()
            time.sleep(0.02)
        wait_status(status_file, lambda s: s.get("last_observation_at") is not None)
        fed = check_busy(status_file, hold_file, fresh_within_s=1.0)
        assert fed.busy and fed.reasons[0].startswith("receiving observations"), fed.reasons
        time.sleep(1.5)
        wait_status(status_file, lambda s: s["updated_at"] - s["last_observation_at"] > 1.0)
        assert not check_busy(status_file, hold_file, fresh_within_s=1.0).busy
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_every_inference_is_counted_in_the_status_histogram(tmp_path: Path) -> None:
    """Each tick's inference time goes into the loop's cumulative histogram, in place; the status
    carries it sparsely with its bucket scheme, and the schema accepts it. On the fake clock one
    inference takes 101 us (100 us of work and one clock read), in (1.05**94, 1.05**95] us."""
    clock = FakeClock()
    policy = SlowPolicy(clock, step_ns=100_000)
    scheduler = DeadlineScheduler(0.001, 0.0002, now_ns=clock.now_ns, sleep_s=clock.sleep_s)
    loop = ControlLoop(policy, scheduler, SyntheticSource(policy.observation_specs, 1000.0), NullSink(), 50,
                       clock_ns=clock.now_ns)  # fmt: skip
    counts = loop.inference_histogram.counts
    config = RunnerConfig(release_dir=tmp_path, status_file=tmp_path / "status.json", metrics_file=None,
                          status_interval_s=0.05, watchdog=False)  # fmt: skip
    runner = Runner(config, duration_s=0.2, wall_s=lambda: 1_700_000_000.0 + clock.now / 1e9)
    assert runner.serve(loop, 1000.0) == 0
    assert loop.inference_histogram.counts is counts
    final = read_status(config.status_file)
    assert final is not None and final["ticks"] > 100
    assert final["inference_histogram"] == {
        "first_edge_us": 1.0, "ratio": 1.05, "buckets": 333, "counts": {"95": final["ticks"]},
    }  # fmt: skip
