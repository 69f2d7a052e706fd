"""The runtime bundle names the licence of every wheel it ships, read from the wheels themselves."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import pytest

from jetpolicy.controller.bundle import BundleError, build_bundle, bundle_key, bundle_licenses, wheel_license

PYTHON_DIR = Path(__file__).resolve().parents[1]


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    expression: Optional[str] = None,
    license_field: Optional[str] = None,
    classifiers: Sequence[str] = (),
) -> Path:
    """A wheel holding only its METADATA, written the way build backends write the headers."""
    # License-Expression came with metadata 2.4 (PEP 639).
    lines = [f"Metadata-Version: {'2.4' if expression else '2.1'}", f"Name: {name}", f"Version: {version}"]
    if expression:
        lines.append(f"License-Expression: {expression}")
    if license_field is not None:
        # Continuation lines of a folded header are indented, as in real METADATA files.
        lines.append("License: " + license_field.replace("\n", "\n        "))
    lines += [f"Classifier: {c}" for c in classifiers]
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n\nLong description.\n")
        archive.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return path


def test_license_expression_wins(tmp_path: Path) -> None:
    """PEP 639's License-Expression is the declared licence, whatever else the wheel says."""
    wheel = make_wheel(
        tmp_path, "jetpolicy", "0.1.0", expression="Apache-2.0",
        license_field="Apache", classifiers=["License :: OSI Approved :: MIT License"],
    )
    assert wheel_license(wheel) == ("jetpolicy", "Apache-2.0")


def test_one_line_license_field(tmp_path: Path) -> None:
    """Without an expression, a one-line License field is the licence's name."""
    wheel = make_wheel(tmp_path, "onnxruntime", "1.19.2", license_field="MIT License")
    assert wheel_license(wheel) == ("onnxruntime", "MIT License")


def test_pasted_licence_text_falls_back_to_classifiers(tmp_path: Path) -> None:
    """A License field holding the whole licence text names nothing: the classifiers do."""
    text = "Copyright (c) 2005-2023, NumPy Developers.\nAll rights reserved.\n\nRedistribution and use ..."
    wheel = make_wheel(
        tmp_path, "numpy", "1.24.4", license_field=text,
        classifiers=["Programming Language :: Python :: 3", "License :: OSI Approved :: BSD License"],
    )
    assert wheel_license(wheel) == ("numpy", "BSD License")


def test_no_declared_licence_is_unknown(tmp_path: Path) -> None:
    """A wheel declaring nothing (or the old UNKNOWN placeholder) reports UNKNOWN, never a guess."""
    assert wheel_license(make_wheel(tmp_path, "bare", "1.0"))[1] == "UNKNOWN"
    assert wheel_license(make_wheel(tmp_path, "placeholder", "1.0", license_field="UNKNOWN"))[1] == "UNKNOWN"


def test_a_broken_wheel_is_named(tmp_path: Path) -> None:
    """A wheel that is no zip fails as a BundleError naming the file."""
    broken = tmp_path / "torn-1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(BundleError, match=re.escape(broken.name)):
        wheel_license(broken)


def test_bundle_json_lists_every_shipped_wheel(tmp_path: Path) -> None:
    """`jetpolicy bundle-runtime`'s JSON maps each wheel's distribution to its licence; a complete
    bundle in the cache is read as it is (no pip run)."""
    lock = PYTHON_DIR.parent / "requirements" / "robot" / "py3.10-aarch64-glibc2.35-l4t.lock"
    key = bundle_key(PYTHON_DIR, "3.10", "aarch64", "2.35", lock)
    bundle_dir = tmp_path / key
    bundle_dir.mkdir()
    make_wheel(bundle_dir, "jetpolicy", "0.1.0", expression="Apache-2.0")
    make_wheel(bundle_dir, "numpy", "1.26.4", classifiers=["License :: OSI Approved :: BSD License"])
    make_wheel(bundle_dir, "pip", "24.2", license_field="MIT")
    (bundle_dir / "COMPLETE").write_text(key + "\n", encoding="utf-8")

    bundle = build_bundle(PYTHON_DIR, tmp_path, "3.10", "aarch64", "2.35", lock)

    assert not bundle.built
    expected = {"jetpolicy": "Apache-2.0", "numpy": "BSD License", "pip": "MIT"}
    assert bundle.licenses == expected == bundle_licenses(bundle_dir)
    assert json.loads(json.dumps(asdict(bundle)))["licenses"] == expected
