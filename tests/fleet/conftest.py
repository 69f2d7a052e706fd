"""Session fixtures: the simulated fleet and example policies."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleetlib import ROBOTS, Robot, make_policy, run


@pytest.fixture(scope="session")
def fleet() -> Iterator[dict[str, Robot]]:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run scripts/setup.sh (make test does)")
    proc = run([sys.executable, "sim/fleet.py", "up", "--orin", "2", "--xavier", "1"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield {name: Robot(name) for name in ROBOTS}


@pytest.fixture(scope="session")
def policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("policies")
    return {
        "a": make_policy(base / "a", "--seed", "11"),
        "b": make_policy(base / "b", "--seed", "12"),
    }
