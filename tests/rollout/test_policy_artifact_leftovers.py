"""policy_artifact's clean-up of staging directories a killed run left, run for real with
ansible-playbook against localhost (a local connection, a policy root under tmp_path)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from local_role import run_role_tasks


def run_leftovers(root: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_role_tasks(tmp_path, "Remove staging directories a killed run left", "policy_artifact",
                          "leftovers", {"policy_artifact_root": str(root)}, *args)


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
