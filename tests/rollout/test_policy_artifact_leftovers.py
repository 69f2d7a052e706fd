"""policy_artifact's clean-up of staging directories a killed run left, run for real with
ansible-playbook against localhost (a local connection, a policy root under tmp_path)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from ansible_paths import ANSIBLE_CFG, REPO

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def run_leftovers(root: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "leftovers.yml"
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Remove staging directories a killed run left",
                "ansible.builtin.include_role": {"name": "policy_artifact", "tasks_from": "leftovers"},
                "vars": {"policy_artifact_root": str(root)},
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


def test_only_staging_directories_left_untouched_for_a_while_are_removed(tmp_path: Path) -> None:
    """A staging directory untouched for longer than policy_artifact_leftover_minutes is a killed
    run's and goes; a fresh one may be a deploy filling it now and stays, as do releases; check
    mode removes nothing."""
    root = tmp_path / "root"
    releases = root / "releases"
    hour_ago = time.time() - 3600
    for name, mtime in [(".staging-killed", hour_ago), (".staging-busy", time.time() - 60), ("0123456789abcdef", hour_ago)]:
        (releases / name).mkdir(parents=True)
        (releases / name / "policy.onnx").write_bytes(b"onnx")
        os.utime(releases / name, (mtime, mtime))
    checked = run_leftovers(root, tmp_path, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (releases / ".staging-killed").is_dir()
    ran = run_leftovers(root, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert sorted(p.name for p in releases.iterdir()) == [".staging-busy", "0123456789abcdef"]
    again = run_leftovers(root, tmp_path)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout + again.stderr
