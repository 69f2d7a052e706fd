"""Observation in, action out: the runner's datagram transport (format in docs/transport.md).

One datagram = a 24-byte little-endian header + float32 payload. Observations carry every
observation input concatenated in manifest order; actions carry every action output likewise.
The receive side never raises on bad input: malformed or non-finite packets, and packets from a
sender it does not trust, are dropped and counted per reason, because one bad sender must not stop
the control loop.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import struct
import time
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.common.manifest import TensorSpec

MAGIC = b"JPOL"
VERSION = 1
KIND_OBSERVATION = 1
KIND_ACTION = 2
FLAG_SAFE_ACTION = 0x0001  # action packets: this is the policy's safe action, not an inference result
HEADER = struct.Struct("<4sBBHIQI")  # magic, version, kind, flags, sequence, timestamp_ns, payload_count
HEADER_SIZE = HEADER.size
FLOAT_SIZE = 4
DEFAULT_OBSERVATION_ADDRESS = "127.0.0.1:47800"
DEFAULT_ACTION_ADDRESS = "127.0.0.1:47801"
REJECT_REASONS = (
    "short", "bad_magic", "bad_version", "wrong_kind", "wrong_size", "non_finite", "unknown_peer",
    "unknown_uid",
)  # fmt: skip
# Datagrams read per poll at most: a flood (or a sender far faster than the control rate) then
# costs a bounded slice of each tick; what is left waits in the kernel queue for the next tick.
DEFAULT_MAX_PACKETS_PER_POLL = 32
WILDCARD_HOSTS = ("0.0.0.0", "::", "", "*")
# Linux's value on every architecture a Jetson or the CI runs (asm-generic); Python has no name for it.
SO_RXQ_OVFL = int(getattr(socket, "SO_RXQ_OVFL", 40))
UCRED = struct.Struct("=iII")  # struct ucred: pid, uid, gid
# Room for exactly one SCM_CREDENTIALS message: a sender that also passes file descriptors then
# has them discarded by the kernel (MSG_CTRUNC) instead of installed in the runner.
CREDENTIALS_SPACE = socket.CMSG_SPACE(UCRED.size)
DROPS_SPACE = socket.CMSG_SPACE(4)  # SO_RXQ_OVFL: uint32, datagrams the kernel dropped so far
ROOT_UID = 0
MAX_UID = 2**32 - 2  # (uid_t)-1 means "no user"

Address = Union[Tuple[str, int], str]


class TransportError(JetpolicyError):
    """A transport socket cannot be set up (bad address, port in use, missing directory)."""


def parse_address(kind: str, text: str) -> Address:
    """UDP: "host:port"; unix: a filesystem path, or "@name" for the abstract namespace."""
    if kind == "udp":
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise TransportError(f"UDP address {text!r} is not host:port", 'write it like "127.0.0.1:47800"')
        return (host, int(port))
    if kind == "unix":
        if not text:
            raise TransportError("unix socket address is empty", "give a path like /run/jetpolicy/obs.sock")
        return "\0" + text[1:] if text.startswith("@") else text
    raise TransportError(f"transport kind {kind!r} has no socket address", "use udp or unix")


def check_bind(kind: str, address: Address, allow_wildcard: bool) -> None:
    """Refuse a UDP bind to every interface unless asked for: the runner would then take
    observations from the whole network, not from the robot's own driver."""
    if kind == "udp" and isinstance(address, tuple) and address[0] in WILDCARD_HOSTS and not allow_wildcard:
        raise TransportError(
            f"UDP bind address {address[0] or '(empty)'}:{address[1]} listens on every interface",
            "bind to the address the robot's driver sends from (127.0.0.1 when it runs on the robot), "
            "or set transport.allow_wildcard_bind to true and list transport.allowed_peers",
        )


def normalize_peer(kind: str, address: Any) -> str:
    """A sender address as the allow-list compares it: the host for UDP, the bound path for unix
    (abstract names as "@name"; an unbound unix sender is "")."""
    if kind == "udp":
        return str(address[0]) if isinstance(address, tuple) else ""
    if isinstance(address, bytes):
        address = address.decode("utf-8", "replace")
    text = str(address or "")
    return "@" + text[1:] if text.startswith("\0") else text


