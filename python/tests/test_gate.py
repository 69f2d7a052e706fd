"""The rollout gate (jetpolicy.controller.gate) and the role's `jetpolicy_gate` filter that calls it."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional

import pytest
import yaml

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.controller.gate import BenchRun, CommandRun, GateSettings, judge_gates
from jetpolicy.controller.record import HostRecord
from jetpolicy.robot.runner import loop_metrics
from jetpolicy.robot.stats import LatencyHistogram
from jetpolicy.robot.window import window_result

REPO = Path(__file__).resolve().parents[2]
FILTER_PLUGIN = REPO / "roles" / "policy_gate" / "filter_plugins" / "jetpolicy_gate.py"
JUDGE_TASKS = REPO / "roles" / "policy_gate" / "tasks" / "judge.yml"

# A 1 kHz policy with the default budget: p99 within 500 us, at most 1% deadline misses.
SETTINGS = GateSettings(control_rate_hz=1000.0, latency_p99_fraction=0.5, max_deadline_miss_rate=0.01)
NAN, INF = float("nan"), float("inf")
P99_OVER = "in-loop latency p99 812.0 us > budget 500.0 us (0.5 of the 1000 Hz period)"
PARITY_NUMBERS = "max abs error 0.12 (atol 0.0001), max rel error 0.5 (rtol 0.001)"
NO_REFERENCE = "jetpolicy parity: no reference.npz in /opt/jetpolicy/current; fix: re-stage the release"


def health(healthy: Any = True, ticks: Any = 999.6, rate: Any = 1000.0, reasons: Any = ()) -> CommandRun:
    """`jetpolicy health` as the role registers it (exit 1 when unhealthy)."""
    data = {"healthy": healthy, "ticks_per_s": ticks, "expected_rate_hz": rate, "reasons": list(reasons)}
    return CommandRun(ran=True, stdout=json.dumps(data), rc=0 if healthy is True else 1)


def bench(p99: Any = 310.0, miss: Any = 0.0) -> BenchRun:
    """`policy_bench` facts: the `jetpolicy bench` JSON."""
    facts = {
        "backend": "onnxruntime",
        "rate_hz": 1000.0,
        "ticks": 5000,
        "inference_us": {"p50": 120.0, "p90": 200.0, "p99": p99, "max": 900.0},
        "deadline_miss_rate": miss,
        "overruns": 0,
    }
    return BenchRun(facts=facts)


def parity(
    passed: Any = True, max_abs: Any = 1e-7, max_rel: Any = 1e-6, finite: Any = True, **extra: Any
) -> CommandRun:
    """`jetpolicy parity` JSON on stdout (exit 1 when it fails with numbers)."""
    data = {
        "passed": passed,
        "max_abs_error": max_abs,
        "max_rel_error": max_rel,
        "finite": finite,
        "atol": 1e-4,
        "rtol": 1e-3,
        "backend": "onnxruntime",
        "cases": 32,
        **extra,
    }
    return CommandRun(ran=True, stdout=json.dumps(data), rc=0 if passed is True else 1)


def statuses(**changed: str) -> Dict[str, str]:
    """Every gate passed, except those named."""
    return {"health": "passed", "timing": "passed", "parity": "passed", **changed}


@dataclass
class Case:
    behaviour: str
    failures: List[str]
    statuses: Dict[str, str] = field(default_factory=statuses)
    health: CommandRun = field(default_factory=health)
    bench: BenchRun = field(default_factory=bench)
    parity: CommandRun = field(default_factory=parity)
    settings: GateSettings = SETTINGS


OFF = {"health_enabled": False, "timing_enabled": False, "parity_enabled": False}
UNHEALTHY = "ticking at 41.0 Hz over 3.0 s, needs at least 900.0 Hz (90% of 1000 Hz)"

CASES = [
    Case("every gate within its limits: the host passes", []),
    Case(
        "an unhealthy runner fails only the health gate, with the health check's own reason",
        [f"health: {UNHEALTHY}"],
        statuses(health="failed"),
        health=health(False, ticks=41.0, reasons=[UNHEALTHY]),
    ),
    Case(
        "unhealthy without a reason still fails, saying so",
        ["health: health check says healthy=False without a reason (rc 1)"],
        statuses(health="failed"),
        health=health(False),
    ),
    Case(
        "no health check ran: health fails",
        ["health: no health check ran"],
        statuses(health="failed"),
        health=CommandRun(ran=False),
    ),
    Case(
        "garbled health output fails health and quotes what was printed",
        [
            "health: health check printed no readable JSON (rc 1): "
            "stdout 'Traceback (most recent call last): {'"
        ],
        statuses(health="failed"),
        health=CommandRun(ran=True, stdout="Traceback (most recent call last):\n {", rc=1),
    ),
    Case(
        "health output that is JSON but not an object fails health; stderr is the cause shown",
        ["health: health check printed no readable JSON (rc 2): jetpolicy health: no such status file"],
        statuses(health="failed"),
        health=CommandRun(ran=True, stdout="[1, 2]", stderr="jetpolicy health: no such status file", rc=2),
    ),
    Case(
        "healthy with a NaN tick rate does not pass",
        ["health: health check reported ticks_per_s nan, not a finite number"],
        statuses(health="failed"),
        health=health(True, ticks=NAN),
    ),
    Case(
        "p99 over the budget fails timing, naming p99, budget, fraction and rate",
        [f"timing: {P99_OVER}"],
        statuses(timing="failed"),
        bench=bench(p99=812.0),
    ),
    Case(
        "p99 exactly at the budget passes",
        [],
        bench=bench(p99=500.0),
    ),
    Case(
        "a deadline-miss rate over the limit fails timing",
        ["timing: deadline-miss rate 0.034 > 0.01 allowed"],
        statuses(timing="failed"),
        bench=bench(miss=0.034),
    ),
    Case(
        "p99 and miss rate both over: one timing failure with both reasons",
        [f"timing: {P99_OVER}, deadline-miss rate 0.2 > 0.01 allowed"],
        statuses(timing="failed"),
        bench=bench(p99=812.0, miss=0.2),
    ),
    Case(
        "a bench that did not run fails timing with the module's message",
        ["timing: no benchmark result: jetpolicy bench failed for /opt/jetpolicy/current (rc=2): no engine"],
        statuses(timing="failed"),
        bench=BenchRun(msg="jetpolicy bench failed for /opt/jetpolicy/current (rc=2): no engine"),
    ),
    Case(
        "no bench result and no message: timing fails as not run",
        ["timing: no benchmark result: not run"],
        statuses(timing="failed"),
        bench=BenchRun(),
    ),
    Case(
        "a NaN p99 never passes the budget",
        ["timing: in-loop latency p99 is nan, not a finite number (budget 500.0 us)"],
        statuses(timing="failed"),
        bench=bench(p99=NAN),
    ),
    Case(
        "an infinite p99 fails like NaN",
        ["timing: in-loop latency p99 is inf, not a finite number (budget 500.0 us)"],
        statuses(timing="failed"),
        bench=bench(p99=INF),
    ),
    Case(
        "a bench without p99 fails timing",
        ["timing: in-loop latency p99 is missing, not a finite number (budget 500.0 us)"],
        statuses(timing="failed"),
        bench=bench(p99=None),
    ),
    Case(
        "a NaN deadline-miss rate never passes",
        ["timing: deadline-miss rate is nan, not a finite number (0.01 allowed)"],
        statuses(timing="failed"),
        bench=bench(miss=NAN),
    ),
    Case(
        "parity numbers over tolerance fail parity, with errors and tolerances",
        [f"parity: outputs differ from the reference: {PARITY_NUMBERS}"],
        statuses(parity="failed"),
        parity=parity(False, max_abs=0.12, max_rel=0.5),
    ),
    Case(
        "NaN/Inf outputs (finite false) fail parity even where the finite cases agree",
        [
            "parity: outputs are not finite (NaN or Inf) on the deployed backend; finite cases: "
            "max abs error 1e-07 (atol 0.0001), max rel error 1e-06 (rtol 0.001)"
        ],
        statuses(parity="failed"),
        parity=parity(False, finite=False),
    ),
    Case(
        "parity claiming a pass with a NaN error is refused",
        [
            "parity: parity says passed but its errors are not finite numbers: "
            "max abs error nan (atol 0.0001), max rel error 1e-06 (rtol 0.001)"
        ],
        statuses(parity="failed"),
        parity=parity(True, max_abs=NAN),
    ),
    Case(
        "a parity check that could not run (exit 2) fails parity with its stderr",
        [f"parity: parity check could not run: {NO_REFERENCE}"],
        statuses(parity="failed"),
        parity=CommandRun(ran=True, stdout="", stderr=NO_REFERENCE + "\n", rc=2),
    ),
    Case(
        "an enabled parity gate whose check never ran fails",
        ["parity: parity check could not run: not run"],
        statuses(parity="failed"),
        parity=CommandRun(ran=False),
    ),
    Case(
        "several gates failing: one entry each, in the order health, timing, parity",
        [
            "health: no health check ran",
            f"timing: {P99_OVER}",
            f"parity: parity check could not run: {NO_REFERENCE}",
        ],
        statuses(health="failed", timing="failed", parity="failed"),
        health=CommandRun(ran=False),
        bench=bench(p99=812.0),
        parity=CommandRun(ran=True, stderr=NO_REFERENCE, rc=2),
    ),
    Case(
        "health switched off: an unhealthy runner does not fail the host; health is skipped",
        [],
        statuses(health="skipped"),
        health=health(False, reasons=[UNHEALTHY]),
        settings=GateSettings(1000.0, health_enabled=False),
    ),
    Case(
        "timing switched off: no bench does not fail the host; timing is skipped",
        [],
        statuses(timing="skipped"),
        bench=BenchRun(msg="Conditional result was False"),
        settings=GateSettings(1000.0, timing_enabled=False),
    ),
    Case(
        "parity switched off: parity never ran and is skipped",
        [],
        statuses(parity="skipped"),
        parity=CommandRun(ran=False),
        settings=GateSettings(1000.0, parity_enabled=False),
    ),
    Case(
        "every gate switched off: everything failing still passes, all three skipped",
        [],
        statuses(health="skipped", timing="skipped", parity="skipped"),
        health=CommandRun(ran=True, stdout="garbled", rc=1),
        bench=bench(p99=NAN),
        parity=parity(False, finite=False),
        settings=GateSettings(1000.0, **OFF),
    ),
    Case(
        "a gate switched off does not hide another gate's failure",
        [f"timing: {P99_OVER}"],
        statuses(timing="failed", parity="skipped"),
        bench=bench(p99=812.0),
        parity=CommandRun(ran=False),
        settings=GateSettings(1000.0, parity_enabled=False),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.behaviour for c in CASES])
def test_verdict_table(case: Case) -> None:
    """Each row: the gate statuses, the exact failure entries, and passed iff nothing failed."""
    verdict = judge_gates(case.health, case.bench, case.parity, case.settings)
    assert {name: gate.status for name, gate in verdict.gates.items()} == case.statuses, case.behaviour
    assert verdict.failures == case.failures, case.behaviour
    assert verdict.passed is (not case.failures), case.behaviour
    for name, gate in verdict.gates.items():
        # A skipped gate carries no reasons; a failed one always has at least one.
        assert bool(gate.reasons) is (case.statuses[name] == "failed"), (case.behaviour, name)


def test_failure_message_is_the_one_the_role_prints() -> None:
    """ "<host> failed the gate(s): <gate>: <reasons>; ..." is the fail message the fleet tests match."""
    failing_parity = parity(False, max_abs=0.12, max_rel=0.5)
    verdict = judge_gates(health(), bench(p99=812.0, miss=0.2), failing_parity, SETTINGS)
    assert verdict.message("sim-orin-1") == (
        f"sim-orin-1 failed the gate(s): timing: {P99_OVER}, deadline-miss rate 0.2 > 0.01 allowed; "
        f"parity: outputs differ from the reference: {PARITY_NUMBERS}"
    )


def test_gate_results_keep_their_numbers() -> None:
    """Each gate result carries the numbers it judged, the budget and limits included."""
    verdict = judge_gates(health(ticks=998.5), bench(p99=812.0, miss=0.002), parity(), SETTINGS)
    gates = verdict.gates
    assert gates.health is not None and gates.timing is not None and gates.parity is not None
    assert (gates.health.ticks_per_s, gates.health.expected_rate_hz) == (998.5, 1000.0)
    assert (gates.timing.latency_p99_us, gates.timing.budget_us) == (812.0, 500.0)
    assert (gates.timing.deadline_miss_rate, gates.timing.max_miss_rate) == (0.002, 0.01)
    assert gates.timing.bench["inference_us"]["p99"] == 812.0
    assert (gates.parity.max_abs_error, gates.parity.atol, gates.parity.cases) == (1e-7, 1e-4, 32)


def test_verdict_json_is_strict_json_and_a_record_part() -> None:
    """NaN numbers become null in the verdict JSON (JSON has no NaN), and the gates parse as a record's."""
    verdict = judge_gates(health(), bench(p99=NAN), parity(True, max_abs=INF), SETTINGS)
    data = verdict.to_json("sim-orin-1")
    text = json.dumps(data, allow_nan=False)  # raises on NaN or Inf
    assert data["gates"]["timing"]["latency_p99_us"] is None
    assert data["gates"]["timing"]["bench"]["inference_us"]["p99"] is None
    assert data["gates"]["parity"]["max_abs_error"] is None
    assert data["passed"] is False and data["message"].startswith("sim-orin-1 failed the gate(s): timing: ")
    record = HostRecord.from_json(
        {"host": "sim-orin-1", "verdict": "rolled_back", "gates": json.loads(text)["gates"]}, "test"
    )
    assert record.gates.to_json() == data["gates"]


