"""Session fixtures: the simulated fleet and example policies."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleetlib import INVENTORY, JETSON_ROBOT, ROBOTS, Robot, make_policy, run


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
