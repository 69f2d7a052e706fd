"""The rollout gate: a switched robot's health, timing and parity results in, a verdict with reasons out.

`policy_gate` runs the checks on the robot and hands their registered results to this module through
its `jetpolicy_gate` filter (roles/policy_gate/filter_plugins/), so the decision is made on the
controller, once, by `judge_gates`. Every failure reason names the number and the limit it broke.

A number that is missing, NaN or infinite never passes: each limit is checked as "a finite number
within the limit", so a NaN cannot slip through a `<=` that is merely not false. A gate that is
switched off never fails the host; it is recorded as skipped, with whatever numbers it had.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.controller.record import Gates, HealthGate, ParityGate, TimingGate

__all__ = [
    "BenchRun",
    "CommandRun",
    "GateSettings",
    "GateVerdict",
    "judge_gates",
]

# Longest excerpt of a command's stderr or garbled stdout quoted in a reason.
EXCERPT_CHARS = 300


@dataclass(frozen=True)
class GateSettings:
    """Which gates judge the host, and the limits they judge against."""

    control_rate_hz: float
    latency_p99_fraction: float = 0.5
    max_deadline_miss_rate: float = 0.01
    health_enabled: bool = True
    timing_enabled: bool = True
    parity_enabled: bool = True

    def __post_init__(self) -> None:
        # A limit that is not a finite positive number would make every comparison meaningless.
        for name, value, low in (
            ("control_rate_hz", self.control_rate_hz, 0.0),
            ("latency_p99_fraction", self.latency_p99_fraction, 0.0),
        ):
            if not (math.isfinite(value) and value > low):
                raise JetpolicyError(f"gate setting {name} is {value!r}", "set it to a positive number")
        if not (math.isfinite(self.max_deadline_miss_rate) and self.max_deadline_miss_rate >= 0.0):
            raise JetpolicyError(
                f"gate setting max_deadline_miss_rate is {self.max_deadline_miss_rate!r}",
                "set policy_gate_max_deadline_miss_rate to a number from 0 to 1",
            )

    @property
    def budget_us(self) -> float:
        """In-loop inference p99 budget: `latency_p99_fraction` of the control period."""
        return 1e6 / self.control_rate_hz * self.latency_p99_fraction


@dataclass(frozen=True)
class CommandRun:
    """A command the role ran on the robot (`jetpolicy health`, `jetpolicy parity`).

    `ran` is false when the task was skipped or never reached.
    """

    ran: bool
    stdout: str = ""
    stderr: str = ""
    rc: Optional[int] = None

    @classmethod
    def from_registered(cls, result: Optional[Mapping[str, Any]]) -> CommandRun:
        """From an Ansible `register:` of a command task (None: the variable was never registered)."""
        if not isinstance(result, Mapping) or result.get("skipped") or "rc" not in result:
            return cls(ran=False)
        rc = result.get("rc")
        return cls(
            ran=True,
            stdout=str(result.get("stdout") or ""),
            stderr=str(result.get("stderr") or ""),
            rc=rc if isinstance(rc, int) and not isinstance(rc, bool) else None,
        )


@dataclass(frozen=True)
class BenchRun:
    """The `policy_bench` module's result: the `jetpolicy bench` JSON, or why there is none."""

    facts: Optional[Mapping[str, Any]] = None
    msg: str = ""

    @classmethod
    def from_registered(cls, result: Optional[Mapping[str, Any]]) -> BenchRun:
        if not isinstance(result, Mapping):
            return cls()
        facts = (result.get("ansible_facts") or {}).get("policy_bench")
        return cls(facts if isinstance(facts, Mapping) and facts else None, str(result.get("msg") or ""))


@dataclass(frozen=True)
class GateVerdict:
    """The outcome: the three gate results and, for each failed gate, its reasons."""

    gates: Gates

    @property
    def passed(self) -> bool:
        return not any(gate.failed for _, gate in self.gates.items())

    @property
    def failures(self) -> List[str]:
        """One entry per failed gate: "<gate>: <reason>, <reason>"."""
        return [f"{name}: {', '.join(gate.reasons)}" for name, gate in self.gates.items() if gate.failed]

    def message(self, host: str) -> str:
        """The fail message the role prints (the fleet tests and the rollback reason read it)."""
        if self.passed:
            return f"{host} passed the gates"
        return f"{host} failed the gate(s): {'; '.join(self.failures)}"

    def to_json(self, host: str) -> Dict[str, Any]:
        return {
            "passed": self.passed,
            "gates": self.gates.to_json(),
            "failures": self.failures,
            "message": self.message(host),
        }


# ---- Reading what the robot printed --------------------------------------------------------------


def _number(value: Any) -> Optional[float]:
    """A JSON number as float (NaN and Inf kept, to be refused by `_within`); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _within(value: Optional[float], limit: float) -> bool:
    """True only for a finite number at or under the limit."""
    return value is not None and math.isfinite(value) and value <= limit


def _excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= EXCERPT_CHARS else line[: EXCERPT_CHARS - 1] + "…"


def _json_object(stdout: str) -> Optional[Mapping[str, Any]]:
    """The command's JSON object, or None when stdout is empty, not JSON, or not an object."""
    try:
        data = json.loads(stdout)
    except ValueError:
        return None
    return data if isinstance(data, Mapping) else None


def _show(value: Optional[float], fmt: str = "{:g}") -> str:
    if value is None:
        return "missing"
    return fmt.format(value) if math.isfinite(value) else str(value)


# ---- The three gates -----------------------------------------------------------------------------


def _outcome(enabled: bool, reasons: List[str]) -> Tuple[str, List[str]]:
    """(status, reasons): a gate switched off is skipped and fails nothing, whatever it measured."""
    if not enabled:
        return "skipped", []
    return ("failed" if reasons else "passed"), reasons


