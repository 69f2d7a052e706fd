#!/usr/bin/env python3
"""Check a virtualenv holds exactly what its lock names: `python scripts/check_lock.py LOCK` with the
venv's own python. Every locked distribution at its locked version, nothing else (editable installs,
i.e. the jetpolicy package itself, aside). Exit 1 with the differences otherwise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, str]:
    text = lock.read_text(encoding="utf-8")
    return {normalise(name): version for name, version in REQUIREMENT.findall(text)}


def installed() -> dict[str, str]:
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True, text=True, check=True,
    ).stdout
    return {normalise(name): version for name, version in REQUIREMENT.findall(frozen)}


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    lock = Path(sys.argv[1])
    want, have = locked(lock), installed()
    problems = [f"  {name}: locked {want[name]}, installed {have.get(name, 'nothing')}"
                for name in sorted(want) if have.get(name) != want[name]]
    problems += [
        f"  {name}=={have[name]}: installed, not in the lock" for name in sorted(set(have) - set(want))
    ]
    if problems:
        print(f"check_lock: {sys.prefix} differs from {lock}:", *problems, sep="\n", file=sys.stderr)
        print("Fix: remove the virtualenv, then `make setup` (it installs the lock alone).", file=sys.stderr)
        return 1
    print(f"check_lock: {sys.prefix} holds exactly {lock} ({len(want)} distributions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
