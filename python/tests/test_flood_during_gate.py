"""A flood at a live UDP runner while the timing gate measures it (docs/faults.md).

A real `jetpolicy run` over UDP, fed valid observations at its rate by the robot's side, while the
same sender and a stranger flood it with short, malformed, wrong-size, NaN and oversized packets.
The gate's window (`measure_window`, as `jetpolicy window` runs it) still measures the runner's
own loop: enough ticks and inferences, few missed deadlines, every bad packet dropped and counted
by cause, each poll bounded, the runner alive and its actions finite.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
from test_runner import free_udp_port, start, wait_status, write_config

from jetpolicy.common.manifest import load_manifest
from jetpolicy.robot.transport import HEADER, KIND_OBSERVATION, MAGIC, VERSION, PolicyClient, encode
from jetpolicy.robot.window import measure_window

RATE_HZ = 50.0
BAD_PER_TICK = 48  # more than the runner reads in one poll (DEFAULT_MAX_PACKETS_PER_POLL, 32)


def bad_packets(width: int) -> list[bytes]:
    nan = np.full(width, 0.1, dtype=np.float32)
    nan[3] = np.nan
    return [
        b"JPOL\x01",  # short: not even a header
        b"XXXX" + encode(KIND_OBSERVATION, 1, np.zeros(width, np.float32))[4:],  # bad magic
        HEADER.pack(MAGIC, VERSION, KIND_OBSERVATION, 0, 2, time.monotonic_ns(), width)
        + np.zeros(10, np.float32).tobytes(),  # fewer floats than the header says
        encode(KIND_OBSERVATION, 4, np.zeros(width - 5, np.float32)),  # another observation width
        encode(KIND_OBSERVATION, 3, nan),  # NaN in the observation
    ]


# One a tick: a few of these fill the socket's receive buffer, and the kernel drops the rest.
OVERSIZED = b"\x00" * 60000


def test_the_gate_window_measures_a_runner_under_a_flood(tmp_path: Path, example_release: Path) -> None:
    runner_port, client_port = free_udp_port(), free_udp_port()
    transport = {"kind": "udp", "bind": f"127.0.0.1:{runner_port}", "action_to": f"127.0.0.1:{client_port}"}
    config = write_config(tmp_path, example_release, transport=transport, rate_hz=RATE_HZ)
    manifest = load_manifest(example_release / "policy.json")
    client = PolicyClient(f"127.0.0.1:{runner_port}", f"127.0.0.1:{client_port}",
                          manifest.observation_inputs, manifest.action_outputs)  # fmt: skip
    width = sum(spec.size for spec in manifest.observation_inputs)
    # Peers are trusted by address: a stranger is another host, here another loopback address.
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    stop = threading.Event()

    def feed() -> None:
        bad = bad_packets(width)
        valid_from_stranger = encode(KIND_OBSERVATION, 9, np.zeros(width, np.float32))
        while not stop.is_set():
            client.send_observation(np.full(width, 0.1, dtype=np.float32))
            stranger.sendto(valid_from_stranger, ("127.0.0.1", runner_port))
            for index in range(BAD_PER_TICK):
                client.send_raw(bad[index % len(bad)])
            client.send_raw(OVERSIZED)
            client.drain()
            time.sleep(1.0 / RATE_HZ)

    status_file = tmp_path / "status.json"
    proc = start(config, None, "--duration-s", "60")
    feeder = threading.Thread(target=feed, daemon=True)
    try:
        wait_status(status_file, lambda s: s["state"] == "running")
        feeder.start()
        result = measure_window(status_file, 2.0, expected_pid=proc.pid, warmup_ticks=10, min_ticks=50,
                                stale_after_s=5.0)  # fmt: skip
        status = wait_status(status_file, lambda s: s["pid"] == proc.pid)
        stop.set()
        feeder.join(timeout=5)
        action = client.receive_action(timeout_s=2.0)
    finally:
        stop.set()
        proc.kill()
        proc.wait(timeout=10)
        client.close()
        stranger.close()
    assert result["pid"] == proc.pid and result["ticks"] >= 80, result
    assert result["inferences"] >= 50, result
    assert result["deadline_miss_rate"] <= 0.1, result
    assert 0 < result["inference_us"]["p99"] < 20_000, result
    rejected = status["rejected_by_reason"]
    for reason in ("short", "bad_magic", "wrong_size", "non_finite", "unknown_peer"):
        assert rejected[reason] > 0, (reason, rejected)
    assert status["capped_polls"] > 0, status
    assert action is None or all(np.isfinite(value).all() for value in action.actions.values())
