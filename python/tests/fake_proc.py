"""A fake /proc and /sys/class/thermal for the conditions samplers (window, bench, conditions tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

__all__ = ["fake_proc_tree"]


def fake_proc_tree(tmp_path: Path, pid: int = 4242, meminfo: bool = True) -> Tuple[Path, Path]:
    """(proc, thermal): /proc/stat, /proc/meminfo (MemTotal 8000000 kB, MemAvailable 5952000 kB),
    the runner's status (VmRSS 200 MiB), and two thermal zones, one whose temp cannot be read."""
    proc, thermal = tmp_path / "proc", tmp_path / "thermal"
    (proc / str(pid)).mkdir(parents=True)
    (proc / "stat").write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 100 0 100 800 0 0 0 0 0 0\n")
    if meminfo:
        meminfo_text = "MemTotal:  8000000 kB\nMemFree:  1000000 kB\nMemAvailable:  5952000 kB\n"
        (proc / "meminfo").write_text(meminfo_text)
    (proc / str(pid) / "status").write_text("Name:\tjetpolicy\nVmRSS:\t  204800 kB\n")
    for name, kind, temp in (("thermal_zone0", "CPU-therm", "41500"), ("thermal_zone1", "GPU-therm", None)):
        (thermal / name).mkdir(parents=True)
        (thermal / name / "type").write_text(kind + "\n")
        if temp is not None:
            (thermal / name / "temp").write_text(temp + "\n")
    return proc, thermal