def allowed_peer_set(kind: str, allowed: Optional[Sequence[str]], action_to: Address) -> FrozenSet[str]:
    """The senders observations are accepted from. By default the one peer the runner talks to:
    the host (UDP) or socket path (unix) its actions go to."""
    if allowed is None:
        allowed = [action_to[0] if isinstance(action_to, tuple) else normalize_peer(kind, action_to)]
    peers = set()
    for entry in allowed:
        if kind == "udp":
            try:
                peers.add(socket.gethostbyname(entry))
            except OSError:
                raise TransportError(
                    f"allowed peer {entry!r} is not an IPv4 address or resolvable host name",
                    "list the IP addresses observations come from",
                ) from None
        else:
            peers.add(entry)
    return frozenset(peers)


def allowed_uid_set(allowed: Optional[Sequence[Union[int, str]]]) -> FrozenSet[int]:
    """The user ids a unix sender may have. By default the runner's own user and root: the users
    who can write to a socket file the runner created (the unit's UMask=0077 leaves it 0700)."""
    if allowed is None:
        return frozenset({os.getuid(), os.geteuid(), ROOT_UID})
    uids = set()
    for entry in allowed:
        if isinstance(entry, int) and not isinstance(entry, bool):
            uids.add(entry)
            continue
        if str(entry).isdigit():  # "1001" from an inventory that quoted it: a uid, not a name
            uids.add(int(str(entry)))
            continue
        try:
            uids.add(pwd.getpwnam(str(entry)).pw_uid)
        except KeyError:
            raise TransportError(
                f"allowed uid {entry!r} is not a user on this host",
                "list the numeric uid or the user name the robot's driver runs as",
            ) from None
    return frozenset(uids)


def read_ancillary(ancdata: Sequence[Tuple[int, int, bytes]]) -> Tuple[Optional[int], Optional[int]]:
    """The sender's uid (unix, SCM_CREDENTIALS) and the kernel's drop count (udp, SO_RXQ_OVFL) from
    one datagram's control messages; None for what it does not carry. Descriptors a sender passed
    (SCM_RIGHTS) are closed: the runner never keeps what a sender pushes into it."""
    uid: Optional[int] = None
    drops: Optional[int] = None
    for level, kind, data in ancdata:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(data) >= UCRED.size:
            uid = UCRED.unpack_from(data)[1]
        elif kind == SO_RXQ_OVFL and len(data) >= 4:
            drops = struct.unpack_from("=I", data)[0]
        elif kind == socket.SCM_RIGHTS:
            for fd in struct.unpack_from(f"={len(data) // 4}i", data):
                with contextlib.suppress(OSError):
                    os.close(fd)
    return uid, drops


def open_socket(kind: str, bind: Optional[Address], observe: bool = False) -> socket.socket:
    """A non-blocking datagram socket, bound when `bind` is given. `observe`: the runner's receive
    socket, which asks the kernel for each unix sender's credentials and for the udp drop count."""
    family = socket.AF_INET if kind == "udp" else socket.AF_UNIX
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if observe and kind == "unix":
            # Before bind, so no datagram can be queued without credentials.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        elif observe:
            with contextlib.suppress(OSError):  # only a counter: a kernel without it still runs
                sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        if bind is not None:
            if isinstance(bind, str) and not bind.startswith("\0") and os.path.exists(bind):
                # A stale socket file from a previous run would make bind fail with EADDRINUSE.
                os.unlink(bind)
            sock.bind(bind)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise TransportError(
            f"cannot bind {kind} socket to {bind!r}: {exc.strerror} (errno {exc.errno})",
            "pick a free port/path, or create the socket directory (RuntimeDirectory=jetpolicy)",
        ) from None
    return sock


def payload_size(specs: Sequence[TensorSpec]) -> int:
    return sum(spec.size for spec in specs)


def split_views(flat: np.ndarray, specs: Sequence[TensorSpec]) -> Dict[str, np.ndarray]:
    """Views of `flat` shaped like each spec, in order; made once, refreshed by writing `flat`."""
    views: Dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        views[spec.name] = flat[offset : offset + spec.size].reshape(spec.shape)
        offset += spec.size
    return views


def encode(kind: int, sequence: int, payload: np.ndarray, flags: int = 0, timestamp_ns: int = -1) -> bytes:
    """One packet as bytes (allocates: for clients and tests, not the runner's hot path)."""
    data = np.ascontiguousarray(payload, dtype="<f4").reshape(-1)
    stamp = time.monotonic_ns() if timestamp_ns < 0 else timestamp_ns
    header = HEADER.pack(MAGIC, VERSION, kind, flags, sequence & 0xFFFFFFFF, stamp, int(data.size))
    return header + data.tobytes()


