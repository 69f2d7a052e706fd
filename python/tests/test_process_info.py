"""What the kernel reports for a measured process (the gate records it with every measurement)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from jetpolicy.robot.process_info import cpu_list, describe_process


@pytest.mark.parametrize(("cpus", "text"), [
    ({0, 1, 2, 3, 6}, "0-3,6"), ({5}, "5"), ({3, 1}, "1,3"), (set(), ""), ({0, 1, 4, 5, 6}, "0-1,4-6"),
])  # fmt: skip
def test_cpu_list_is_the_affinity_syntax(cpus: set, text: str) -> None:  # type: ignore[type-arg]
    assert cpu_list(cpus) == text


def test_another_process_is_described_as_it_runs() -> None:
    """A child pinned to one CPU: its pid, user, scheduler and CPUs as the kernel has them."""
    child = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    try:
        info = describe_process(child.pid)
    finally:
        child.kill()
        child.wait()
    assert info["pid"] == child.pid and info["cpus"] == "0"
    assert info["user"] == pwd.getpwuid(os.getuid()).pw_name and info["uid"] == os.getuid()
    assert info["scheduler"] == "SCHED_OTHER" and info["priority"] == 0


def test_a_sandboxed_process_from_its_status(tmp_path: Path) -> None:
    """The fields a unit's sandbox shows in /proc/PID/status (a fake tree; the pid does not exist)."""
    status = tmp_path / "999999" / "status"
    status.parent.mkdir()
    status.write_text("Name:\tjetpolicy\nUid:\t0\t0\t0\t0\nVmLck:\t  2048 kB\nCapEff:\t0000000000000000\n"
                      "NoNewPrivs:\t1\nSeccomp:\t2\nCpus_allowed_list:\t2-3\n")  # fmt: skip
    info = describe_process(999999, proc=tmp_path)
    assert (info["no_new_privs"], info["seccomp"]) == (True, "filter")
    assert (info["cpus"], info["locked_kb"]) == ("2-3", 2048)
    assert info["cap_effective"] == "0000000000000000" and info["user"] == "root"
    # The scheduler is asked of the kernel, which has no such process.
    assert info["scheduler"] is None


def test_a_process_gone_leaves_only_its_pid(tmp_path: Path) -> None:
    info = describe_process(999999, proc=tmp_path)
    assert info["pid"] == 999999 and info["user"] is None and info["cpus"] is None and info["seccomp"] is None
