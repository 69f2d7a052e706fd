"""The per-host rollout record: one typed definition for the gate, the report and `jetpolicy rollout`.

`policy_gate`'s `record` tasks write `reports/<run>/hosts/<host>.json` on the controller; the gate
(`jetpolicy.controller.gate`) produces its `gates` part, and `jetpolicy.controller.report` reads
the files back through `HostRecord.from_json`. A field that is absent takes its default (records
written by older versions and by test stand-ins leave some out); a field that is present with the
wrong type, or a field this module does not know, is a `RecordError` that names the file and the
field. Numbers that are not finite (NaN, Inf) are written as null: JSON has no NaN, and a gate's
reasons already say what the number was.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar, Union

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.common.schema import SchemaProblem, load_schema, parse_checked, version_problem

T = TypeVar("T")

__all__ = [
    "GATE_NAMES",
    "GATE_STATUSES",
    "HOST_RECORD_SCHEMA",
    "HOST_RECORD_SCHEMA_VERSION",
    "OUTCOME_VERDICTS",
    "RECORD_VERDICTS",
    "GateResult",
    "Gates",
    "HealthGate",
    "HostRecord",
    "ParityGate",
    "PlatformInfo",
    "RecordError",
    "Rollback",
    "TimingGate",
    "finite_or_none",
    "load_host_record",
    "off_schema",
]

GATE_NAMES = ("health", "timing", "parity")
GATE_STATUSES = ("passed", "failed", "skipped")
# What the role writes: `staged` until the switch phase overwrites it; `deferred`: left on its
# release because it was busy (live observations or an operator hold), not failed.
RECORD_VERDICTS = ("promoted", "unchanged", "rolled_back", "staged", "deferred")
# What the report can say about a host: a record's verdict, or one taken from the play stats.
OUTCOME_VERDICTS = (*RECORD_VERDICTS, "failed", "unreachable", "not reached")

# The record's `schema_version` (host-record.schema.json, docs/schemas.md); absent in older records: 1.
HOST_RECORD_SCHEMA = "host-record"
HOST_RECORD_SCHEMA_VERSION = 1

Number = Union[int, float]


class RecordError(JetpolicyError):
    """A host record that does not match the contract; `source` is the file, `field` the dotted key."""

    def __init__(self, source: str, field_name: str, problem: str) -> None:
        self.source = source
        self.field = field_name
        where = f"{source}: field {field_name!r}" if field_name else source
        super().__init__(
            f"{where}: {problem}",
            "records are written by roles/policy_gate/tasks/record.yml; re-run the rollout for this host",
        )


def off_schema(source: str, schema: str, problems: List[SchemaProblem]) -> RecordError:
    """The RecordError for a document off its schema: the first problem's field, and the count."""
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    first = problems[0]
    return RecordError(source, first.path, f"{first.message}{more}, against {schema}.schema.json")


def parse_versioned(
    data: Any, source: str, schema: str, supported: int, parse: Callable[[], T]
) -> T:
    """A controller document: its schema_version first (a newer one is refused), then `parse`
    checked against `schema`, the reader's own messages winning where both find a problem."""
    if isinstance(data, Mapping):
        problem = version_problem(data, "schema_version", supported)
        if problem:
            raise RecordError(source, "schema_version", f"{problem}; update this controller checkout")
    return parse_checked(
        load_schema(schema), data, parse, lambda problems: off_schema(source, schema, problems)
    )


def finite_or_none(value: Optional[float]) -> Optional[float]:
    """The number, or None where it is NaN or infinite (JSON has neither)."""
    return value if value is not None and math.isfinite(value) else None