class ObservationReceiver:
    """Reads the socket each tick and keeps the newest valid observation.

    `poll()` returns the observation views when at least one valid packet arrived since the last
    poll, else None. The views are preallocated and overwritten by later polls. With `allowed_peers`
    a packet from any other sender address is dropped as `unknown_peer`; with `allowed_uids` (unix
    sockets with SO_PASSCRED) a packet whose sender's uid is not listed, or that carries no
    credentials, is dropped as `unknown_uid`. At most `max_packets` datagrams are read per poll:
    `capped_polls` counts the polls that stopped there with datagrams still queued (read by later
    polls), `queue_drops` the datagrams the kernel dropped because the queue was full (udp).
    """

    def __init__(
        self,
        sock: socket.socket,
        specs: Sequence[TensorSpec],
        allowed_peers: Optional[FrozenSet[str]] = None,
        max_packets: int = DEFAULT_MAX_PACKETS_PER_POLL,
        allowed_uids: Optional[FrozenSet[int]] = None,
    ) -> None:
        self._sock = sock
        self._kind = "udp" if sock.family == socket.AF_INET else "unix"
        self._allowed = allowed_peers
        self._allowed_uids = allowed_uids
        self._max_packets = max_packets
        self._ancillary_space = CREDENTIALS_SPACE if self._kind == "unix" else DROPS_SPACE
        self.capped_polls = 0
        self.queue_drops = 0
        self.specs = list(specs)
        self._count = payload_size(self.specs)
        self._expected_len = HEADER_SIZE + FLOAT_SIZE * self._count
        # One spare float so an oversized datagram is detected instead of silently truncated to fit.
        self._buf = bytearray(self._expected_len + FLOAT_SIZE)
        self._view = memoryview(self._buf)
        self._buffers = [self._view]
        self._peek = bytearray(1)
        self._incoming = np.frombuffer(self._buf, dtype="<f4", count=self._count, offset=HEADER_SIZE)
        self._latest = np.zeros(self._count, dtype=np.float32)
        self.observation = split_views(self._latest, self.specs)
        self.rejected: Dict[str, int] = {reason: 0 for reason in REJECT_REASONS}
        self.received = 0
        self.last_sequence = 0
        self.last_timestamp_ns = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def _validate(self, nbytes: int) -> Optional[str]:
        if nbytes < HEADER_SIZE:
            return "short"
        magic, version, kind, _flags, _seq, _stamp, count = HEADER.unpack_from(self._buf)
        if magic != MAGIC:
            return "bad_magic"
        if version != VERSION:
            return "bad_version"
        if kind != KIND_OBSERVATION:
            return "wrong_kind"
        if count != self._count or nbytes != self._expected_len:
            return "short" if nbytes < HEADER_SIZE + FLOAT_SIZE * count else "wrong_size"
        # A float64 sum of float32 values cannot overflow, so it is finite iff every value is.
        if not np.isfinite(np.add.reduce(self._incoming, dtype=np.float64)):
            return "non_finite"
        return None

    def _untrusted(self, sender: Any, uid: Optional[int]) -> Optional[str]:
        """Why a datagram's sender is refused, or None when it may be used."""
        if self._allowed is not None and normalize_peer(self._kind, sender) not in self._allowed:
            return "unknown_peer"
        if self._allowed_uids is not None and uid not in self._allowed_uids:
            return "unknown_uid"
        return None

    def _more_queued(self) -> bool:
        try:
            self._sock.recv_into(self._peek, 1, socket.MSG_PEEK)
        except OSError:  # BlockingIOError: the queue is empty
            return False
        return True

    def poll(self) -> Optional[Dict[str, np.ndarray]]:
        # Every datagram read supersedes the one before, so the observation kept is the newest
        # valid one this poll read; the cap bounds the syscalls (untrusted and invalid ones count).
        fresh = False
        for _ in range(self._max_packets):
            try:
                nbytes, ancdata, _flags, sender = self._sock.recvmsg_into(
                    self._buffers, self._ancillary_space
                )
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # e.g. ECONNREFUSED queued by an earlier send; nothing to read from it.
                break
            uid, drops = read_ancillary(ancdata) if ancdata else (None, None)
            if drops is not None:
                self.queue_drops = drops
            reason = self._untrusted(sender, uid) or self._validate(nbytes)
            if reason is not None:
                self.rejected[reason] += 1
                continue
            _m, _v, _k, _f, seq, stamp, _c = HEADER.unpack_from(self._buf)
            np.copyto(self._latest, self._incoming)
            self.last_sequence = seq
            self.last_timestamp_ns = stamp
            self.received += 1
            fresh = True
        else:
            if self._more_queued():
                self.capped_polls += 1
        return self.observation if fresh else None

    def close(self) -> None:
        self._sock.close()


