"""The rollout report: verdicts, the one-line reason, report.md/json and latency.png from host records."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import yaml

from jetpolicy.cli import main
from jetpolicy.common.errors import JetpolicyError
from jetpolicy.controller.record import HostRecord, PlatformInfo, RecordError, Rollback, load_host_record
from jetpolicy.controller.report import read_summary, render_report
from jetpolicy.controller.report_plot import conditions_lines

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
    # No host sampled conditions: conditions.png is still written (it says so).
    assert summary.paths["conditions"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](conditions.png)" in md


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


# ---- The host record contract (jetpolicy.controller.record) --------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _task_vars(path: Path, name: str) -> Dict[str, Any]:
    """The mapping a task in a role's task file sets under `name` (in its vars or its set_fact)."""
    for task in yaml.safe_load(path.read_text(encoding="utf-8")):
        for holder in (task.get("vars") or {}, task.get("ansible.builtin.set_fact") or {}):
            if name in holder:
                return dict(holder[name])
    raise AssertionError(f"{path} sets no {name}")


def _record_expression_keys(path: Path, name: str, inside: Optional[str] = None) -> List[str]:
    """The keys of the one dict expression a task builds under `name` (record.yml builds the record
    in one Jinja expression so its values keep their types): the top level's, or those of the dict
    under key `inside` (one key per line, nested dicts indented further)."""
    for task in yaml.safe_load(path.read_text(encoding="utf-8")):
        expression = (task.get("vars") or {}).get(name)
        if isinstance(expression, str):
            keys = [(len(m.group(1)), m.group(2), m.start()) for m in
                    re.finditer(r"^( *)'(\w+)':", expression, flags=re.MULTILINE)]  # fmt: skip
            if inside is not None:
                start, depth = next((at, indent) for indent, key, at in keys if key == inside)
                after = [(indent, key) for indent, key, at in keys if at > start]
                nested = next(indent for indent, _ in after)
                ends = [i for i, (indent, _) in enumerate(after) if indent <= depth] + [len(after)]
                return [key for indent, key in after[: ends[0]] if indent == nested]
            top = min(indent for indent, _, _ in keys)
            return [key for indent, key, _ in keys if indent == top]
    raise AssertionError(f"{path} builds no {name}")


def test_record_tasks_write_exactly_the_host_record_fields() -> None:
    """record.yml and HostRecord name the same fields, so the record is defined once."""
    record_yml = REPO / "roles/policy_gate/tasks/record.yml"
    written = _record_expression_keys(record_yml, "policy_gate_record")
    assert sorted(written) == sorted(HostRecord.field_names())
    assert sorted(HostRecord(host="h", verdict="staged").to_json()) == sorted(HostRecord.field_names())
    platform_info = _record_expression_keys(record_yml, "policy_gate_record", inside="platform_info")
    assert sorted(platform_info) == sorted(PlatformInfo.KEYS)
    assert sorted(PlatformInfo().to_json()) == sorted(PlatformInfo.KEYS)


def test_rollback_records_fit_the_rollback_type() -> None:
    """Both rollback paths of policy_service write only fields the Rollback type knows."""
    for tasks in ("rollback.yml", "stop.yml"):
        written = _task_vars(REPO / "roles/policy_service/tasks" / tasks, "policy_service_rollback_record")
        assert set(written) <= set(Rollback.KEYS), tasks


@pytest.mark.parametrize(
    ("mutate", "field_name", "problem"),
    [
        (
            lambda r: r["gates"]["timing"].update(latency_p99_us="x"),
            "gates.timing.latency_p99_us",
            "a number",
        ),
        (lambda r: r["gates"]["health"].update(passed="yes"), "gates.health.passed", "true, false or null"),
        (lambda r: r.update(verdict="promotedd"), "verdict", "expected one of promoted"),
        (lambda r: r.pop("verdict"), "verdict", "missing"),
        (lambda r: r.update(colour="red"), "colour", "unknown field"),
        (lambda r: r["gates"].update(thermal={}), "gates.thermal", "unknown field"),
        (lambda r: r["gates"]["parity"].update(reasons="far"), "gates.parity.reasons", "a list of strings"),
        (lambda r: r.update(rollback={"performed": 1}), "rollback.performed", "true, false or null"),
    ],
)
def test_bad_record_fails_its_host_naming_file_and_field(
    tmp_path: Path, mutate: Any, field_name: str, problem: str
) -> None:
    """A record off the contract makes its host failed; the reason names the file and the field."""
    bad = record("sim-orin-2")
    mutate(bad)
    report_dir = write(tmp_path / "run", record("sim-orin-1"), bad)
    summary = render_report(report_dir)
    assert not summary.ok
    assert summary.hosts == {"sim-orin-1": "promoted", "sim-orin-2": "failed"}
    path = report_dir / "hosts" / "sim-orin-2.json"
    assert summary.reason.startswith(f"sim-orin-2 failed: {path}: field '{field_name}': ")
    assert problem in summary.reason
    assert len(summary.problems) == 1 and f"field '{field_name}'" in summary.problems[0]


