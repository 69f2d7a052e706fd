"""Trust at the transport's edge: a bounded read per tick, observations only from the configured
peer, and no bind to every interface unless asked for."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import pytest

from jetpolicy.common.errors import ConfigError
from jetpolicy.common.manifest import TensorSpec
from jetpolicy.robot.config import config_from_dict
from jetpolicy.robot.transport import (
    KIND_OBSERVATION,
    SO_RXQ_OVFL,
    DatagramTransport,
    ObservationReceiver,
    PolicyClient,
    TransportError,
    allowed_uid_set,
    check_bind,
    encode,
    open_socket,
    read_ancillary,
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


def test_a_flood_is_drained_in_bounded_polls_and_the_newest_is_used() -> None:
    """100 queued packets, a cap of 16: every poll reads at most 16 and keeps the newest it read;
    seven polls drain the queue and end on the newest packet sent. A poll that leaves packets
    queued is counted in capped_polls; the last, which empties the queue, is not."""
    transport, client = _udp_pair(max_packets=16)
    try:
        for value in range(100):
            client.send_observation(np.full((1, 4), value, dtype=np.float32))
        for poll in range(1, 8):
            before = transport.receiver.received
            observation = transport.poll()
            assert observation is not None
            read = transport.receiver.received - before
            assert read == (16 if poll < 7 else 4)
            newest_read = transport.receiver.received - 1
            assert float(observation["obs"][0, 0]) == newest_read
            assert transport.receiver.last_sequence == newest_read + 1
        assert transport.poll() is None
        assert transport.receiver.received == 100
        assert float(transport.receiver.observation["obs"][0, 3]) == 99.0
        assert transport.receiver.capped_polls == 6
    finally:
        transport.close()
        client.close()


def test_a_poll_that_empties_the_queue_at_the_cap_is_not_capped() -> None:
    """Exactly max_packets queued: the poll reads them all, nothing is left, so it is no capped poll."""
    transport, client = _udp_pair(max_packets=8)
    try:
        for value in range(8):
            client.send_observation(np.full((1, 4), value, dtype=np.float32))
        observation = transport.poll()
        assert observation is not None and float(observation["obs"][0, 0]) == 7.0
        assert transport.receiver.capped_polls == 0
    finally:
        transport.close()
        client.close()


def test_kernel_queue_drops_are_counted() -> None:
    """A flood into a small receive queue: what the kernel had to drop shows up as queue_drops
    (SO_RXQ_OVFL) and in the runner's status metrics."""
    from jetpolicy.robot.runner import loop_metrics

    sock = open_socket("udp", ("127.0.0.1", 0), observe=True)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    receiver = ObservationReceiver(sock, OBS, max_packets=4096)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packet = encode(KIND_OBSERVATION, 1, np.ones(4, dtype=np.float32))
        for _ in range(300):
            sender.sendto(packet, sock.getsockname())
        receiver.poll()
        queued = receiver.received
        assert 0 < queued < 300
        sender.sendto(packet, sock.getsockname())  # the drop count rides on the next queued datagram
        assert receiver.poll() is not None
        assert receiver.queue_drops == 300 - queued
        assert loop_metrics(None, receiver)["queue_drops"] == 300 - queued
    finally:
        sender.close()
        receiver.close()


def test_udp_source_outside_the_allow_list_is_never_used() -> None:
    """allowed_peers ["127.0.0.1"]: a packet from 127.0.0.2, even the newest of the tick, is
    dropped as unknown_peer and its values never reach the observation."""
    runner_addr, client_addr = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    transport = DatagramTransport("udp", runner_addr, client_addr, OBS, ACT, allowed_peers=["127.0.0.1"])
    client = PolicyClient(runner_addr, client_addr, OBS, ACT)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    try:
        client.send_observation(np.ones((1, 4), dtype=np.float32))
        nines = np.full(4, 9.0, dtype=np.float32)
        stranger.sendto(encode(KIND_OBSERVATION, 99, nines), transport.bind_address)
        observation = transport.poll()
        assert observation is not None
        assert observation["obs"].tolist() == [[1.0, 1.0, 1.0, 1.0]]
        assert transport.receiver.last_sequence == 1
        assert transport.rejected["unknown_peer"] == 1
        stranger.sendto(encode(KIND_OBSERVATION, 100, nines), transport.bind_address)
        assert transport.poll() is None
        assert transport.rejected["unknown_peer"] == 2
    finally:
        stranger.close()
        client.close()
        transport.close()