class ActionPublisher:
    """Sends the action outputs, concatenated in manifest order, from one preallocated buffer."""

    def __init__(self, sock: socket.socket, address: Address, specs: Sequence[TensorSpec]) -> None:
        self._sock = sock
        self._address = address
        self.specs = list(specs)
        self._count = payload_size(self.specs)
        self._buf = bytearray(HEADER_SIZE + FLOAT_SIZE * self._count)
        self._payload = np.frombuffer(self._buf, dtype="<f4", count=self._count, offset=HEADER_SIZE)
        self._slots = split_views(self._payload, self.specs)
        self.sent = 0
        self.send_errors = 0
        self.last_error = ""

    def publish(self, actions: Mapping[str, np.ndarray], sequence: int, safe: bool = False) -> bool:
        """Send one action packet; a send failure is counted (the receiver may be down), never raised."""
        for name, slot in self._slots.items():
            np.copyto(slot, actions[name], casting="same_kind")
        HEADER.pack_into(
            self._buf,
            0,
            MAGIC,
            VERSION,
            KIND_ACTION,
            FLAG_SAFE_ACTION if safe else 0,
            sequence & 0xFFFFFFFF,
            time.monotonic_ns(),
            self._count,
        )
        try:
            self._sock.sendto(self._buf, self._address)
        except OSError as exc:
            self.send_errors += 1
            self.last_error = f"{exc.strerror} (errno {exc.errno})"
            return False
        self.sent += 1
        return True


class StaleTracker:
    """Decides when the input is stale: no fresh observation within `stale_after_ticks` ticks."""

    def __init__(self, stale_after_ticks: int) -> None:
        self.stale_after_ticks = stale_after_ticks
        self._ticks_since_fresh = stale_after_ticks  # stale until the first observation arrives
        self.stale_ticks = 0

    def update(self, fresh: bool) -> bool:
        """Call once per tick; returns True when this tick must publish the safe action."""
        if fresh:
            self._ticks_since_fresh = 0
            return False
        self._ticks_since_fresh += 1
        if self._ticks_since_fresh >= self.stale_after_ticks:
            self.stale_ticks += 1
            return True
        return False


