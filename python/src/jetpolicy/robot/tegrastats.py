"""One line of NVIDIA's `tegrastats` (L4T) parsed into typed figures.

tegrastats has no stable format: each L4T release and board prints other fields, in another
order, with or without units (`VDD_IN 3056/3056` on JetPack 4, `VDD_IN 5299mW/5299mW` on 5 and 6),
a date in front on newer releases, `off` for a powered-down core and `GR3D_FREQ 0%`,
`0%@624` or `0%@[305,305]` for the GPU. So each figure is searched for on its own and whatever
is not recognised is ignored; only a line with neither RAM nor CPU is refused, since that is not
a tegrastats line at all. The tests parse real recorded lines of several boards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from jetpolicy.common.errors import JetpolicyError

__all__ = ["CpuCore", "TegrastatsLine", "TegrastatsParseError", "parse_tegrastats_line"]


class TegrastatsParseError(JetpolicyError):
    """The text is not a tegrastats line (no RAM and no CPU field)."""


@dataclass(frozen=True)
class CpuCore:
    """One core of the `CPU [...]` field: its load and clock, both None while it is `off`."""

    online: bool
    load_percent: Optional[float] = None
    mhz: Optional[int] = None


@dataclass(frozen=True)
class TegrastatsLine:
    ram_used_mb: Optional[float] = None
    ram_total_mb: Optional[float] = None
    cpus: Tuple[CpuCore, ...] = ()
    # GR3D is the integrated GPU; its load relative to its current clock.
    gpu_percent: Optional[float] = None
    temperatures_c: Dict[str, float] = field(default_factory=dict)
    # Rail name -> (current, average since tegrastats started), milliwatts.
    rails_mw: Dict[str, Tuple[float, float]] = field(default_factory=dict)

    @property
    def cpu_percent(self) -> Optional[float]:
        """Mean load of the online cores; None when every core is off or the field is absent."""
        loads = [core.load_percent for core in self.cpus if core.load_percent is not None]
        return round(sum(loads) / len(loads), 1) if loads else None

    @property
    def temp_max_c(self) -> Optional[float]:
        return max(self.temperatures_c.values()) if self.temperatures_c else None


_TO_MB = {"kB": 1.0 / 1024, "KB": 1.0 / 1024, "MB": 1.0, "GB": 1024.0}
_RAM = re.compile(r"\bRAM (\d+)/(\d+)([kKMG]B)")
# Old releases print `cpu [17%,13%]@408` (one clock for all), newer `CPU [3%@729,off,...]`.
_CPU = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?", re.IGNORECASE)
_CORE = re.compile(r"(\d+(?:\.\d+)?)%(?:@(\d+))?$")
# `GR3D` alone on the oldest releases; GR3D2_FREQ (a second GPC) does not match.
_GPU = re.compile(r"\bGR3D(?:_FREQ)? (\d+(?:\.\d+)?)%")
# A sensor name starts with a letter, so a core's `3%@729` never matches; TX2 prints negative
# readings for sensors that are off (`BCPU@-45C`).
_TEMP = re.compile(r"(?<![\w@])([A-Za-z][\w-]*)@(-?\d+(?:\.\d+)?)C(?![\w.])")
# `NAME current/average` with or without `mW`; the lookarounds keep `RAM 13123/62841MB` and
# `IRAM 0/252kB` out, their numbers run on into a unit.
_RAIL = re.compile(r"(?<![\w@])([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?![\w.])")
_NOT_RAILS = frozenset({"RAM", "SWAP", "IRAM"})


def _cores(field_text: str, shared_mhz: Optional[str]) -> Tuple[CpuCore, ...]:
    cores = []
    for entry in field_text.split(","):
        entry = entry.strip()
        match = _CORE.match(entry)
        if match is None:  # `off`, or something this parser does not know: no figures for it
            cores.append(CpuCore(online=False))
            continue
        mhz = match.group(2) or shared_mhz
        cores.append(CpuCore(True, float(match.group(1)), int(mhz) if mhz else None))
    return tuple(cores)


def parse_tegrastats_line(line: str) -> TegrastatsLine:
    """The figures of one tegrastats line; TegrastatsParseError when it has neither RAM nor CPU."""
    ram = _RAM.search(line)
    cpu = _CPU.search(line)
    if ram is None and cpu is None:
        raise TegrastatsParseError(
            f"not a tegrastats line (no RAM or CPU field): {line.strip()[:120]!r}",
            "pass the tegrastats executable of the L4T release (/usr/bin/tegrastats)",
        )
    used = total = None
    if ram is not None:
        scale = _TO_MB[ram.group(3)]
        used, total = round(int(ram.group(1)) * scale, 1), round(int(ram.group(2)) * scale, 1)
    gpu = _GPU.search(line)
    return TegrastatsLine(
        ram_used_mb=used,
        ram_total_mb=total,
        cpus=_cores(cpu.group(1), cpu.group(2)) if cpu is not None else (),
        gpu_percent=float(gpu.group(1)) if gpu is not None else None,
        temperatures_c={name: float(value) for name, value in _TEMP.findall(line)},
        rails_mw={
            name: (float(now), float(average))
            for name, now, average in _RAIL.findall(line)
            if name not in _NOT_RAILS
        },
    )
