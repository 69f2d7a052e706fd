"""The package split: the robot's wheel carries only the robot side, and its CLI works without the
controller side."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jetpolicy.cli import COMMANDS
from jetpolicy.controller.bundle import (
    BundleError,
    platform_tags,
    robot_source_files,
    source_digest,
    stage_robot_source,
)

PYTHON_DIR = Path(__file__).resolve().parents[1]


def test_robot_sources_hold_no_controller_file() -> None:
    files = [str(p) for p in robot_source_files(PYTHON_DIR)]
    assert "src/jetpolicy/robot/runner.py" in files
    assert "src/jetpolicy/common/manifest.py" in files
    assert "src/jetpolicy/cli.py" in files
    assert not [f for f in files if f.startswith("src/jetpolicy/controller/")]


def test_controller_change_keeps_the_runtime_key(tmp_path: Path) -> None:
    """Editing controller code must not make every robot reinstall its runtime."""
    copy = tmp_path / "python"
    stage_robot_source(PYTHON_DIR, copy)
    before = source_digest(copy)
    (copy / "src/jetpolicy/controller").mkdir(parents=True)
    (copy / "src/jetpolicy/controller/new.py").write_text("X = 1\n")
    assert source_digest(copy) == before
    (copy / "src/jetpolicy/robot/new.py").write_text("X = 1\n")
    assert source_digest(copy) != before


@pytest.mark.slow
def test_robot_wheel_has_only_the_robot_side_and_its_cli_runs(tmp_path: Path) -> None:
    src = stage_robot_source(PYTHON_DIR, tmp_path / "src")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(src)],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("jetpolicy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jetpolicy/robot/runner.py" in names
    assert not [n for n in names if n.startswith("jetpolicy/controller/")]
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # The unpacked wheel first on sys.path, ahead of the editable install of the whole package.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import jetpolicy, jetpolicy.cli as cli;"
        "assert jetpolicy.__file__.startswith(sys.argv[1]), jetpolicy.__file__;"
        "print(cli.controller_installed());"
        "cli.main(['--help'])"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(unpacked)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    first, _, usage = proc.stdout.partition("\n")
    assert first == "False"
    # argparse lists each sub-command on its own line, indented by four spaces.
    listed = {line.split()[0] for line in usage.splitlines() if line.startswith("    ") and line.strip()}
    assert listed == {"run", "bench", "parity", "release", "health"}


def test_every_command_module_sits_on_its_side() -> None:
    assert {side for side, _ in COMMANDS} == {"robot", "controller"}
    for side, module in COMMANDS:
        assert module.startswith(f"jetpolicy.{side}.")


def test_platform_tags_follow_the_robot_glibc() -> None:
    assert platform_tags("aarch64", "2.31")[:2] == ["manylinux_2_31_aarch64", "manylinux_2_30_aarch64"]
    assert platform_tags("aarch64", "2.31")[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    with pytest.raises(BundleError, match="unexpected glibc version"):
        platform_tags("aarch64", "musl")
