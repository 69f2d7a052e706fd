"""The rollout report: per-host records in, one verdict plus report.json, report.md and latency.png out.

During a rollout every host writes `<report_dir>/hosts/<host>.json`; the `jetpolicy_report` callback
adds `run.json` (playbook, limit, wall time, per-host play stats). A host that shows up in the stats
but never wrote a record was not reached (or was unreachable), and is reported as such: silence is
not success.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from jetpolicy.common.errors import JetpolicyError

__all__ = [
    "BAD_VERDICTS",
    "HostOutcome",
    "ReportSummary",
    "host_outcomes",
    "load_run",
    "register",
    "render_report",
]

# Verdicts that make a run not ok. `unreachable` and `not reached` come from the play stats.
BAD_VERDICTS = ("rolled_back", "failed", "unreachable")
GATES = ("health", "timing", "parity")
OK_MARK, BAD_MARK, NO_MARK = "✔", "✘", "—"


@dataclass
class HostOutcome:
    """One host's verdict and the one-line why, from its record or (without one) its play stats."""

    host: str
    verdict: str
    why: str
    record: Dict[str, Any] = field(default_factory=dict)
    stats: Dict[str, int] = field(default_factory=dict)


@dataclass
class ReportSummary:
    ok: bool
    reason: str
    verdict: str
    run_id: str
    hosts: Dict[str, str]
    paths: Dict[str, Path]

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


def _load_records(report_dir: Path) -> Dict[str, Dict[str, Any]]:
    records: Dict[str, Dict[str, Any]] = {}
    for path in sorted((report_dir / "hosts").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            # A torn record is a host we know nothing about: report it, never skip it.
            data = {"host": path.stem, "verdict": "failed", "message": f"unreadable host record: {exc}"}
        records[str(data.get("host") or path.stem)] = data
    return records


def _gate(record: Dict[str, Any], name: str) -> Optional[Dict[str, Any]]:
    gates = record.get("gates") or {}
    gate = gates.get(name) if isinstance(gates, dict) else None
    return gate if isinstance(gate, dict) else None


def _failed_gates(record: Dict[str, Any]) -> List[str]:
    failed = []
    for name in GATES:
        gate = _gate(record, name)
        if gate is not None and gate.get("passed") is False:
            reasons = gate.get("reasons") or []
            failed.append(f"{name} gate: {reasons[0]}" if reasons else f"{name} gate failed")
    return failed


def _record_why(record: Dict[str, Any], verdict: str) -> str:
    rollback = record.get("rollback") or {}
    if verdict == "rolled_back" and rollback.get("reason"):
        return str(rollback["reason"])
    failed = _failed_gates(record)
    if verdict in BAD_VERDICTS and failed:
        return "; ".join(failed)
    return str(record.get("message") or "")


def _stats_verdict(host: str, stats: Dict[str, int]) -> Tuple[str, str]:
    if stats.get("unreachable"):
        return "unreachable", (
            f"no SSH connection; it stays on the release it runs; once it is back, rerun with -l {host}"
        )
    if stats.get("failures"):
        return "failed", f"{stats['failures']} task(s) failed before the host wrote its record"
    return "not reached", "the play never got to this host's record"


def host_outcomes(records: Dict[str, Dict[str, Any]], run: Optional[Dict[str, Any]]) -> List[HostOutcome]:
    stats_by_host: Dict[str, Dict[str, int]] = dict((run or {}).get("stats") or {})
    outcomes = []
    for host in sorted(set(records) | set(stats_by_host)):
        stats = stats_by_host.get(host) or {}
        record = records.get(host)
        if record is None or not record.get("verdict"):
            verdict, why = _stats_verdict(host, stats)
            if record is not None and record.get("message"):
                why = str(record["message"])
            outcomes.append(HostOutcome(host, verdict, why, record or {}, stats))
            continue
        verdict = str(record["verdict"])
        outcomes.append(HostOutcome(host, verdict, _record_why(record, verdict), record, stats))
    return outcomes


_PHRASES = {"rolled_back": "rolled back", "failed": "failed", "unreachable": "unreachable"}


def overall(outcomes: List[HostOutcome]) -> Tuple[bool, str, str]:
    """(ok, overall verdict, one-line reason)."""
    bad = [o for o in outcomes if o.verdict in BAD_VERDICTS]
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
        return False, verdict, " ".join(reason.split())
    counts: Dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.verdict] = counts.get(outcome.verdict, 0) + 1
    targets = sorted({str(o.record["target_release"]) for o in outcomes if o.record.get("target_release")})
    parts = ", ".join(f"{n} {verdict.replace('_', ' ')}" for verdict, n in sorted(counts.items()))
    reason = f"{len(outcomes)} host(s): {parts}" + (f" to {', '.join(targets)}" if targets else "")
    # A re-run that finds every host already on the release is as good as a promotion.
    if set(counts) <= {"promoted", "unchanged"}:
        verdict = "promoted" if "promoted" in counts else "unchanged"
    else:
        verdict = "partial"
    return True, verdict, reason


