"""The rollout report: per-host records in, one verdict plus report.json, report.md, latency.png and
conditions.png out.

During a rollout every host writes `<report_dir>/hosts/<host>.json`; the `jetpolicy_report` callback
adds `run.json` (playbook, limit, wall time, per-host play stats). A host that shows up in the stats
but never wrote a record was not reached (or was unreachable), and is reported as such: silence is
not success. Records are parsed through `jetpolicy.controller.record.HostRecord`; one that is torn or
off the contract makes its host `failed`, with the file and the field in the reason.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.common.schema import describe_problems, load_schema
from jetpolicy.controller.failure_policy import FAILURE_POLICY_FILE, FailurePolicy, load_failure_policy
from jetpolicy.controller.record import (
    OUTCOME_VERDICTS,
    GateResult,
    HealthGate,
    HostRecord,
    ParityGate,
    PlatformInfo,
    RecordError,
    TimingGate,
    load_host_record,
    parse_versioned,
)

__all__ = [
    "BAD_VERDICTS",
    "REPORT_SCHEMA",
    "REPORT_SCHEMA_VERSION",
    "HostOutcome",
    "ReportSummary",
    "host_outcomes",
    "load_run",
    "read_summary",
    "register",
    "render_report",
]

# Verdicts that make a run not ok. `unreachable` and `not reached` come from the play stats.
BAD_VERDICTS = ("rolled_back", "failed", "unreachable")
OK_MARK, BAD_MARK, NO_MARK = "✔", "✘", "—"
# report.json's `schema_version` (rollout-report.schema.json, docs/schemas.md).
REPORT_SCHEMA = "rollout-report"
REPORT_SCHEMA_VERSION = 1
# Keys report.json adds to a host's record.
OUTCOME_KEYS = ("why", "stats")


@dataclass
class HostOutcome:
    """One host's verdict and the one-line why, from its record or (without one) its play stats."""

    host: str
    verdict: str
    why: str
    record: Optional[HostRecord] = None
    stats: Dict[str, int] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        """The host's entry in report.json: its record's fields, then the outcome."""
        record = self.record.to_json() if self.record is not None else {}
        return {**record, "host": self.host, "verdict": self.verdict, "why": self.why, "stats": self.stats}


@dataclass
class ReportSummary:
    ok: bool
    reason: str
    verdict: str
    run_id: str
    hosts: Dict[str, str]
    paths: Dict[str, Path]
    # Host records that could not be read, each naming its file and field.
    problems: List[str] = field(default_factory=list)

    @property
    def markdown(self) -> Path:
        return self.paths["markdown"]

    def line(self) -> str:
        return f"{'OK' if self.ok else 'NOT OK'} ({self.verdict}): {self.reason}"


def load_run(report_dir: Path) -> Optional[Dict[str, Any]]:
    path = report_dir / "run.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise JetpolicyError(f"cannot read {path}: {exc}", "delete it or re-run the rollout") from exc
    return data if isinstance(data, dict) else None


def _load_records(report_dir: Path) -> Tuple[Dict[str, HostRecord], Dict[str, RecordError]]:
    """(records by host, bad records by host); a bad record's host is the file's name."""
    records: Dict[str, HostRecord] = {}
    bad: Dict[str, RecordError] = {}
    for path in sorted((report_dir / "hosts").glob("*.json")):
        try:
            record = load_host_record(path)
        except RecordError as exc:
            # A torn record is a host we know nothing about: report it, never skip it.
            bad[path.stem] = exc
            continue
        records[record.host] = record
    return records, bad


def _failed_gates(record: HostRecord) -> List[str]:
    return [
        f"{name} gate: {gate.reasons[0]}" if gate.reasons else f"{name} gate failed"
        for name, gate in record.gates.items()
        if gate.failed
    ]


def _record_why(record: HostRecord) -> str:
    rollback = record.rollback
    if record.verdict == "rolled_back" and rollback is not None and rollback.reason:
        return rollback.reason
    failed = _failed_gates(record)
    if record.verdict in BAD_VERDICTS and failed:
        return "; ".join(failed)
    return record.message


