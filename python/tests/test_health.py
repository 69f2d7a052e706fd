"""The health check judges a running service from two snapshots of its status file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from jetpolicy.robot.health import check, judge
from jetpolicy.robot.status import STATUS_REQUIRED_KEYS, StatusFileError, StatusWriter, read_status


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


def test_degraded_miss_policy_is_unhealthy() -> None:
    """A runner ticking at rate but degraded (the safe action commanded after N missed deadlines)
    does not steer the robot: unhealthy, and the reason says so; hold or decay alone is not."""
    degraded = {"state": "degraded", "safe_after": 20, "on_time_streak": 7, "recover_after": 50}
    report = judge(status(100, 10.0), {**status(400, 13.0), "miss_policy": degraded}, 3.0, 0.9)
    assert report.reasons == [
        "runner is degraded: it missed 20 deadlines in a row and commands the safe action; 7 of 50 on-time"
        " ticks to recover"
    ]
    holding = {**degraded, "state": "hold"}
    assert judge(status(100, 10.0), {**status(400, 13.0), "miss_policy": holding}, 3.0, 0.9).healthy


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
    """`check` waits for the status file and measures a writer that ticks at 100 Hz.

    The writer is the runner's own (temporary file + rename), so the reader never races a
    half-written file; ticks are derived from the same timestamps written, so load cannot skew them.
    """
    path = tmp_path / "status.json"
    writer = StatusWriter(path)
    stop = threading.Event()

    def write_loop() -> None:
        start = time.time()
        while not stop.is_set():
            now = time.time()
            assert writer.write(status(int((now - start) * 100), now, pid=5)), writer.last_error
            time.sleep(0.05)

    thread = threading.Thread(target=write_loop)
    thread.start()
    try:
        report = check(path, window_s=0.6, min_rate_fraction=0.8, expected_pid=5, settle_timeout_s=2)
    finally:
        stop.set()
        thread.join()
    assert report.healthy, report.reasons
    assert writer.errors == 0 and writer.writes > 2


DAMAGED = [
    pytest.param(b"", "is empty", id="empty"),
    pytest.param(b"  \n", "is empty", id="blank"),
    pytest.param(b'{"state": "running", "pid": 5, "ti', "is not JSON", id="truncated"),
    pytest.param(b"\xff\xfe\x00garbage", "is not JSON", id="binary"),
    pytest.param(b"[1, 2, 3]", "holds a JSON list", id="not-an-object"),
    pytest.param(b'{"state": "running", "pid": 5}', "lacks rate_hz, ticks, updated_at", id="missing-keys"),
]


@pytest.mark.parametrize(("content", "what"), DAMAGED)
def test_damaged_status_file_is_one_clear_error(tmp_path: Path, content: bytes, what: str) -> None:
    """A torn, garbled or foreign status file raises StatusFileError naming the file and the damage."""
    path = tmp_path / "status.json"
    path.write_bytes(content)
    with pytest.raises(StatusFileError) as raised:
        read_status(path)
    assert str(path) in raised.value.cause and what in raised.value.cause
    assert raised.value.fix


def test_missing_status_file_is_none_and_a_complete_one_reads_back(tmp_path: Path) -> None:
    """No file yet is not an error (the runner is starting); what StatusWriter wrote reads back."""
    path = tmp_path / "status.json"
    assert read_status(path) is None
    written = status(7, 12.5, pid=9)
    assert set(written) == set(STATUS_REQUIRED_KEYS)
    assert StatusWriter(path).write(written)
    assert read_status(path) == written


@pytest.mark.parametrize(("content", "what"), DAMAGED[:3])
def test_health_reports_a_damaged_status_with_the_readers_message(
    tmp_path: Path, content: bytes, what: str
) -> None:
    """`jetpolicy health` on a damaged file: unhealthy at once (no settle wait), exit 1, and the one
    reason is read_status's own message, as JSON on stdout for the role to show."""
    path = tmp_path / "status.json"
    path.write_bytes(content)
    with pytest.raises(StatusFileError) as raised:
        read_status(path)
    report = check(path, window_s=0.1, min_rate_fraction=0.9, settle_timeout_s=30)
    assert not report.healthy
    assert report.reasons == [str(raised.value)]
    done = subprocess.run(
        [sys.executable, "-m", "jetpolicy.cli", "health", "--status", str(path), "--window-s", "0.1",
         "--settle-timeout-s", "30"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["reasons"] == [str(raised.value)]
