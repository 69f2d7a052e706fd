"""latency.png: each host's in-loop inference latency (bench p50/p90/p99/max) against its budget;
conditions.png: each host's CPU load and hottest sensor over the timing gate's measurement.

Controller only: imports matplotlib (Agg, no display, no pyplot global state) inside the function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["conditions_lines", "conditions_series", "latency_points", "plot_conditions", "plot_latency"]

PERCENTILES = ("p50", "p90", "p99", "max")
MARKERS = {"p50": "o", "p90": "s", "p99": "D", "max": "^"}


def latency_points(record: Dict[str, Any]) -> Tuple[Dict[str, float], Optional[float]]:
    """({percentile: µs}, budget µs) from a host record's timing gate; empty when there is no bench."""
    timing = ((record.get("gates") or {}).get("timing")) or {}
    bench = timing.get("bench") or {}
    inference = bench.get("inference_us") or {}
    points = {p: float(inference[p]) for p in PERCENTILES if isinstance(inference.get(p), (int, float))}
    if "p99" not in points and isinstance(timing.get("latency_p99_us"), (int, float)):
        points["p99"] = float(timing["latency_p99_us"])
    budget = timing.get("budget_us")
    return points, float(budget) if isinstance(budget, (int, float)) else None


def plot_latency(path: Path, hosts: Sequence[Tuple[str, Dict[str, Any]]]) -> None:
    from matplotlib.figure import Figure

    rows: List[Tuple[str, Dict[str, float], Optional[float]]] = [
        (host, *latency_points(record)) for host, record in hosts
    ]
    fig = Figure(figsize=(9.0, 1.2 + 0.5 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("In-loop inference latency per host (jetpolicy bench) vs budget")
    ax.set_xlabel("latency (µs, log scale)")
    values = [v for _, points, budget in rows for v in [*points.values(), budget or 0.0] if v > 0]
    if not values:
        ax.text(0.5, 0.5, "no host has bench data", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
        fig.savefig(path, dpi=100)
        return
    low, high = min(values), max(values)
    ax.set_xscale("log")
    ax.set_xlim(low / 2, high * 2)
    labelled = set()
    for y, (_, points, budget) in enumerate(rows):
        if not points:
            ax.text(low / 1.8, y, "no bench data", va="center", fontsize=8, color="grey")
        else:
            xs = sorted(points.values())
            ax.hlines(y, xs[0], xs[-1], color="tab:blue", linewidth=2, alpha=0.5)
            for name, value in points.items():
                over = budget is not None and value > budget
                ax.plot(
                    [value],
                    [y],
                    MARKERS[name],
                    color="tab:red" if over else "tab:blue",
                    label=name if name not in labelled else None,
                )
                labelled.add(name)
        if budget is not None and budget > 0:
            label = "budget" if "budget" not in labelled else "_nolegend_"
            ax.vlines(budget, y - 0.35, y + 0.35, color="black", linewidth=2, label=label)
            labelled.add("budget")
    ax.set_yticks(range(len(rows)), [host for host, _, _ in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.invert_yaxis()
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.legend(loc="outside lower center", fontsize=8, ncol=5)
    fig.savefig(path, dpi=100)


Series = List[Tuple[float, float]]


def conditions_series(record: Dict[str, Any]) -> Tuple[Series, Series, bool]:
    """(CPU % points, max temperature points, simulated) of a host record's timing conditions:
    (t, value) pairs of the `series` the robot sampled, a point without the value left out.
    Simulated when the record's robot runs replay doubles or its conditions are a replay."""
    timing = ((record.get("gates") or {}).get("timing")) or {}
    conditions = (timing.get("bench") or {}).get("conditions")
    conditions = conditions if isinstance(conditions, dict) else {}
    series = conditions.get("series")
    series = series if isinstance(series, list) else []
    points = [p for p in series if isinstance(p, dict) and isinstance(p.get("t"), (int, float))]

    def values(key: str) -> Series:
        return [(float(p["t"]), float(p[key])) for p in points if isinstance(p.get(key), (int, float))]

    simulated = bool(record.get("simulated") or conditions.get("simulated"))
    return values("cpu_percent"), values("temp_max_c"), simulated


def conditions_lines(hosts: Sequence[Tuple[str, Dict[str, Any]]]) -> List[Tuple[str, Series, Series]]:
    """(label, CPU % points, max temperature points) of each host with a sampled series; the
    label of a host whose figures are a replay says "(simulated)"."""
    lines = []
    for host, record in hosts:
        cpu, temp, simulated = conditions_series(record)
        if cpu or temp:
            lines.append((f"{host} (simulated)" if simulated else host, cpu, temp))
    return lines


def plot_conditions(path: Path, hosts: Sequence[Tuple[str, Dict[str, Any]]]) -> None:
    """Two panels sharing the time axis, CPU % above and the hottest sensor below, one line per
    host (conditions_lines); "no conditions sampled" when no host has a series."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 5.0), layout="constrained")
    cpu_ax, temp_ax = fig.subplots(2, 1, sharex=True)
    fig.suptitle("Conditions while timed (timing gate window or bench) per host")
    cpu_ax.set_ylabel("CPU (%)")
    temp_ax.set_ylabel("hottest sensor (°C)")
    temp_ax.set_xlabel("time since the measurement started (s)")
    lines = conditions_lines(hosts)
    for label, cpu, temp in lines:
        for ax, points in ((cpu_ax, cpu), (temp_ax, temp)):
            if points:
                ax.plot([t for t, _ in points], [v for _, v in points], marker=".", label=label)
    if not lines:
        for ax in (cpu_ax, temp_ax):
            ax.text(0.5, 0.5, "no conditions sampled", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
        fig.savefig(path, dpi=100)
        return
    for ax in (cpu_ax, temp_ax):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    cpu_ax.set_ylim(bottom=0)
    fig.savefig(path, dpi=100)