def judge_health(run: CommandRun, enabled: bool = True) -> HealthGate:
    """`jetpolicy health` must print `healthy: true` with a finite tick rate and control rate."""
    data = _json_object(run.stdout) if run.ran else None
    if not run.ran:
        reasons = ["no health check ran"]
        ticks = rate = None
    elif data is None:
        shown = f"stdout {_excerpt(run.stdout)!r}" if run.stdout.strip() else "no output"
        said = _excerpt(run.stderr) or shown
        reasons = [f"health check printed no readable JSON (rc {run.rc}): {said}"]
        ticks = rate = None
    else:
        ticks, rate = _number(data.get("ticks_per_s")), _number(data.get("expected_rate_hz"))
        healthy = data.get("healthy")
        listed = data.get("reasons")
        stated = [str(r) for r in listed] if isinstance(listed, list) else []
        if healthy is not True:
            reasons = stated or [f"health check says healthy={healthy!r} without a reason (rc {run.rc})"]
        else:
            reasons = []
            if not _within(ticks, math.inf):
                reasons.append(f"health check reported ticks_per_s {_show(ticks)}, not a finite number")
            if not (_within(rate, math.inf) and rate is not None and rate > 0):
                reasons.append(f"health check reported expected_rate_hz {_show(rate)}, not a positive number")
    return HealthGate(*_outcome(enabled, reasons), ticks_per_s=ticks, expected_rate_hz=rate)


def judge_timing(bench: BenchRun, settings: GateSettings) -> TimingGate:
    """In-loop inference p99 within the budget and the deadline-miss rate within its limit."""
    budget, max_miss = settings.budget_us, settings.max_deadline_miss_rate
    facts = bench.facts
    if not facts:
        reasons = [f"no benchmark result: {bench.msg or 'not run'}"]
        status, reasons = _outcome(settings.timing_enabled, reasons)
        return TimingGate(status, reasons, budget_us=budget, max_miss_rate=max_miss)
    inference = facts.get("inference_us")
    p99 = _number(inference.get("p99")) if isinstance(inference, Mapping) else None
    miss = _number(facts.get("deadline_miss_rate"))
    reasons = []
    if not _within(p99, budget):
        reasons.append(
            f"in-loop latency p99 {_show(p99, '{:.1f}')} us > budget {budget:.1f} us"
            f" ({settings.latency_p99_fraction:g} of the {settings.control_rate_hz:g} Hz period)"
            if p99 is not None and math.isfinite(p99)
            else f"in-loop latency p99 is {_show(p99)}, not a finite number (budget {budget:.1f} us)"
        )
    if not _within(miss, max_miss):
        reasons.append(
            f"deadline-miss rate {miss:.4g} > {max_miss:g} allowed"
            if miss is not None and math.isfinite(miss)
            else f"deadline-miss rate is {_show(miss)}, not a finite number ({max_miss:g} allowed)"
        )
    return TimingGate(
        *_outcome(settings.timing_enabled, reasons),
        latency_p99_us=p99,
        budget_us=budget,
        deadline_miss_rate=miss,
        max_miss_rate=max_miss,
        bench=dict(facts),
    )


def judge_parity(run: CommandRun, enabled: bool = True) -> ParityGate:
    """`jetpolicy parity` must say passed, with finite outputs and finite error numbers.

    The robot decides closeness element by element (|got - ref| <= atol + rtol * |ref|), which the
    maxima alone cannot redo; the controller refuses a pass whose numbers are not finite.
    """
    data = _json_object(run.stdout) if run.ran else None
    if data is None:
        cause = "not run"
        if run.ran:
            # exit 2: the check could not run and says why on stderr.
            shown = (
                f"unreadable output {_excerpt(run.stdout)!r}"
                if run.stdout.strip()
                else f"no output (rc {run.rc})"
            )
            cause = _excerpt(run.stderr) or shown
        reasons = [f"parity check could not run: {cause}"]
        return ParityGate(*_outcome(enabled, reasons))
    max_abs, max_rel = _number(data.get("max_abs_error")), _number(data.get("max_rel_error"))
    atol, rtol = _number(data.get("atol")), _number(data.get("rtol"))
    finite = data.get("finite")
    finite = finite if isinstance(finite, bool) else None
    cases = data.get("cases")
    backend = data.get("backend")
    reasons = []
    numbers = (
        f"max abs error {_show(max_abs)} (atol {_show(atol)}),"
        f" max rel error {_show(max_rel)} (rtol {_show(rtol)})"
    )
    if finite is False:
        reasons.append(
            "outputs are not finite (NaN or Inf) on the deployed backend; finite cases: " + numbers
        )
    elif finite is None:
        reasons.append(f"parity result does not say whether the outputs are finite; {numbers}")
    elif data.get("passed") is not True:
        reasons.append(f"outputs differ from the reference: {numbers}")
    elif not (_within(max_abs, math.inf) and _within(max_rel, math.inf)):
        reasons.append(f"parity says passed but its errors are not finite numbers: {numbers}")
    return ParityGate(
        *_outcome(enabled, reasons),
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        finite=finite,
        atol=atol,
        rtol=rtol,
        backend=str(backend) if isinstance(backend, str) else None,
        cases=cases if isinstance(cases, int) and not isinstance(cases, bool) else None,
    )


def judge_gates(
    health: CommandRun, bench: BenchRun, parity: CommandRun, settings: GateSettings
) -> GateVerdict:
    """Judge a switched robot: every enabled gate must pass; a disabled one is recorded as skipped."""
    return GateVerdict(
        Gates(
            health=judge_health(health, settings.health_enabled),
            timing=judge_timing(bench, settings),
            parity=judge_parity(parity, settings.parity_enabled),
        )
    )