def test_torn_record_fails_its_host(tmp_path: Path) -> None:
    """A half-written record is a failed host named after its file, never a skipped one."""
    report_dir = write(tmp_path / "run", record("sim-orin-1"))
    (report_dir / "hosts" / "sim-xavier-1.json").write_text('{"host": "sim-xav', encoding="utf-8")
    summary = render_report(report_dir)
    assert summary.hosts["sim-xavier-1"] == "failed"
    assert "sim-xavier-1.json: unreadable host record" in summary.reason


def test_records_from_before_gate_status_still_read(tmp_path: Path) -> None:
    """Older records (enabled/passed, no status) read as before; a disabled gate shows as skipped."""
    old = rolled_back("sim-orin-1")
    old["gates"]["timing"]["enabled"] = True
    old["gates"]["parity"].update(enabled=False, passed=False)
    loaded = load_host_record(write(tmp_path / "run", old) / "hosts" / "sim-orin-1.json")
    assert loaded.gates.timing is not None and loaded.gates.timing.status == "failed"
    assert loaded.gates.parity is not None and loaded.gates.parity.status == "skipped"
    assert loaded.gates.health is not None and loaded.gates.health.status == "passed"
    summary = render_report(tmp_path / "run")
    assert summary.reason == "sim-orin-1 rolled back: timing gate: p99 7000 us > budget 5000 us"
    md = summary.markdown.read_text(encoding="utf-8")
    assert "— skipped (switched off)" in md and "✘ max abs" not in md


def test_skipped_gate_never_counts_as_a_failure(tmp_path: Path) -> None:
    """A gate switched off (status skipped) is shown as skipped and is no reason for a failed host."""
    rec = rolled_back("sim-orin-1")
    rec["rollback"] = None
    rec["gates"]["parity"].update(status="skipped", enabled=False, passed=None)
    summary = render_report(write(tmp_path / "run", rec))
    assert summary.reason == "sim-orin-1 rolled back: timing gate: p99 7000 us > budget 5000 us"
    hosts = json.loads(summary.paths["json"].read_text(encoding="utf-8"))["hosts"]
    assert hosts[0]["gates"]["parity"]["status"] == "skipped"
    assert hosts[0]["gates"]["timing"]["status"] == "failed"


def test_report_json_keeps_the_record_fields(tmp_path: Path) -> None:
    """report.json's host entry is the record's JSON plus why and stats: what the fleet tests read."""
    rec = rolled_back("sim-orin-1")
    summary = render_report(write(tmp_path / "run", rec))
    entry = json.loads(summary.paths["json"].read_text(encoding="utf-8"))["hosts"][0]
    assert {k: v for k, v in entry.items() if k not in ("why", "stats")} == (
        HostRecord.from_json(rec, "test").to_json()
    )
    assert entry["gates"]["timing"]["passed"] is False
    assert entry["gates"]["timing"]["latency_p99_us"] > entry["gates"]["timing"]["budget_us"]
    assert entry["rollback"]["to"] == "abc1234567890def"


def test_read_summary_checks_each_host_entry(tmp_path: Path) -> None:
    """`jetpolicy rollout` reads report.json through read_summary: same summary, records checked."""
    report_dir = write(tmp_path / "run", record("sim-orin-1"), rolled_back("sim-orin-2"))
    rendered = render_report(report_dir, {"stats": {"sim-xavier-1": {"unreachable": 1}}})
    again = read_summary(report_dir)
    assert (again.ok, again.verdict, again.reason, again.hosts) == (
        rendered.ok,
        rendered.verdict,
        rendered.reason,
        rendered.hosts,
    )
    document = json.loads(rendered.paths["json"].read_text(encoding="utf-8"))
    document["hosts"][1]["gates"]["timing"]["budget_us"] = "5 ms"
    rendered.paths["json"].write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(RecordError, match=r"report\.json hosts\[1\]: field 'gates\.timing\.budget_us'"):
        read_summary(report_dir)


