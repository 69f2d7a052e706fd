"""Shared fixtures: the example policies are built once per session (exporting costs seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from jetpolicy.controller.example import build_example


@pytest.fixture(scope="session")
def example_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MLP release (48 -> 32 -> 12) with normalisation and action limits."""
    out = tmp_path_factory.mktemp("example")
    build_example(out, obs=48, hidden=[32], act=12, rate_hz=100.0, seed=0)
    return out


@pytest.fixture(scope="session")
def recurrent_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small GRU release with h_in/h_out state."""
    out = tmp_path_factory.mktemp("recurrent")
    build_example(out, obs=8, hidden=[16], act=3, rate_hz=50.0, seed=1, recurrent=True)
    return out


@pytest.fixture
def copy_release(tmp_path: Path) -> Callable[[Path], Path]:
    """Copy a session release into this test's tmp dir so the test may modify it."""

    def _copy(release: Path) -> Path:
        target = tmp_path / release.name
        shutil.copytree(release, target)
        return target

    return _copy
