"""The execution environment a process really runs under: user, scheduling, CPUs, sandbox.

The timing gate's numbers are comparable with the service's only when they were measured under
the service's conditions, so both `jetpolicy window` (the runner, by PID) and `jetpolicy bench`
(itself) record what the kernel says about the measured process, not what a unit file asks for.
"""

from __future__ import annotations

import contextlib
import os
import pwd
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

__all__ = ["cpu_list", "describe_process"]

_POLICIES = {
    getattr(os, "SCHED_OTHER", 0): "SCHED_OTHER",
    getattr(os, "SCHED_FIFO", 1): "SCHED_FIFO",
    getattr(os, "SCHED_RR", 2): "SCHED_RR",
    getattr(os, "SCHED_BATCH", 3): "SCHED_BATCH",
    getattr(os, "SCHED_IDLE", 5): "SCHED_IDLE",
}
_SECCOMP = {"0": "off", "1": "strict", "2": "filter"}


def cpu_list(cpus: Iterable[int]) -> str:
    """'0-3,6' for {0, 1, 2, 3, 6}: the form of CPUAffinity= and /proc's Cpus_allowed_list."""
    runs: List[List[int]] = []
    for cpu in sorted(set(cpus)):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in runs)


def _status_fields(proc: Path, pid: int) -> Dict[str, str]:
    try:
        text = (proc / str(pid) / "status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _user(uid: Optional[int]) -> Optional[str]:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def describe_process(pid: Optional[int] = None, proc: Path = Path("/proc")) -> Dict[str, Any]:
    """What the kernel reports for `pid` (default: this process); a part it will not tell is null."""
    target = os.getpid() if pid is None else pid
    fields = _status_fields(proc, target)
    uids = fields.get("Uid", "").split()
    uid = int(uids[1]) if len(uids) > 1 and uids[1].isdigit() else None
    info: Dict[str, Any] = {
        "pid": target,
        "user": _user(uid),
        "uid": uid,
        "scheduler": None,
        "priority": None,
        "cpus": fields.get("Cpus_allowed_list"),
        "no_new_privs": fields.get("NoNewPrivs") == "1" if "NoNewPrivs" in fields else None,
        "seccomp": _SECCOMP.get(fields.get("Seccomp", "")),
        "cap_effective": fields.get("CapEff"),
        "locked_kb": int(fields["VmLck"].split()[0]) if fields.get("VmLck", "").split() else None,
    }
    try:
        policy = os.sched_getscheduler(target)
        info["scheduler"] = _POLICIES.get(policy & 0xFF, str(policy))
        info["priority"] = os.sched_getparam(target).sched_priority
    except OSError:
        pass
    if info["cpus"] is None:
        with contextlib.suppress(OSError):
            info["cpus"] = cpu_list(os.sched_getaffinity(target))
    return info