def test_rows_from_a_replay_double_say_so(tmp_path: Path) -> None:
    """A host whose NVIDIA tools are replay doubles is marked simulated in every row of report.md and
    in report.json; a real host carries no mark."""
    sim = record("sim-jetson-1", platform="jetson", is_l4t=True, simulated="replay")
    real = record("orin-7")
    render_report(write(tmp_path / "r", sim, real))
    markdown = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    lines = markdown.splitlines()
    fleet_row = next(line for line in lines if line.startswith("| sim-jetson-1 |"))
    heading = next(line for line in lines if line.startswith("### sim-jetson-1"))
    platform_row = next(line for line in lines if line.startswith("| platform | jetson"))
    for line in (fleet_row, heading, platform_row):
        assert "(simulated: replay" in line, line
    assert "not Jetson figures" in heading
    assert "simulated" not in "".join(line for line in markdown.splitlines() if line.startswith("| orin-7 |"))
    hosts = {h["host"]: h for h in json.loads((tmp_path / "r" / "report.json").read_text())["hosts"]}
    assert hosts["sim-jetson-1"]["simulated"] == "replay"
    assert hosts["orin-7"]["simulated"] is None


def _failure_policy(report_dir: Path, **fields: Any) -> None:
    policy = {
        "schema_version": 1, "budget_percent": 0.0, "budget_robots": 0, "targets": 3,
        "on_failure": "rollback_all", "spent": True, "failed_robots": ["sim-orin-2"],
        "rolled_back_with_run": ["sim-orin-1"],
    }  # fmt: skip
    policy.update(fields)
    (report_dir / "failure-policy.json").write_text(json.dumps(policy), encoding="utf-8")


def test_a_spent_failure_budget_with_rollback_all_is_named_in_the_reason_and_header(tmp_path: Path) -> None:
    """The run's failure policy ends the reason and heads the report: what was lost, the budget,
    and each robot rollback_all returned."""
    with_run = rolled_back("sim-orin-1")
    with_run["rollback"]["reason"] = (
        "rollback_all: the run lost 1 robot(s), more than its failure budget of 0 of 3"
    )
    report_dir = write(
        tmp_path / "run", with_run, rolled_back("sim-orin-2"), record("sim-xavier-1", "staged")
    )
    _failure_policy(report_dir)
    summary = render_report(report_dir)
    assert not summary.ok and summary.verdict == "rolled_back"
    assert summary.reason.startswith(
        "1 robot(s) lost, more than the failure budget 0 of 3 robot(s) (0%): the rollout stopped;"
        " rollback_all returned the robots it had promoted: sim-orin-1; sim-orin-2 rolled back: timing gate"
    )
    md = summary.markdown.read_text(encoding="utf-8")
    assert "| failure policy | 1 robot(s) lost, more than the failure budget 0 of 3" in md
    document = json.loads(summary.paths["json"].read_text(encoding="utf-8"))
    assert document["failure_policy"]["rolled_back_with_run"] == ["sim-orin-1"]


def test_a_failure_within_the_budget_says_the_others_were_switched(tmp_path: Path) -> None:
    report_dir = write(
        tmp_path / "run", record("sim-orin-1"), rolled_back("sim-orin-2"), record("sim-xavier-1")
    )
    _failure_policy(report_dir, budget_percent=34.0, budget_robots=1, spent=False, on_failure="stop",
                    rolled_back_with_run=[])  # fmt: skip
    summary = render_report(report_dir)
    assert not summary.ok
    assert "within the failure budget 1 of 3 robot(s) (34%): the others were switched" in summary.reason


def test_a_bad_failure_policy_file_is_a_problem_not_a_lost_report(tmp_path: Path) -> None:
    report_dir = write(tmp_path / "run", record("sim-orin-1"))
    _failure_policy(report_dir, on_failure="retry")
    summary = render_report(report_dir)
    assert summary.ok and summary.hosts == {"sim-orin-1": "promoted"}
    assert any("failure-policy.json" in p and "on_failure" in p for p in summary.problems), summary.problems


