"""The playbooks' controller-side steps, run for real with ansible-playbook against localhost only.

Nothing here reaches a robot: the inventory check runs alone (`--tags inventory`, every other play
is left out), and the other plays run on localhost with a local connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_paths import ANSIBLE_CFG, LIBRARY, MODULE_UTILS, REPO, ROLES

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def ansible_playbook(playbook: Path, inventory: Path, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ANSIBLE_CFG),
        # No report directory in the repository for these runs.
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
        JETPOLICY_REPORTS_DIR=str(tmp_path / "reports"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
    )
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), "-c", "local", str(playbook), *args],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300,
    )


def write_inventory(tmp_path: Path, robots_vars: dict[str, Any], orin_vars: dict[str, Any] | None = None) -> Path:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    # Argument specs are checked under any --tags: the stage play's roles need a policy directory.
    robots_vars = {"jetpolicy_policy_dir": str(tmp_path / "policy"), **robots_vars}
    inventory = {
        "all": {
            "children": {
                "robots": {
                    "vars": robots_vars,
                    "children": {
                        "orin_robots": {"hosts": {"test-orin-1": local, "test-orin-2": local}, "vars": orin_vars or {}},
                    },
                },
                "canary": {"hosts": {"test-orin-1": local}},
            }
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory), encoding="utf-8")
    return path


GOOD = {
    "jetpolicy_root": "/opt/jetpolicy",
    "jetpolicy_rollout_batches": [1, "50%", "100%"],
    "jetpolicy_canary": "test-orin-2",
    "policy_gate_latency_p99_fraction": 0.5,
    "policy_gate_max_deadline_miss_rate": 0.0,
}


@pytest.mark.parametrize("playbook", ["deploy.yml", "playbooks/provision.yml"])
def test_good_inventory_passes_the_check(playbook: str, tmp_path: Path) -> None:
    """A sound inventory passes the check (and nothing else runs under --tags inventory)."""
    result = ansible_playbook(REPO / playbook, write_inventory(tmp_path, GOOD), "--tags", "inventory", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Check jetpolicy_root is an absolute path" in result.stdout


@pytest.mark.parametrize(
    ("robots_vars", "orin_vars", "expected"),
    [
        ({"jetpolicy_root": "opt/jetpolicy"}, None, "jetpolicy_root is \"opt/jetpolicy\" for test-orin-1"),
        ({"jetpolicy_rollout_batches": "1,50%"}, None, "jetpolicy_rollout_batches is \"1,50%\""),
        ({"jetpolicy_rollout_batches": [1, 0]}, None, "jetpolicy_rollout_batches is [1, 0]"),
        ({"jetpolicy_rollout_batches": [1, "150%"]}, None, "jetpolicy_rollout_batches is [1, \"150%\"]"),
        ({"jetpolicy_canary": "orin-99"}, None, "jetpolicy_canary is \"orin-99\", which is no host or group"),
        ({}, {"policy_gate_latency_p99_fraction": -0.5}, "policy_gate_latency_p99_fraction is -0.5 for test-orin-1"),
        ({}, {"policy_gate_latency_p99_fraction": "fast"}, "policy_gate_latency_p99_fraction is \"fast\""),
        ({}, {"policy_service_health_min_rate_fraction": 0}, "policy_service_health_min_rate_fraction is 0"),
        ({}, {"policy_gate_max_deadline_miss_rate": 1.5}, "policy_gate_max_deadline_miss_rate is 1.5"),
        ({"jetpolicy_failure_budget_percent": 150}, None, "jetpolicy_failure_budget_percent=150"),
        ({"jetpolicy_failure_budget_percent": "some"}, None, "jetpolicy_failure_budget_percent=\"some\""),
        ({"jetpolicy_on_failure": "retry"}, None, "jetpolicy_on_failure=\"retry\""),
    ],
)
def test_bad_inventory_fails_deploy_naming_the_variable(
    robots_vars: dict[str, Any], orin_vars: dict[str, Any] | None, expected: str, tmp_path: Path
) -> None:
    """A bad value stops deploy.yml in its first play, naming the variable, the value and a fix."""
    _assert_stopped(REPO / "deploy.yml", write_inventory(tmp_path, robots_vars, orin_vars), expected, tmp_path)


def test_bad_inventory_fails_provision(tmp_path: Path) -> None:
    """provision.yml runs the same check first."""
    inventory = write_inventory(tmp_path, {"jetpolicy_root": "relative/root"})
    _assert_stopped(REPO / "playbooks" / "provision.yml", inventory, "jetpolicy_root is \"relative/root\"", tmp_path)


@pytest.mark.parametrize(
    ("support_range", "expected"),
    [
        ({"jetpolicy_ansible_core_min": "2.99"}, "jetpolicy supports 2.99 up to (not including) 2.20"),
        ({"jetpolicy_ansible_core_below": "2.1"}, "jetpolicy supports 2.18 up to (not including) 2.1"),
    ],
    ids=["older-than-supported", "newer-than-supported"],
)
def test_an_unsupported_ansible_core_stops_before_any_robot(
    support_range: dict[str, str], expected: str, tmp_path: Path
) -> None:
    """This controller's ansible-core outside the supported range (moved around it here) stops the
    deploy in its first play, naming the version, the range, JetPack 5's Python and the fix."""
    result = ansible_playbook(
        REPO / "deploy.yml", write_inventory(tmp_path, {**GOOD, **support_range}), "--tags", "inventory",
        tmp_path=tmp_path,
    )
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert expected in output
    assert "This controller runs ansible-core 2.1" in output
    assert "cannot run modules on Python 3.8" in output