def _json_safe(value: Any) -> Any:
    """A copy of a JSON-like value with non-finite floats replaced by None."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class _Reader:
    """Typed access to one JSON object, each error naming the file and the dotted field."""

    def __init__(self, data: Any, source: str, prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            raise RecordError(source, prefix, f"expected a JSON object, got {type(data).__name__}")
        self.data = data
        self.source = source
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, problem: str) -> RecordError:
        return RecordError(self.source, self.name(key), problem)

    def only(self, known: Tuple[str, ...]) -> None:
        unknown = sorted(str(k) for k in self.data if k not in known)
        if unknown:
            raise self.fail(unknown[0], f"unknown field (known: {', '.join(known)})")

    def _get(self, key: str, kinds: Tuple[type, ...], what: str) -> Any:
        value = self.data.get(key)
        # bool is an int to Python, never a number (or a string) in a record.
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if value is None or (isinstance(value, kinds) and not wrong_bool):
            return value
        raise self.fail(key, f"expected {what}, got {type(value).__name__} {value!r}"[:200])

    def text(self, key: str, default: Optional[str] = None) -> Optional[str]:
        value = self._get(key, (str,), "a string or null")
        return default if value is None else str(value)

    def flag(self, key: str) -> Optional[bool]:
        value = self._get(key, (bool,), "true, false or null")
        return None if value is None else bool(value)

    def number(self, key: str) -> Optional[float]:
        value = self._get(key, (int, float), "a number or null")
        return None if value is None else float(value)

    def count(self, key: str) -> Optional[int]:
        value = self._get(key, (int,), "an integer or null")
        return None if value is None else int(value)

    def texts(self, key: str) -> List[str]:
        value = self._get(key, (list,), "a list of strings")
        if value is None:
            return []
        for item in value:
            if not isinstance(item, str):
                raise self.fail(key, f"expected a list of strings, found {type(item).__name__} {item!r}")
        return [str(item) for item in value]

    def mapping(self, key: str) -> Optional[Mapping[str, Any]]:
        value = self._get(key, (dict, Mapping), "a JSON object or null")
        return None if value is None else dict(value)

    def child(self, key: str) -> Optional[_Reader]:
        value = self.data.get(key)
        return None if value is None else _Reader(value, self.source, self.name(key))


# ---- Gates ---------------------------------------------------------------------------------------

_GATE_COMMON = ("enabled", "passed", "status", "reasons")


def _status(reader: _Reader) -> str:
    """The gate's status; records from before `status` existed say it with `enabled` and `passed`."""
    status = reader.text("status")
    if status is not None:
        if status not in GATE_STATUSES:
            raise reader.fail("status", f"expected one of {', '.join(GATE_STATUSES)}, got {status!r}")
        return status
    enabled, passed = reader.flag("enabled"), reader.flag("passed")
    if enabled is False or passed is None:
        return "skipped"
    return "passed" if passed else "failed"


@dataclass(frozen=True)
class GateResult:
    """What every gate says: passed, failed or skipped (switched off), and why it failed."""

    status: str
    reasons: List[str] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.status != "skipped"

    @property
    def passed(self) -> Optional[bool]:
        """True or False for a gate that was judged, None for one switched off."""
        return None if self.status == "skipped" else self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_json(self) -> Dict[str, Any]:
        return self._common_json()

    def _common_json(self) -> Dict[str, Any]:
        return {
            "enabled": self.enabled,
            "passed": self.passed,
            "status": self.status,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class HealthGate(GateResult):
    """`jetpolicy health` on the robot: the runner the service started ticks at its rate."""

    ticks_per_s: Optional[float] = None
    expected_rate_hz: Optional[float] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            **self._common_json(),
            "ticks_per_s": finite_or_none(self.ticks_per_s),
            "expected_rate_hz": finite_or_none(self.expected_rate_hz),
        }

    @classmethod
    def from_json(cls, reader: _Reader) -> HealthGate:
        reader.only((*_GATE_COMMON, "ticks_per_s", "expected_rate_hz"))
        return cls(
            _status(reader),
            reader.texts("reasons"),
            ticks_per_s=reader.number("ticks_per_s"),
            expected_rate_hz=reader.number("expected_rate_hz"),
        )


