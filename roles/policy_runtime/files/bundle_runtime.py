#!/usr/bin/env python3
"""Build the runtime bundle for one kind of robot, on the controller: the jetpolicy wheel plus its
dependency wheels for the ROBOT's architecture, Python version and glibc (not the controller's).

The bundle directory is keyed by a hash of everything that decides its content (package sources,
target platform, pip arguments), so an unchanged runtime is never rebuilt or re-shipped.
Prints one JSON object: key, dir, wheels, built.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

# Oldest manylinux_2_x tag worth asking for (manylinux2014 == 2_17).
OLDEST_GLIBC_MINOR = 17


def platform_tags(arch: str, glibc: str) -> List[str]:
    """Every wheel platform tag the robot's glibc accepts, newest first (pip picks the best)."""
    major, minor = (int(x) for x in glibc.split(".")[:2])
    if major != 2:
        raise SystemExit(f"bundle_runtime: unexpected glibc version {glibc}")
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, OLDEST_GLIBC_MINOR - 1, -1)]
    return tags + [f"manylinux2014_{arch}"]


def source_digest(source: Path) -> str:
    digest = hashlib.sha256()
    files = [source / "pyproject.toml", *sorted((source / "src").rglob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(source)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, required=True, help="the jetpolicy package (python/)")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--python-version", required=True, help="robot's Python, e.g. 3.10")
    parser.add_argument("--arch", required=True, help="robot's machine, e.g. aarch64")
    parser.add_argument("--glibc", required=True, help="robot's glibc, e.g. 2.35")
    parser.add_argument("--constraint", action="append", default=[], help="extra pins, e.g. numpy<2")
    args = parser.parse_args()

    tags = platform_tags(args.arch, args.glibc)
    pip_args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", args.python_version]
    for tag in tags:
        pip_args += ["--platform", tag]
    key_material = json.dumps([source_digest(args.source), pip_args, sorted(args.constraint)])
    key = f"py{args.python_version}-{args.arch}-" + hashlib.sha256(key_material.encode()).hexdigest()[:12]
    bundle = args.cache / key
    built = False
    if not (bundle / "COMPLETE").exists():
        args.cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=args.cache))
        try:
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--no-build-isolation", "--wheel-dir", str(staging), str(args.source.resolve())], check=True)
            (wheel,) = staging.glob("jetpolicy-*.whl")
            requirements = [str(wheel), *args.constraint]
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", *pip_args,
                            "--dest", str(staging), *requirements], check=True)
            (staging / "COMPLETE").write_text(key + "\n", encoding="utf-8")
            if bundle.exists():
                shutil.rmtree(bundle)
            staging.rename(bundle)
            built = True
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    wheels = sorted(p.name for p in bundle.glob("*.whl"))
    version = next(w.split("-")[1] for w in wheels if w.startswith("jetpolicy-"))
    print(json.dumps({"key": key, "dir": str(bundle), "wheels": wheels, "built": built,
                      "jetpolicy_version": version}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
