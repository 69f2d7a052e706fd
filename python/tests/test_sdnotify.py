"""sd_notify: a real NOTIFY_SOCKET listener receives READY/WATCHDOG/STOPPING from a running runner."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List

from jetpolicy.robot.sdnotify import SdNotifier


def collect(sock: socket.socket, until: float) -> List[str]:
    messages: List[str] = []
    sock.settimeout(0.1)
    while time.monotonic() < until:
        try:
            messages.append(sock.recv(4096).decode())
        except socket.timeout:
            continue
    return messages


def test_noop_without_notify_socket() -> None:
    """Without NOTIFY_SOCKET nothing is sent and the watchdog is off."""
    notifier = SdNotifier(environ={})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert notifier.watchdog_interval_s == 0.0


def test_abstract_namespace_and_watchdog_interval() -> None:
    """'@name' maps to the abstract namespace; the ping interval is half of WATCHDOG_USEC."""
    name = f"jetpolicy-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        notifier = SdNotifier(environ={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert notifier.watchdog_interval_s == 1.0
        assert notifier.ready("up")
        listener.settimeout(1.0)
        assert listener.recv(1024) == b"READY=1\nSTATUS=up"
        notifier.close()


def test_watchdog_for_another_pid_is_ignored() -> None:
    """WATCHDOG_PID naming another process disables pings from this one."""
    notifier = SdNotifier(
        environ={"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}
    )
    assert notifier.watchdog_interval_s == 0.0


def test_runner_sends_ready_watchdog_and_stopping(tmp_path: Path, example_release: Path) -> None:
    """READY=1 once running, WATCHDOG=1 every half WATCHDOG_USEC, then STOPPING=1 at exit."""
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(sock_path))
        config = tmp_path / "runner.json"
        config.write_text(
            json.dumps(
                {
                    "release_dir": str(example_release),
                    "backend": "onnxruntime",
                    "rate_hz": 100,
                    "status_file": str(tmp_path / "status.json"),
                    "metrics_file": None,
                    "transport": {"kind": "synthetic"},
                    "warmup_ticks": 5,
                }
            )
        )
        env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="400000")
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "jetpolicy.cli", "run", "--config", str(config), "--duration-s", "2"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        messages = collect(listener, time.monotonic() + 15.0 if proc.poll() is None else 0)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
        messages += collect(listener, time.monotonic() + 0.3)
    ready = [i for i, m in enumerate(messages) if m.startswith("READY=1")]
    pings = [i for i, m in enumerate(messages) if m == "WATCHDOG=1"]
    stopping = [i for i, m in enumerate(messages) if m.startswith("STOPPING=1")]
    assert len(ready) == 1, messages
    # 2 s at a 0.2 s ping interval: about 10 pings, all after READY and before STOPPING.
    assert 6 <= len(pings) <= 14, messages
    assert stopping and ready[0] < pings[0] and pings[-1] < stopping[0]
