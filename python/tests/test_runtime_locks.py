"""The robot runtime's locks: which lock a robot gets, and the bundle's own files (no network)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jetpolicy.controller.bundle import (
    WHEEL_SOURCE_DATE_EPOCH,
    BundleError,
    find_lock,
    lock_name,
    stage_robot_source,
    write_requirements,
)

PYTHON_DIR = Path(__file__).resolve().parents[1]
LOCK_DIR = PYTHON_DIR.parent / "requirements" / "robot"
PINNED = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)==(?P<version>\S+) --hash=sha256:(?P<hash>[0-9a-f]{64})$")


def _touch_locks(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_text("# lock\n", encoding="utf-8")


def test_every_platform_the_roles_serve_has_a_lock_with_hashes() -> None:
    """JetPack 5 and 6, and each sim robot kind: a committed lock, every requirement hash-pinned."""
    platforms = [
        ("3.8", "aarch64", "2.31", True),
        ("3.10", "aarch64", "2.35", True),
        ("3.9", "aarch64", "2.31", True),
        ("3.11", "x86_64", "2.36", False),
        ("3.9", "x86_64", "2.31", False),
    ]
    for python_version, arch, glibc, l4t in platforms:
        lock = find_lock(LOCK_DIR, python_version, arch, glibc, l4t)
        assert lock.name == lock_name(python_version, arch, glibc, l4t)
        text = lock.read_text(encoding="utf-8")
        requirements = re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", text, flags=re.MULTILINE)
        names = {name for name, _ in requirements}
        assert {"numpy", "onnxruntime", "pip"} <= names, lock.name
        # Every requirement is followed by at least one hash line before the next requirement.
        for block in re.split(r"^(?=[a-z0-9])", text, flags=re.MULTILINE)[1:]:
            assert "--hash=sha256:" in block, f"{lock.name}: {block.splitlines()[0]} has no hash"
        if l4t:
            numpy = dict(requirements)["numpy"]
            assert numpy.startswith("1."), f"{lock.name} holds numpy {numpy}; JetPack's TensorRT needs 1.x"


def test_a_newer_glibc_takes_the_newest_lock_it_can_load(tmp_path: Path) -> None:
    _touch_locks(
        tmp_path,
        "py3.11-x86_64-glibc2.31.lock",
        "py3.11-x86_64-glibc2.36.lock",
        "py3.11-x86_64-glibc2.39.lock",
        "py3.11-x86_64-glibc2.36-l4t.lock",
        "py3.10-x86_64-glibc2.36.lock",
    )
    assert find_lock(tmp_path, "3.11", "x86_64", "2.38", False).name == "py3.11-x86_64-glibc2.36.lock"
    assert find_lock(tmp_path, "3.11", "x86_64", "2.39", False).name == "py3.11-x86_64-glibc2.39.lock"
    assert find_lock(tmp_path, "3.11", "x86_64", "2.40", True).name == "py3.11-x86_64-glibc2.36-l4t.lock"


def test_no_lock_for_the_robot_names_the_lock_to_add(tmp_path: Path) -> None:
    """An older glibc than every lock, another Python, or L4T-ness not locked: stop, name the fix."""
    _touch_locks(tmp_path, "py3.11-x86_64-glibc2.36.lock")
    for args in (("3.11", "x86_64", "2.31", False), ("3.12", "x86_64", "2.36", False),
                 ("3.11", "x86_64", "2.36", True), ("3.11", "aarch64", "2.36", False)):
        with pytest.raises(BundleError) as caught:
            find_lock(tmp_path, *args)
        assert lock_name(*args) in caught.value.fix
        assert "make lock" in caught.value.fix
        assert "py3.11-x86_64-glibc2.36.lock" in str(caught.value)
    with pytest.raises(BundleError, match="glibc version 'musl'"):
        find_lock(tmp_path, "3.11", "x86_64", "musl", False)


def _build_robot_wheel(source_copy: Path, out: Path) -> Path:
    env = {"SOURCE_DATE_EPOCH": WHEEL_SOURCE_DATE_EPOCH, "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(out), str(source_copy)],
        check=True, capture_output=True, env=env,
    )
    (wheel,) = out.glob("jetpolicy-*.whl")
    return wheel


@pytest.mark.slow
def test_two_checkouts_build_the_same_robot_wheel_bytes(tmp_path: Path) -> None:
    """Other file times and modes (another clone, another umask) give a byte-identical wheel."""
    first = stage_robot_source(PYTHON_DIR, tmp_path / "a" / "src")
    second = stage_robot_source(PYTHON_DIR, tmp_path / "b" / "src")
    for path in second.rglob("*"):
        if path.is_file():
            path.chmod(0o664)
            subprocess.run(["touch", "-d", "2021-06-01", str(path)], check=True)
    stage_again = stage_robot_source(second, tmp_path / "c" / "src")
    wheel_a = _build_robot_wheel(first, tmp_path / "a" / "out")
    wheel_c = _build_robot_wheel(stage_again, tmp_path / "c" / "out")
    assert wheel_a.read_bytes() == wheel_c.read_bytes()
    with zipfile.ZipFile(wheel_a) as archive:
        assert {info.date_time[0] for info in archive.infolist()} == {1980}


def test_install_files_pin_every_shipped_wheel_to_its_bytes(tmp_path: Path) -> None:
    (tmp_path / "jetpolicy-0.1.0-py3-none-any.whl").write_bytes(b"jetpolicy")
    (tmp_path / "numpy-1.26.4-cp310-cp310-manylinux_2_17_aarch64.whl").write_bytes(b"numpy")
    (tmp_path / "pip-24.2-py3-none-any.whl").write_bytes(b"pip")
    write_requirements(tmp_path)
    install = (tmp_path / "install.txt").read_text(encoding="utf-8").splitlines()
    pip = (tmp_path / "pip.txt").read_text(encoding="utf-8").splitlines()
    assert [PINNED.match(line)["name"] for line in install] == ["jetpolicy", "numpy"]  # type: ignore[index]
    assert [PINNED.match(line)["version"] for line in pip] == ["24.2"]  # type: ignore[index]
    numpy_hash = PINNED.match(install[1])["hash"]  # type: ignore[index]
    assert numpy_hash == hashlib.sha256(b"numpy").hexdigest()
