"""The simulated fleet itself: a robot whose container podman lists as running but whose processes
are gone (what a restored or rebooted machine leaves behind) is replaced, not waited on."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from fleetlib import REPO, fleet_env

NAME = "sim-stale-probe"


def load_fleet_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sim_fleet", REPO / "sim" / "fleet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def podman(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *argv], capture_output=True, text=True, check=False, env=fleet_env())


@pytest.fixture
def sim_fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("CONTAINERS_CONF", os.fspath(REPO / "sim" / "containers.conf"))
    yield load_fleet_module()
    podman("rm", "-f", "-t", "0", NAME)


def kill_behind_podmans_back(name: str) -> None:
    """SIGKILL the container's monitor and init, so podman's record still says running."""
    pids = podman("inspect", "-f", "{{.State.ConmonPid}} {{.State.Pid}}", name).stdout.split()
    for pid in pids:
        os.kill(int(pid), 9)


def test_listed_as_running_but_dead_robot_is_replaced(fleet: dict[str, object], sim_fleet: ModuleType) -> None:
    public_key = Path(REPO / ".sim" / "id_ed25519.pub").read_text(encoding="utf-8")
    first_address = sim_fleet.start_robot(NAME, "orin", public_key)
    first_id = podman("inspect", "-f", "{{.Id}}", NAME).stdout.strip()

    kill_behind_podmans_back(NAME)
    listed = {c["name"]: c["state"] for c in sim_fleet.running_containers()}
    assert listed[NAME] == "running", "precondition: podman still lists the dead container as running"
    assert not sim_fleet.is_alive(NAME)

    address = sim_fleet.start_robot(NAME, "orin", public_key)

    assert podman("inspect", "-f", "{{.Id}}", NAME).stdout.strip() != first_id
    assert sim_fleet.is_alive(NAME)
    assert podman("exec", NAME, "systemctl", "is-active", "ssh").stdout.strip() == "active"
    assert address and first_address