def _stats_verdict(host: str, stats: Dict[str, int]) -> Tuple[str, str]:
    if stats.get("unreachable"):
        return "unreachable", (
            f"no SSH connection; it stays on the release it runs; once it is back, rerun with -l {host}"
        )
    if stats.get("failures"):
        return "failed", f"{stats['failures']} task(s) failed before the host wrote its record"
    return "not reached", "the play never got to this host's record"


def host_outcomes(
    records: Dict[str, HostRecord],
    run: Optional[Dict[str, Any]],
    bad_records: Optional[Dict[str, RecordError]] = None,
) -> List[HostOutcome]:
    stats_by_host: Dict[str, Dict[str, int]] = dict((run or {}).get("stats") or {})
    bad = bad_records or {}
    outcomes = []
    for host in sorted(set(records) | set(stats_by_host) | set(bad)):
        stats = stats_by_host.get(host) or {}
        record = records.get(host)
        if record is not None:
            outcomes.append(HostOutcome(host, record.verdict, _record_why(record), record, stats))
        elif host in bad:
            outcomes.append(HostOutcome(host, "failed", str(bad[host]), None, stats))
        else:
            verdict, why = _stats_verdict(host, stats)
            outcomes.append(HostOutcome(host, verdict, why, None, stats))
    return outcomes


_PHRASES = {"rolled_back": "rolled back", "failed": "failed", "unreachable": "unreachable"}


def overall(outcomes: List[HostOutcome], policy: Optional[FailurePolicy] = None) -> Tuple[bool, str, str]:
    """(ok, overall verdict, one-line reason); the failure policy's outcome ends a failed run's reason."""
    bad = [o for o in outcomes if o.verdict in BAD_VERDICTS]
    if policy is not None:
        # The robots that failed come first; those rollback_all returned because of them after.
        bad.sort(key=lambda o: o.host in policy.rolled_back_with_run)
    if not outcomes:
        return False, "empty", "no host records and no play stats: nothing was rolled out"
    if bad:
        first = bad[0]
        reason = f"{first.host} {_PHRASES[first.verdict]}"
        if first.why:
            reason += f": {first.why}"
        if len(bad) > 1:
            others = ", ".join(f"{o.host} {_PHRASES[o.verdict]}" for o in bad[1:4])
            reason += f"; also {others}" + (f" (+{len(bad) - 4} more)" if len(bad) > 4 else "")
        verdict = "failed" if any(o.verdict != "rolled_back" for o in bad) else "rolled_back"
        if policy is not None and policy.failed_robots:
            # First, so a one-line reason cut to length still says what the run did.
            reason = f"{policy.summary()}; {reason}"
        return False, verdict, " ".join(reason.split())
    counts: Dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.verdict] = counts.get(outcome.verdict, 0) + 1
    targets = _targets(outcomes)
    parts = ", ".join(f"{n} {verdict.replace('_', ' ')}" for verdict, n in sorted(counts.items()))
    reason = f"{len(outcomes)} host(s): {parts}" + (f" to {', '.join(targets)}" if targets else "")
    deferred = [o for o in outcomes if o.verdict == "deferred"]
    if deferred:
        # Not failed: each stays on its release, and its why says how to finish it.
        reason += "; " + "; ".join(f"{o.host} {o.why}" for o in deferred[:4])
        reason += f" (+{len(deferred) - 4} more deferred)" if len(deferred) > 4 else ""
    # A re-run that finds every host already on the release is as good as a promotion.
    if set(counts) <= {"promoted", "unchanged"}:
        verdict = "promoted" if "promoted" in counts else "unchanged"
    else:
        verdict = "partial"
    return True, verdict, reason


def _targets(outcomes: List[HostOutcome]) -> List[str]:
    return sorted({o.record.target_release for o in outcomes if o.record and o.record.target_release})


# ---- Markdown ------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    text = NO_MARK if value is None or value == "" else str(value)
    return " ".join(text.replace("|", "\\|").split())


def _num(value: Optional[float], fmt: str = "{:g}") -> str:
    return fmt.format(value) if value is not None and math.isfinite(value) else "?"


