"""The runtime bundle for one kind of robot, built on the controller: the robot-side jetpolicy wheel
plus its dependency wheels for the ROBOT's architecture, Python version and glibc (not the
controller's).

The robot's wheel is built from `jetpolicy.common` and `jetpolicy.robot` only: the controller side
(export, rollout, report, this bundler) never reaches a robot. The dependency wheels are the ones a
lock for the robot's platform names (requirements/robot/*.lock, `make lock`), downloaded with
`--require-hashes`; the jetpolicy wheel is built reproducibly (fixed timestamps and file modes), so
two controllers with the same sources and lock ship byte-identical bundles under the same key.
The bundle directory is keyed by a hash of everything that decides its content (shipped sources,
the lock, target platform, pip arguments), so an unchanged runtime is never rebuilt or re-shipped.
Beside the wheels it holds install.txt and pip.txt: every wheel pinned to its sha256, for the
robot's `pip install --require-hashes` (a swapped wheel is refused there).

`jetpolicy bundle-runtime` prints one JSON object: key, dir, wheels, built, jetpolicy_version,
lock (the lock file used), and licenses (each shipped distribution's licence as its wheel declares
it, for whoever audits what robots carry).
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from jetpolicy.common.errors import JetpolicyError

__all__ = [
    "ROBOT_PACKAGES",
    "Bundle",
    "BundleError",
    "build_bundle",
    "bundle_key",
    "bundle_licenses",
    "find_lock",
    "lock_name",
    "pip_platform_args",
    "platform_tags",
    "register",
    "robot_source_files",
    "stage_robot_source",
    "wheel_license",
    "write_requirements",
]

# Oldest manylinux_2_x tag worth asking for (manylinux2014 == 2_17).
OLDEST_GLIBC_MINOR = 17
# Jetsons and the aarch64 sim robots; the x86 sim robots.
ROBOT_ARCHES = ("aarch64", "x86_64")
# requires-python: JetPack 5's Python 3.8 is the oldest robot.
OLDEST_PYTHON_MINOR = 8
# The parts of the package a robot runs; everything else under src/jetpolicy stays home.
ROBOT_PACKAGES = ("common", "robot")
# Part of every bundle key: raise it when what a bundle holds changes for the same inputs.
BUNDLE_LAYOUT = 3
_PROJECT_FILES = ("pyproject.toml", "README.md")
# The jetpolicy wheel's zip timestamps (1980-01-01, the zip format's first day): with these and fixed
# file modes, the same sources give the same wheel bytes on every controller.
WHEEL_SOURCE_DATE_EPOCH = "315532800"
# What the robot installs from (every wheel with its sha256), and the pip upgrade before it.
INSTALL_REQUIREMENTS = "install.txt"
PIP_REQUIREMENTS = "pip.txt"
_LOCK_NAME = re.compile(
    r"^py(?P<python>3\.\d+)-(?P<arch>[a-z0-9_]+)-glibc2\.(?P<glibc>\d+)(?P<l4t>-l4t)?\.lock$"
)


class BundleError(JetpolicyError):
    """The runtime bundle cannot be built for this robot platform."""


@dataclass(frozen=True)
class Bundle:
    key: str
    dir: str
    wheels: List[str]
    built: bool
    jetpolicy_version: str
    lock: str
    licenses: Dict[str, str]


def platform_tags(arch: str, glibc: str) -> List[str]:
    """Every wheel platform tag the robot's glibc accepts, newest first (pip picks the best)."""
    parts = glibc.split(".")
    if len(parts) < 2 or parts[0] != "2" or not parts[1].isdigit():
        raise BundleError(
            f"unexpected glibc version {glibc!r}", "pass the robot's `getconf GNU_LIBC_VERSION`"
        )
    minor = int(parts[1])
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, OLDEST_GLIBC_MINOR - 1, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def pip_platform_args(python_version: str, arch: str, glibc: str) -> List[str]:
    """The `pip download` arguments that pick wheels the ROBOT can load, whatever the controller
    runs: binary wheels only, CPython at the robot's version, every manylinux tag its glibc takes."""
    major, _, minor = python_version.partition(".")
    if major != "3" or not minor.isdigit() or int(minor) < OLDEST_PYTHON_MINOR:
        raise BundleError(
            f"unexpected robot Python version {python_version!r}",
            f"pass MAJOR.MINOR, 3.{OLDEST_PYTHON_MINOR} or newer (JetPack 5 has 3.8, JetPack 6 3.10)",
        )
    if arch not in ROBOT_ARCHES:
        raise BundleError(
            f"unexpected robot architecture {arch!r}",
            f"pass the robot's `uname -m`: {', '.join(ROBOT_ARCHES)}",
        )
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python_version]
    for tag in platform_tags(arch, glibc):
        args += ["--platform", tag]
    return args