def test_skipped_gate_json_says_so() -> None:
    """A gate switched off is written enabled false, passed null, status skipped: never a ✘."""
    verdict = judge_gates(
        health(), bench(), CommandRun(ran=False), GateSettings(1000.0, parity_enabled=False)
    )
    assert verdict.to_json("h")["gates"]["parity"] == {
        "enabled": False,
        "passed": None,
        "status": "skipped",
        "reasons": [],
        "max_abs_error": None,
        "max_rel_error": None,
        "finite": None,
        "atol": None,
        "rtol": None,
        "backend": None,
        "cases": None,
    }


@pytest.mark.parametrize(
    ("rate", "fraction", "miss"),
    [(0.0, 0.5, 0.01), (NAN, 0.5, 0.01), (100.0, NAN, 0.01), (100.0, -0.5, 0.01), (100.0, 0.5, NAN)],
)
def test_settings_that_would_make_limits_meaningless_are_refused(
    rate: float, fraction: float, miss: float
) -> None:
    """A zero/NaN control rate or a NaN/negative fraction or miss limit is an error, not a silent pass."""
    with pytest.raises(JetpolicyError, match="gate setting"):
        GateSettings(control_rate_hz=rate, latency_p99_fraction=fraction, max_deadline_miss_rate=miss)