def _mark(gate: GateResult) -> str:
    return {"passed": OK_MARK, "failed": BAD_MARK}.get(gate.status, NO_MARK)


SKIPPED_CELL = f"{NO_MARK} skipped (switched off)"


def _health_cell(gate: Optional[HealthGate]) -> str:
    if gate is None:
        return NO_MARK
    if not gate.enabled:
        return SKIPPED_CELL
    return f"{_mark(gate)} {_num(gate.ticks_per_s, '{:.1f}')}/{_num(gate.expected_rate_hz)} Hz"


def _timing_cell(gate: Optional[TimingGate]) -> str:
    if gate is None:
        return NO_MARK
    if not gate.enabled:
        return SKIPPED_CELL
    miss, max_miss = gate.deadline_miss_rate, gate.max_miss_rate
    miss_text = f", misses {miss:.2%}" if miss is not None and math.isfinite(miss) else ""
    if miss_text and max_miss is not None:
        miss_text += f" / max {max_miss:.2%}"
    return (
        f"{_mark(gate)} p99 {_num(gate.latency_p99_us, '{:.0f}')} µs"
        f" / budget {_num(gate.budget_us, '{:.0f}')} µs{miss_text}"
    )


def _parity_cell(gate: Optional[ParityGate]) -> str:
    if gate is None:
        return NO_MARK
    if not gate.enabled:
        return SKIPPED_CELL
    error = _num(gate.max_abs_error, "{:.2g}")
    return f"{_mark(gate)} max abs {error} (atol {_num(gate.atol)})"


def _short(release: Any) -> str:
    return NO_MARK if not release else str(release)[:16]


def _verdict_cell(verdict: str) -> str:
    good = verdict in ("promoted", "unchanged")
    mark = BAD_MARK if verdict in BAD_VERDICTS else (OK_MARK if good else NO_MARK)
    return f"{mark} {verdict.replace('_', ' ')}"


def _rollback_cell(record: Optional[HostRecord]) -> str:
    rollback = record.rollback if record is not None else None
    if rollback is None or not rollback.performed:
        return NO_MARK
    after = rollback.healthy_after
    health = "" if after is None else (", healthy after" if after else ", NOT healthy after")
    return f"to {_short(rollback.to)}{health}: {rollback.reason or 'no reason recorded'}"


def _platform_cell(record: Optional[HostRecord], details: bool = False) -> Optional[str]:
    """`orin (L4T)`, with `details` its JetPack, TensorRT, power mode and engine (— where unknown;
    none for a record from before platform_info was written), then a replay double's mark."""
    if record is None:
        return None
    cell = f"{record.platform or NO_MARK}" + (" (L4T)" if record.is_l4t else "")
    info = record.platform_info
    if details and info is not None:
        engine = info.engine_sha256[:ENGINE_SHORT] if info.engine_sha256 else None
        parts = [
            ("JetPack", info.jetpack), ("TRT", info.tensorrt), ("power", info.power_mode), ("engine", engine),
        ]  # fmt: skip
        cell += "".join(f" · {label} {value or NO_MARK}" for label, value in parts)
    return cell + (f" (simulated: {record.simulated})" if record.simulated else "")


# Hex digits of the engine's sha256 in the fleet table (the host section has all 64).
ENGINE_SHORT = 8
PLATFORM_INFO_ROWS = (
    ("JetPack", "jetpack"),
    ("L4T", "l4t"),
    ("TensorRT", "tensorrt"),
    ("power mode", "power_mode"),
    ("power mode id", "power_mode_id"),
    ("engine sha256", "engine_sha256"),
    ("engine precision (asked)", "engine_precision"),
    ("builder precision (trtexec)", "builder_precision"),
)


def _platform_info_rows(record: HostRecord) -> List[Tuple[str, str]]:
    info = (record.platform_info or PlatformInfo()).to_json()
    return [(label, NO_MARK if info[key] is None else str(info[key])) for label, key in PLATFORM_INFO_ROWS]


def _flatten(value: Any, prefix: str) -> List[Tuple[str, str]]:
    """(dotted key, value) for every leaf of a JSON object; other values as JSON text."""
    if isinstance(value, dict) and value:
        return [row for key, item in value.items() for row in _flatten(item, f"{prefix}.{key}")]
    if value is None:
        return [(prefix, NO_MARK)]
    return [(prefix, value if isinstance(value, str) else json.dumps(value))]