def _unix_pair(
    tmp_path: Path, allowed_uids: Optional[List[Union[int, str]]] = None
) -> tuple[DatagramTransport, PolicyClient]:
    runner_path, client_path = str(tmp_path / "obs.sock"), str(tmp_path / "act.sock")
    transport = DatagramTransport("unix", runner_path, client_path, OBS, ACT, allowed_uids=allowed_uids)
    return transport, PolicyClient(runner_path, client_path, OBS, ACT, kind="unix")


def _other_uid() -> int:
    return 4242 if os.getuid() != 4242 else 4243


def test_unix_sender_with_the_runners_own_uid_is_accepted(tmp_path: Path) -> None:
    """The receive socket has SO_PASSCRED on, and by default the runner's own uid (and root) may
    send: a datagram from this process is used."""
    transport, client = _unix_pair(tmp_path)
    try:
        assert transport.allowed_uids == frozenset({os.getuid(), os.geteuid(), 0})
        assert transport.receiver._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED) == 1
        client.send_observation(np.ones((1, 4), dtype=np.float32))
        assert transport.poll() is not None
        assert transport.rejected["unknown_uid"] == 0
    finally:
        client.close()
        transport.close()


def test_unix_sender_uid_not_listed_is_dropped(tmp_path: Path) -> None:
    """allowed_uids that leave out this process's uid: its datagrams, though from the right path,
    are dropped as unknown_uid and never used."""
    transport, client = _unix_pair(tmp_path, allowed_uids=[_other_uid()])
    try:
        client.send_observation(np.ones((1, 4), dtype=np.float32))
        assert transport.poll() is None
        assert transport.rejected["unknown_uid"] == 1
        assert transport.receiver.received == 0
    finally:
        client.close()
        transport.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="sending another uid's credentials needs CAP_SETUID (root)")
def test_unix_datagram_from_another_uid_is_dropped_unless_listed(tmp_path: Path) -> None:
    """A sender whose SCM_CREDENTIALS name uid 4242 (root may claim any uid; the kernel checks the
    claim) is dropped by default and accepted once 4242 is listed."""
    uid = _other_uid()
    packet = encode(KIND_OBSERVATION, 1, np.ones(4, dtype=np.float32))
    creds = [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("=iII", os.getpid(), uid, uid))]
    for allowed, accepted in ((None, False), ([uid], True)):
        transport, client = _unix_pair(tmp_path, allowed_uids=allowed)
        try:
            client._sock.sendmsg([packet], creds, 0, str(tmp_path / "obs.sock"))
            assert (transport.poll() is not None) is accepted
            assert transport.rejected["unknown_uid"] == (0 if accepted else 1)
        finally:
            client.close()
            transport.close()


def test_file_descriptors_pushed_by_a_sender_are_not_kept(tmp_path: Path) -> None:
    """A unix sender attaching a descriptor (SCM_RIGHTS): the runner's ancillary buffer has room
    for the credentials only, so the kernel discards the descriptor instead of installing it."""
    transport, client = _unix_pair(tmp_path)
    read_end, write_end = os.pipe()
    try:
        before = len(os.listdir("/proc/self/fd"))
        packet = encode(KIND_OBSERVATION, 1, np.ones(4, dtype=np.float32))
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=i", read_end))]
        client._sock.sendmsg([packet], rights, 0, str(tmp_path / "obs.sock"))
        assert transport.poll() is not None
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        os.close(read_end)
        os.close(write_end)
        client.close()
        transport.close()