class DatagramTransport:
    """The runner's socket pair: receive observations on `bind`, send actions to `action_to`."""

    def __init__(
        self,
        kind: str,
        bind: str,
        action_to: str,
        observation_specs: Sequence[TensorSpec],
        action_specs: Sequence[TensorSpec],
        allowed_peers: Optional[Sequence[str]] = None,
        max_packets_per_poll: int = DEFAULT_MAX_PACKETS_PER_POLL,
        allow_wildcard_bind: bool = False,
        allowed_uids: Optional[Sequence[Union[int, str]]] = None,
    ) -> None:
        if kind not in ("udp", "unix"):
            raise TransportError(f"datagram transport kind {kind!r} is unknown", "use udp or unix")
        if kind == "udp" and allowed_uids is not None:
            raise TransportError(
                "allowed_uids applies to unix sockets only: a UDP datagram carries no sender uid",
                "use transport.allowed_peers for UDP, or switch to a unix transport",
            )
        self.kind = kind
        self.bind_address = parse_address(kind, bind)
        self.action_address = parse_address(kind, action_to)
        check_bind(kind, self.bind_address, allow_wildcard_bind)
        self.allowed_peers = allowed_peer_set(kind, allowed_peers, self.action_address)
        self.allowed_uids: Optional[FrozenSet[int]] = (
            allowed_uid_set(allowed_uids) if kind == "unix" else None
        )
        self._sock = open_socket(kind, self.bind_address, observe=True)
        self.receiver = ObservationReceiver(
            self._sock, observation_specs, self.allowed_peers, max_packets_per_poll, self.allowed_uids
        )
        self.publisher = ActionPublisher(self._sock, self.action_address, action_specs)

    def poll(self) -> Optional[Dict[str, np.ndarray]]:
        return self.receiver.poll()

    def publish(self, actions: Mapping[str, np.ndarray], sequence: int, safe: bool = False) -> bool:
        return self.publisher.publish(actions, sequence, safe)

    @property
    def rejected(self) -> Dict[str, int]:
        return self.receiver.rejected

    def close(self) -> None:
        self._sock.close()
        if isinstance(self.bind_address, str) and not self.bind_address.startswith("\0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.bind_address)


class ActionPacket:
    """A decoded action datagram."""

    def __init__(self, sequence: int, timestamp_ns: int, safe: bool, actions: Dict[str, np.ndarray]) -> None:
        self.sequence = sequence
        self.timestamp_ns = timestamp_ns
        self.safe = safe
        self.actions = actions


class PolicyClient:
    """The robot side in Python: send observations to the runner, receive its actions.

    `bind` is where actions arrive (the runner's `action_to`); `runner` is the runner's `bind`.
    """

    def __init__(
        self,
        runner: str,
        bind: str,
        observation_specs: Sequence[TensorSpec],
        action_specs: Sequence[TensorSpec],
        kind: str = "udp",
    ) -> None:
        self.kind = kind
        self._runner = parse_address(kind, runner)
        self._bind = parse_address(kind, bind)
        self._sock = open_socket(kind, self._bind)
        self.observation_specs = list(observation_specs)
        self.action_specs = list(action_specs)
        self._sequence = 0
        self._action_len = HEADER_SIZE + FLOAT_SIZE * payload_size(self.action_specs)
        self._buf = bytearray(self._action_len + FLOAT_SIZE)

    def send_raw(self, data: bytes) -> None:
        self._sock.sendto(data, self._runner)

    def send_observation(self, observation: Union[np.ndarray, Mapping[str, np.ndarray]]) -> int:
        """Send one observation (a flat array, or arrays keyed by input name); returns its sequence."""
        if isinstance(observation, np.ndarray):
            flat = observation.reshape(-1)
        else:
            flat = np.concatenate(
                [np.asarray(observation[s.name]).reshape(-1) for s in self.observation_specs]
            )
        self._sequence += 1
        self.send_raw(encode(KIND_OBSERVATION, self._sequence, flat))
        return self._sequence

    def receive_action(self, timeout_s: float = 1.0) -> Optional[ActionPacket]:
        """The next valid action packet, or None after `timeout_s` without one."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._sock.settimeout(remaining)
            try:
                nbytes = self._sock.recv_into(self._buf)
            except (socket.timeout, BlockingIOError):
                return None
            finally:
                self._sock.setblocking(False)
            if nbytes != self._action_len:
                continue
            magic, version, kind, flags, seq, stamp, _count = HEADER.unpack_from(self._buf)
            if magic != MAGIC or version != VERSION or kind != KIND_ACTION:
                continue
            flat = np.frombuffer(bytes(self._buf[HEADER_SIZE:nbytes]), dtype="<f4").copy()
            return ActionPacket(
                seq, stamp, bool(flags & FLAG_SAFE_ACTION), split_views(flat, self.action_specs)
            )

    def drain(self) -> int:
        """Discard queued action packets; returns how many."""
        dropped = 0
        while True:
            try:
                self._sock.recv_into(self._buf)
            except (BlockingIOError, InterruptedError):
                return dropped
            dropped += 1

    def close(self) -> None:
        self._sock.close()
        if isinstance(self._bind, str) and not self._bind.startswith("\0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._bind)


__all__: List[str] = [
    "DEFAULT_ACTION_ADDRESS",
    "DEFAULT_MAX_PACKETS_PER_POLL",
    "DEFAULT_OBSERVATION_ADDRESS",
    "FLAG_SAFE_ACTION",
    "HEADER",
    "KIND_ACTION",
    "KIND_OBSERVATION",
    "MAGIC",
    "REJECT_REASONS",
    "SO_RXQ_OVFL",
    "VERSION",
    "WILDCARD_HOSTS",
    "ActionPacket",
    "ActionPublisher",
    "DatagramTransport",
    "ObservationReceiver",
    "PolicyClient",
    "StaleTracker",
    "TransportError",
    "allowed_peer_set",
    "allowed_uid_set",
    "check_bind",
    "encode",
    "normalize_peer",
    "open_socket",
    "parse_address",
    "read_ancillary",
]
