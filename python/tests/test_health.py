"""The health check judges a running service from two snapshots of its status file."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict

from jetpolicy.robot.health import check, judge


def status(
    ticks: int, updated_at: float, pid: int = 42, state: str = "running", rate: float = 100.0
) -> Dict[str, Any]:
    return {"ticks": ticks, "updated_at": updated_at, "pid": pid, "state": state, "rate_hz": rate}


def test_ticking_at_rate_is_healthy() -> None:
    """A runner that advanced rate x window ticks, by its own timestamps, is healthy."""
    report = judge(status(100, 10.0), status(400, 13.0), 3.2, 0.9, expected_pid=42)
    assert report.healthy, report.reasons
    assert abs(report.ticks_per_s - 100.0) < 1e-6


def test_too_few_ticks_is_unhealthy_with_the_numbers() -> None:
    """Ticking at half the rate fails and the reason gives the measured and required rates."""
    report = judge(status(0, 10.0), status(150, 13.0), 3.0, 0.9)
    assert not report.healthy
    assert "50.0 Hz" in report.reasons[0] and "90.0 Hz" in report.reasons[0]


def test_stale_status_from_another_pid_is_unhealthy() -> None:
    """A status left behind by an earlier process is not evidence the new one runs."""
    report = judge(status(0, 10.0, pid=7), status(300, 13.0, pid=7), 3.0, 0.9, expected_pid=42)
    assert not report.healthy
    assert any("stale status" in r for r in report.reasons)


def test_restart_during_window_and_frozen_status_are_unhealthy() -> None:
    """A pid change inside the window, or a status that was not rewritten, both fail."""
    restarted = judge(status(0, 10.0, pid=1), status(300, 13.0, pid=2), 3.0, 0.9)
    assert any("restarted" in r for r in restarted.reasons)
    frozen = judge(status(300, 13.0), status(300, 13.0), 3.0, 0.9)
    assert any("not updated" in r for r in frozen.reasons)


def test_missing_status_and_stopped_state_are_unhealthy() -> None:
    """No status file, or a runner that says it stopped, is not healthy."""
    assert not judge(None, None, 3.0, 0.9).healthy
    stopped = judge(status(0, 10.0), status(300, 13.0, state="stopped"), 3.0, 0.9)
    assert any("stopped" in r for r in stopped.reasons)


def test_check_reads_a_live_status_file(tmp_path: Path) -> None:
    """`check` waits for the status file and measures a writer that ticks at 100 Hz."""
    path = tmp_path / "status.json"
    stop = threading.Event()

    def writer() -> None:
        start = time.time()
        while not stop.is_set():
            now = time.time()
            path.write_text(json.dumps(status(int((now - start) * 100), now, pid=5)))
            time.sleep(0.05)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        report = check(path, window_s=0.6, min_rate_fraction=0.8, expected_pid=5, settle_timeout_s=2)
    finally:
        stop.set()
        thread.join()
    assert report.healthy, report.reasons
