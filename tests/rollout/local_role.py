"""Run one task file of a role for real with ansible-playbook against localhost (a local
connection; reports and Ansible's temp files under the test's tmp_path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from ansible_paths import ANSIBLE_CFG, REPO

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def run_role_tasks(
    tmp_path: Path, name: str, role: str, tasks_from: str, role_vars: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    """A one-task play including `role`'s `tasks_from` with `role_vars`; extra ansible-playbook args."""
    playbook = tmp_path / f"{tasks_from}.yml"
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {
                "name": name,
                "ansible.builtin.include_role": {"name": role, "tasks_from": tasks_from},
                "vars": role_vars,
            }
        ],
    }
    playbook.write_text(yaml.safe_dump([play]), encoding="utf-8")
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ANSIBLE_CFG),
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
        JETPOLICY_REPORTS_DIR=str(tmp_path / "reports"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
    )
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(playbook), *args],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