@dataclass(frozen=True)
class TimingGate(GateResult):
    """`policy_bench` on the robot: in-loop p99 within the budget, deadline misses under the limit."""

    latency_p99_us: Optional[float] = None
    budget_us: Optional[float] = None
    deadline_miss_rate: Optional[float] = None
    max_miss_rate: Optional[float] = None
    # The `jetpolicy bench` JSON as the robot printed it (its own contract, docs/architecture.md).
    bench: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {
            **self._common_json(),
            "latency_p99_us": finite_or_none(self.latency_p99_us),
            "budget_us": finite_or_none(self.budget_us),
            "deadline_miss_rate": finite_or_none(self.deadline_miss_rate),
            "max_miss_rate": finite_or_none(self.max_miss_rate),
            "bench": _json_safe(self.bench),
        }

    @classmethod
    def from_json(cls, reader: _Reader) -> TimingGate:
        reader.only(
            (*_GATE_COMMON, "latency_p99_us", "budget_us", "deadline_miss_rate", "max_miss_rate", "bench")
        )
        return cls(
            _status(reader),
            reader.texts("reasons"),
            latency_p99_us=reader.number("latency_p99_us"),
            budget_us=reader.number("budget_us"),
            deadline_miss_rate=reader.number("deadline_miss_rate"),
            max_miss_rate=reader.number("max_miss_rate"),
            bench=dict(reader.mapping("bench") or {}),
        )


@dataclass(frozen=True)
class ParityGate(GateResult):
    """`jetpolicy parity` on the robot: the deployed backend reproduces the reference outputs."""

    max_abs_error: Optional[float] = None
    max_rel_error: Optional[float] = None
    finite: Optional[bool] = None
    atol: Optional[float] = None
    rtol: Optional[float] = None
    backend: Optional[str] = None
    cases: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            **self._common_json(),
            "max_abs_error": finite_or_none(self.max_abs_error),
            "max_rel_error": finite_or_none(self.max_rel_error),
            "finite": self.finite,
            "atol": finite_or_none(self.atol),
            "rtol": finite_or_none(self.rtol),
            "backend": self.backend,
            "cases": self.cases,
        }

    @classmethod
    def from_json(cls, reader: _Reader) -> ParityGate:
        reader.only(
            (*_GATE_COMMON, "max_abs_error", "max_rel_error", "finite", "atol", "rtol", "backend", "cases")
        )
        return cls(
            _status(reader),
            reader.texts("reasons"),
            max_abs_error=reader.number("max_abs_error"),
            max_rel_error=reader.number("max_rel_error"),
            finite=reader.flag("finite"),
            atol=reader.number("atol"),
            rtol=reader.number("rtol"),
            backend=reader.text("backend"),
            cases=reader.count("cases"),
        )


@dataclass(frozen=True)
class Gates:
    """The three gates of one host; None where the host was never gated (a staged host)."""

    health: Optional[HealthGate] = None
    timing: Optional[TimingGate] = None
    parity: Optional[ParityGate] = None

    def items(self) -> List[Tuple[str, GateResult]]:
        """(name, gate) in the fixed order health, timing, parity; gates never run are left out."""
        named: List[Tuple[str, Optional[GateResult]]] = [
            ("health", self.health),
            ("timing", self.timing),
            ("parity", self.parity),
        ]
        return [(name, gate) for name, gate in named if gate is not None]

    def to_json(self) -> Dict[str, Any]:
        return {name: gate.to_json() for name, gate in self.items()}

    @classmethod
    def from_json(cls, reader: _Reader) -> Gates:
        reader.only(GATE_NAMES)
        health, timing, parity = (reader.child(name) for name in GATE_NAMES)
        return cls(
            health=HealthGate.from_json(health) if health else None,
            timing=TimingGate.from_json(timing) if timing else None,
            parity=ParityGate.from_json(parity) if parity else None,
        )


