"""The conditions a measurement ran under: CPU load, memory, temperatures (and on a Jetson the GPU
load and rail power), for `jetpolicy window` and `jetpolicy bench`.

Two sources give one summary shape. On L4T `tegrastats` runs beside the measurement and each of
its lines is parsed; elsewhere /proc and /sys/class/thermal are read at each sample. The summary
keeps min/max (CPU: mean/max) per reading, null for one never available, and a short time series
(at most SERIES_POINTS points) for the report's plot. The sim L4T robot's tegrastats is a replay
double printing a recording of another machine: its summary says so (`simulated: "replay"`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, Type, TypeVar

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.robot.tegrastats import TegrastatsLine, TegrastatsParseError, parse_tegrastats_line

__all__ = [
    "CONDITIONS_CHOICES",
    "DEFAULT_TEGRASTATS",
    "SERIES_POINTS",
    "SIM_L4T_MARKER",
    "BackgroundSampling",
    "ConditionSampler",
    "ConditionSource",
    "ConditionsError",
    "TegrastatsSampler",
    "add_conditions_option",
    "read_cpu_times",
    "read_memory_used_mb",
    "read_rss_mb",
    "read_thermal_c",
    "select_sampler",
        "thin_evenly",
]

CONDITIONS_CHOICES = ("auto", "proc", "tegrastats")
DEFAULT_TEGRASTATS = Path("/usr/bin/tegrastats")
# sim/l4t/dress.sh writes it on the sim L4T robot (jetson_facts reports simulated: replay there).
SIM_L4T_MARKER = Path("/etc/jetpolicy-sim-l4t")
REPLAY_NOTE = (
    "tegrastats here is the sim L4T robot's replay double: the figures are a recording of another "
    "machine (sim/l4t/recorded), not this robot's"
)
# Enough points for a plot across a report page; a longer run is thinned, not truncated.
SERIES_POINTS = 120
DEFAULT_TEGRASTATS_INTERVAL_MS = 500
# tegrastats exits on SIGTERM at once; a stuck one is killed after this.
STOP_TIMEOUT_S = 2.0

T = TypeVar("T")


class ConditionsError(JetpolicyError):
    """The conditions source asked for cannot be used."""


class ConditionSource(Protocol):
    """What the window and bench need of a sampler: sample now, summarise at the end, and be a
    context manager (a tegrastats sampler runs a process that must stop whatever happens)."""

    def sample(self) -> None: ...

    def summary(self) -> Dict[str, Any]: ...

    def __enter__(self) -> ConditionSource: ...

    def __exit__(
        self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None: ...


# ---- /proc and /sys readers ----------------------------------------------------------------------


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read_cpu_times(proc: Path) -> Optional[Tuple[int, int]]:
    """(busy, total) jiffies of all CPUs from <proc>/stat; None when it cannot be read."""
    text = _read_text(proc / "stat")
    if text is None:
        return None
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                values = [int(v) for v in fields[1:]]
            except ValueError:
                return None
            if len(values) < 4:
                return None
            # guest and guest_nice are already counted in user and nice.
            total = sum(values[:8])
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            return total - idle, total
    return None


def _status_kb(text: str, key: str) -> Optional[int]:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            parts = line.split()
            try:
                return int(parts[1]) if len(parts) >= 2 else None
            except ValueError:
                return None
    return None


def read_rss_mb(proc: Path, pid: Optional[int]) -> Optional[float]:
    """VmRSS of `pid` in MiB from <proc>/<pid>/status; None when unknown or unreadable."""
    if pid is None:
        return None
    text = _read_text(proc / str(pid) / "status")
    kb = _status_kb(text, "VmRSS") if text is not None else None
    return round(kb / 1024.0, 1) if kb is not None else None


def read_memory_used_mb(proc: Path) -> Optional[float]:
    """MemTotal - MemAvailable of <proc>/meminfo in MiB: what `free` counts as used."""
    text = _read_text(proc / "meminfo")
    if text is None:
        return None
    total, available = _status_kb(text, "MemTotal"), _status_kb(text, "MemAvailable")
    if total is None or available is None:
        return None
    return round((total - available) / 1024.0, 1)


def read_thermal_c(thermal: Path) -> Dict[str, Tuple[Optional[str], Optional[float]]]:
    """{zone: (type, degrees C)} for every thermal_zone* under `thermal`; a part that cannot be
    read is None (a container may have no zones at all, or zones whose temp cannot be read)."""
    zones: Dict[str, Tuple[Optional[str], Optional[float]]] = {}
    try:
        paths = sorted(thermal.glob("thermal_zone*"))
    except OSError:
        return zones
    for zone in paths:
        kind = _read_text(zone / "type")
        raw = _read_text(zone / "temp")
        try:
            temp = round(int(raw.strip()) / 1000.0, 1) if raw is not None else None
        except ValueError:
            temp = None
        zones[zone.name] = (kind.strip() if kind is not None else None, temp)
    return zones


# ---- Summary helpers -----------------------------------------------------------------------------


def thin_evenly(points: Sequence[T], limit: int = SERIES_POINTS) -> List[T]:
    """At most `limit` of `points`, evenly spread, the first and the last always kept."""
    if len(points) <= limit:
        return list(points)
    if limit < 2:
        return list(points[-limit:]) if limit > 0 else []
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def _range(values: Sequence[float]) -> Optional[Dict[str, float]]:
    return {"min": min(values), "max": max(values)} if values else None


def _point(t: float, cpu: Optional[float], ram: Optional[float], temp: Optional[float]) -> Dict[str, Any]:
    return {"t": round(t, 3), "cpu_percent": cpu, "ram_used_mb": ram, "temp_max_c": temp}


def _marked_simulated(summary: Dict[str, Any], marker: Path) -> Dict[str, Any]:
    if marker.exists():
        summary["simulated"] = "replay"
        summary["note"] = REPLAY_NOTE
    return summary


# ---- /proc sampler -------------------------------------------------------------------------------


class ConditionSampler:
    """Samples /proc and /sys at each `sample()`: CPU use (deltas of /proc/stat), memory used
    (/proc/meminfo), the runner's RSS and every thermal zone. Paths and the clock are injectable
    (tests give fake trees)."""

    source = "proc"

    def __init__(
        self,
        pid: Optional[int],
        proc: Path = Path("/proc"),
        thermal: Path = Path("/sys/class/thermal"),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid = pid
        self.proc = proc
        self.thermal = thermal
        self.monotonic = monotonic
        self.samples = 0
        self._started: Optional[float] = None
        self._cpu: List[Tuple[int, int]] = []
        self._rss: List[float] = []
        self._ram: List[float] = []
        self._zones: Dict[str, Dict[str, Any]] = {}
        self._series: List[Dict[str, Any]] = []
        self._lock = threading.Lock()  # bench samples from a background thread

    def __enter__(self) -> ConditionSampler:
        return self

    def __exit__(
        self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        return None

    def sample(self) -> None:
        now = self.monotonic()
        cpu = read_cpu_times(self.proc)
        rss = read_rss_mb(self.proc, self.pid)
        ram = read_memory_used_mb(self.proc)
        zones = read_thermal_c(self.thermal)
        with self._lock:
            self._record(now, cpu, rss, ram, zones)

    def _record(
        self,
        now: float,
        cpu: Optional[Tuple[int, int]],
        rss: Optional[float],
        ram: Optional[float],
        zones: Dict[str, Tuple[Optional[str], Optional[float]]],
    ) -> None:
        self.samples += 1
        if self._started is None:
            self._started = now
        cpu_now: Optional[float] = None
        if cpu is not None:
            if self._cpu and cpu[1] > self._cpu[-1][1]:
                busy, total = cpu[0] - self._cpu[-1][0], cpu[1] - self._cpu[-1][1]
                cpu_now = round(100.0 * busy / total, 1)
            self._cpu.append(cpu)
        if rss is not None:
            self._rss.append(rss)
        if ram is not None:
            self._ram.append(ram)
        temps = []
        for name, (kind, temp) in zones.items():
            zone = self._zones.setdefault(name, {"type": None, "temps": []})
            if kind is not None:
                zone["type"] = kind
            if temp is not None:
                zone["temps"].append(temp)
                temps.append(temp)
        self._series.append(_point(now - self._started, cpu_now, ram, max(temps) if temps else None))

    def _cpu_percent(self) -> Optional[Dict[str, float]]:
        intervals = [
            (b1 - b0, t1 - t0) for (b0, t0), (b1, t1) in zip(self._cpu, self._cpu[1:]) if t1 > t0
        ]
        if not intervals:
            return None
        busy = sum(b for b, _ in intervals)
        total = sum(t for _, t in intervals)
        return {
            "mean": round(100.0 * busy / total, 1),
            "max": round(max(100.0 * b / t for b, t in intervals), 1),
        }

    def summary(self) -> Dict[str, Any]:
        with self._lock:
            zones = {
                name: {"type": zone["type"], "min": min(zone["temps"], default=None),
                       "max": max(zone["temps"], default=None)}
                for name, zone in sorted(self._zones.items())
            }  # fmt: skip
            return {
                "source": self.source,
                "samples": self.samples,
                # All CPUs together, from /proc/stat deltas between samples.
                "cpu_percent": self._cpu_percent(),
                "ram_used_mb": _range(self._ram),
                "gpu_percent": None,
                "runner_pid": self.pid,
                "runner_rss_mb": _range(self._rss),
                "thermal_c": zones or None,
                "series": thin_evenly(self._series),
            }


# ---- tegrastats sampler --------------------------------------------------------------------------


class TegrastatsSampler:
    """Runs `tegrastats --interval MS` for as long as it is entered, parsing each line it prints
    (a reader thread: the window and bench loops never wait on the pipe). `sample()` only reads the
    runner's RSS, which tegrastats does not know. Leaving the context stops tegrastats: terminate,
    wait, kill if it lingers, also when the measurement raised."""

    source = "tegrastats"

    def __init__(
        self,
        pid: Optional[int],
        tegrastats: Path = DEFAULT_TEGRASTATS,
        interval_ms: int = DEFAULT_TEGRASTATS_INTERVAL_MS,
        proc: Path = Path("/proc"),
        sim_marker: Path = SIM_L4T_MARKER,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pid = pid
        self.tegrastats = tegrastats
        self.interval_ms = interval_ms
        self.proc = proc
        self.sim_marker = sim_marker
        self.monotonic = monotonic
        self.samples = 0
        self.unparsed_lines = 0
        self.process: Optional[subprocess.Popen[str]] = None
        self._reader: Optional[threading.Thread] = None
        self._started = 0.0
        self._lines: List[Tuple[float, TegrastatsLine]] = []
        self._rss: List[float] = []
        self._lock = threading.Lock()

    def __enter__(self) -> TegrastatsSampler:
        self._started = self.monotonic()
        try:
            self.process = subprocess.Popen(
                [str(self.tegrastats), "--interval", str(self.interval_ms)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise ConditionsError(
                f"cannot start {self.tegrastats}: {exc}",
                "pass --conditions proc, or run on L4T where tegrastats is installed",
            ) from exc
        stdout = self.process.stdout
        assert stdout is not None  # stdout=PIPE
        self._reader = threading.Thread(target=self._read, args=(stdout,), name="tegrastats", daemon=True)
        self._reader.start()
        return self

    def __exit__(
        self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.stop()

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=STOP_TIMEOUT_S)  # the pipe is at EOF once the process is gone
        if process.stdout is not None:
            process.stdout.close()

    def _read(self, stdout: IO[str]) -> None:
        for raw in _lines_of(stdout):
            now = self.monotonic()
            try:
                line = parse_tegrastats_line(raw)
            except TegrastatsParseError:  # a warning or banner line: counted, not fatal
                with self._lock:
                    self.unparsed_lines += bool(raw.strip())
                continue
            with self._lock:
                self._lines.append((now - self._started, line))

    def sample(self) -> None:
        rss = read_rss_mb(self.proc, self.pid)
        with self._lock:
            self.samples += 1
            if rss is not None:
                self._rss.append(rss)

    def summary(self) -> Dict[str, Any]:
        with self._lock:
            lines = list(self._lines)
            rss = list(self._rss)
            unparsed = self.unparsed_lines
        cpu = [line.cpu_percent for _, line in lines if line.cpu_percent is not None]
        sensors: Dict[str, List[float]] = {}
        rails: Dict[str, List[float]] = {}
        for _, line in lines:
            for name, temp in line.temperatures_c.items():
                sensors.setdefault(name, []).append(temp)
            for name, (now_mw, _) in line.rails_mw.items():
                rails.setdefault(name, []).append(now_mw)
        summary: Dict[str, Any] = {
            "source": self.source,
            "samples": len(lines),
            "unparsed_lines": unparsed,
            "interval_ms": self.interval_ms,
            # Per line the mean load of the online cores, as tegrastats reports them.
            "cpu_percent": {"mean": round(sum(cpu) / len(cpu), 1), "max": max(cpu)} if cpu else None,
            "ram_used_mb": _range([ln.ram_used_mb for _, ln in lines if ln.ram_used_mb is not None]),
            "gpu_percent": _range([ln.gpu_percent for _, ln in lines if ln.gpu_percent is not None]),
            "runner_pid": self.pid,
            "runner_rss_mb": _range(rss),
            # A tegrastats sensor has no zone type of its own: its name is the type.
            "thermal_c": {
                name: {"type": name, "min": min(temps), "max": max(temps)}
                for name, temps in sorted(sensors.items())
            } or None,
            "power_mw": {name: _range(values) for name, values in sorted(rails.items())} or None,
            "series": thin_evenly(
                [_point(t, ln.cpu_percent, ln.ram_used_mb, ln.temp_max_c) for t, ln in lines]
            ),
        }
        return _marked_simulated(summary, self.sim_marker)


def _lines_of(stream: IO[str]) -> Iterator[str]:
    try:
        yield from stream
    except (OSError, ValueError):  # closed under the reader by stop(): the run is over
        return


# ---- Selection and background sampling -----------------------------------------------------------


def select_sampler(
    mode: str,
    pid: Optional[int],
    tegrastats: Path = DEFAULT_TEGRASTATS,
    interval_ms: int = DEFAULT_TEGRASTATS_INTERVAL_MS,
    proc: Path = Path("/proc"),
    thermal: Path = Path("/sys/class/thermal"),
    sim_marker: Path = SIM_L4T_MARKER,
) -> ConditionSource:
    """`auto`: tegrastats where it is executable (L4T), else /proc; `proc` / `tegrastats` force one."""
    if mode not in CONDITIONS_CHOICES:
        raise ConditionsError(f"conditions source {mode!r}", f"pass one of {', '.join(CONDITIONS_CHOICES)}")
    executable = tegrastats.is_file() and os.access(str(tegrastats), os.X_OK)
    if mode == "tegrastats" and not executable:
        raise ConditionsError(
            f"--conditions tegrastats, but {tegrastats} is not an executable file (not L4T?)",
            "pass --conditions proc (or auto) on a host without tegrastats",
        )
    if mode == "tegrastats" or (mode == "auto" and executable):
        return TegrastatsSampler(pid, tegrastats, interval_ms, proc=proc, sim_marker=sim_marker)
    return ConditionSampler(pid, proc=proc, thermal=thermal)


class BackgroundSampling:
    """Calls `sampler.sample()` every `interval_s` on a thread while entered, once at entry and
    once at exit; for the bench, whose real-time loop must not do it itself."""

    def __init__(self, sampler: ConditionSource, interval_s: float) -> None:
        self.sampler = sampler
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conditions", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sampler.sample()

    def __enter__(self) -> BackgroundSampling:
        self.sampler.sample()
        self._thread.start()
        return self

    def __exit__(
        self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sampler.sample()


def add_conditions_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conditions", choices=CONDITIONS_CHOICES, default="auto",
        help="where CPU, memory and temperatures are sampled from: tegrastats (L4T), /proc and "
             f"/sys/class/thermal, or auto (tegrastats when {DEFAULT_TEGRASTATS} is executable)",
    )  # fmt: skip
