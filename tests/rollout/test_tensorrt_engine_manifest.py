"""tensorrt_engine's builder settings from the release's manifest (tasks/manifest.yml), run for
real with ansible-playbook against localhost, then turned into trtexec flags by the module's own
build_flags: inventory over manifest over defaults. No trtexec runs here (that needs a Jetson)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.jetpolicy_trtexec import build_flags
from ansible_paths import ANSIBLE_CFG, REPO
from local_role import ANSIBLE_PLAYBOOK

PROFILES = {"obs": {"min": [1, 48], "opt": [4, 48], "max": [8, 48]}}
TENSORRT = {"precision": "int8", "calibration_cache": {"file": "calib.cache", "sha256": "c" * 64},
            "profiles": PROFILES}  # fmt: skip


def settings(tmp_path: Path, tensorrt: dict[str, Any] | None, **role_vars: Any) -> dict[str, Any]:
    """tensorrt_engine_build_settings for a release whose manifest has this tensorrt section."""
    release = tmp_path / "root" / "releases" / "0123456789abcdef"
    release.mkdir(parents=True)
    manifest: dict[str, Any] = {"sha256": "a" * 64, "control_rate_hz": 100.0}
    if tensorrt is not None:
        manifest["tensorrt"] = tensorrt
    (release / "policy.json").write_text(json.dumps(manifest), encoding="utf-8")
    out = tmp_path / "settings.json"
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {"tensorrt_engine_onnx": str(release / "policy.onnx"), **role_vars},
        "tasks": [
            {"name": "Work out the settings", "ansible.builtin.include_role":
                {"name": "tensorrt_engine", "tasks_from": "manifest"}},
            {"name": "Write them out", "ansible.builtin.copy":
                {"content": "{{ tensorrt_engine_build_settings | to_json }}", "dest": str(out), "mode": "0644"}},
        ],
    }  # fmt: skip
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([play]), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE_CFG), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               JETPOLICY_REPORTS_DIR=str(tmp_path / "reports"))  # fmt: skip
    ran = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    result["release"] = str(release)
    return result


def _flags(found: dict[str, Any]) -> list[str]:
    return build_flags("10.3.0", precision=found["precision"],
                       calibration_cache=found["calibration_cache"] or None, shapes=found["shapes"])  # fmt: skip


def test_manifest_int8_cache_and_profiles_reach_trtexec(tmp_path: Path) -> None:
    """With nothing set in the inventory, the manifest's precision, its cache (in the release
    directory) and its profiles become --int8, --calib and the three shape flags."""
    found = settings(tmp_path, TENSORRT)
    assert found["source"] == {"precision": "manifest", "calibration_cache": "manifest", "shapes": "manifest"}
    assert found["calibration_cache"] == f"{found['release']}/calib.cache"
    assert found["shapes"] == PROFILES
    assert _flags(found) == [
        "--int8", f"--calib={found['release']}/calib.cache",
        "--minShapes=obs:1x48", "--optShapes=obs:4x48", "--maxShapes=obs:8x48",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("role_vars", "precision", "calibration", "shapes"),
    [
        pytest.param({"tensorrt_engine_precision": "fp16"}, "fp16", "", PROFILES, id="inventory-fp16-drops-cache"),
        pytest.param({"tensorrt_engine_calibration_cache": "/data/other.cache",
                      "tensorrt_engine_shapes": {"obs": {"min": [1, 48], "opt": [1, 48], "max": [2, 48]}}},
                     "int8", "/data/other.cache", {"obs": {"min": [1, 48], "opt": [1, 48], "max": [2, 48]}},
                     id="inventory-cache-and-shapes"),
    ],
)  # fmt: skip
def test_inventory_overrides_the_manifest(
    tmp_path: Path, role_vars: dict[str, Any], precision: str, calibration: str, shapes: dict[str, Any]
) -> None:
    """A value set in the inventory wins; an inventory fp16 turns the manifest's INT8 cache off."""
    found = settings(tmp_path, TENSORRT, **role_vars)
    assert (found["precision"], found["calibration_cache"], found["shapes"]) == (precision, calibration, shapes)
    _flags(found)  # a combination the module accepts


def test_no_tensorrt_section_keeps_the_defaults(tmp_path: Path) -> None:
    """A manifest without the section builds as before: fp16, no cache, no shapes."""
    found = settings(tmp_path, None)
    assert (found["precision"], found["calibration_cache"], found["shapes"]) == ("fp16", "", {})
    assert found["source"] == {"precision": "default", "calibration_cache": "none", "shapes": "none"}
    assert _flags(found) == ["--fp16"]
