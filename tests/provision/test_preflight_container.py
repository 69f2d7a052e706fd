"""The preflight fails a robot whose policy root filesystem is too small (real container).

A sim robot gets a 16 MiB tmpfs at /opt/jetpolicy, filled to ~4 MiB free; the preflight entry
point (include_role tasks_from=preflight) must fail it with a message naming the host, the path
and both numbers. Needs podman and the sim image (bash sim/build-image.sh); skipped otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from provision_podman import (
    REPO,
    playbook,
    remove,
    sh,
    start,
    unavailable_reason,
    write_inventory,
)

IMAGE = "localhost/jetpolicy-sim:bookworm"
PLAY = REPO / "tests" / "provision" / "playbooks" / "preflight.yml"
HOST = "robot-small-disk"

_reason = unavailable_reason(IMAGE)
pytestmark = [pytest.mark.skipif(_reason is not None, reason=_reason or "")]


@pytest.fixture(scope="module")
def small_disk_robot() -> Iterator[str]:
    name = start(
        IMAGE,
        ["--mount", "type=tmpfs,destination=/opt/jetpolicy,tmpfs-size=16m"],
        ["sleep", "infinity"],
    )
    try:
        fill = sh(name, "fallocate -l 12M /opt/jetpolicy/fill || dd if=/dev/zero of=/opt/jetpolicy/fill bs=1M count=12")
        assert fill.returncode == 0, fill.stderr
        yield name
    finally:
        remove(name)


def test_preflight_fails_host_with_too_little_free_space(small_disk_robot: str, tmp_path: Path) -> None:
    """The host fails; the message names host, path, free and needed MiB and the variable."""
    inventory = write_inventory(tmp_path / "hosts.yml", HOST, small_disk_robot)
    run = playbook(inventory, PLAY)
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    match = re.search(
        rf"{HOST}: /opt/jetpolicy has (\d+) MiB free, needs 512 MiB "
        r"\(margin \(jetson_provision_min_free_mb\) 512 MiB\); free space there or lower jetson_provision_min_free_mb",
        output,
    )
    assert match, output
    assert int(match.group(1)) <= 4
    assert re.search(rf"{HOST}\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", output), output


def test_preflight_passes_same_host_with_lower_threshold(small_disk_robot: str, tmp_path: Path) -> None:
    """With the threshold below what is free, the same host passes and reports the numbers."""
    inventory = write_inventory(tmp_path / "hosts.yml", HOST, small_disk_robot)
    run = playbook(inventory, PLAY, "-e", "jetson_provision_min_free_mb=2")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert re.search(r"/opt/jetpolicy has \d+ MiB free \(>= 2 MiB: margin", output), output
