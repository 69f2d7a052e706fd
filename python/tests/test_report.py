"""The rollout report: verdicts, the one-line reason, report.md/json and latency.png from host records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from jetpolicy.cli import main
from jetpolicy.common.errors import JetpolicyError
from jetpolicy.controller.report import render_report

TARGET = "8620dd26fec5b69b"


def record(host: str, verdict: str = "promoted", p99: float = 900.0, **extra: Any) -> Dict[str, Any]:
    data: Dict[str, Any] = {
        "host": host,
        "platform": "orin",
        "is_l4t": False,
        "target_release": TARGET,
        "release_before": "abc1234567890def",
        "release_after": TARGET,
        "backend": "onnxruntime",
        "verdict": verdict,
        "gates": {
            "health": {"passed": True, "ticks_per_s": 99.8, "expected_rate_hz": 100, "reasons": []},
            "timing": {
                "passed": True,
                "latency_p99_us": p99,
                "budget_us": 5000.0,
                "deadline_miss_rate": 0.0,
                "max_miss_rate": 0.001,
                "reasons": [],
                "bench": {
                    "backend": "onnxruntime",
                    "rate_hz": 100,
                    "ticks": 500,
                    "inference_us": {"p50": 300.0, "p90": 500.0, "p99": p99, "max": p99 * 1.5},
                    "period_error_us": {"p50": 0, "p99": 1, "max": 2},
                    "drift_pct": 0.01,
                    "deadline_miss_rate": 0.0,
                    "overruns": 0,
                },
            },
            "parity": {
                "passed": True,
                "max_abs_error": 1e-7,
                "max_rel_error": 1e-6,
                "finite": True,
                "atol": 1e-4,
                "rtol": 1e-3,
                "backend": "onnxruntime",
                "cases": 32,
            },
        },
        "rollback": None,
        "message": f"{host} promoted",
    }
    data.update(extra)
    return data


def write(report_dir: Path, *records: Dict[str, Any], run: Optional[Dict[str, Any]] = None) -> Path:
    (report_dir / "hosts").mkdir(parents=True)
    for rec in records:
        (report_dir / "hosts" / f"{rec['host']}.json").write_text(json.dumps(rec), encoding="utf-8")
    if run is not None:
        (report_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    return report_dir


def rolled_back(host: str) -> Dict[str, Any]:
    rec = record(host, "rolled_back", p99=7000.0, release_after="abc1234567890def")
    rec["gates"]["timing"].update(passed=False, reasons=["p99 7000 us > budget 5000 us"])
    rec["rollback"] = {
        "performed": True,
        "reason": "timing gate: p99 7000 us > budget 5000 us",
        "to": "abc1234567890def",
        "healthy_after": True,
    }
    return rec


def test_promoted_fleet_is_ok(tmp_path: Path) -> None:
    """Every host promoted: ok, the md names each host with ✔ marks, json and png are written."""
    report_dir = write(tmp_path / "run1", record("sim-orin-1"), record("sim-orin-2"))
    summary = render_report(report_dir)
    assert summary.ok
    assert summary.verdict == "promoted"
    assert summary.hosts == {"sim-orin-1": "promoted", "sim-orin-2": "promoted"}
    assert TARGET in summary.reason
    md = summary.markdown.read_text(encoding="utf-8")
    assert "sim-orin-1" in md and "sim-orin-2" in md
    assert "✔ promoted" in md and "✘" not in md
    assert json.loads(summary.paths["json"].read_text(encoding="utf-8"))["ok"] is True
    png = summary.paths["latency"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_rolled_back_host_is_not_ok_with_one_line_reason(tmp_path: Path) -> None:
    """A rolled back host fails the run; the reason names the host and the gate on one line."""
    report_dir = write(tmp_path / "run2", record("sim-orin-1"), rolled_back("sim-orin-2"))
    summary = render_report(report_dir)
    assert not summary.ok
    assert summary.verdict == "rolled_back"
    assert summary.reason == "sim-orin-2 rolled back: timing gate: p99 7000 us > budget 5000 us"
    assert "\n" not in summary.line()
    md = summary.markdown.read_text(encoding="utf-8")
    assert "✘ p99 7000 µs" in md and "✘ rolled back" in md


def test_hosts_only_in_stats_are_listed(tmp_path: Path) -> None:
    """A host in the play stats without a record is reported unreachable (or not reached), never dropped."""
    stats = {
        "sim-orin-1": {"ok": 20, "changed": 3, "failures": 0, "unreachable": 0, "skipped": 1, "rescued": 0},
        "sim-xavier-1": {"ok": 0, "changed": 0, "failures": 0, "unreachable": 1, "skipped": 0, "rescued": 0},
        "sim-xavier-2": {"ok": 4, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 0, "rescued": 0},
    }
    run = {"playbook": "deploy.yml", "limit": "robots", "wall_time_s": 42.5, "stats": stats}
    report_dir = write(tmp_path / "run3", record("sim-orin-1"), run=run)
    summary = render_report(report_dir)
    assert not summary.ok
    assert summary.hosts == {
        "sim-orin-1": "promoted",
        "sim-xavier-1": "unreachable",
        "sim-xavier-2": "not reached",
    }
    assert summary.reason.startswith("sim-xavier-1 unreachable")
    md = summary.markdown.read_text(encoding="utf-8")
    assert "sim-xavier-1" in md and "unreachable" in md and "not reached" in md
    assert "42.5 s" in md


def test_host_without_bench_still_plots(tmp_path: Path) -> None:
    """A host with no timing gate is noted in the plot and the table instead of breaking the report."""
    rec = record("sim-orin-1", "staged")
    rec["gates"] = {}
    summary = render_report(write(tmp_path / "run4", rec))
    assert summary.ok and summary.verdict == "partial"
    assert summary.paths["latency"].stat().st_size > 0


def test_empty_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JetpolicyError, match="neither host records"):
        render_report(tmp_path)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`jetpolicy report DIR` prints the md path and summary; exit 1 when not ok."""
    good = write(tmp_path / "good", record("sim-orin-1"))
    assert main(["report", str(good)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(good / "report.md") and out[1].startswith("OK")
    bad = write(tmp_path / "bad", rolled_back("sim-orin-1"))
    assert main(["report", str(bad)]) == 1
    assert "sim-orin-1 rolled back: timing gate" in capsys.readouterr().out


def test_rerun_with_every_host_already_on_the_release_is_unchanged(tmp_path: Path) -> None:
    """A no-change re-run is reported as unchanged and ok, not as a partial rollout."""
    records = [record("sim-orin-1", "unchanged"), record("sim-orin-2", "unchanged")]
    summary = render_report(write(tmp_path / "run5", *records))
    assert summary.ok and summary.verdict == "unchanged"