# ---- Rollback ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollback:
    """What `policy_service` did after a failure (`policy_service_rollback_record`).

    `performed` is false when the robot had no earlier release and the runner was stopped instead.
    """

    performed: bool = False
    reason: str = ""
    from_release: Optional[str] = None  # "from" on disk
    to: Optional[str] = None
    runtime_from: Optional[str] = None
    runtime_to: Optional[str] = None
    config_from: Optional[str] = None
    config_to: Optional[str] = None
    notes: str = ""
    healthy_after: Optional[bool] = None
    health_after: Optional[Dict[str, Any]] = None

    KEYS = (
        "performed", "reason", "from", "to", "runtime_from", "runtime_to", "config_from", "config_to",
        "notes", "healthy_after", "health_after",
    )  # fmt: skip

    def to_json(self) -> Dict[str, Any]:
        return {
            "performed": self.performed,
            "reason": self.reason,
            "from": self.from_release,
            "to": self.to,
            "runtime_from": self.runtime_from,
            "runtime_to": self.runtime_to,
            "config_from": self.config_from,
            "config_to": self.config_to,
            "notes": self.notes,
            "healthy_after": self.healthy_after,
            "health_after": _json_safe(self.health_after),
        }

    @classmethod
    def from_json(cls, reader: _Reader) -> Rollback:
        reader.only(cls.KEYS)
        health_after = reader.mapping("health_after")
        return cls(
            performed=bool(reader.flag("performed")),
            reason=reader.text("reason", "") or "",
            from_release=reader.text("from"),
            to=reader.text("to"),
            runtime_from=reader.text("runtime_from"),
            runtime_to=reader.text("runtime_to"),
            config_from=reader.text("config_from"),
            config_to=reader.text("config_to"),
            notes=reader.text("notes", "") or "",
            healthy_after=reader.flag("healthy_after"),
            health_after=None if health_after is None else dict(health_after),
        )