def test_failure_policy_task_writes_exactly_the_schema_fields() -> None:
    written = _record_expression_keys(
        REPO / "roles/policy_gate/tasks/failure_policy.yml", "policy_gate_failure_policy"
    )
    schema = json.loads((REPO / "python/src/jetpolicy/common/schemas/failure-policy.schema.json").read_text())
    assert sorted(written) == sorted(schema["properties"])


def _deferred(host: str) -> Dict[str, Any]:
    rec = record(host, "deferred", release_after="abc1234567890def")
    rec["gates"] = {}
    rec["message"] = (
        "deferred: busy (receiving observations: last one 0.1 s ago); it stays on its release. "
        f"Finish it later with: ansible-playbook deploy.yml -l {host} -e jetpolicy_policy_dir=/p"
    )
    return rec


def test_a_deferred_robot_is_not_a_failure_and_its_finish_command_is_in_the_reason(tmp_path: Path) -> None:
    report_dir = write(tmp_path / "run", record("sim-orin-1"), _deferred("sim-orin-2"))
    summary = render_report(report_dir)
    assert summary.ok and summary.verdict == "partial"
    assert summary.hosts == {"sim-orin-1": "promoted", "sim-orin-2": "deferred"}
    assert "1 deferred, 1 promoted" in summary.reason
    assert "sim-orin-2 deferred: busy (receiving observations" in summary.reason
    assert "ansible-playbook deploy.yml -l sim-orin-2 -e jetpolicy_policy_dir=/p" in summary.reason
    assert "— deferred" in summary.markdown.read_text(encoding="utf-8")


def test_rollout_exit_code_tells_deferred_from_failed_and_done(tmp_path: Path) -> None:
    """`jetpolicy rollout`: 0 all done, 3 only deferred robots left, 1 anything failed."""
    from jetpolicy.controller.rollout import DEFERRED_EXIT, judge

    done = render_report(write(tmp_path / "a", record("sim-orin-1")))
    deferred = render_report(write(tmp_path / "b", record("sim-orin-1"), _deferred("sim-orin-2")))
    failed = render_report(write(tmp_path / "c", _deferred("sim-orin-2"), rolled_back("sim-orin-1")))
    assert judge(0, done)[0] == 0
    code, reason = judge(0, deferred)
    assert code == DEFERRED_EXIT == 3
    assert reason.startswith("deferred, nothing failed:") and "sim-orin-2" in reason
    assert judge(2, failed)[0] == 1


# ---- Platform and measurement conditions (issue 13) ---------------------------------------------

ENGINE_SHA = "1a2b3c4d" + "e" * 56
JETSON_INFO = {
    "jetpack": "6.1", "l4t": "36.4.0", "tensorrt": "10.3.0", "power_mode": "MAXN", "power_mode_id": 0,
    "engine_sha256": ENGINE_SHA, "engine_precision": "fp16", "builder_precision": "FP32+FP16",
}  # fmt: skip
# What record.yml writes on an x86 sim robot: no JetPack, nvpmodel or engine there.
X86_INFO = {key: None for key in JETSON_INFO}


def test_platform_info_round_trips_and_an_older_record_still_reads(tmp_path: Path) -> None:
    """platform_info is read into PlatformInfo and written back unchanged; a record from before it
    (no platform_info) reads with None, and its report.json entry says null."""
    rec = record("orin-7", platform_info=JETSON_INFO)
    loaded = HostRecord.from_json(rec, "orin-7.json")
    assert loaded.platform_info == PlatformInfo(**JETSON_INFO)
    assert loaded.to_json()["platform_info"] == JETSON_INFO
    assert HostRecord.from_json(loaded.to_json(), "again") == loaded
    old = record("orin-8")
    assert "platform_info" not in old
    assert HostRecord.from_json(old, "orin-8.json").platform_info is None
    summary = render_report(write(tmp_path / "run", rec, old))
    assert summary.ok and summary.problems == []
    hosts = {h["host"]: h for h in json.loads(summary.paths["json"].read_text(encoding="utf-8"))["hosts"]}
    assert hosts["orin-7"]["platform_info"] == JETSON_INFO
    assert hosts["orin-8"]["platform_info"] is None
    assert read_summary(tmp_path / "run").hosts == {"orin-7": "promoted", "orin-8": "promoted"}