def test_budget_is_the_fraction_of_the_period() -> None:
    """Budget = fraction x control period: 0.6 of a 100 Hz period is 6000 us."""
    assert math.isclose(GateSettings(100.0, latency_p99_fraction=0.6).budget_us, 6000.0)


@pytest.mark.parametrize(
    ("registered", "ran"),
    [
        (None, False),
        ({"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}, False),
        ({"rc": 2, "stdout": "", "stderr": "boom", "changed": False}, True),
    ],
)
def test_command_run_from_registered(registered: Optional[Dict[str, Any]], ran: bool) -> None:
    """A registered result that was skipped (or never registered) counts as not run."""
    assert CommandRun.from_registered(registered).ran is ran


def live_window(p99_samples_us: float, misses: int) -> Dict[str, Any]:
    """`jetpolicy window` JSON from two status snapshots of one runner: 1000 ticks between them,
    980 inferences of 120 us and 20 of `p99_samples_us` (the p99 bucket), `misses` late ticks."""
    hist = LatencyHistogram()
    for _ in range(50):
        hist.add(9_000_000)  # start-up before the window: not judged
    loaded = {"release": "3f2a9c1d0b7e4a55", "runtime": "/v", "config": None}
    base = {**loop_metrics(None), "schema_version": 1, "state": "running", "pid": 4242, "rate_hz": 1000.0,
            "backend": "onnxruntime", "loaded": loaded}  # fmt: skip
    first = {**base, "ticks": 50, "updated_at": 1_700_000_000.0, "inference_histogram": hist.to_status()}
    for value_us, times in ((120.0, 980), (p99_samples_us, 20)):
        for _ in range(times):
            hist.add(int(value_us * 1000))
    second = {**base, "ticks": 1050, "deadline_misses": misses, "updated_at": 1_700_000_001.0,
              "inference_histogram": hist.to_status()}  # fmt: skip
    return {**window_result(first, second, 1.0), "conditions": {"samples": 5, "cpu_percent": None,
            "runner_pid": 4242, "runner_rss_mb": None, "thermal_c": None}}  # fmt: skip


def test_the_gate_judges_the_live_window_json() -> None:
    """policy_bench with source live puts `jetpolicy window`'s JSON under the same fact: the judge
    reads its p99 (a bucket's upper edge) and miss rate as a bench's, and the record keeps it."""
    passing = live_window(400.0, misses=5)
    assert passing["source"] == "live runner" and passing["ticks"] == 1000
    verdict = judge_gates(health(), BenchRun.from_registered({"ansible_facts": {"policy_bench": passing}}),
                          parity(), SETTINGS)  # fmt: skip
    assert verdict.passed and verdict.gates.timing is not None
    assert verdict.gates.timing.latency_p99_us == passing["inference_us"]["p99"]
    assert 400.0 <= passing["inference_us"]["p99"] <= 420.1
    assert verdict.gates.timing.deadline_miss_rate == 0.005
    data = verdict.to_json("sim-orin-1")
    assert data["gates"]["timing"]["bench"]["backend"] == "onnxruntime"  # what the report shows
    gates = json.loads(json.dumps(data, allow_nan=False))["gates"]
    record = HostRecord.from_json({"host": "sim-orin-1", "verdict": "promoted", "gates": gates}, "test")
    assert record.gates.to_json() == data["gates"]
    slow = live_window(800.0, misses=20)
    failing = judge_gates(health(), BenchRun(facts=slow), parity(), SETTINGS)
    assert failing.failures == [
        f"timing: in-loop latency p99 {slow['inference_us']['p99']:.1f} us > budget 500.0 us "
        "(0.5 of the 1000 Hz period), deadline-miss rate 0.02 > 0.01 allowed"
    ]


def test_bench_run_from_registered() -> None:
    """policy_bench's facts are the bench; a failed or skipped module leaves its msg as the cause."""
    facts = bench().facts
    assert BenchRun.from_registered({"ansible_facts": {"policy_bench": facts}}).facts == facts
    failed = BenchRun.from_registered({"failed": True, "msg": "release_dir /x not found"})
    assert (failed.facts, failed.msg) == (None, "release_dir /x not found")
    assert BenchRun.from_registered(None) == BenchRun()


# ---- The role's filter ---------------------------------------------------------------------------


def load_filter_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jetpolicy_gate_filter", FILTER_PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def role_settings(**changed: Any) -> Dict[str, Any]:
    """The settings judge.yml passes, as Ansible renders them (floats and bools)."""
    return {
        "control_rate_hz": 1000.0,
        "latency_p99_fraction": 0.5,
        "max_deadline_miss_rate": 0.01,
        "health_enabled": True,
        "timing_enabled": True,
        "parity_enabled": True,
        **changed,
    }


def test_filter_is_registered_and_judges_like_the_function() -> None:
    """`jetpolicy_gate` over registered results gives judge_gates' verdict, message included."""
    plugin = load_filter_plugin()
    gate_filter = plugin.FilterModule().filters()["jetpolicy_gate"]
    runs = {
        "health": {"rc": 0, "stdout": health().stdout, "stderr": "", "changed": False},
        "bench": {"changed": False, "ansible_facts": {"policy_bench": bench(p99=812.0).facts}},
        "parity": {"rc": 2, "stdout": "", "stderr": NO_REFERENCE, "changed": False},
    }
    result = gate_filter(runs, role_settings(), host="sim-orin-1")
    expected = judge_gates(
        health(), bench(p99=812.0), CommandRun(True, stderr=NO_REFERENCE, rc=2), SETTINGS
    ).to_json("sim-orin-1")
    assert result == expected
    assert result["message"] == (
        f"sim-orin-1 failed the gate(s): timing: {P99_OVER}; "
        f"parity: parity check could not run: {NO_REFERENCE}"
    )


def test_filter_takes_skipped_results_and_string_settings() -> None:
    """Skipped tasks (gates switched off) and settings rendered as strings are read as the role means them."""
    plugin = load_filter_plugin()
    skipped = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}
    runs = {"health": {"rc": 0, "stdout": health().stdout}, "bench": skipped, "parity": skipped}
    settings = role_settings(control_rate_hz="1000.0", timing_enabled="False", parity_enabled="false")
    result = plugin.jetpolicy_gate(runs, settings, host="h")
    assert result["passed"] is True
    assert {name: gate["status"] for name, gate in result["gates"].items()} == statuses(
        timing="skipped", parity="skipped"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (role_settings(health_enabled="maybe"), "health_enabled is 'maybe', not a boolean"),
        (role_settings(control_rate_hz="fast"), "control_rate_hz is 'fast', not a number"),
        ({k: v for k, v in role_settings().items() if k != "control_rate_hz"}, "control_rate_hz is missing"),
        (role_settings(budget_us=500.0), "unknown key 'budget_us'"),
        (role_settings(control_rate_hz=0.0), "gate setting control_rate_hz is 0.0"),
    ],
)
def test_filter_names_a_bad_setting(settings: Dict[str, Any], message: str) -> None:
    """A setting the role got wrong fails the task with the setting's name, never a silent verdict."""
    from ansible.errors import AnsibleFilterError

    plugin = load_filter_plugin()
    with pytest.raises(AnsibleFilterError, match=message):
        plugin.jetpolicy_gate({}, settings, host="h")


def test_judge_tasks_pass_what_the_filter_reads() -> None:
    """judge.yml hands the filter exactly its setting keys and the three registered results."""
    plugin = load_filter_plugin()
    tasks = yaml.safe_load(JUDGE_TASKS.read_text(encoding="utf-8"))
    judge = next(t for t in tasks if "ansible.builtin.set_fact" in t)
    assert "jetpolicy_gate(policy_gate_settings" in judge["ansible.builtin.set_fact"]["policy_gate_judgement"]
    assert tuple(judge["vars"]["policy_gate_settings"]) == plugin.SETTING_KEYS
    assert set(judge["vars"]["policy_gate_runs"]) == {"health", "bench", "parity"}
    fail = next(t for t in tasks if "ansible.builtin.fail" in t)
    assert fail["ansible.builtin.fail"]["msg"] == "{{ policy_gate_judgement.message }}"
