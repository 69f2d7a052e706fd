"""`jetpolicy rollout` against a tiny project: real ansible-runner runs of a local playbook.

The playbook is a stand-in for deploy.yml: the root deploy.yml imports playbooks/deploy.yml (like the
repo's), which writes this host's record where the environment says (JETPOLICY_REPORTS_DIR and
JETPOLICY_RUN_ID), with the verdict taken from `-e verdict=...`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jetpolicy.cli import main
from jetpolicy.controller.rollout import rollout

REPO = Path(__file__).resolve().parents[2]

INNER_PLAYBOOK = """\
- name: Switch robots to the release
  hosts: all
  gather_facts: false
  vars:
    report_dir: "{{ lookup('env', 'JETPOLICY_REPORTS_DIR') }}/{{ lookup('env', 'JETPOLICY_RUN_ID') }}"
    rolled_back: "{{ verdict | default('promoted') == 'rolled_back' }}"
    host_record:
      host: "{{ inventory_hostname }}"
      platform: orin
      target_release: 8620dd26fec5b69b
      release_before: abc1234567890def
      release_after: "{{ 'abc1234567890def' if rolled_back else '8620dd26fec5b69b' }}"
      backend: onnxruntime
      verdict: "{{ verdict | default('promoted') }}"
      gates:
        timing:
          passed: "{{ not rolled_back }}"
          latency_p99_us: "{{ 7000.0 if rolled_back else 900.0 }}"
          budget_us: 5000.0
          reasons: []
      rollback:
        performed: "{{ rolled_back }}"
        reason: "timing gate: p99 7000 us > budget 5000 us"
      message: "{{ verdict | default('promoted') }}"
  tasks:
    - name: Fail before the switch
      ansible.builtin.fail:
        msg: "stage failed: no space left on /opt/jetpolicy"
      when: verdict | default('promoted') == 'crash'
    - name: Make the report dir
      ansible.builtin.file:
        path: "{{ report_dir }}/hosts"
        state: directory
        mode: "0755"
    - name: Record the host
      ansible.builtin.copy:
        dest: "{{ report_dir }}/hosts/{{ inventory_hostname }}.json"
        content: "{{ host_record | to_json }}"
        mode: "0644"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("JETPOLICY_RUN_ID", "JETPOLICY_REPORTS_DIR", "ANSIBLE_CONFIG", "ANSIBLE_CALLBACK_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "repo"
    (root / "playbooks").mkdir(parents=True)
    (root / "inventory").mkdir()
    (root / "ansible.cfg").write_text(
        "[defaults]\ninventory = inventory/hosts\nretry_files_enabled = False\n", encoding="utf-8"
    )
    (root / "inventory" / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n", encoding="utf-8"
    )
    (root / "deploy.yml").write_text(
        "- name: Deploy a policy\n  ansible.builtin.import_playbook: playbooks/deploy.yml\n", encoding="utf-8"
    )
    (root / "playbooks" / "deploy.yml").write_text(INNER_PLAYBOOK, encoding="utf-8")
    return root


def enable_callback(root: Path) -> None:
    """Use the repo's jetpolicy_report callback, enabled the way the repo's ansible.cfg does."""
    (root / "callback_plugins").symlink_to(REPO / "callback_plugins")
    with (root / "ansible.cfg").open("a", encoding="utf-8") as cfg:
        cfg.write("callback_plugins = callback_plugins\ncallbacks_enabled = jetpolicy_report\n")


def test_promoted_exits_zero_and_callback_writes_report(project: Path) -> None:
    """A promoted host: exit 0; the callback wrote run.json and report.md under reports/<run_id>."""
    enable_callback(project)
    lines: list[str] = []
    result = rollout(project, progress=lines.append)
    assert (result.exit_code, result.rc) == (0, 0), result.reason
    assert result.reason == "1 host(s): 1 promoted to 8620dd26fec5b69b"
    assert result.report_dir.parent == project / "reports"
    run = json.loads((result.report_dir / "run.json").read_text(encoding="utf-8"))
    assert run["stats"]["localhost"]["failures"] == 0 and run["wall_time_s"] > 0
    assert (result.report_dir / "report.md").is_file()
    assert "jetpolicy report:" in (result.report_dir / "ansible.log").read_text(encoding="utf-8")
    assert "[localhost] Record the host: changed" in lines


def test_rolled_back_host_exits_one_with_reason(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI exits 1 on a rolled back host, one stderr line naming the host and the gate."""
    enable_callback(project)
    code = main(["rollout", "--project-dir", str(project), "-e", "verdict=rolled_back", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert (
        captured.err
        == "jetpolicy rollout: localhost rolled back: timing gate: p99 7000 us > budget 5000 us\n"
    )
    assert "report.md" in captured.out


def test_failed_playbook_without_callback_exits_one(project: Path) -> None:
    """rc != 0 and no record: rollout writes run.json and the report itself; the reason has the failure."""
    result = rollout(project, extravars={"verdict": "crash"})
    assert result.exit_code == 1 and result.rc != 0
    assert "\n" not in result.reason
    assert result.reason.startswith("localhost failed")
    assert "no space left on /opt/jetpolicy" in result.reason
    assert (result.report_dir / "run.json").is_file()
    assert (result.report_dir / "report.md").is_file()


def test_callback_alone_names_the_run_and_reports_at_repo_root(project: Path) -> None:
    """Plain ansible-playbook: the callback picks the run id and <repo>/reports, not playbooks/reports."""
    enable_callback(project)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JETPOLICY_", "ANSIBLE_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "deploy.yml"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (report_dir,) = (project / "reports").iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{4}", report_dir.name)
    assert (report_dir / "hosts" / "localhost.json").is_file()
    assert f"jetpolicy report: {report_dir / 'report.md'} — OK (promoted)" in done.stdout


GATED_PLAYBOOK = """\
- name: Gate this host with the real policy_gate role on recorded robot results
  hosts: all
  gather_facts: false
  vars:
    policy_release_control_rate_hz: 1000
    policy_release_id: 8620dd26fec5b69b
    policy_runtime_active_venv: /nonexistent
    policy_service_release_before: abc1234567890def
    policy_service_health:
      rc: 0
      stdout: '{"healthy": true, "ticks_per_s": 999.0, "expected_rate_hz": 1000.0, "reasons": []}'
      stderr: ""
    policy_gate_bench:
      changed: false
      ansible_facts:
        policy_bench:
          backend: onnxruntime
          inference_us: {p50: 100.0, p90: 200.0, p99: "{{ p99 | default(300.0) | float }}", max: 900.0}
          deadline_miss_rate: 0.0
    policy_gate_parity_run:
      rc: 0
      stdout: >-
        {"passed": true, "max_abs_error": 1e-07, "max_rel_error": 1e-06, "finite": true,
        "atol": 0.0001, "rtol": 0.001, "backend": "onnxruntime", "cases": 32}
      stderr: ""
  tasks:
    - name: Gate
      block:
        - name: Judge the gates
          ansible.builtin.include_role:
            name: policy_gate
            tasks_from: judge
        - name: Mark promoted
          ansible.builtin.set_fact:
            policy_gate_verdict: promoted
            policy_gate_release_after: 8620dd26fec5b69b
      rescue:
        - name: Mark rolled back
          ansible.builtin.set_fact:
            policy_gate_verdict: rolled_back
            policy_gate_release_after: abc1234567890def
            policy_gate_message: "{{ ansible_failed_result.msg }}"
      always:
        - name: Record the outcome
          ansible.builtin.include_role:
            name: policy_gate
            tasks_from: record
"""


@pytest.fixture
def gated_project(project: Path) -> Path:
    """The tiny project running the repository's policy_gate role (its filter comes with the role)."""
    (project / "playbooks" / "deploy.yml").write_text(GATED_PLAYBOOK, encoding="utf-8")
    with (project / "ansible.cfg").open("a", encoding="utf-8") as cfg:
        cfg.write(f"roles_path = {REPO / 'roles'}\n")
    return project


def test_role_gate_through_runner_fails_the_slow_host(gated_project: Path) -> None:
    """Through ansible-runner the role's jetpolicy_gate filter judges on the controller: p99 over the
    budget fails the gate with the numbers, and the record it writes is read back by HostRecord."""
    lines: list[str] = []
    result = rollout(gated_project, extravars={"p99": 812.0}, progress=lines.append)
    budget = "in-loop latency p99 812.0 us > budget 500.0 us (0.5 of the 1000 Hz period)"
    assert result.exit_code == 1
    assert result.reason == f"localhost rolled back: timing gate: {budget}"
    assert (
        f"[localhost] Fail the host when a gate fails: failed: localhost failed the gate(s): timing: {budget}"
        in lines
    )
    record = json.loads((result.report_dir / "hosts" / "localhost.json").read_text(encoding="utf-8"))
    assert record["gates"]["timing"]["status"] == "failed"
    assert record["gates"]["timing"]["latency_p99_us"] == 812.0
    assert record["gates"]["parity"]["status"] == "passed" and record["backend"] == "onnxruntime"
    assert result.summary is not None and result.summary.problems == []


def test_role_gate_through_runner_promotes_the_fast_host(gated_project: Path) -> None:
    """Every gate within its limits: the role's filter passes the host, which is promoted."""
    result = rollout(gated_project)
    assert (result.exit_code, result.rc) == (0, 0), result.reason
    record = json.loads((result.report_dir / "hosts" / "localhost.json").read_text(encoding="utf-8"))
    assert {name: gate["status"] for name, gate in record["gates"].items()} == {
        "health": "passed",
        "timing": "passed",
        "parity": "passed",
    }


def test_off_contract_record_fails_the_rollout_naming_file_and_field(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record whose timing number is a string fails its host; stderr names the file and the field."""
    playbook = project / "playbooks" / "deploy.yml"
    playbook.write_text(
        playbook.read_text(encoding="utf-8").replace("budget_us: 5000.0", 'budget_us: "5 ms"'),
        encoding="utf-8",
    )
    code = main(["rollout", "--project-dir", str(project), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert (
        "localhost.json: field 'gates.timing.budget_us': expected a number or null, got str '5 ms'"
        in captured.err
    )
    assert "jetpolicy rollout: bad host record: " in captured.err