def test_empty_platform_facts_read_as_unknown() -> None:
    """The role writes "" where a fact is empty (no engine built in check mode): read as None."""
    loaded = HostRecord.from_json(record("h", platform_info={"engine_sha256": "", "jetpack": ""}), "h.json")
    assert loaded.platform_info == PlatformInfo()


def _md_lines(report_dir: Path) -> List[str]:
    return render_report(report_dir).markdown.read_text(encoding="utf-8").splitlines()


def test_fleet_row_and_host_section_show_the_platform_and_dash_where_unknown(tmp_path: Path) -> None:
    """The Fleet table's platform cell names JetPack, TensorRT, power mode and the engine's first
    8 hex digits (— where unknown); the host section lists every platform_info field, the engine in
    full. A record without platform_info keeps the plain cell."""
    jetson = record("orin-7", is_l4t=True, platform_info=JETSON_INFO)
    x86 = record("sim-x86-1", platform="x86_64", platform_info=X86_INFO)
    old = record("orin-8")
    lines = _md_lines(write(tmp_path / "run", jetson, x86, old))
    row = next(line for line in lines if line.startswith("| orin-7 |"))
    assert "| orin (L4T) · JetPack 6.1 · TRT 10.3.0 · power MAXN · engine 1a2b3c4d |" in row
    assert ENGINE_SHA not in row
    x86_row = next(line for line in lines if line.startswith("| sim-x86-1 |"))
    assert "| x86_64 · JetPack — · TRT — · power — · engine — |" in x86_row
    assert "| orin | " in next(line for line in lines if line.startswith("| orin-8 |"))
    section = lines[lines.index("### orin-7") : lines.index("### orin-8")]
    for name, value in [("JetPack", "6.1"), ("L4T", "36.4.0"), ("TensorRT", "10.3.0"), ("power mode", "MAXN"),
                        ("power mode id", "0"), ("engine sha256", ENGINE_SHA),
                        ("engine precision (asked)", "fp16"), ("builder precision (trtexec)", "FP32+FP16")]:
        assert f"| {name} | {value} |" in section, name
    x86_section = lines[lines.index("### sim-x86-1") :]
    assert "| engine sha256 | — |" in x86_section and "| power mode | — |" in x86_section  # fmt: skip


def test_a_replay_double_row_keeps_its_mark_with_the_platform(tmp_path: Path) -> None:
    """The platform details never hide that a host's NVIDIA tools are replay doubles."""
    sim = record(
        "sim-jetson-1", platform="jetson", is_l4t=True, simulated="replay", platform_info=JETSON_INFO
    )
    lines = _md_lines(write(tmp_path / "run", sim))
    row = next(line for line in lines if line.startswith("| sim-jetson-1 |"))
    assert "jetson (L4T) · JetPack 6.1 · TRT 10.3.0 · power MAXN · engine 1a2b3c4d (simulated: replay)" in row


@pytest.mark.parametrize(
    ("platform_info", "field_name", "problem"),
    [
        ({**JETSON_INFO, "engine_sha256": "1a2b3c4d"}, "platform_info.engine_sha256", "64 lower-case hex"),
        ({**JETSON_INFO, "engine_sha256": ENGINE_SHA.upper()}, "platform_info.engine_sha256", "hex digits"),
        ({**JETSON_INFO, "tensorrt": 10.3}, "platform_info.tensorrt", "a string or null"),
        ({**JETSON_INFO, "power_mode_id": "0"}, "platform_info.power_mode_id", "an integer or null"),
        ({**JETSON_INFO, "power_mode_id": True}, "platform_info.power_mode_id", "an integer or null"),
        ({**JETSON_INFO, "gpu_clock": "max"}, "platform_info.gpu_clock", "unknown field"),
        ("orin", "platform_info", "JSON object"),
    ],
)
def test_off_schema_platform_info_fails_its_host_naming_the_field(
    tmp_path: Path, platform_info: Any, field_name: str, problem: str
) -> None:
    """A platform_info value off the contract makes its host failed, naming the file and the field."""
    bad = record("orin-7", platform_info=platform_info)
    summary = render_report(write(tmp_path / "run", bad))
    assert summary.hosts == {"orin-7": "failed"}
    path = tmp_path / "run" / "hosts" / "orin-7.json"
    assert summary.reason.startswith(f"orin-7 failed: {path}: field '{field_name}': "), summary.reason
    assert problem in summary.reason


