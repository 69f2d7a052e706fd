"""Roll out over inventory slices: the canary's slice alone first, then the other slices side by side.

One controller saturates at some tens of robots (bench/fleet_scale.py). Past that, the fleet is cut
into K slices, each its own `deploy.yml` run (an ansible-runner process, or an AWX/AAP job), and
"canary first" keeps its meaning across slices: the slice holding the canary runs alone and must
end with every host promoted or unchanged before any other slice starts; each later slice again
switches its own first host alone first (`jetpolicy_canary`), so a fault that only shows on
some hardware still stops at one robot per slice. A failed slice stops no slice already running
(each stops its own promotion), and the exit code says which slices failed.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from jetpolicy.common.errors import JetpolicyError

__all__ = ["SliceOutcome", "list_hosts", "plan_slices", "run_slices"]


@dataclass(frozen=True)
class SliceOutcome:
    index: int
    hosts: List[str]
    exit_code: int
    reason: str
    run_id: str = ""


def list_hosts(project_dir: Path, pattern: str, inventory: Optional[Path] = None) -> List[str]:
    """The hosts `pattern` selects, as Ansible resolves it (`ansible PATTERN --list-hosts`)."""
    argv = [str(Path(sys.executable).parent / "ansible"), pattern, "--list-hosts"]
    if inventory is not None:
        argv += ["-i", str(inventory)]
    proc = subprocess.run(argv, cwd=project_dir, capture_output=True, text=True, check=False)
    lines = [line.strip() for line in proc.stdout.splitlines()]
    if proc.returncode != 0 or not lines or not lines[0].startswith("hosts ("):
        raise JetpolicyError(
            f"cannot list the hosts of {pattern!r}: {(proc.stderr or proc.stdout).strip()[-300:]}",
            "check the pattern and the inventory with `ansible PATTERN --list-hosts`",
        )
    return [line for line in lines[1:] if line]


def plan_slices(hosts: Sequence[str], canaries: Sequence[str], count: int) -> List[List[str]]:
    """`count` slices of nearly equal size; the canaries lead the first one.

    Hosts keep their inventory order otherwise, so a re-run cuts the same slices.
    """
    if count < 1:
        raise JetpolicyError(f"--slices is {count}", "give 1 or more slices")
    ordered = [h for h in canaries if h in hosts] + [h for h in hosts if h not in canaries]
    if not ordered:
        raise JetpolicyError("no host to roll out to", "check --limit and the inventory")
    count = min(count, len(ordered))
    size, extra = divmod(len(ordered), count)
    slices, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        slices.append(ordered[start:end])
        start = end
    return slices


def run_slices(
    slices: Sequence[Sequence[str]],
    run_one: Callable[[int, List[str]], SliceOutcome],
    parallel: Optional[int] = None,
) -> List[SliceOutcome]:
    """The first slice alone; the rest (at most `parallel` at once) only if it succeeded."""
    first = run_one(0, list(slices[0]))
    if first.exit_code != 0 or len(slices) == 1:
        skipped = [
            SliceOutcome(i, list(s), 1, "not started: the canary's slice did not succeed")
            for i, s in enumerate(slices[1:], start=1)
        ]
        return [first, *skipped]
    rest = list(enumerate(slices[1:], start=1))
    with ThreadPoolExecutor(max_workers=parallel or len(rest)) as pool:
        outcomes = list(pool.map(lambda item: run_one(item[0], list(item[1])), rest))
    return [first, *outcomes]
