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
from typing import Any, Dict, Optional

import numpy as np
import pytest

from jetpolicy.common.manifest import load_manifest
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
    """--duration-s ends with exit 0 and state stopped; an invalid config exits 2 with cause + fix."""
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
    assert 40 <= final["ticks"] <= 55
    bad = write_config(tmp_path, example_release, rate_hz=-1)
    done = subprocess.run(
        [*JETPOLICY, "run", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "rate_hz" in done.stderr and "fix:" in done.stderr


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux only")
def test_required_realtime_refusal_fails_start(tmp_path: Path, example_release: Path) -> None:
    """A required setting the OS refuses (CPU 4095 does not exist) stops the runner with a clear error."""
    config = write_config(tmp_path, example_release, realtime={"cpu_affinity": [4095], "required": True})
    done = subprocess.run(
        [*JETPOLICY, "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "cpu_affinity" in done.stderr and "errno" in done.stderr


def test_policy_too_slow_for_its_rate_still_reports_status(tmp_path: Path) -> None:
    """A policy that overruns every period keeps writing its status (overruns and all), so the
    health gate sees a slow policy rather than a silent one."""
    from jetpolicy.controller.example import build_example

    release = tmp_path / "slow"
    build_example(release, hidden=(1024, 1024, 1024), rate_hz=5000.0)
    config = write_config(tmp_path, release, rate_hz=5000, status_interval_s=0.2)
    proc = start(config, None, "--duration-s", "3")
    try:
        first = wait_status(tmp_path / "status.json", lambda s: s.get("ticks", 0) > 0)
        later = wait_status(
            tmp_path / "status.json", lambda s: s["updated_at"] >= first["updated_at"] + 0.5, timeout_s=5
        )
        assert later["overruns"] > 0 and later["skipped_periods"] > 0
    finally:
        proc.wait(timeout=30)