def test_timing_conditions_are_shown_key_by_key_and_kept_in_report_json(tmp_path: Path) -> None:
    """Whatever keys the bench's `conditions` has (their names are not final), the host section
    shows each with its value, nested ones dotted; report.json keeps the object as it came."""
    conditions = {"cpu_util_pct": 37.5, "runner_rss_mb": 212, "thermal_c": {"min": 41.0, "max": 52.5},
                  "zones": ["cpu", "gpu"], "note": None}  # fmt: skip
    rec = record("orin-7")
    rec["gates"]["timing"]["bench"]["conditions"] = conditions
    summary = render_report(write(tmp_path / "run", rec, record("orin-8")))
    lines = summary.markdown.read_text(encoding="utf-8").splitlines()
    section = lines[lines.index("### orin-7") : lines.index("### orin-8")]
    for key, value in [("cpu_util_pct", "37.5"), ("runner_rss_mb", "212"), ("thermal_c.min", "41.0"),
                       ("thermal_c.max", "52.5"), ("zones", '["cpu", "gpu"]'), ("note", "—")]:
        assert f"| timing conditions: {key} | {value} |" in section, key
    other = lines[lines.index("### orin-8") :]
    assert other and not [line for line in other if "timing conditions" in line]
    entry = json.loads(summary.paths["json"].read_text(encoding="utf-8"))["hosts"][0]
    assert entry["gates"]["timing"]["bench"]["conditions"] == conditions


# What `jetpolicy window` writes on the sim L4T robot: tegrastats is its replay double.
REPLAY_CONDITIONS = {
    "source": "tegrastats", "samples": 3, "unparsed_lines": 0, "interval_ms": 500,
    "cpu_percent": {"mean": 2.2, "max": 2.2}, "ram_used_mb": {"min": 13123.0, "max": 13123.0},
    "gpu_percent": {"min": 0.0, "max": 0.0}, "runner_pid": 4242,
    "runner_rss_mb": {"min": 200.0, "max": 200.0},
    "thermal_c": {"tj": {"type": "tj", "min": 48.156, "max": 48.156}},
    "power_mw": {"VDD_GPU_SOC": {"min": 3193.0, "max": 3193.0}},
    "series": [{"t": 0.0, "cpu_percent": 2.2, "ram_used_mb": 13123.0, "temp_max_c": 48.156},
               {"t": 0.5, "cpu_percent": 2.2, "ram_used_mb": 13123.0, "temp_max_c": 48.156}],
    "simulated": "replay", "note": "the figures are a recording of another machine",
}  # fmt: skip
PROC_CONDITIONS = {
    "source": "proc", "samples": 2, "cpu_percent": {"mean": 30.0, "max": 50.0},
    "ram_used_mb": {"min": 2000.0, "max": 2050.0}, "gpu_percent": None, "runner_pid": 7,
    "runner_rss_mb": None, "thermal_c": None,
    "series": [{"t": 0.0, "cpu_percent": None, "ram_used_mb": 2000.0, "temp_max_c": None},
               {"t": 0.25, "cpu_percent": 50.0, "ram_used_mb": 2050.0, "temp_max_c": None}],
}  # fmt: skip