def lock_name(python_version: str, arch: str, glibc: str, l4t: bool) -> str:
    """The file name of the runtime lock made for exactly this platform (scripts/lock.sh)."""
    return f"py{python_version}-{arch}-glibc{glibc}{'-l4t' if l4t else ''}.lock"


def find_lock(lock_dir: Path, python_version: str, arch: str, glibc: str, l4t: bool) -> Path:
    """The runtime lock for a robot: the one made for its platform, else the one for the same Python,
    arch and L4T-ness with the newest glibc not newer than the robot's (its wheels all load there)."""
    exact = lock_dir / lock_name(python_version, arch, glibc, l4t)
    if exact.is_file():
        return exact
    platform_tags(arch, glibc)  # a malformed glibc is reported as such, not as a missing lock
    robot_glibc = int(glibc.split(".")[1])
    usable = []
    for path in lock_dir.glob("*.lock"):
        match = _LOCK_NAME.match(path.name)
        if (
            match
            and match["python"] == python_version
            and match["arch"] == arch
            and bool(match["l4t"]) == l4t
            and int(match["glibc"]) <= robot_glibc
        ):
            usable.append((int(match["glibc"]), path))
    if usable:
        return max(usable)[1]
    known = ", ".join(sorted(p.name for p in lock_dir.glob("*.lock"))) or "none"
    raise BundleError(
        f"no runtime lock for Python {python_version}, {arch}, glibc {glibc}{' (L4T)' if l4t else ''} "
        f"in {lock_dir} (there: {known})",
        f"add the platform to ROBOT_PLATFORMS in scripts/lock.sh, run `make lock` and commit "
        f"{exact.name}",
    )


def bundle_key(source: Path, python_version: str, arch: str, glibc: str, lock: Path) -> str:
    """The cache key of a bundle: it changes with anything that changes the wheels shipped."""
    pip_args = pip_platform_args(python_version, arch, glibc)
    lock_digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    key_material = json.dumps([BUNDLE_LAYOUT, source_digest(source), pip_args, lock_digest])
    return f"py{python_version}-{arch}-" + hashlib.sha256(key_material.encode()).hexdigest()[:12]


def _shipped(path: Path, package_root: Path) -> bool:
    relative = path.relative_to(package_root).parts
    if "__pycache__" in relative or not path.is_file():
        return False
    return len(relative) == 1 or relative[0] in ROBOT_PACKAGES


def robot_source_files(source: Path) -> Iterator[Path]:
    """The files the robot's wheel is built from, relative to `source` (python/), sorted."""
    for name in _PROJECT_FILES:
        if (source / name).is_file():
            yield Path(name)
    package_root = source / "src" / "jetpolicy"
    for path in sorted(package_root.rglob("*")):
        if _shipped(path, package_root):
            yield path.relative_to(source)


def source_digest(source: Path) -> str:
    digest = hashlib.sha256()
    for relative in robot_source_files(source):
        digest.update(str(relative).encode())
        digest.update((source / relative).read_bytes())
    return digest.hexdigest()


def stage_robot_source(source: Path, dest: Path) -> Path:
    """Copy the robot side of python/ into `dest`, ready for `pip wheel`. Modes are fixed (a
    checkout's follow its umask) because the wheel records them."""
    for relative in robot_source_files(source):
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target)
        target.chmod(0o644)
    return dest


def _license_classifiers(classifiers: Sequence[str]) -> List[str]:
    # "License :: OSI Approved :: BSD License" -> "BSD License"; the bare "OSI Approved" says nothing.
    names = [c.split("::")[-1].strip() for c in classifiers if c.startswith("License ::")]
    return [name for name in names if name and name != "OSI Approved"]