# ---- Markdown ------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    text = NO_MARK if value is None or value == "" else str(value)
    return " ".join(text.replace("|", "\\|").split())


def _num(value: Any, fmt: str = "{:g}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) else "?"


def _mark(gate: Optional[Dict[str, Any]]) -> str:
    if gate is None or gate.get("passed") is None:
        return NO_MARK
    return OK_MARK if gate["passed"] else BAD_MARK


def _health_cell(gate: Optional[Dict[str, Any]]) -> str:
    if gate is None:
        return NO_MARK
    return f"{_mark(gate)} {_num(gate.get('ticks_per_s'), '{:.1f}')}/{_num(gate.get('expected_rate_hz'))} Hz"


def _timing_cell(gate: Optional[Dict[str, Any]]) -> str:
    if gate is None:
        return NO_MARK
    miss, max_miss = gate.get("deadline_miss_rate"), gate.get("max_miss_rate")
    miss_text = f", misses {miss:.2%}" if isinstance(miss, (int, float)) else ""
    if miss_text and isinstance(max_miss, (int, float)):
        miss_text += f" / max {max_miss:.2%}"
    return (
        f"{_mark(gate)} p99 {_num(gate.get('latency_p99_us'), '{:.0f}')} µs"
        f" / budget {_num(gate.get('budget_us'), '{:.0f}')} µs{miss_text}"
    )


def _parity_cell(gate: Optional[Dict[str, Any]]) -> str:
    if gate is None:
        return NO_MARK
    error = _num(gate.get("max_abs_error"), "{:.2g}")
    return f"{_mark(gate)} max abs {error} (atol {_num(gate.get('atol'))})"


def _short(release: Any) -> str:
    return NO_MARK if not release else str(release)[:16]


def _verdict_cell(verdict: str) -> str:
    good = verdict in ("promoted", "unchanged")
    mark = BAD_MARK if verdict in BAD_VERDICTS else (OK_MARK if good else NO_MARK)
    return f"{mark} {verdict.replace('_', ' ')}"


def _rollback_cell(record: Dict[str, Any]) -> str:
    rollback = record.get("rollback") or {}
    if not rollback.get("performed"):
        return NO_MARK
    after = rollback.get("healthy_after")
    health = "" if after is None else (", healthy after" if after else ", NOT healthy after")
    return f"to {_short(rollback.get('to'))}{health}: {rollback.get('reason') or 'no reason recorded'}"


def _host_section(outcome: HostOutcome) -> List[str]:
    record = outcome.record
    rows: List[Tuple[str, str]] = [
        ("verdict", _verdict_cell(outcome.verdict)),
        ("platform", f"{record.get('platform') or NO_MARK}" + (" (L4T)" if record.get("is_l4t") else "")),
        ("release", f"{_short(record.get('release_before'))} → {_short(record.get('release_after'))}"),
        ("target release", _short(record.get("target_release"))),
        ("backend", str(record.get("backend") or NO_MARK)),
        ("health", _health_cell(_gate(record, "health"))),
        ("timing", _timing_cell(_gate(record, "timing"))),
        ("parity", _parity_cell(_gate(record, "parity"))),
        ("rollback", _rollback_cell(record)),
        ("why", outcome.why or NO_MARK),
    ]
    if outcome.stats:
        rows.append(("play stats", ", ".join(f"{k} {v}" for k, v in sorted(outcome.stats.items()))))
    lines = [f"### {outcome.host}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in rows]
    reasons = [
        f"- {name}: {_cell(reason)}"
        for name in GATES
        for reason in (_gate(record, name) or {}).get("reasons") or []
    ]
    return [*lines, "", *reasons, *([""] if reasons else [])]


def _markdown(
    run_id: str, run: Dict[str, Any], outcomes: List[HostOutcome], ok: bool, verdict: str, reason: str
) -> str:
    targets = sorted({str(o.record["target_release"]) for o in outcomes if o.record.get("target_release")})
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
            r.get("platform"),
            f"{_short(r.get('release_before'))} → {_short(r.get('release_after'))}" if r else None,
            r.get("backend"),
            _health_cell(_gate(r, "health")),
            _timing_cell(_gate(r, "timing")),
            _parity_cell(_gate(r, "parity")),
            _verdict_cell(o.verdict) + ("" if o.record else f" ({o.why})"),
            _rollback_cell(r),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "![in-loop latency per host](latency.png)", "", "## Hosts", ""]
    for o in outcomes:
        lines += _host_section(o)
    return "\n".join(lines)


# ---- Rendering -----------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def render_report(report_dir: Path, run: Optional[Dict[str, Any]] = None) -> ReportSummary:
    """Read `hosts/*.json` (+ `run.json` unless `run` is given); write report.json, .md and latency.png."""
    report_dir = Path(report_dir)
    if not report_dir.is_dir():
        raise JetpolicyError(f"no report directory {report_dir}", "pass reports/<run_id> of a rollout")
    if run is None:
        run = load_run(report_dir) or {}
    records = _load_records(report_dir)
    if not records and not run.get("stats"):
        raise JetpolicyError(
            f"{report_dir} has neither host records (hosts/*.json) nor play stats (run.json)",
            "pass the reports/<run_id> directory a rollout wrote",
        )
    run_id = str(run.get("run_id") or report_dir.name)
    outcomes = host_outcomes(records, run)
    ok, verdict, reason = overall(outcomes)
    paths = {
        "json": report_dir / "report.json",
        "markdown": report_dir / "report.md",
        "latency": report_dir / "latency.png",
    }
    document = {
        "run_id": run_id,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ok": ok,
        "verdict": verdict,
        "reason": reason,
        "run": run,
        "hosts": [
            {**o.record, "host": o.host, "verdict": o.verdict, "why": o.why, "stats": o.stats}
            for o in outcomes
        ],
    }
    _write_atomic(paths["json"], json.dumps(document, indent=2, sort_keys=True) + "\n")
    _write_atomic(paths["markdown"], _markdown(run_id, run, outcomes, ok, verdict, reason) + "\n")
    from jetpolicy.controller.report_plot import plot_latency  # matplotlib: controller only

    plot_latency(paths["latency"], [(o.host, o.record) for o in outcomes])
    return ReportSummary(ok, reason, verdict, run_id, {o.host: o.verdict for o in outcomes}, paths)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report", help="render a rollout's report (report.md, report.json, latency.png) from its host records"
    )
    parser.add_argument("report_dir", type=Path, metavar="DIR", help="reports/<run_id> of a rollout")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    summary = render_report(args.report_dir)
    print(summary.markdown)
    print(summary.line())
    return 0 if summary.ok else 1
