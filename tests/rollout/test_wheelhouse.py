"""The robot runtime's wheelhouse, downloaded for real Jetson platforms from PyPI (network needed)
as the committed locks (requirements/robot/*.lock) name it, hash-checked.

JetPack 5: Python 3.8, aarch64, glibc 2.31; JetPack 6: Python 3.10, aarch64, glibc 2.35. Each
bundle must hold only wheels that robot can load (its Python tag, a manylinux tag its glibc
accepts, aarch64), numpy held below 2 for JetPack's TensorRT bindings, and a pip new enough to
read manylinux_2_x tags (JetPack 5's venv pip 20.0.2 cannot).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jetpolicy.controller.bundle import build_bundle, find_lock

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"
LOCK_DIR = PYTHON_DIR.parent / "requirements" / "robot"
# A robot's view: no index settings, no PYTHONPATH pointing at the source tree.
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": os.devnull}
WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-(?P<python>[^-]+)-(?P<abi>[^-]+)-(?P<platform>.+)\.whl$")


def _glibc_ok(platform_tag: str, glibc_minor: int) -> bool:
    tags = platform_tag.split(".")
    for tag in tags:
        if tag == "any":
            return True
        if tag == "manylinux2014_aarch64":
            return True
        match = re.fullmatch(r"manylinux_2_(\d+)_aarch64", tag)
        if match and int(match.group(1)) <= glibc_minor:
            return True
    return False


@pytest.mark.parametrize(
    ("python_version", "glibc", "cp"),
    [("3.8", "2.31", "cp38"), ("3.10", "2.35", "cp310")],
    ids=["jetpack5", "jetpack6"],
)
def test_wheelhouse_resolves_for_the_jetpack(tmp_path: Path, python_version: str, glibc: str, cp: str) -> None:
    lock = find_lock(LOCK_DIR, python_version, "aarch64", glibc, l4t=True)
    bundle = build_bundle(PYTHON_DIR, tmp_path, python_version, "aarch64", glibc, lock)
    wheels = {}
    for name in bundle.wheels:
        match = WHEEL.match(name)
        assert match, name
        wheels[match["name"].lower()] = match
        assert match["python"] in (cp, "py3", "py2.py3") or match["abi"] == "abi3", name
        assert _glibc_ok(match["platform"], int(glibc.split(".")[1])), f"{name} needs a newer glibc than {glibc}"
    assert {"jetpolicy", "numpy", "onnxruntime", "pip"} <= set(wheels)
    assert wheels["numpy"]["version"].startswith("1."), wheels["numpy"]["version"]
    assert wheels["onnxruntime"]["python"] == cp
    pip_version = tuple(int(x) for x in wheels["pip"]["version"].split(".")[:2])
    assert pip_version >= (20, 3), "pip before 20.3 cannot read manylinux_2_x tags"
    # The same inputs give the same key: the robot reinstalls nothing on the next run.
    again = build_bundle(PYTHON_DIR, tmp_path, python_version, "aarch64", glibc, lock)
    assert (again.key, again.built) == (bundle.key, False)
    # Exactly the locked versions, nothing else.
    locked = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", lock.read_text(), flags=re.MULTILINE))
    shipped = {name: match["version"] for name, match in wheels.items() if name != "jetpolicy"}
    assert shipped == {name.replace("-", "_"): version for name, version in locked.items()}


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_two_controllers_ship_byte_identical_bundles(tmp_path: Path) -> None:
    """Two checkouts (other file times) and two caches, one lock: same key, same bytes."""
    other_checkout = tmp_path / "checkout" / "python"
    shutil.copytree(PYTHON_DIR, other_checkout, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".*"))
    for path in other_checkout.rglob("*"):
        os.utime(path, (1_600_000_000, 1_600_000_000))
    lock = find_lock(LOCK_DIR, "3.10", "aarch64", "2.35", l4t=True)
    first = build_bundle(PYTHON_DIR, tmp_path / "controller-a", "3.10", "aarch64", "2.35", lock)
    second = build_bundle(other_checkout, tmp_path / "controller-b", "3.10", "aarch64", "2.35", lock)
    assert first.key == second.key
    assert _digests(Path(first.dir)) == _digests(Path(second.dir))


def _robot_like_install(bundle_dir: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    """What roles/policy_runtime/tasks/install.yml runs on the robot, here on the controller."""
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--disable-pip-version-check",
         "--find-links", str(bundle_dir), "--require-hashes", "--requirement", str(bundle_dir / "install.txt")],
        capture_output=True, text=True, env=CLEAN_ENV,
    )


@pytest.mark.skipif(
    (sys.version_info[:2], platform.machine()) != ((3, 11), "x86_64"),
    reason="installs the bookworm sim robots' bundle (Python 3.11, x86_64) on this controller",
)
def test_the_robot_install_refuses_a_swapped_wheel(tmp_path: Path) -> None:
    """The bundle installs offline with --require-hashes; a wheel replaced by other bytes under its
    name (a tampered cache, a bad copy) is refused, and nothing of it is installed."""
    lock = find_lock(LOCK_DIR, "3.11", "x86_64", "2.36", l4t=False)
    bundle = build_bundle(PYTHON_DIR, tmp_path / "cache", "3.11", "x86_64", "2.36", lock)
    shipped = tmp_path / "shipped"
    shutil.copytree(bundle.dir, shipped)

    good = tmp_path / "good-venv"
    subprocess.run([sys.executable, "-m", "venv", str(good)], check=True)
    installed = _robot_like_install(shipped, good)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    version = subprocess.run([str(good / "bin" / "jetpolicy"), "--version"], capture_output=True, text=True, env=CLEAN_ENV)
    assert bundle.jetpolicy_version in version.stdout + version.stderr

    # Another valid wheel, same file name: the bytes differ from the lock's, so pip must refuse it.
    (packaging,) = shipped.glob("packaging-*.whl")
    with zipfile.ZipFile(packaging, "a") as archive:
        archive.writestr("packaging/_swapped.py", "print('not the locked wheel')\n")
    bad = tmp_path / "bad-venv"
    subprocess.run([sys.executable, "-m", "venv", str(bad)], check=True)
    refused = _robot_like_install(shipped, bad)
    assert refused.returncode != 0
    assert "DO NOT MATCH THE HASHES" in refused.stdout + refused.stderr
    assert packaging.name.split("-")[0] in refused.stdout + refused.stderr
    listed = subprocess.run([str(bad / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, check=True, env=CLEAN_ENV).stdout
    assert "jetpolicy" not in listed and "numpy" not in listed