def _assert_stopped(playbook: Path, inventory: Path, expected: str, tmp_path: Path) -> None:
    result = ansible_playbook(playbook, inventory, "--tags", "inventory", tmp_path=tmp_path)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert expected in output
    assert "Check the inventory on the controller" in result.stdout


FAKE_JETPOLICY = """\
#!{python}
# Stands in for `python -m jetpolicy validate|reference` and logs each call.
import hashlib, json, sys
args = sys.argv[3:]
with open({log!r}, "a") as log:
    log.write(args[0] + "\\n")
model = args[args.index("--model") + 1]
if args[0] == "validate":
    digest = hashlib.sha256(open(model, "rb").read()).hexdigest()
    print(json.dumps({{"valid": True, "problems": [], "name": "fake", "sha256": digest}}))
else:
    out = args[args.index("--out") + 1]
    import os
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "wb").write(b"npz")
"""

TWO_PLAYS = """\
- name: Validate the policy on the controller
  hosts: robots
  gather_facts: false
  tasks:
    - name: Validate as deploy.yml does
      ansible.builtin.include_role:
        name: policy_artifact
        tasks_from: validate

- name: Stage the release
  hosts: robots
  gather_facts: false
  roles:
    - role: policy_artifact
"""


def test_a_deploy_validates_the_policy_once(tmp_path: Path) -> None:
    """deploy.yml's validate play, then the stage play's policy_artifact role: one validation."""
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.onnx").write_bytes(b"not really onnx")
    (policy / "policy.json").write_text(json.dumps({"control_rate_hz": 100}), encoding="utf-8")
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_JETPOLICY.format(python=sys.executable, log=str(log)), encoding="utf-8")
    fake.chmod(0o755)
    playbook = tmp_path / "two_plays.yml"
    playbook.write_text(TWO_PLAYS, encoding="utf-8")
    inventory = write_inventory(
        tmp_path,
        {
            "jetpolicy_policy_dir": str(policy),
            "jetpolicy_root": str(tmp_path / "robot" / "opt" / "jetpolicy"),
            "policy_artifact_controller_python": str(fake),
            "policy_artifact_controller_cache": str(tmp_path / "cache"),
        },
    )
    # Check mode: the robot side (owned by root) is described, not written.
    result = ansible_playbook(playbook, inventory, "--check", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = log.read_text(encoding="utf-8").split()
    assert calls.count("validate") == 1, calls
    assert calls.count("reference") == 1, calls


RENDER_CONFIG = """\
- name: Render the runner config as policy_service does
  hosts: localhost
  gather_facts: false
  vars_files:
    - {roles}/jetpolicy/defaults/main.yml
    - {roles}/policy_service/defaults/main.yml
    - {roles}/policy_service/vars/main.yml
  vars:
    policy_runtime_active_venv: /opt/jetpolicy/runtime/venvs/x
  tasks:
    - name: Write the config the role would store
      ansible.builtin.copy:
        content: "{{{{ policy_service_config_text }}}}"
        dest: {out}
        mode: "0644"
"""


def _rendered_config(tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "runner.json"
    playbook = tmp_path / "render.yml"
    playbook.write_text(RENDER_CONFIG.format(roles=ROLES, out=out), encoding="utf-8")
    # The role's template, found beside the playbook the way a role finds its templates/.
    (tmp_path / "templates").symlink_to(ROLES / "policy_service" / "templates")
    inventory = tmp_path / "hosts"
    inventory.write_text(f"localhost ansible_python_interpreter={sys.executable}\n", encoding="utf-8")
    result = ansible_playbook(playbook, inventory, *extra, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text(encoding="utf-8"))


def test_runner_config_leaves_the_spin_to_the_runtime(tmp_path: Path) -> None:
    """Unset policy_service_spin_us: no spin_us key, so the runtime's rate-based rule applies."""
    config = _rendered_config(tmp_path)
    assert "spin_us" not in config
    assert config["release_dir"] == "/opt/jetpolicy/current"


def test_rendered_runner_config_matches_its_schema(tmp_path: Path) -> None:
    """The template's output is valid against runner-config.schema.json, and it leaves
    schema_version out (absent means 1) so configs keep their content hash (docs/schemas.md)."""
    from jetpolicy.common.schema import load_schema

    config = _rendered_config(tmp_path, "-e", "policy_service_spin_us=300", "-e", "policy_service_cuda_graph=true")
    assert load_schema("runner-config").problems(config) == []
    assert "schema_version" not in config


def test_runner_config_takes_an_inventory_spin(tmp_path: Path) -> None:
    """A spin set in the inventory (or -e) reaches the runner config as an integer."""
    assert _rendered_config(tmp_path, "-e", "policy_service_spin_us=300")["spin_us"] == 300


def test_runner_config_carries_cuda_graph_only_when_on(tmp_path: Path) -> None:
    """policy_service_cuda_graph off (the default) adds no key, so existing configs keep their hash;
    on, the runner config asks the TensorRT backend for a CUDA graph and the runtime accepts it."""
    from jetpolicy.robot.config import config_from_dict

    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    assert "cuda_graph" not in _rendered_config(tmp_path / "off")
    on = _rendered_config(tmp_path / "on", "-e", "policy_service_cuda_graph=true")
    assert on["cuda_graph"] is True
    assert config_from_dict(on, base=tmp_path).cuda_graph is True


def test_runner_config_miss_policy_defaults_to_the_runtime(tmp_path: Path) -> None:
    """Unset policy_service_miss_policy: no miss_policy key, the runner's defaults apply; set, it
    reaches runner.json as the object the runner validates."""
    assert "miss_policy" not in _rendered_config(tmp_path)


def test_runner_config_takes_an_inventory_miss_policy(tmp_path: Path) -> None:
    """A miss policy from the inventory lands in runner.json as given, and the runner accepts it."""
    from jetpolicy.robot.config import config_from_dict

    value = '{"policy_service_miss_policy": {"hold_after": 3, "safe_after": 40}}'
    config = _rendered_config(tmp_path, "-e", value)
    assert config["miss_policy"] == {"hold_after": 3, "safe_after": 40}
    runner = config_from_dict(config)
    assert (runner.miss_policy.hold_after, runner.miss_policy.safe_after) == (3, 40)


def test_molecule_search_paths_match_ansible_cfg() -> None:
    """Molecule cannot read ansible.cfg; the paths it repeats must be ansible.cfg's."""
    config = yaml.safe_load((REPO / ".config" / "molecule" / "config.yml").read_text(encoding="utf-8"))
    env = config["provisioner"]["env"]

    def resolved(name: str) -> Path:
        return Path(env[name].replace("${MOLECULE_PROJECT_DIRECTORY}", str(REPO))).resolve()

    assert resolved("ANSIBLE_LIBRARY") == LIBRARY
    assert resolved("ANSIBLE_MODULE_UTILS") == MODULE_UTILS
    assert resolved("ANSIBLE_ROLES_PATH") == ROLES


PREFLIGHT = """\
- name: Preflight as deploy.yml does
  hosts: robots
  gather_facts: false
  tasks:
    - name: Check room for this policy
      ansible.builtin.include_role:
        name: jetson_provision
        tasks_from: preflight
"""


def test_preflight_needs_room_for_this_policy_and_names_the_numbers(tmp_path: Path) -> None:
    """A policy larger than the robot's free disk fails the preflight, with the parts it adds up,
    the total and the path, although the fixed margin alone would fit."""
    root = tmp_path / "robot" / "opt" / "jetpolicy"
    root.mkdir(parents=True)
    stat = os.statvfs(root)
    free_mib = stat.f_bavail * stat.f_frsize // 2**20
    policy = tmp_path / "policy"
    policy.mkdir()
    with (policy / "policy.onnx").open("wb") as handle:  # sparse: apparent size only
        handle.truncate((free_mib + 1024) * 2**20)
    (policy / "policy.json").write_text("{}", encoding="utf-8")
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(PREFLIGHT, encoding="utf-8")
    inventory = write_inventory(
        tmp_path,
        {
            "jetpolicy_policy_dir": str(policy),
            "jetpolicy_root": str(root),
            "policy_release_id": "0123456789abcdef",
            "jetson_provision_min_free_mb": 1,
            "jetson_provision_time_sync": "ignore",
            "jetson_provision_max_memory_used_pct": 100,
            "jetson_provision_max_temp_c": 200,
        },
    )
    result = ansible_playbook(playbook, inventory, "--limit", "test-orin-1", tmp_path=tmp_path)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert f"{root} has" in output and f"needs {free_mib + 1024 + 1 + 400 + 1} MiB" in output, output
    assert f"policy artifact {free_mib + 1024 + 1} MiB" in output and "runtime bundle 400 MiB" in output
