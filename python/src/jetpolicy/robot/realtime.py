"""Optional real-time process settings: SCHED_FIFO, CPU affinity, mlockall, frozen GC.

Each setting either takes effect or says why not (RealtimeError: setting, errno, fix). Nothing
falls back silently: with `required` the runner stops, otherwise the refusal is kept in the
results and shown in the status file, so a robot running without real-time priority is visible.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import gc
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.robot.config import RealtimeConfig

__all__ = [
    "MCL_CURRENT",
    "MCL_FUTURE",
    "RealtimeError",
    "RealtimeResult",
    "apply_realtime",
    "freeze_gc",
    "lock_memory",
    "set_cpu_affinity",
    "set_fifo_priority",
]

# <sys/mman.h> on Linux (x86_64 and aarch64 alike).
MCL_CURRENT = 1
MCL_FUTURE = 2


class RealtimeError(JetpolicyError):
    """The OS refused a real-time setting."""

    def __init__(self, setting: str, err: int, cause: str, fix: str) -> None:
        self.setting = setting
        self.errno = err
        name = errno.errorcode.get(err, str(err))
        super().__init__(f"{setting}: {cause} ({name}, errno {err})", fix)


@dataclass
class RealtimeResult:
    setting: str
    applied: bool
    detail: str

    def to_dict(self) -> Dict[str, object]:
        return {"setting": self.setting, "applied": self.applied, "detail": self.detail}


_FIX_FIFO = (
    "grant it in the unit (CPUSchedulingPolicy=fifo, CPUSchedulingPriority=N, or LimitRTPRIO=N) "
    "or give the process CAP_SYS_NICE; in a container also allow real-time scheduling (--cap-add=SYS_NICE)"
)
_FIX_MLOCK = "set LimitMEMLOCK=infinity in the unit (or grant CAP_IPC_LOCK)"


def set_fifo_priority(priority: int) -> RealtimeResult:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        raise RealtimeError(
            "sched_fifo_priority", exc.errno or 0, f"SCHED_FIFO priority {priority} refused", _FIX_FIFO
        ) from None
    return RealtimeResult("sched_fifo_priority", True, f"SCHED_FIFO priority {priority}")


def set_cpu_affinity(cpus: List[int]) -> RealtimeResult:
    try:
        os.sched_setaffinity(0, set(cpus))
    except OSError as exc:
        raise RealtimeError(
            "cpu_affinity",
            exc.errno or 0,
            f"cannot pin to CPUs {cpus} (allowed: {sorted(os.sched_getaffinity(0))})",
            "use CPUs that exist and are in the unit's CPUAffinity=/cgroup cpuset",
        ) from None
    return RealtimeResult("cpu_affinity", True, f"pinned to CPUs {sorted(os.sched_getaffinity(0))}")


def lock_memory(libc_loader: Optional[Callable[[], ctypes.CDLL]] = None) -> RealtimeResult:
    """mlockall(MCL_CURRENT|MCL_FUTURE): page faults in the loop would cost milliseconds."""
    if libc_loader is None:
        name = ctypes.util.find_library("c") or "libc.so.6"
        libc = ctypes.CDLL(name, use_errno=True)
    else:
        libc = libc_loader()
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        err = ctypes.get_errno()
        raise RealtimeError("mlockall", err, "locking the process memory was refused", _FIX_MLOCK)
    return RealtimeResult("mlockall", True, "MCL_CURRENT|MCL_FUTURE")


def freeze_gc() -> RealtimeResult:
    """Move everything allocated so far out of the collector's view and stop automatic collection.

    A full collection over the loaded model's objects takes milliseconds; the loop allocates almost
    nothing, so disabling it after warm-up keeps memory flat while removing those pauses.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    return RealtimeResult("gc_freeze", True, f"{gc.get_freeze_count()} objects frozen, automatic GC off")


def apply_realtime(config: RealtimeConfig) -> List[RealtimeResult]:
    """Apply every configured setting; raise on the first refusal when `config.required`.

    Call after warm-up (the GC freeze then covers the loaded model).
    """
    steps: List[Callable[[], RealtimeResult]] = []
    if config.cpu_affinity is not None:
        cpus = config.cpu_affinity
        steps.append(lambda: set_cpu_affinity(cpus))
    if config.mlockall:
        steps.append(lock_memory)
    if config.sched_fifo_priority is not None:
        priority = config.sched_fifo_priority
        steps.append(lambda: set_fifo_priority(priority))
    if config.gc_freeze:
        steps.append(freeze_gc)
    results: List[RealtimeResult] = []
    for step in steps:
        try:
            results.append(step())
        except RealtimeError as exc:
            if config.required:
                raise
            results.append(RealtimeResult(exc.setting, False, str(exc)))
    return results