def test_the_conditions_source_ram_and_gpu_are_shown_and_a_replay_is_marked(tmp_path: Path) -> None:
    """The host section names where the conditions were sampled, marks a replay's figures as not
    this robot's, shows RAM and GPU; the series is plotted, not put in the table."""
    sim = record("sim-jetson-1", is_l4t=True, simulated="replay")
    sim["gates"]["timing"]["bench"]["conditions"] = REPLAY_CONDITIONS
    x86 = record("sim-x86-1")
    x86["gates"]["timing"]["bench"]["conditions"] = PROC_CONDITIONS
    summary = render_report(write(tmp_path / "run", sim, x86))
    lines = summary.markdown.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("### sim-jetson-1"))
    section = lines[start : lines.index("### sim-x86-1")]
    assert ("| timing conditions: source | tegrastats (simulated: replay: the figures are a recording of "
            "another machine) |") in section  # fmt: skip
    assert "| timing conditions: ram_used_mb.max | 13123.0 |" in section
    assert "| timing conditions: gpu_percent.min | 0.0 |" in section
    assert "| timing conditions: power_mw.VDD_GPU_SOC.max | 3193.0 |" in section
    assert not [line for line in section if "series" in line or "conditions: note" in line]
    x86_section = lines[lines.index("### sim-x86-1") :]
    assert "| timing conditions: source | proc |" in x86_section
    assert "| timing conditions: gpu_percent | — |" in x86_section
    png = summary.paths["conditions"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    entry = json.loads(summary.paths["json"].read_text(encoding="utf-8"))["hosts"][0]
    assert entry["gates"]["timing"]["bench"]["conditions"]["series"] == REPLAY_CONDITIONS["series"]


def test_the_conditions_plot_has_one_labelled_line_per_sampled_host() -> None:
    """A host whose record or conditions are a replay is labelled (simulated); a host without a
    series has no line; a point without the value is left out of that panel."""
    sim = record("sim-jetson-1", simulated="replay")
    sim["gates"]["timing"]["bench"]["conditions"] = REPLAY_CONDITIONS
    replay_only = record("orin-7")
    replay_only["gates"]["timing"]["bench"]["conditions"] = {**REPLAY_CONDITIONS}
    x86 = record("sim-x86-1")
    x86["gates"]["timing"]["bench"]["conditions"] = PROC_CONDITIONS
    lines = conditions_lines([(r["host"], r) for r in (sim, replay_only, x86, record("orin-8"))])
    assert [label for label, _, _ in lines] == ["sim-jetson-1 (simulated)", "orin-7 (simulated)", "sim-x86-1"]
    assert lines[2][1] == [(0.25, 50.0)] and lines[2][2] == []
    assert lines[0][2] == [(0.0, 48.156), (0.5, 48.156)]


def test_the_measured_process_and_the_pinned_clocks_are_shown(tmp_path: Path) -> None:
    """A bench run in the runner's bench unit on the sim L4T robot (the values of a real run there):
    the process as the kernel reported it, and the clocks pinned, restored and marked as a replay;
    a host whose record has neither gets neither row."""
    sim = record("sim-jetson-1", is_l4t=True, simulated="replay")
    sim["gates"]["timing"]["bench"]["process"] = {
        "pid": 4705, "user": "jetpolicy", "uid": 997, "scheduler": "SCHED_OTHER", "priority": 0,
        "cpus": "0-1",
        "no_new_privs": True, "seccomp": "filter", "cap_effective": "0000000000000000", "locked_kb": 0,
    }  # fmt: skip
    sim["gates"]["timing"]["bench"]["clocks"] = {
        "locked": True, "store_kept": False, "restored": True, "simulated": "replay",
        "show": {"soc_family": "tegra234", "all_pinned": False, "domains": {}},
    }  # fmt: skip
    summary = render_report(write(tmp_path / "run", sim, record("sim-x86-1")))
    lines = summary.markdown.read_text(encoding="utf-8").splitlines()
    section = lines[lines.index("### sim-jetson-1 (simulated: replay: its numbers are not Jetson figures)") :
                    lines.index("### sim-x86-1")]  # fmt: skip
    assert ("| timing measured by | jetpolicy (pid 4705), SCHED_OTHER 0, CPUs 0-1, seccomp filter, "
            "no new privileges, no capabilities |") in section  # fmt: skip
    assert ("| timing clocks | pinned by jetson_clocks, restored after; --show: every domain at min = max: "
            "no (simulated: replay: the replay double's --show is a recording) |") in section  # fmt: skip
    other = lines[lines.index("### sim-x86-1") :]
    assert not [line for line in other if "timing measured by" in line or "timing clocks" in line]


def test_clocks_left_pinned_are_said_so(tmp_path: Path) -> None:
    rec = record("orin-7", is_l4t=True)
    rec["gates"]["timing"]["bench"]["clocks"] = {"locked": True, "restored": False, "store_kept": True}
    lines = render_report(write(tmp_path / "run", rec)).markdown.read_text(encoding="utf-8").splitlines()
    assert ("| timing clocks | pinned by jetson_clocks, NOT restored; the stored state was an earlier run's "
            "that never restored |") in lines
