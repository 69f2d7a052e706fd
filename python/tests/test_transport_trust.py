"""Trust at the transport's edge: a bounded read per tick, observations only from the configured
peer, and no bind to every interface unless asked for."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from jetpolicy.common.errors import ConfigError
from jetpolicy.common.manifest import TensorSpec
from jetpolicy.robot.config import config_from_dict
from jetpolicy.robot.transport import (
    KIND_OBSERVATION,
    DatagramTransport,
    PolicyClient,
    TransportError,
    encode,
)

OBS = [TensorSpec("obs", [1, 4], "float32", "observation")]
ACT = [TensorSpec("actions", [1, 2], "float32", "action")]


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _udp_pair(max_packets: int = 32) -> tuple[DatagramTransport, PolicyClient]:
    runner_addr = f"127.0.0.1:{_free_port()}"
    client_addr = f"127.0.0.1:{_free_port()}"
    transport = DatagramTransport("udp", runner_addr, client_addr, OBS, ACT, max_packets_per_poll=max_packets)
    return transport, PolicyClient(runner_addr, client_addr, OBS, ACT)


def test_a_flood_is_read_a_bounded_slice_per_tick() -> None:
    """500 queued packets: one poll reads exactly the cap, the rest wait for later ticks; the
    capped poll is counted."""
    transport, client = _udp_pair(max_packets=16)
    try:
        for value in range(500):
            client.send_observation(np.full((1, 4), value, dtype=np.float32))
        assert transport.poll() is not None
        assert transport.receiver.received == 16
        assert transport.receiver.capped_polls == 1
        transport.poll()
        assert transport.receiver.received == 32
    finally:
        transport.close()
        client.close()


def test_a_quiet_socket_is_not_a_capped_poll() -> None:
    """A poll that empties the queue before the cap is not counted as capped."""
    transport, client = _udp_pair(max_packets=16)
    try:
        client.send_observation(np.zeros((1, 4), dtype=np.float32))
        observation = transport.poll()
        assert observation is not None and transport.receiver.capped_polls == 0
    finally:
        transport.close()
        client.close()


def test_udp_sender_other_than_the_peer_is_dropped() -> None:
    """By default only the action_to host may send: a packet from 127.0.0.2 is `unknown_peer`,
    and the runner keeps no observation from it."""
    transport, client = _udp_pair()
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    try:
        packet = encode(KIND_OBSERVATION, 1, np.ones(4, dtype=np.float32))
        stranger.sendto(packet, transport.bind_address)
        assert transport.poll() is None
        assert transport.rejected["unknown_peer"] == 1
        client.send_observation(np.ones((1, 4), dtype=np.float32))
        assert transport.poll() is not None
    finally:
        stranger.close()
        transport.close()
        client.close()


def test_allowed_peers_widen_the_list() -> None:
    """An explicit allow-list accepts the hosts it names, and only those."""
    runner_addr = f"127.0.0.1:{_free_port()}"
    transport = DatagramTransport(
        "udp", runner_addr, "127.0.0.1:9", OBS, ACT, allowed_peers=["127.0.0.2", "localhost"]
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.2", 0))
    outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    outsider.bind(("127.0.0.3", 0))
    try:
        packet = encode(KIND_OBSERVATION, 1, np.ones(4, dtype=np.float32))
        outsider.sendto(packet, transport.bind_address)
        sender.sendto(packet, transport.bind_address)
        assert transport.poll() is not None
        assert transport.receiver.received == 1
        assert transport.rejected["unknown_peer"] == 1
        assert transport.allowed_peers == frozenset({"127.0.0.2", "127.0.0.1"})
    finally:
        for sock in (sender, outsider):
            sock.close()
        transport.close()


def test_unix_sender_must_be_the_action_peer(tmp_path: Path) -> None:
    """On a unix socket the sender's bound path must be the runner's action_to; another bound path
    and an unbound sender are both dropped."""
    runner_path, client_path = str(tmp_path / "obs.sock"), str(tmp_path / "act.sock")
    transport = DatagramTransport("unix", runner_path, client_path, OBS, ACT)
    client = PolicyClient(runner_path, client_path, OBS, ACT, kind="unix")
    other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    other.bind(str(tmp_path / "other.sock"))
    unbound = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        packet = encode(KIND_OBSERVATION, 1, np.ones(4, dtype=np.float32))
        other.sendto(packet, runner_path)
        unbound.sendto(packet, runner_path)
        assert transport.poll() is None
        assert transport.rejected["unknown_peer"] == 2
        client.send_observation(np.ones((1, 4), dtype=np.float32))
        assert transport.poll() is not None
    finally:
        for sock in (other, unbound):
            sock.close()
        client.close()
        transport.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "*"])
def test_wildcard_bind_is_refused_unless_asked(host: str) -> None:
    """A bind to every interface fails with the fix; with allow_wildcard_bind it binds."""
    port = _free_port()
    with pytest.raises(TransportError, match="every interface") as info:
        DatagramTransport("udp", f"{host}:{port}", "127.0.0.1:9", OBS, ACT)
    assert "allow_wildcard_bind" in info.value.fix
    if host == "0.0.0.0":
        DatagramTransport("udp", f"{host}:{port}", "127.0.0.1:9", OBS, ACT, allow_wildcard_bind=True).close()


def test_config_refuses_wildcard_bind_and_bad_peer_lists(tmp_path: Path) -> None:
    """The runner config fails at load, naming the field: a wildcard bind, an empty allow-list,
    and a zero packet cap."""
    base = {"release_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"'bind' UDP bind address 0\.0\.0\.0:47800"):
        config_from_dict({**base, "transport": {"kind": "udp", "bind": "0.0.0.0:47800"}})
    with pytest.raises(ConfigError, match="'allowed_peers' must be a non-empty list"):
        config_from_dict({**base, "transport": {"kind": "udp", "allowed_peers": []}})
    with pytest.raises(ConfigError, match="max_packets_per_tick"):
        config_from_dict({**base, "transport": {"kind": "udp", "max_packets_per_tick": 0}})
    config = config_from_dict(
        {**base, "transport": {"kind": "udp", "bind": "0.0.0.0:47800", "allow_wildcard_bind": True,
                               "allowed_peers": ["10.0.0.5"], "max_packets_per_tick": 8}}
    )  # fmt: skip
    assert config.transport.allowed_peers == ["10.0.0.5"]
    assert config.transport.max_packets_per_tick == 8
