"""Datagram transport: real loopback UDP and Unix sockets, rejection counting, stale handling."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np
import pytest

from jetpolicy.common.manifest import TensorSpec
from jetpolicy.robot.runner import ControlLoop
from jetpolicy.robot.scheduler import DeadlineScheduler
from jetpolicy.robot.transport import (
    HEADER,
    KIND_ACTION,
    KIND_OBSERVATION,
    MAGIC,
    DatagramTransport,
    PolicyClient,
    StaleTracker,
    encode,
)

OBS = [TensorSpec("obs", [1, 4]), TensorSpec("extra", [2], role="observation")]
ACT = [TensorSpec("actions", [1, 3], role="action")]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pair(kind: str, tmp_path: Path) -> tuple[DatagramTransport, PolicyClient]:
    if kind == "udp":
        runner_addr, client_addr = f"127.0.0.1:{free_udp_port()}", f"127.0.0.1:{free_udp_port()}"
    else:
        runner_addr, client_addr = str(tmp_path / "obs.sock"), str(tmp_path / "act.sock")
    transport = DatagramTransport(kind, runner_addr, client_addr, OBS, ACT)
    client = PolicyClient(runner_addr, client_addr, OBS, ACT, kind=kind)
    return transport, client


def poll_until(transport: DatagramTransport, timeout_s: float = 1.0) -> Optional[Dict[str, np.ndarray]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = transport.poll()
        if got is not None:
            return got
        time.sleep(0.001)
    return None


@pytest.mark.parametrize("kind", ["udp", "unix"])
def test_round_trip(kind: str, tmp_path: Path) -> None:
    """An observation reaches the runner split per input; the action reaches the client with flags."""
    transport, client = pair(kind, tmp_path)
    try:
        seq = client.send_observation(np.arange(6, dtype=np.float32))
        got = poll_until(transport)
        assert got is not None
        np.testing.assert_array_equal(got["obs"], [[0, 1, 2, 3]])
        np.testing.assert_array_equal(got["extra"], [4, 5])
        assert transport.receiver.last_sequence == seq
        assert transport.publish({"actions": np.array([[0.5, -0.5, 1.0]], dtype=np.float32)}, seq, safe=True)
        packet = client.receive_action(timeout_s=1.0)
        assert packet is not None
        assert packet.sequence == seq and packet.safe
        np.testing.assert_array_equal(packet.actions["actions"], [[0.5, -0.5, 1.0]])
    finally:
        client.close()
        transport.close()


def test_newest_observation_wins(tmp_path: Path) -> None:
    """Several packets queued between ticks: one poll drains them all and keeps the last one."""
    transport, client = pair("udp", tmp_path)
    try:
        for value in range(1, 6):
            client.send_observation(np.full(6, value, dtype=np.float32))
        time.sleep(0.05)
        got = transport.poll()
        assert got is not None
        assert float(got["obs"][0, 0]) == 5.0
        assert transport.receiver.received == 5
        assert transport.poll() is None  # drained: nothing fresh on the next tick
    finally:
        client.close()
        transport.close()


def _bad_packets() -> Dict[str, List[bytes]]:
    good = encode(KIND_OBSERVATION, 1, np.zeros(6, dtype=np.float32))
    nan = np.zeros(6, dtype=np.float32)
    nan[2] = np.nan
    inf = np.zeros(6, dtype=np.float32)
    inf[0] = -np.inf
    return {
        "short": [b"JPOL", good[:-4]],
        "bad_magic": [b"XXXX" + good[4:]],
        "bad_version": [good[:4] + bytes([9]) + good[5:]],
        "wrong_kind": [encode(KIND_ACTION, 1, np.zeros(6, dtype=np.float32))],
        "wrong_size": [encode(KIND_OBSERVATION, 1, np.zeros(7, dtype=np.float32)), good + b"\0\0\0\0"],
        "non_finite": [encode(KIND_OBSERVATION, 1, nan), encode(KIND_OBSERVATION, 1, inf)],
    }


def test_malformed_and_non_finite_packets_are_rejected_and_counted(tmp_path: Path) -> None:
    """Every bad packet is dropped without an exception and counted under its reason; good ones pass."""
    transport, client = pair("udp", tmp_path)
    try:
        bad = _bad_packets()
        for packets in bad.values():
            for data in packets:
                client.send_raw(data)
        client.send_observation(np.full(6, 7.0, dtype=np.float32))
        for packets in bad.values():
            for data in packets:
                client.send_raw(data)
        time.sleep(0.05)
        got = transport.poll()
        assert got is not None and float(got["extra"][1]) == 7.0  # the valid one survived the noise
        for reason, packets in bad.items():
            assert transport.rejected[reason] == 2 * len(packets), reason
        assert transport.receiver.received == 1
    finally:
        client.close()
        transport.close()


def test_header_layout_is_24_bytes_little_endian() -> None:
    """The documented layout: magic, u8 version, u8 kind, u16 flags, u32 seq, u64 ns, u32 count."""
    data = encode(
        KIND_OBSERVATION, 0x01020304, np.array([1.5], dtype=np.float32), flags=0x0102, timestamp_ns=7
    )
    assert HEADER.size == 24
    assert data[:4] == MAGIC
    assert data[4:6] == bytes([1, KIND_OBSERVATION])
    assert data[6:8] == b"\x02\x01"
    assert data[8:12] == b"\x04\x03\x02\x01"
    assert struct.unpack("<Q", data[12:20]) == (7,)
    assert struct.unpack("<I", data[20:24]) == (1,)
    assert struct.unpack("<f", data[24:]) == (1.5,)


def test_stale_tracker_counts_ticks_without_fresh_input() -> None:
    """Starts stale; after a fresh observation it holds for stale_after_ticks - 1 ticks, then goes stale."""
    tracker = StaleTracker(3)
    assert tracker.update(False)
    assert not tracker.update(True)
    assert [tracker.update(False) for _ in range(4)] == [False, False, True, True]
    assert tracker.stale_ticks == 3


class FakePolicy:
    """Doubles the first observation element into every action; safe action is -1."""

    def __init__(self) -> None:
        self._out = {"actions": np.zeros((1, 3), dtype=np.float32)}
        self._safe = {"actions": np.full((1, 3), -1.0, dtype=np.float32)}
        self.steps = 0

    observation_specs = OBS
    action_specs = ACT
    backend_name = "fake"
    backend_reason = "test"

    def step(self, observations: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.steps += 1
        self._out["actions"].fill(2.0 * float(observations["obs"][0, 0]))
        return self._out

    def safe_action(self) -> Dict[str, np.ndarray]:
        return self._safe

    def reset_state(self) -> None:
        pass


def test_stale_input_publishes_safe_action_over_the_socket(tmp_path: Path) -> None:
    """With no observations the loop sends the safe action (flagged); with one it sends inference."""
    transport, client = pair("udp", tmp_path)
    policy = FakePolicy()
    loop = ControlLoop(policy, DeadlineScheduler(0.002, 0.0002), transport.receiver, transport.publisher, 2)
    try:
        loop.tick()
        packet = client.receive_action(0.5)
        assert packet is not None and packet.safe
        np.testing.assert_array_equal(packet.actions["actions"], [[-1, -1, -1]])
        assert loop.safe_actions == 1 and policy.steps == 0
        client.send_observation(np.full(6, 3.0, dtype=np.float32))
        time.sleep(0.02)
        loop.tick()
        packet = client.receive_action(0.5)
        assert packet is not None and not packet.safe
        np.testing.assert_array_equal(packet.actions["actions"], [[6, 6, 6]])
        loop.tick()  # held observation, still fresh enough
        loop.tick()  # second tick without input: stale
        client.drain()
        assert loop.stale.stale_ticks == 2  # the initial tick and this one
        assert loop.safe_actions == 2 and policy.steps == 2
    finally:
        client.close()
        transport.close()