def wheel_license(wheel: Path) -> Tuple[str, str]:
    """A wheel's distribution name and the licence its METADATA declares: License-Expression (an
    SPDX expression, PEP 639), else a one-line License field, else its License classifiers, else
    "UNKNOWN". A multi-line License field is the whole licence text pasted in, no name to report."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise BundleError(
                    f"{wheel.name} has {len(names)} .dist-info/METADATA files, not one",
                    "rebuild the bundle (delete its cache directory); the wheel is not a valid wheel",
                )
            text = archive.read(names[0]).decode("utf-8", errors="replace")
    except zipfile.BadZipFile as exc:
        raise BundleError(
            f"{wheel.name} is not a readable wheel: {exc}", "rebuild the bundle (delete its cache directory)"
        ) from exc
    metadata = email.parser.HeaderParser().parsestr(text)
    name = str(metadata.get("Name") or wheel.name.split("-")[0])
    expression = str(metadata.get("License-Expression") or "").strip()
    if expression:
        return name, expression
    field = str(metadata.get("License") or "").strip()
    if field and "\n" not in field and field.upper() != "UNKNOWN":
        return name, field
    classifiers = _license_classifiers(metadata.get_all("Classifier") or [])
    return name, "; ".join(classifiers) if classifiers else "UNKNOWN"


def bundle_licenses(bundle: Path) -> Dict[str, str]:
    """The licence of every wheel in a bundle directory, by distribution name."""
    return dict(sorted(wheel_license(wheel) for wheel in bundle.glob("*.whl")))


def _pip(*args: str) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": WHEEL_SOURCE_DATE_EPOCH}
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()
        tail = " ".join(output.splitlines()[-3:])
        if "DO NOT MATCH THE HASHES" in output:
            raise BundleError(
                f"pip {args[0]}: a downloaded file does not match its hash in the lock: {tail}",
                "the index served other bytes than when the lock was made: check the index (or "
                "mirror) is the one the lock was made from; `make lock` only if the change is trusted",
            )
        raise BundleError(
            f"pip {args[0]} failed (rc {proc.returncode}): {tail}",
            "check the controller reaches its package index, or pre-fill the wheel cache",
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pinned(wheel: Path) -> str:
    name, version = wheel.name.split("-")[:2]
    return f"{name}=={version} --hash=sha256:{_sha256(wheel)}\n"


def write_requirements(bundle: Path) -> None:
    """install.txt (every wheel, jetpolicy included) and pip.txt (pip alone), each line pinned to
    the shipped file's sha256: the robot installs with --require-hashes from these."""
    wheels = sorted(bundle.glob("*.whl"))
    (bundle / INSTALL_REQUIREMENTS).write_text(
        "".join(_pinned(w) for w in wheels if not w.name.startswith("pip-")), encoding="utf-8"
    )
    (bundle / PIP_REQUIREMENTS).write_text(
        "".join(_pinned(w) for w in wheels if w.name.startswith("pip-")), encoding="utf-8"
    )


def build_bundle(
    source: Path,
    cache: Path,
    python_version: str,
    arch: str,
    glibc: str,
    lock: Path,
) -> Bundle:
    pip_args = pip_platform_args(python_version, arch, glibc)
    key = bundle_key(source, python_version, arch, glibc, lock)
    bundle = cache / key
    built = False
    if not (bundle / "COMPLETE").exists():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache))
        try:
            with tempfile.TemporaryDirectory(prefix="jetpolicy-robot-src.") as src:
                robot_src = stage_robot_source(source, Path(src))
                _pip("wheel", "--quiet", "--no-deps", "--no-build-isolation",
                     "--wheel-dir", str(staging), str(robot_src))
            if len(list(staging.glob("jetpolicy-*.whl"))) != 1:
                raise BundleError(
                    f"pip wheel left no single jetpolicy wheel in {staging}",
                    f"build it by hand to see why: pip wheel --no-deps --no-build-isolation {source}",
                )
            # The lock is complete (pip among it: JetPack 5's venv pip cannot read manylinux_2_x tags),
            # so --no-deps; its hashes make pip refuse any file other than the locked ones.
            _pip("download", "--quiet", *pip_args, "--no-deps", "--require-hashes",
                 "--dest", str(staging), "-r", str(lock))
            write_requirements(staging)
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
    return Bundle(
        key=key,
        dir=str(bundle),
        wheels=wheels,
        built=built,
        jetpolicy_version=version,
        lock=lock.name,
        licenses=bundle_licenses(bundle),
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bundle-runtime", help="build the robot runtime's wheels for one robot platform (JSON)"
    )
    parser.add_argument("--source", type=Path, required=True, help="the jetpolicy package (python/)")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--python-version", required=True, help="robot's Python, e.g. 3.10")
    parser.add_argument("--arch", required=True, help="robot's machine, e.g. aarch64")
    parser.add_argument("--glibc", required=True, help="robot's glibc, e.g. 2.35")
    parser.add_argument(
        "--lock-dir", type=Path, required=True, help="the runtime locks (requirements/robot)"
    )
    parser.add_argument(
        "--l4t", action="store_true", help="an L4T robot (its lock keeps JetPack's numpy ABI)"
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    lock = find_lock(args.lock_dir, args.python_version, args.arch, args.glibc, args.l4t)
    bundle = build_bundle(args.source, args.cache, args.python_version, args.arch, args.glibc, lock)
    print(json.dumps(asdict(bundle)))
    return 0