def test_read_ancillary_finds_uid_and_drops_and_closes_descriptors() -> None:
    """The credential seam on its own: uid from SCM_CREDENTIALS, the drop count from SO_RXQ_OVFL,
    nothing from other levels, and any SCM_RIGHTS descriptor closed."""
    read_end, write_end = os.pipe()
    try:
        ancdata = [
            (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("=iII", 1, 1234, 1234)),
            (socket.SOL_SOCKET, SO_RXQ_OVFL, struct.pack("=I", 7)),
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=i", read_end)),
            (socket.IPPROTO_IP, socket.SCM_CREDENTIALS, struct.pack("=iII", 1, 0, 0)),
        ]
        assert read_ancillary(ancdata) == (1234, 7)
        with pytest.raises(OSError):
            os.fstat(read_end)
        assert read_ancillary([]) == (None, None)
    finally:
        with contextlib.suppress(OSError):
            os.close(read_end)
        os.close(write_end)


def test_receiver_checks_uids_through_the_seam(tmp_path: Path) -> None:
    """ObservationReceiver with an injected allow-list: a datagram without credentials (the socket
    has no SO_PASSCRED) has no uid and is dropped as unknown_uid."""
    path = str(tmp_path / "plain.sock")
    sock = open_socket("unix", path)
    receiver = ObservationReceiver(sock, OBS, allowed_uids=frozenset({os.getuid()}))
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sender.sendto(encode(KIND_OBSERVATION, 1, np.ones(4, dtype=np.float32)), path)
        assert receiver.poll() is None
        assert receiver.rejected["unknown_uid"] == 1
    finally:
        sender.close()
        receiver.close()


def test_allowed_uids_take_names_and_refuse_unknown_users_and_udp() -> None:
    """User names resolve to uids; an unknown user and allowed_uids on a UDP transport fail with a fix."""
    assert allowed_uid_set(["root", 4242, "1001"]) == frozenset({0, 4242, 1001})
    with pytest.raises(TransportError, match="not a user on this host"):
        allowed_uid_set(["no-such-user-jetpolicy"])
    with pytest.raises(TransportError, match="unix sockets only") as info:
        DatagramTransport("udp", f"127.0.0.1:{_free_port()}", "127.0.0.1:9", OBS, ACT, allowed_uids=[0])
    assert "allowed_peers" in info.value.fix


def test_config_reads_allowed_uids_for_unix_only(tmp_path: Path) -> None:
    """transport.allowed_uids: a non-empty list of uids or names on a unix transport; refused on UDP
    and when malformed, naming the field."""
    base = {"release_dir": str(tmp_path)}
    unix = {"kind": "unix", "bind": "/run/jetpolicy/obs.sock", "action_to": "/run/robot/act.sock"}
    config = config_from_dict({**base, "transport": {**unix, "allowed_uids": [0, "robot"]}})
    assert config.transport.allowed_uids == [0, "robot"]
    assert config_from_dict({**base, "transport": unix}).transport.allowed_uids is None
    with pytest.raises(ConfigError, match="'allowed_uids' applies to unix transports only"):
        config_from_dict({**base, "transport": {"kind": "udp", "allowed_uids": [0]}})
    for bad in ([], [-1], [True], [""]):
        with pytest.raises(ConfigError, match="allowed_uids"):
            config_from_dict({**base, "transport": {**unix, "allowed_uids": bad}})


def test_wildcard_ipv6_and_empty_hosts_are_refused() -> None:
    """"::" and an empty host are every interface too: refused with the same cause and fix."""
    for host in ("::", ""):
        with pytest.raises(TransportError, match="every interface") as info:
            check_bind("udp", (host, 47800), allow_wildcard=False)
        assert "allow_wildcard_bind" in info.value.fix
    check_bind("udp", ("::", 47800), allow_wildcard=True)
