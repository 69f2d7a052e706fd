"""Session fixtures: the simulated fleet and example policies."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleetlib import INVENTORY, JETSON_ROBOT, ROBOTS, VENV_BIN, Robot, make_policy, run

# scripts/test.sh runs each fleet group with one end of the supported ansible-core range and says
# which here: a run that silently took another venv's Ansible would test nothing of that end.
EXPECTED_CORE_ENV = "JETPOLICY_EXPECT_ANSIBLE_CORE"


def ansible_core_version() -> str:
    proc = run([str(VENV_BIN / "ansible-playbook"), "--version"], check=True)
    first: str = proc.stdout.splitlines()[0]  # "ansible-playbook [core 2.19.14]"
    return first.split("core", 1)[1].strip(" []")


@pytest.fixture(scope="session", autouse=True)
def ansible_core() -> str:
    version = ansible_core_version()
    expected = os.environ.get(EXPECTED_CORE_ENV)
    if expected and not (version == expected or version.startswith(expected + ".")):
        pytest.fail(f"{EXPECTED_CORE_ENV}={expected} but {VENV_BIN}/ansible-playbook is ansible-core {version}")
    return version


def pytest_report_header() -> str:
    return f"ansible-core {ansible_core_version()} ({VENV_BIN})"


def ensure_fleet() -> None:
    """Start the sim fleet unless every robot already runs.

    The x86 tests and the Jetson tests run as two pytest processes side by side on one fleet
    (scripts/test.sh starts it first); neither may restart robots the other is using.
    """
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run scripts/setup.sh (make test does)")
    listed = run(["podman", "ps", "--filter", "label=jetpolicy.sim=fleet", "--format", "{{.Names}}"])
    if {*ROBOTS, JETSON_ROBOT} <= set(listed.stdout.split()) and INVENTORY.exists():
        return
    proc = run([sys.executable, "sim/fleet.py", "up"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def fleet() -> Iterator[dict[str, Robot]]:
    ensure_fleet()
    yield {name: Robot(name) for name in ROBOTS}


@pytest.fixture(scope="session")
def jetson_fleet() -> Robot:
    ensure_fleet()
    return Robot(JETSON_ROBOT)


@pytest.fixture(scope="session")
def policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("policies")
    return {
        "a": make_policy(base / "a", "--seed", "11"),
        "b": make_policy(base / "b", "--seed", "12"),
    }