# ---- Platform ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformInfo:
    """What the host ran the release on (`platform_info`): jetson_facts' JetPack, L4T, TensorRT and
    nvpmodel power mode, and the engine tensorrt_engine built or reused for `target_release`.

    Each is None where it is unknown: on a host that is not L4T (the x86 sim robots) nearly all of
    it, as there is no JetPack, nvpmodel or engine there; on a host whose NVIDIA tools are replay
    doubles (the record's `simulated`) the values are those of the recording, not of a Jetson.
    """

    jetpack: Optional[str] = None
    l4t: Optional[str] = None
    tensorrt: Optional[str] = None
    # `nvpmodel -q`: the mode's name (e.g. MAXN) and its number.
    power_mode: Optional[str] = None
    power_mode_id: Optional[int] = None
    # sha256 of the engine file (tensorrt_engine's stat on the robot), 64 lower-case hex digits.
    engine_sha256: Optional[str] = None
    # The precision asked of the builder (fp16, int8, best, ...) and the one trtexec printed.
    engine_precision: Optional[str] = None
    builder_precision: Optional[str] = None

    KEYS = (
        "jetpack", "l4t", "tensorrt", "power_mode", "power_mode_id", "engine_sha256", "engine_precision",
        "builder_precision",
    )  # fmt: skip

    def to_json(self) -> Dict[str, Any]:
        return {
            "jetpack": self.jetpack,
            "l4t": self.l4t,
            "tensorrt": self.tensorrt,
            "power_mode": self.power_mode,
            "power_mode_id": self.power_mode_id,
            "engine_sha256": self.engine_sha256,
            "engine_precision": self.engine_precision,
            "builder_precision": self.builder_precision,
        }

    @classmethod
    def from_json(cls, reader: _Reader) -> PlatformInfo:
        reader.only(cls.KEYS)
        engine_sha256 = reader.text("engine_sha256") or None
        if engine_sha256 is not None and not _SHA256.match(engine_sha256):
            problem = f"expected 64 lower-case hex digits, got {engine_sha256!r}"
            raise reader.fail("engine_sha256", problem[:200])
        # The role writes "" where a fact is empty; the report shows both as unknown.
        return cls(
            jetpack=reader.text("jetpack") or None,
            l4t=reader.text("l4t") or None,
            tensorrt=reader.text("tensorrt") or None,
            power_mode=reader.text("power_mode") or None,
            power_mode_id=reader.count("power_mode_id"),
            engine_sha256=engine_sha256,
            engine_precision=reader.text("engine_precision") or None,
            builder_precision=reader.text("builder_precision") or None,
        )


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ---- The record ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostRecord:
    """One host's outcome of a rollout, as `roles/policy_gate/tasks/record.yml` writes it."""

    host: str
    verdict: str
    platform: str = "unknown"
    is_l4t: bool = False
    # "replay" on a sim robot whose NVIDIA tools are replay doubles (jetson_facts.simulated): its
    # numbers are never Jetson figures, and every report row from it says so.
    simulated: Optional[str] = None
    target_release: Optional[str] = None
    release_before: Optional[str] = None
    release_after: Optional[str] = None
    backend: Optional[str] = None
    # Absent in records from before it was written, and for a host never staged: None.
    platform_info: Optional[PlatformInfo] = None
    gates: Gates = field(default_factory=Gates)
    rollback: Optional[Rollback] = None
    message: str = ""
    schema_version: int = HOST_RECORD_SCHEMA_VERSION

    @staticmethod
    def field_names() -> Tuple[str, ...]:
        """The JSON keys of a record (the dataclass fields; `from_json` accepts no others)."""
        return tuple(f.name for f in fields(HostRecord))

    def to_json(self) -> Dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "host": self.host,
            "platform": self.platform,
            "is_l4t": self.is_l4t,
            "simulated": self.simulated,
            "target_release": self.target_release,
            "release_before": self.release_before,
            "release_after": self.release_after,
            "backend": self.backend,
            "platform_info": None if self.platform_info is None else self.platform_info.to_json(),
            "verdict": self.verdict,
            "gates": self.gates.to_json(),
            "rollback": None if self.rollback is None else self.rollback.to_json(),
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Any, source: str, default_host: Optional[str] = None) -> HostRecord:
        """Parse one record; `source` (the file) and the field name are in every error."""
        return parse_versioned(
            data, source, HOST_RECORD_SCHEMA, HOST_RECORD_SCHEMA_VERSION,
            lambda: cls._parse(data, source, default_host),
        )

    @classmethod
    def _parse(cls, data: Any, source: str, default_host: Optional[str]) -> HostRecord:
        reader = _Reader(data, source)
        reader.only(cls.field_names())
        host = reader.text("host") or default_host
        if not host:
            raise reader.fail("host", "missing: every record names its host")
        verdict = reader.text("verdict")
        if verdict is None:
            raise reader.fail("verdict", f"missing: expected one of {', '.join(RECORD_VERDICTS)}")
        if verdict not in RECORD_VERDICTS:
            raise reader.fail("verdict", f"expected one of {', '.join(RECORD_VERDICTS)}, got {verdict!r}")
        gates = reader.child("gates")
        rollback = reader.child("rollback")
        platform_info = reader.child("platform_info")
        return cls(
            host=host,
            verdict=verdict,
            platform=reader.text("platform", "unknown") or "unknown",
            is_l4t=bool(reader.flag("is_l4t")),
            simulated=reader.text("simulated") or None,
            target_release=reader.text("target_release"),
            # The role writes "" for "no release before" on some paths; the report shows both as none.
            release_before=reader.text("release_before") or None,
            release_after=reader.text("release_after") or None,
            backend=reader.text("backend"),
            platform_info=PlatformInfo.from_json(platform_info) if platform_info else None,
            gates=Gates.from_json(gates) if gates else Gates(),
            rollback=Rollback.from_json(rollback) if rollback else None,
            message=reader.text("message", "") or "",
        )


def load_host_record(path: Path) -> HostRecord:
    """Read `hosts/<host>.json`; a missing, torn or off-contract file is a `RecordError` naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordError(str(path), "", f"unreadable host record: {exc}") from exc
    return HostRecord.from_json(data, str(path), default_host=path.stem)
