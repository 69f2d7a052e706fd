"""The runner configuration (<root>/runner.json, selected by the release switch), checked up front.

Every field is validated before the policy loads so a bad template fails at start with the field
name, not minutes later inside the loop. Relative paths are resolved against the config's folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from jetpolicy.common.errors import ConfigError
from jetpolicy.common.schema import (
    SchemaProblem,
    describe_problems,
    load_schema,
    parse_checked,
    version_problem,
)
from jetpolicy.robot.backends.base import BACKEND_KINDS
from jetpolicy.robot.miss_policy import MissPolicyConfig
from jetpolicy.robot.scheduler import OVERRUN_POLICIES
from jetpolicy.robot.transport import (
    DEFAULT_ACTION_ADDRESS,
    DEFAULT_MAX_PACKETS_PER_POLL,
    DEFAULT_OBSERVATION_ADDRESS,
    MAX_UID,
    TransportError,
    check_bind,
    parse_address,
)

__all__ = [
    "CONFIG_SCHEMA",
    "CONFIG_SCHEMA_VERSION",
    "DEFAULT_SPIN_US",
    "MAX_AUTO_SPIN_US",
    "TRANSPORT_KINDS",
    "RealtimeConfig",
    "RunnerConfig",
    "TransportConfig",
    "config_from_dict",
    "default_spin_us",
    "engine_for_release",
    "load_config",
]

TRANSPORT_KINDS = ("udp", "unix", "synthetic", "replay")
# runner.json's `schema_version` (docs/schemas.md). The template leaves it out while it is 1: configs
# are content-addressed, and a new line in every one would redeploy each robot's config unchanged.
CONFIG_SCHEMA = "runner-config"
CONFIG_SCHEMA_VERSION = 1
# Measured on the 2-core CI machine (bench/README.md): a sleeping thread wakes 50-150 us late at
# 500-1000 Hz, and up to a few hundred us after the long idle of a 50 Hz period. So the spin is
# 3 % of the period, at least 250 us and at most 1 ms: the start lands on the release while the
# busy-wait costs at most a quarter of a core at 1 kHz and 3 % at low rates.
DEFAULT_SPIN_US = 250
MAX_AUTO_SPIN_US = 1000


def default_spin_us(rate_hz: float) -> int:
    """The spin used when the config leaves `spin_us` unset (never more than half the period)."""
    period_us = 1e6 / rate_hz
    return int(min(max(DEFAULT_SPIN_US, 0.03 * period_us), MAX_AUTO_SPIN_US, period_us / 2))


@dataclass(frozen=True)
class TransportConfig:
    kind: str = "udp"
    bind: str = DEFAULT_OBSERVATION_ADDRESS  # udp/unix: where observations arrive
    action_to: str = DEFAULT_ACTION_ADDRESS  # udp/unix: where actions are sent
    seed: int = 0  # synthetic
    path: Optional[Path] = None  # replay: .npz of recorded observations
    loop: bool = True  # replay: wrap around at the end
    allowed_peers: Optional[List[str]] = None  # udp/unix: senders accepted; None: the action_to peer
    max_packets_per_tick: int = DEFAULT_MAX_PACKETS_PER_POLL  # udp/unix: datagrams read per tick
    allow_wildcard_bind: bool = False  # udp: a 0.0.0.0 bind only when asked for
    # unix: sender uids (numbers or user names) accepted; None: the runner's own uid and root
    allowed_uids: Optional[List[Union[int, str]]] = None


@dataclass(frozen=True)
class RealtimeConfig:
    sched_fifo_priority: Optional[int] = None  # 1..99; None leaves the default scheduler
    cpu_affinity: Optional[List[int]] = None
    mlockall: bool = False
    gc_freeze: bool = True
    required: bool = False  # True: a refused setting stops the runner; False: warn in the status


@dataclass(frozen=True)
class RunnerConfig:
    release_dir: Path
    engine: Optional[Path] = None
    backend: str = "auto"
    cuda_graph: bool = False  # TensorRT only: replay the copies and enqueue as one CUDA graph
    rate_hz: Optional[float] = None  # None: the manifest's control_rate_hz
    spin_us: Optional[int] = None  # None: default_spin_us(rate)
    overrun_policy: str = "skip"
    status_file: Path = Path("/run/jetpolicy/status.json")
    metrics_file: Optional[Path] = Path("/var/lib/jetpolicy/jetpolicy.prom")
    status_interval_s: float = 1.0
    transport: TransportConfig = field(default_factory=TransportConfig)
    stale_after_ticks: int = 5
    warmup_ticks: int = 100
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    watchdog: bool = True  # ping systemd at half of WATCHDOG_USEC when systemd sets it
    miss_policy: MissPolicyConfig = field(default_factory=MissPolicyConfig)  # docs/miss-policy.md


_TOP_KEYS = {
    "schema_version", "release_dir", "engine", "backend", "cuda_graph", "rate_hz", "spin_us",
    "overrun_policy", "status_file", "metrics_file", "status_interval_s", "transport", "stale_after_ticks",
    "warmup_ticks", "realtime", "watchdog", "miss_policy",
}  # fmt: skip
_TRANSPORT_KEYS = {
    "kind", "bind", "action_to", "seed", "path", "loop", "allowed_peers", "max_packets_per_tick",
    "allow_wildcard_bind", "allowed_uids",
}  # fmt: skip
_REALTIME_KEYS = {"sched_fifo_priority", "cpu_affinity", "mlockall", "gc_freeze", "required"}
_MISS_POLICY_KEYS = {"hold_after", "decay_after", "safe_after", "recover_after"}


def _fail(source: str, key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{source}: '{key}' {problem}", fix)


def _check_keys(raw: Mapping[str, Any], allowed: set, source: str, where: str) -> None:  # type: ignore[type-arg]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} in {where}",
            f"remove them; allowed: {', '.join(sorted(allowed))}",
        )


def _number(raw: Mapping[str, Any], key: str, source: str, low: float, high: float, integer: bool) -> Any:
    value = raw[key]
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise _fail(source, key, f"must be {kind}, got {value!r}", f"set {key} to {kind}")
    if not low <= value <= high:
        raise _fail(source, key, f"must be in [{low:g}, {high:g}], got {value}", f"set {key} within range")
    return value if integer else float(value)


def _bool(raw: Mapping[str, Any], key: str, source: str) -> bool:
    value = raw[key]
    if not isinstance(value, bool):
        raise _fail(source, key, f"must be true or false, got {value!r}", "use a JSON boolean")
    return value


def _path(raw: Mapping[str, Any], key: str, source: str, base: Path) -> Path:
    value = raw[key]
    if not isinstance(value, str) or not value:
        raise _fail(source, key, f"must be a non-empty path string, got {value!r}", "give a path")
    path = Path(value)
    return path if path.is_absolute() else base / path


def _choice(raw: Mapping[str, Any], key: str, source: str, choices: tuple) -> str:  # type: ignore[type-arg]
    value = raw[key]
    if value not in choices:
        raise _fail(
            source, key, f"must be one of {', '.join(choices)}, got {value!r}", f"pick one of {choices}"
        )
    return str(value)


def _transport(raw: Any, source: str, base: Path) -> TransportConfig:
    where = f"{source}: transport"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object", 'write e.g. {"kind": "udp"}')
    _check_keys(raw, _TRANSPORT_KEYS, source, "transport")
    kind = _choice(raw, "kind", where, TRANSPORT_KINDS) if "kind" in raw else "udp"
    values: Dict[str, Any] = {"kind": kind}
    for key in ("bind", "action_to"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key]:
                raise _fail(
                    where, key, f"must be an address string, got {raw[key]!r}", "host:port or a socket path"
                )
            values[key] = raw[key]
        elif kind == "unix":
            raise _fail(where, key, "is required for a unix transport", "give a socket path")
    if raw.get("allowed_peers") is not None:
        peers = raw["allowed_peers"]
        if not isinstance(peers, list) or not peers or not all(isinstance(p, str) and p for p in peers):
            raise _fail(
                where, "allowed_peers", f"must be a non-empty list of addresses, got {peers!r}",
                'list sender IPs (udp, e.g. ["127.0.0.1"]) or socket paths (unix); null: the action_to peer',
            )  # fmt: skip
        values["allowed_peers"] = list(peers)
    if raw.get("allowed_uids") is not None:
        values["allowed_uids"] = _allowed_uids(raw["allowed_uids"], kind, where)
    if "max_packets_per_tick" in raw:
        values["max_packets_per_tick"] = _number(raw, "max_packets_per_tick", where, 1, 4096, integer=True)
    if "allow_wildcard_bind" in raw:
        values["allow_wildcard_bind"] = _bool(raw, "allow_wildcard_bind", where)
    if kind in ("udp", "unix"):
        try:
            check_bind(
                kind,
                parse_address(kind, values.get("bind", DEFAULT_OBSERVATION_ADDRESS)),
                values.get("allow_wildcard_bind", False),
            )
        except TransportError as exc:
            raise ConfigError(f"{where}: 'bind' {exc.cause}", exc.fix) from None
    if "seed" in raw:
        values["seed"] = _number(raw, "seed", where, 0, 2**32 - 1, integer=True)
    if "loop" in raw:
        values["loop"] = _bool(raw, "loop", where)
    if "path" in raw:
        values["path"] = _path(raw, "path", where, base)
    elif kind == "replay":
        raise _fail(where, "path", "is required for a replay transport", "point it at an .npz recording")
    return TransportConfig(**values)


def _allowed_uids(uids: Any, kind: str, where: str) -> List[Union[int, str]]:
    def is_uid(entry: Any) -> bool:
        if isinstance(entry, bool):
            return False
        return (isinstance(entry, int) and 0 <= entry <= MAX_UID) or (isinstance(entry, str) and bool(entry))

    if not isinstance(uids, list) or not uids or not all(is_uid(u) for u in uids):
        raise _fail(
            where, "allowed_uids", f"must be a non-empty list of uids or user names, got {uids!r}",
            'list the users the driver runs as, e.g. [0, "robot"]; null: the runner\'s own user and root',
        )  # fmt: skip
    if kind == "udp":
        raise _fail(
            where, "allowed_uids", "applies to unix transports only (a UDP datagram carries no sender uid)",
            "remove it, and list UDP senders in allowed_peers",
        )  # fmt: skip
    return list(uids)


def _realtime(raw: Any, source: str) -> RealtimeConfig:
    where = f"{source}: realtime"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object", 'write e.g. {"sched_fifo_priority": 80}')
    _check_keys(raw, _REALTIME_KEYS, source, "realtime")
    values: Dict[str, Any] = {}
    if raw.get("sched_fifo_priority") is not None:
        values["sched_fifo_priority"] = _number(raw, "sched_fifo_priority", where, 1, 99, integer=True)
    cpus = raw.get("cpu_affinity")
    if cpus is not None:
        if (
            not isinstance(cpus, list)
            or not cpus
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus)
        ):
            raise _fail(
                where, "cpu_affinity", f"must be a non-empty list of CPU numbers, got {cpus!r}", "e.g. [3]"
            )
        values["cpu_affinity"] = list(cpus)
    for key in ("mlockall", "gc_freeze", "required"):
        if key in raw:
            values[key] = _bool(raw, key, where)
    return RealtimeConfig(**values)


def _miss_policy(raw: Any, source: str) -> MissPolicyConfig:
    where = f"{source}: miss_policy"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object", 'write e.g. {"hold_after": 2, "safe_after": 20}')
    _check_keys(raw, _MISS_POLICY_KEYS, source, "miss_policy")
    values = {key: _number(raw, key, where, 1, 1_000_000, integer=True) for key in sorted(raw)}
    try:
        return MissPolicyConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.cause}", exc.fix) from None


def config_from_dict(raw: Any, source: str = "runner config", base: Optional[Path] = None) -> RunnerConfig:
    """Build a RunnerConfig from parsed JSON; raises ConfigError naming the first bad field."""
    base_dir = base or Path.cwd()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: top level must be a JSON object", "see docs/architecture.md Runner config"
        )
    problem = version_problem(raw, "schema_version", CONFIG_SCHEMA_VERSION)
    if problem:
        raise ConfigError(
            f"{source}: {problem}",
            "deploy the jetpolicy runtime that goes with this config (deploy.yml switches both together)",
        )

    def refuse(problems: List[SchemaProblem]) -> ConfigError:
        return ConfigError(
            f"{source}: {describe_problems(problems, CONFIG_SCHEMA)}",
            "fix the policy_service variables that template it (docs/schemas.md)",
        )

    return parse_checked(load_schema(CONFIG_SCHEMA), raw, lambda: _config(raw, source, base_dir), refuse)


def _config(raw: Dict[str, Any], source: str, base: Path) -> RunnerConfig:
    _check_keys(raw, _TOP_KEYS, source, "the top level")
    if "release_dir" not in raw:
        raise ConfigError(
            f"{source}: missing required 'release_dir'", "point it at a release, e.g. /opt/jetpolicy/current"
        )
    values: Dict[str, Any] = {"release_dir": _path(raw, "release_dir", source, base)}
    if raw.get("engine") is not None:
        values["engine"] = _path(raw, "engine", source, base)
    if "backend" in raw:
        values["backend"] = _choice(raw, "backend", source, BACKEND_KINDS)
    if "cuda_graph" in raw:
        values["cuda_graph"] = _bool(raw, "cuda_graph", source)
    if raw.get("rate_hz") is not None:
        values["rate_hz"] = _number(raw, "rate_hz", source, 0.1, 10000, integer=False)
    if "spin_us" in raw:
        values["spin_us"] = _number(raw, "spin_us", source, 0, 100_000, integer=True)
    if "overrun_policy" in raw:
        values["overrun_policy"] = _choice(raw, "overrun_policy", source, OVERRUN_POLICIES)
    if "status_file" in raw:
        values["status_file"] = _path(raw, "status_file", source, base)
    if "metrics_file" in raw:
        values["metrics_file"] = (
            None if raw["metrics_file"] is None else _path(raw, "metrics_file", source, base)
        )
    if "status_interval_s" in raw:
        values["status_interval_s"] = _number(raw, "status_interval_s", source, 0.05, 3600, integer=False)
    if "transport" in raw:
        values["transport"] = _transport(raw["transport"], source, base)
    if "stale_after_ticks" in raw:
        values["stale_after_ticks"] = _number(raw, "stale_after_ticks", source, 1, 1_000_000, integer=True)
    if "warmup_ticks" in raw:
        values["warmup_ticks"] = _number(raw, "warmup_ticks", source, 0, 1_000_000, integer=True)
    if "realtime" in raw:
        values["realtime"] = _realtime(raw["realtime"], source)
    if "watchdog" in raw:
        values["watchdog"] = _bool(raw, "watchdog", source)
    if raw.get("miss_policy") is not None:
        values["miss_policy"] = _miss_policy(raw["miss_policy"], source)
    config = RunnerConfig(**values)
    rate = config.rate_hz
    if rate is not None and config.spin_us is not None and config.spin_us * 1e-6 >= 1.0 / rate:
        raise ConfigError(
            f"{source}: spin_us {config.spin_us} is not shorter than the period at {rate:g} Hz",
            "lower spin_us below the control period",
        )
    return config


def load_config(path: Path) -> RunnerConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"runner config {path} does not exist", "template it with the policy_service role"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read runner config {path}: {exc.strerror}", "check its permissions"
        ) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"runner config {path} is not valid JSON: {exc}", "fix the JSON syntax") from None
    return config_from_dict(raw, source=str(path), base=path.parent.resolve())


def engine_for_release(engine: Optional[Path], release_dir: Path) -> Optional[Path]:
    """The engine built for this release, or None when there is none.

    `engine` may contain `{release}`: engines are built per release on the robot and linked as
    `engines/by-release/<release id>.engine`, so a rollback that switches `current` back also
    switches the engine without touching the config.
    """
    if engine is None:
        return None
    path = Path(str(engine).replace("{release}", release_dir.name))
    return path if path.is_file() else None
