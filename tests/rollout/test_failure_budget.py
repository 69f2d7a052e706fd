"""The run's failure budget (roles/jetpolicy/tasks/failure_budget.yml), counted by ansible-playbook
itself on local hosts: which robots count as lost, and when the budget is spent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_paths import ANSIBLE_CFG, REPO

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
HOSTS = ["r1", "r2", "r3", "r4", "r5"]


def _count(
    tmp_path: Path, percent: float, reached: list[str], rolled_back: list[str], fail: list[str]
) -> dict[str, Any]:
    """Play 1 marks robots as the switch play does (reached, rolled back) and fails some; play 2
    weighs the budget as deploy.yml does at the start of a batch."""
    inventory = {
        "all": {
            "children": {
                "robots": {
                    "hosts": {
                        h: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
                        for h in HOSTS
                    }
                }
            }
        }
    }
    out = tmp_path / "budget.json"
    playbook = [
        {"hosts": "robots", "gather_facts": False, "tasks": [
            {"ansible.builtin.set_fact": {"jetpolicy_switch_reached": True},
             "when": f"inventory_hostname in {reached}"},
            {"ansible.builtin.set_fact": {"policy_gate_verdict": "rolled_back"},
             "when": f"inventory_hostname in {rolled_back}"},
            {"ansible.builtin.fail": {"msg": "lost"}, "when": f"inventory_hostname in {fail}"},
        ]},
        {"hosts": "robots", "gather_facts": False, "tasks": [
            {"ansible.builtin.include_role": {"name": "jetpolicy", "tasks_from": "failure_budget"},
             "vars": {"jetpolicy_failure_budget_percent": percent}},
            {"ansible.builtin.copy": {"dest": str(out), "mode": "0644", "content": (
                "{{ {'failed': jetpolicy_run_failed_hosts, 'budget': jetpolicy_run_failure_budget | int,"
                " 'targets': jetpolicy_run_targets | int, 'spent': jetpolicy_run_budget_spent | bool} | to_json }}")},
             "run_once": True},
        ]},
    ]  # fmt: skip
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (tmp_path / "playbook.yml").write_text(yaml.safe_dump(playbook), encoding="utf-8")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_CFG), "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")}  # fmt: skip
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "playbook.yml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def test_rolled_back_and_dropped_robots_count_staging_failures_do_not(tmp_path: Path) -> None:
    """A robot rolled back by its gate and one that dropped out during its switch count; one that
    failed before the switch phase (preflight, staging) was never switched and does not."""
    result = _count(tmp_path, 0, reached=["r1", "r2", "r3"], rolled_back=["r2"], fail=["r3", "r5"])
    assert sorted(result["failed"]) == ["r2", "r3"]
    assert result == {**result, "budget": 0, "targets": 5, "spent": True}


@pytest.mark.parametrize(
    ("percent", "budget", "spent"), [(20, 1, False), (39.9, 1, False), (10, 0, True), (100, 5, False)]
)
def test_the_budget_is_a_share_of_the_targeted_robots_rounded_down(
    tmp_path: Path, percent: float, budget: int, spent: bool
) -> None:
    result = _count(tmp_path, percent, reached=["r1", "r2"], rolled_back=["r2"], fail=[])
    assert (result["failed"], result["budget"], result["spent"]) == (["r2"], budget, spent)


def test_no_failure_never_spends_a_zero_budget(tmp_path: Path) -> None:
    result = _count(tmp_path, 0, reached=HOSTS, rolled_back=[], fail=[])
    assert result["failed"] == [] and result["spent"] is False
