"""The package split: the robot's wheel carries only the robot side, and its CLI works without the
controller side."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import List

import pytest

from jetpolicy.cli import COMMANDS, build_parser
from jetpolicy.common.errors import ConfigError
from jetpolicy.common.schema import SCHEMA_NAMES
from jetpolicy.controller.bundle import (
    BundleError,
    bundle_key,
    pip_platform_args,
    platform_tags,
    robot_source_files,
    source_digest,
    stage_robot_source,
)
from jetpolicy.robot.backends.base import BACKEND_KINDS
from jetpolicy.robot.config import config_from_dict

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
    assert {f"jetpolicy/common/schemas/{n}.schema.json" for n in SCHEMA_NAMES} <= set(names)
    assert not [n for n in names if n.startswith("jetpolicy/controller/")]
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # The unpacked wheel first on sys.path, ahead of the editable install of the whole package.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import jetpolicy, jetpolicy.cli as cli;"
        "assert jetpolicy.__file__.startswith(sys.argv[1]), jetpolicy.__file__;"
        "from jetpolicy.common.schema import SCHEMA_NAMES as N, load_schema; [load_schema(n) for n in N];"
        "print(cli.controller_installed());"
        "cli.main(['--help'])"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(unpacked)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    first, _, usage = proc.stdout.partition("\n")
    assert first == "False"
    # argparse lists each sub-command on its own line, indented by four spaces (a long name's help
    # goes on the next line, indented further).
    listed = {line.split()[0] for line in usage.splitlines() if line.startswith("    ") and line[4:5].strip()}
    assert listed == {
        "run", "bench", "window", "parity", "release", "health", "status", "safe-action", "hold",
        "release-hold", "busy",
    }


def test_every_command_module_sits_on_its_side() -> None:
    assert {side for side, _ in COMMANDS} == {"robot", "controller"}
    for side, module in COMMANDS:
        assert module.startswith(f"jetpolicy.{side}.")


def test_platform_tags_follow_the_robot_glibc() -> None:
    assert platform_tags("aarch64", "2.31")[:2] == ["manylinux_2_31_aarch64", "manylinux_2_30_aarch64"]
    assert platform_tags("aarch64", "2.31")[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    with pytest.raises(BundleError, match="unexpected glibc version"):
        platform_tags("aarch64", "musl")


def _manylinux(arch: str, newest_minor: int) -> List[str]:
    return [f"manylinux_2_{m}_{arch}" for m in range(newest_minor, 16, -1)] + [f"manylinux2014_{arch}"]


# (python, arch, glibc) of each kind of robot -> the --python-version and --platform tags pip gets.
ROBOT_PLATFORMS = [
    pytest.param("3.8", "aarch64", "2.31", _manylinux("aarch64", 31), id="jetpack5"),
    pytest.param("3.10", "aarch64", "2.35", _manylinux("aarch64", 35), id="jetpack6"),
    pytest.param("3.11", "x86_64", "2.36", _manylinux("x86_64", 36), id="x86-sim-bookworm"),
    pytest.param("3.9", "aarch64", "2.31", _manylinux("aarch64", 31), id="arm64-sim-bullseye"),
    pytest.param("3.12", "x86_64", "2.17", ["manylinux_2_17_x86_64", "manylinux2014_x86_64"], id="2.17"),
]


@pytest.mark.parametrize(("python_version", "arch", "glibc", "platforms"), ROBOT_PLATFORMS)
def test_pip_gets_the_robots_platform_not_the_controllers(
    python_version: str, arch: str, glibc: str, platforms: List[str]
) -> None:
    """Binary wheels only, for CPython at the robot's version, tagged for a glibc no newer than the
    robot's: every manylinux_2_x from its glibc down to 2_17, then manylinux2014."""
    args = pip_platform_args(python_version, arch, glibc)
    assert args[:5] == ["--only-binary=:all:", "--implementation", "cp", "--python-version", python_version]
    rest = args[5:]
    assert rest[0::2] == ["--platform"] * len(platforms)
    assert rest[1::2] == platforms
    assert platform_tags(arch, glibc) == platforms


@pytest.mark.parametrize(
    ("python_version", "arch", "glibc", "message"),
    [
        pytest.param("3.7", "aarch64", "2.31", "Python version '3.7'", id="python-3.7"),
        pytest.param("310", "aarch64", "2.35", "Python version '310'", id="python-no-dot"),
        pytest.param("2.7", "x86_64", "2.36", "Python version '2.7'", id="python-2"),
        pytest.param("3.10", "armv7l", "2.35", "architecture 'armv7l'", id="32-bit-arm"),
        pytest.param("3.10", "aarch64", "musl", "glibc version 'musl'", id="musl"),
        pytest.param("3.10", "aarch64", "2.x", "glibc version '2.x'", id="glibc-garbled"),
    ],
)
def test_platforms_no_robot_has_are_refused(python_version: str, arch: str, glibc: str, message: str) -> None:
    """A platform jetpolicy's wheels cannot serve fails before pip runs, naming the bad value."""
    with pytest.raises(BundleError, match=message):
        pip_platform_args(python_version, arch, glibc)


def test_bundle_key_follows_the_platform_and_the_lock(tmp_path: Path) -> None:
    """One key per robot platform and lock content; the same inputs give the same key."""
    lock = tmp_path / "a.lock"
    lock.write_text("numpy==1.26.4 --hash=sha256:" + "0" * 64 + "\n", encoding="utf-8")
    keys = {
        bundle_key(PYTHON_DIR, python_version, arch, glibc, lock)
        for python_version, arch, glibc, _ in (p.values for p in ROBOT_PLATFORMS)
    }
    assert len(keys) == len(ROBOT_PLATFORMS)
    jp5 = bundle_key(PYTHON_DIR, "3.8", "aarch64", "2.31", lock)
    assert jp5 == bundle_key(PYTHON_DIR, "3.8", "aarch64", "2.31", lock)
    assert jp5.startswith("py3.8-aarch64-")
    lock.write_text("numpy==1.26.3 --hash=sha256:" + "1" * 64 + "\n", encoding="utf-8")
    assert jp5 != bundle_key(PYTHON_DIR, "3.8", "aarch64", "2.31", lock)


def test_every_module_declares_its_public_names() -> None:
    """Each module under src/jetpolicy sets `__all__` (the package's public surface is explicit)."""
    missing = []
    for path in sorted((PYTHON_DIR / "src" / "jetpolicy").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            target.id
            for node in tree.body
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        }
        if "__all__" not in names:
            missing.append(str(path.relative_to(PYTHON_DIR)))
    assert missing == []


def test_backend_names_come_from_one_list(tmp_path: Path) -> None:
    """The CLI's --backend choices (bench, parity) and the runner config accept exactly BACKEND_KINDS."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("bench", "parity"):
        backend = next(a for a in commands.choices[command]._actions if "--backend" in a.option_strings)
        assert tuple(backend.choices or ()) == BACKEND_KINDS, command
    for kind in BACKEND_KINDS:
        config = config_from_dict({"release_dir": str(tmp_path), "backend": kind}, base=tmp_path)
        assert config.backend == kind
    with pytest.raises(ConfigError, match="backend"):
        config_from_dict({"release_dir": str(tmp_path), "backend": "tensorflow"}, base=tmp_path)