# Condition keys not shown as rows of their own: the series is plotted (conditions.png), the
# replay mark (and its note) go on the source row.
_CONDITIONS_NOT_ROWS = ("series", "simulated", "source")


def _conditions_source_cell(conditions: Dict[str, Any]) -> Optional[str]:
    """`tegrastats` / `proc`, with a replay double's mark: its figures are a recording's."""
    source = conditions.get("source")
    simulated = conditions.get("simulated")
    if source is None and simulated is None:
        return None  # a window from before the source was recorded
    cell = str(source or NO_MARK)
    if simulated:
        why = conditions.get("note") or "the figures are a recording's, not this robot's"
        cell += f" (simulated: {simulated}: {why})"
    return cell


def _conditions_rows(gate: Optional[TimingGate]) -> List[Tuple[str, str]]:
    """The timing gate's measurement conditions (`bench.conditions`: load, memory, GPU,
    temperatures, rail power over the gate window): where they were sampled (tegrastats or
    /proc), then each key with its value whatever the keys are."""
    if gate is None or "conditions" not in gate.bench:
        return []
    conditions = gate.bench["conditions"]
    if isinstance(conditions, dict) and conditions:
        source = _conditions_source_cell(conditions)
        rows = [("timing conditions: source", source)] if source is not None else []
        folded = (*_CONDITIONS_NOT_ROWS, "note") if conditions.get("simulated") else _CONDITIONS_NOT_ROWS
        return rows + [
            (f"timing conditions: {key}", value)
            for name, item in conditions.items()
            if name not in folded
            for key, value in _flatten(item, str(name))
        ]
    return _flatten(conditions, "timing conditions")


def _process_cell(process: Any) -> Optional[str]:
    """What the kernel said about the measured process: the runner's kind or not, at a glance."""
    if not isinstance(process, dict):
        return None
    parts = [f"{process.get('user') or NO_MARK} (pid {process.get('pid', NO_MARK)})",
             f"{process.get('scheduler') or NO_MARK} {process.get('priority', '')}".strip(),
             f"CPUs {process.get('cpus') or NO_MARK}",
             f"seccomp {process.get('seccomp') or NO_MARK}"]  # fmt: skip
    if process.get("no_new_privs"):
        parts.append("no new privileges")
    caps = process.get("cap_effective")
    if isinstance(caps, str):
        parts.append("no capabilities" if int(caps or "0", 16) == 0 else f"capabilities {caps}")
    if process.get("locked_kb"):
        parts.append(f"{process['locked_kb']} kB locked")
    return ", ".join(parts)


def _clocks_cell(clocks: Any) -> Optional[str]:
    """jetson_clocks around the measurement (L4T): pinned, restored, and what --show said."""
    if not isinstance(clocks, dict):
        return None
    done = "pinned by jetson_clocks" if clocks.get("locked") else "not pinned"
    done += ", restored after" if clocks.get("restored") else ", NOT restored"
    if clocks.get("store_kept"):
        done += "; the stored state was an earlier run's that never restored"
    show = clocks.get("show")
    if isinstance(show, dict):
        done += f"; --show: every domain at min = max: {'yes' if show.get('all_pinned') else 'no'}"
    if clocks.get("simulated"):
        done += f" (simulated: {clocks['simulated']}: the replay double's --show is a recording)"
    return done


def _measured_as_rows(gate: Optional[TimingGate]) -> List[Tuple[str, str]]:
    if gate is None:
        return []
    rows = [("timing measured by", cell) for cell in [_process_cell(gate.bench.get("process"))] if cell]
    return rows + [("timing clocks", cell) for cell in [_clocks_cell(gate.bench.get("clocks"))] if cell]


