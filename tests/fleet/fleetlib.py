"""Helpers for tests that drive the real playbooks against the simulated fleet (podman robots)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = REPO / "inventory" / "sim" / "hosts.yml"
# The x86 robots; the L4T-shaped aarch64 robot has its own tests (test_jetson.py).
ROBOTS = ["sim-orin-1", "sim-orin-2", "sim-xavier-1"]
JETSON_ROBOT = "sim-jetson-1"
# --limit for runs that must leave the Jetson robot to its own tests.
X86_ROBOTS = "robots:!jetson_robots"


def fleet_env() -> dict[str, str]:
    """The environment every fleet test's command runs with (this venv first, the repo's config)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["CONTAINERS_CONF"] = str(REPO / "sim" / "containers.conf")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    return env


# A first deploy to the emulated aarch64 robot installs its runtime under qemu (about 25x slower
# than native) while the x86 tests load the same two cores: 15 min was seen to be too short.
PLAYBOOK_TIMEOUT_S = 1800


def run(argv: list[str], check: bool = False, timeout: int = PLAYBOOK_TIMEOUT_S) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(argv, cwd=REPO, env=fleet_env(), capture_output=True, text=True, check=check, timeout=timeout)


def podman_exec(host: str, *argv: str) -> str:
    proc = subprocess.run(["podman", "exec", host, *argv], check=False, capture_output=True, text=True, env=fleet_env())
    return proc.stdout.strip()


class Robot:
    """What a test can observe on one sim robot, read straight from the container."""

    def __init__(self, name: str) -> None:
        self.name = name

    def current(self) -> str | None:
        # -f: the service's paths go through <root>/deployment (one link the switch renames).
        target = podman_exec(self.name, "readlink", "-f", "/opt/jetpolicy/current")
        return target.rsplit("/", 1)[-1] if target else None

    def releases(self) -> list[str]:
        return podman_exec(self.name, "ls", "/opt/jetpolicy/releases").split()

    def active(self) -> str:
        return podman_exec(self.name, "systemctl", "is-active", "jetpolicy-runner")

    def main_pid(self) -> int:
        return int(podman_exec(self.name, "systemctl", "show", "-p", "MainPID", "--value", "jetpolicy-runner") or 0)

    def status(self) -> dict[str, object]:
        raw = podman_exec(self.name, "cat", "/run/jetpolicy/status.json")
        return json.loads(raw) if raw else {}

    def history(self) -> list[dict[str, object]]:
        raw = podman_exec(self.name, "cat", "/opt/jetpolicy/history.jsonl")
        return [json.loads(line) for line in raw.splitlines() if line.strip()]

    def runtime(self) -> str:
        """The virtualenv the service runs (what <root>/runtime/current resolves to)."""
        return podman_exec(self.name, "readlink", "-f", "/opt/jetpolicy/runtime/current")

    def config(self) -> str:
        """The runner config the service runs with (what <root>/runner.json resolves to)."""
        return podman_exec(self.name, "readlink", "-f", "/opt/jetpolicy/runner.json")

    def snapshot(self) -> dict[str, object]:
        return {
            "current": self.current(),
            "runtime": self.runtime(),
            "config": self.config(),
            "pid": self.main_pid(),
            "active": self.active(),
        }


def ansible_playbook(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return run([str(VENV_BIN / "ansible-playbook"), *args])


def recap(output: str) -> dict[str, dict[str, int]]:
    """Per-host counters from the PLAY RECAP."""
    result = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, flags=re.MULTILINE):
        result[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
    return result


def make_policy(path: Path, *extra: str) -> Path:
    run([str(VENV_BIN / "jetpolicy"), "example", "--out", str(path), *extra], check=True)
    return path


def release_id(policy: Path) -> str:
    """The release id validate gives a policy directory without a tensorrt section: sha256[:16]."""
    return str(json.loads((policy / "policy.json").read_text())["sha256"])[:16]


def rollout(policy: Path, *extra: str) -> tuple[int, str, str, dict[str, Any]]:
    """Run `jetpolicy rollout` on the x86 robots; return rc, stdout, stderr and the report JSON."""
    proc = run([str(VENV_BIN / "jetpolicy"), "rollout", "--limit", X86_ROBOTS, "--policy", str(policy), *extra])
    return proc.returncode, proc.stdout, proc.stderr, report_of(proc.stdout + proc.stderr)


def report_of(output: str) -> dict[str, Any]:
    """The report.json of the last report a run's output names (rollout, or the deploy's callback)."""
    match = re.findall(r"(\S+/reports/[^/\s]+)/report\.md", output)
    assert match, output[-5000:]
    report: dict[str, Any] = json.loads((Path(match[-1]) / "report.json").read_text())
    return report


def host_verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {h["host"]: h["verdict"] for h in report["hosts"]}
