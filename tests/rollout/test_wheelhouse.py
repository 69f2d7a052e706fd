"""The robot runtime's wheelhouse, resolved for real Jetson platforms from PyPI (network needed).

JetPack 5: Python 3.8, aarch64, glibc 2.31; JetPack 6: Python 3.10, aarch64, glibc 2.35. Each
bundle must hold only wheels that robot can load (its Python tag, a manylinux tag its glibc
accepts, aarch64), numpy held below 2 for JetPack's TensorRT bindings, and a pip new enough to
read manylinux_2_x tags (JetPack 5's venv pip 20.0.2 cannot).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jetpolicy.controller.bundle import build_bundle

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"
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
    bundle = build_bundle(PYTHON_DIR, tmp_path, python_version, "aarch64", glibc, ["numpy<2"])
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
    again = build_bundle(PYTHON_DIR, tmp_path, python_version, "aarch64", glibc, ["numpy<2"])
    assert (again.key, again.built) == (bundle.key, False)
