"""policy_gate's record carries platform_info (issue 13): tensorrt_engine's checksum task and the
record's one expression, run for real with ansible-playbook against localhost. The Jetson facts
are the ones jetson_facts returns (its RETURN sample); no trtexec runs here (that needs a Jetson)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from ansible_paths import ANSIBLE_CFG, REPO
from local_role import ANSIBLE_PLAYBOOK

from jetpolicy.controller.record import HostRecord, PlatformInfo

# jetson_facts' RETURN sample, as a real Orin reports it (library/jetson_facts.py).
JETSON = {"is_l4t": True, "l4t_release": "36.4.0", "jetpack_version": "6.1", "tensorrt_version": "10.3.0",
          "nvpmodel_mode": "MAXN", "nvpmodel_mode_id": 0, "simulated": None}  # fmt: skip
# What jetson_facts says on an x86 sim robot: not L4T, no TensorRT, no nvpmodel.
X86 = {"is_l4t": False, "l4t_release": None, "jetpack_version": None, "tensorrt_version": None,
       "nvpmodel_mode": None, "nvpmodel_mode_id": None, "simulated": None}  # fmt: skip


def _record(tmp_path: Path, play_vars: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """hosts/localhost.json after `tasks` then policy_gate's record tasks, with `play_vars`."""
    record_task = {"name": "Record", "ansible.builtin.include_role": {"name": "policy_gate", "tasks_from": "record"}}
    play = {"hosts": "localhost", "gather_facts": False,
            "vars": {"policy_release_id": "8620dd26fec5b69b", "policy_gate_verdict": "staged", **play_vars},
            "tasks": [*tasks, record_task]}  # fmt: skip
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([play]), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE_CFG), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               JETPOLICY_REPORTS_DIR=str(tmp_path / "reports"), JETPOLICY_RUN_ID="run")  # fmt: skip
    ran = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    written: dict[str, Any] = json.loads((tmp_path / "reports" / "run" / "hosts" / "localhost.json").read_text())
    return written


def test_an_orin_record_names_its_jetpack_tensorrt_power_mode_and_engine(tmp_path: Path) -> None:
    """The engine's sha256 comes from tensorrt_engine's stat of the engine file; JetPack, L4T,
    TensorRT and the power mode from the jetson facts; the precisions from the build settings and
    what trtexec printed. The values keep their types (the mode id an integer)."""
    engine = tmp_path / "engines" / "0123.engine"
    engine.parent.mkdir()
    engine.write_bytes(b"not a real plan, only bytes to checksum")
    checksum = {"name": "Checksum", "ansible.builtin.include_role": {"name": "tensorrt_engine", "tasks_from": "checksum"}}
    written = _record(tmp_path, {
        "ansible_facts": {"jetson": JETSON},
        "tensorrt_engine_path": str(engine),
        "tensorrt_engine_build_settings": {"precision": "fp16", "calibration_cache": "", "shapes": {}},
        "tensorrt_engine_gpu": {"name": "Orin", "compute_capability": "8.7", "builder_precision": "FP32+FP16"},
    }, [checksum])  # fmt: skip
    assert written["platform_info"] == {
        "jetpack": "6.1", "l4t": "36.4.0", "tensorrt": "10.3.0", "power_mode": "MAXN", "power_mode_id": 0,
        "engine_sha256": hashlib.sha256(engine.read_bytes()).hexdigest(), "engine_precision": "fp16",
        "builder_precision": "FP32+FP16",
    }  # fmt: skip
    assert HostRecord.from_json(written, "localhost.json").platform_info is not None


def test_an_x86_record_says_null_rather_than_inventing(tmp_path: Path) -> None:
    """Where jetson_facts knows nothing and no engine was built (tensorrt_engine's skip), every
    platform_info value is null, not "None" or ""."""
    skip = {"name": "Skip", "ansible.builtin.include_role": {"name": "tensorrt_engine", "tasks_from": "skip"},
            "vars": {"tensorrt_engine_skip_reason": "not an L4T (Jetson) host"}}  # fmt: skip
    written = _record(tmp_path, {"ansible_facts": {"jetson": X86}}, [skip])
    assert written["platform_info"] == {key: None for key in PlatformInfo.KEYS}
    assert HostRecord.from_json(written, "localhost.json").platform_info == PlatformInfo()


def test_a_record_without_the_engine_role_or_facts_is_still_written(tmp_path: Path) -> None:
    """A run that never reached preflight or stage (tags) writes nulls too."""
    written = _record(tmp_path, {}, [])
    assert written["platform_info"] == {key: None for key in PlatformInfo.KEYS}