def _host_section(outcome: HostOutcome) -> List[str]:
    record = outcome.record or HostRecord(host=outcome.host, verdict="staged", platform="")
    gates = record.gates
    rows: List[Tuple[str, str]] = [
        ("verdict", _verdict_cell(outcome.verdict)),
        ("platform", _platform_cell(record) or NO_MARK),
        *_platform_info_rows(record),
        ("release", f"{_short(record.release_before)} → {_short(record.release_after)}"),
        ("target release", _short(record.target_release)),
        ("backend", str(record.backend or NO_MARK)),
        ("health", _health_cell(gates.health)),
        ("timing", _timing_cell(gates.timing)),
        *_measured_as_rows(gates.timing),
        *_conditions_rows(gates.timing),
        ("parity", _parity_cell(gates.parity)),
        ("rollback", _rollback_cell(outcome.record)),
        ("why", outcome.why or NO_MARK),
    ]
    if outcome.stats:
        rows.append(("play stats", ", ".join(f"{k} {v}" for k, v in sorted(outcome.stats.items()))))
    simulated = ""
    if record.simulated:
        simulated = f" (simulated: {record.simulated}: its numbers are not Jetson figures)"
    lines = [f"### {outcome.host}{simulated}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in rows]
    reasons = [f"- {name}: {_cell(reason)}" for name, gate in gates.items() for reason in gate.reasons]
    return [*lines, "", *reasons, *([""] if reasons else [])]


def _markdown(
    run_id: str,
    run: Dict[str, Any],
    outcomes: List[HostOutcome],
    ok: bool,
    verdict: str,
    reason: str,
    policy: Optional[FailurePolicy] = None,
) -> str:
    targets = _targets(outcomes)
    wall = run.get("wall_time_s")
    header = [
        ("verdict", f"{OK_MARK if ok else BAD_MARK} **{verdict.replace('_', ' ')}**: {reason}"),
        ("policy", run.get("policy_dir") or run.get("policy")),
        ("target release", ", ".join(targets)),
        ("playbook", run.get("playbook")),
        ("limit", run.get("limit")),
        ("started", run.get("started_at")),
        ("finished", run.get("finished_at")),
        ("wall time", f"{wall:.1f} s" if isinstance(wall, (int, float)) else None),
        ("failure policy", policy.summary() if policy is not None else None),
    ]
    lines = [f"# jetpolicy rollout {run_id}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in header]
    lines += [
        "",
        "## Fleet",
        "",
        "| host | platform | release before → after | backend | health | timing | parity | verdict"
        " | rollback |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        r = o.record
        cells = [
            o.host,
            _platform_cell(r, details=True),
            f"{_short(r.release_before)} → {_short(r.release_after)}" if r else None,
            r.backend if r else None,
            _health_cell(r.gates.health if r else None),
            _timing_cell(r.gates.timing if r else None),
            _parity_cell(r.gates.parity if r else None),
            _verdict_cell(o.verdict) + ("" if r else f" ({o.why})"),
            _rollback_cell(r),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "![in-loop latency per host](latency.png)", "",
              "![CPU and temperature per host while timed](conditions.png)", "", "## Hosts", ""]  # fmt: skip
    for o in outcomes:
        lines += _host_section(o)
    return "\n".join(lines)


# ---- Rendering -----------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def render_report(report_dir: Path, run: Optional[Dict[str, Any]] = None) -> ReportSummary:
    """Read `hosts/*.json` (+ `run.json` unless `run` is given); write report.json, .md and the plots."""
    report_dir = Path(report_dir)
    if not report_dir.is_dir():
        raise JetpolicyError(f"no report directory {report_dir}", "pass reports/<run_id> of a rollout")
    if run is None:
        run = load_run(report_dir) or {}
    records, bad = _load_records(report_dir)
    if not records and not bad and not run.get("stats"):
        raise JetpolicyError(
            f"{report_dir} has neither host records (hosts/*.json) nor play stats (run.json)",
            "pass the reports/<run_id> directory a rollout wrote",
        )
    run_id = str(run.get("run_id") or report_dir.name)
    outcomes = host_outcomes(records, run, bad)
    policy: Optional[FailurePolicy] = None
    try:
        policy = load_failure_policy(report_dir)
    except RecordError as exc:  # the hosts' outcomes still stand; the report names the bad file
        bad[FAILURE_POLICY_FILE] = exc
    ok, verdict, reason = overall(outcomes, policy)
    paths = _paths(report_dir)
    document = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "run_id": run_id,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ok": ok,
        "verdict": verdict,
        "reason": reason,
        "run": run,
        "hosts": [o.to_json() for o in outcomes],
        "problems": [str(exc) for exc in bad.values()],
    }
    if policy is not None:
        document["failure_policy"] = policy.to_json()
    problems = load_schema(REPORT_SCHEMA).problems(document)
    if problems:  # a bug here, not in the records: bad records are already outcomes of their own
        raise JetpolicyError(
            f"{paths['json']} not written: {describe_problems(problems, REPORT_SCHEMA)}",
            "report this jetpolicy bug with the host records of the run",
        )
    _write_atomic(paths["json"], json.dumps(document, indent=2, sort_keys=True) + "\n")
    _write_atomic(paths["markdown"], _markdown(run_id, run, outcomes, ok, verdict, reason, policy) + "\n")
    from jetpolicy.controller.report_plot import plot_conditions, plot_latency  # matplotlib: controller only

    host_records = [(o.host, o.record.to_json() if o.record else {}) for o in outcomes]
    plot_latency(paths["latency"], host_records)
    plot_conditions(paths["conditions"], host_records)
    hosts = {o.host: o.verdict for o in outcomes}
    return ReportSummary(ok, reason, verdict, run_id, hosts, paths, [str(exc) for exc in bad.values()])


def _paths(report_dir: Path) -> Dict[str, Path]:
    return {
        "json": report_dir / "report.json",
        "markdown": report_dir / "report.md",
        "latency": report_dir / "latency.png",
        "conditions": report_dir / "conditions.png",
    }


def read_summary(report_dir: Path) -> ReportSummary:
    """The summary of an already rendered report.json; each host entry's record goes through HostRecord.

    A report.json that is missing, torn or off the contract is a JetpolicyError naming the file
    and the field (`render_report` writes a fresh one).
    """
    path = Path(report_dir) / "report.json"
    source = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordError(source, "", f"unreadable report: {exc}") from exc
    if not isinstance(data, dict):
        raise RecordError(source, "", "expected a JSON object")
    return parse_versioned(
        data, source, REPORT_SCHEMA, REPORT_SCHEMA_VERSION, lambda: _summary(data, source, Path(report_dir))
    )


def _summary(data: Dict[str, Any], source: str, report_dir: Path) -> ReportSummary:
    for key, kind in (("ok", bool), ("reason", str), ("verdict", str), ("run_id", str), ("hosts", list)):
        if not isinstance(data.get(key), kind):
            raise RecordError(source, key, f"expected {kind.__name__}, got {data.get(key)!r}"[:200])
    hosts: Dict[str, str] = {}
    for index, entry in enumerate(data["hosts"]):
        where = f"hosts[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("host"), str):
            raise RecordError(source, f"{where}.host", "expected a host entry with its name")
        verdict = entry.get("verdict")
        if verdict not in OUTCOME_VERDICTS:
            raise RecordError(source, f"{where}.verdict", f"expected one of {', '.join(OUTCOME_VERDICTS)}")
        record = {k: v for k, v in entry.items() if k not in OUTCOME_KEYS}
        if set(record) - {"host", "verdict"}:  # the host wrote a record: check it against the contract
            HostRecord.from_json(record, f"{source} {where}")
        hosts[str(entry["host"])] = str(verdict)
    problems = data.get("problems") or []
    return ReportSummary(
        ok=bool(data["ok"]),
        reason=str(data["reason"]),
        verdict=str(data["verdict"]),
        run_id=str(data["run_id"]),
        hosts=hosts,
        paths=_paths(Path(report_dir)),
        problems=[str(p) for p in problems] if isinstance(problems, list) else [],
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report", help="render a rollout's report (report.md, report.json, latency.png, conditions.png) from "
        "its host records"
    )
    parser.add_argument("report_dir", type=Path, metavar="DIR", help="reports/<run_id> of a rollout")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    summary = render_report(args.report_dir)
    print(summary.markdown)
    print(summary.line())
    return 0 if summary.ok else 1
