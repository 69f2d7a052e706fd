"""policy_artifact with an INT8 calibration cache named in the manifest (tensorrt.calibration_cache),
run for real: the role's release.yml (leftovers, stage, verify, rename) with ansible-playbook
against localhost (a local connection, a policy root under tmp_path). Nothing here reaches a robot."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from local_role import run_role_tasks

RELEASE_ID = "0123456789abcdef"  # validate.yml's release_id (the tests here never parse the model)


def make_policy(tmp_path: Path, cache_bytes: bytes) -> tuple[Path, dict[str, Any]]:
    """A policy directory with a calibration cache, and the role variables validate.yml would set."""
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.onnx").write_bytes(b"stands in for an ONNX model")
    sha256 = hashlib.sha256((policy / "policy.onnx").read_bytes()).hexdigest()
    (policy / "calib.cache").write_bytes(cache_bytes)
    calibration = {"file": "calib.cache", "sha256": hashlib.sha256(cache_bytes).hexdigest()}
    (policy / "policy.json").write_text(
        json.dumps({"sha256": sha256, "control_rate_hz": 100.0,
                    "tensorrt": {"precision": "int8", "calibration_cache": calibration}}),
        encoding="utf-8",
    )  # fmt: skip
    cache = tmp_path / "cache"
    (cache / RELEASE_ID).mkdir(parents=True)
    (cache / RELEASE_ID / "reference.npz").write_bytes(b"npz")
    return policy, {
        "policy_artifact_root": str(tmp_path / "root"),
        "policy_artifact_source_dir": str(policy),
        "policy_artifact_controller_cache": str(cache),
        "policy_release_sha256": sha256,
        "policy_release_id": RELEASE_ID,
        "policy_release_calibration_cache": calibration,
    }


def run_release(tmp_path: Path, role_vars: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return run_role_tasks(tmp_path, "Stage the release on the robot", "policy_artifact", "release", role_vars, *args)


def _flat(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())


def test_calibration_cache_is_staged_verified_and_kept(tmp_path: Path) -> None:
    """Check mode writes nothing; the run copies the cache into the release beside the model and
    verifies its sha256; a second run changes nothing; a cache altered on the robot is refused and
    the release kept."""
    _policy, role_vars = make_policy(tmp_path, b"TRT-8601-EntropyCalibration2\n")
    release = tmp_path / "root" / "releases" / RELEASE_ID

    checked = run_release(tmp_path, role_vars, "--check")
    assert checked.returncode == 0, _flat(checked)
    assert not release.exists()

    ran = run_release(tmp_path, role_vars)
    assert ran.returncode == 0, _flat(ran)
    assert sorted(p.name for p in release.iterdir()) == ["calib.cache", "policy.json", "policy.onnx", "reference.npz"]
    assert (release / "calib.cache").read_bytes() == b"TRT-8601-EntropyCalibration2\n"

    again = run_release(tmp_path, role_vars)
    assert again.returncode == 0 and "changed=0" in again.stdout, _flat(again)

    (release / "calib.cache").write_bytes(b"edited on the robot\n")
    altered = run_release(tmp_path, role_vars)
    output = _flat(altered)
    assert altered.returncode != 0, output
    assert f"{release}/calib.cache has sha256" in output and "The release was modified on the robot" in output
    assert release.is_dir()


def test_a_corrupt_transfer_discards_the_staging_directory(tmp_path: Path) -> None:
    """A cache that does not arrive with the manifest's sha256 (here: the controller's copy differs
    from what validate hashed) stops the host, and the staging directory never becomes a release."""
    policy, role_vars = make_policy(tmp_path, b"calibration run 1\n")
    (policy / "calib.cache").write_bytes(b"calibration run 2\n")
    ran = run_release(tmp_path, role_vars)
    output = _flat(ran)
    assert ran.returncode != 0, output
    assert "the staging directory was removed" in output
    assert [p.name for p in (tmp_path / "root" / "releases").iterdir()] == []
