# Copyright: (c) 2026, jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Logic of the ``policy_bench`` module: the window and bench commands and their JSON
(docs/architecture.md).

Runs on the robot's Python 3.8+.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = [
    "BENCH_KEYS",
    "NO_LIVE_INPUT_RC",
    "SOURCES",
    "WINDOW_KEYS",
    "bench_instance",
    "bench_result_files",
    "bench_unit",
    "fact_content",
    "parse_bench_output",
    "parse_main_pid",
    "release_id",
    "window_command",
]

# live: the running service's own statistics over a window (`jetpolicy window`); bench: the
# policy in its own loop (`jetpolicy bench`), run by the runner's bench unit as the runner runs.
SOURCES = ("auto", "live", "bench")
# `jetpolicy window` exits with this when the runner ran no inference in the window (no fresh
# observations: an idle robot with a live transport); source=auto then measures with bench.
NO_LIVE_INPUT_RC = 4
# Keys `jetpolicy bench` prints (docs/architecture.md, "CLI").
BENCH_KEYS = ("backend", "rate_hz", "ticks", "inference_us", "period_error_us", "drift_pct",
              "deadline_miss_rate", "overruns")
# Keys `jetpolicy window` prints: where the gate and the report read them, the same as bench's.
WINDOW_KEYS = ("source", "backend", "rate_hz", "ticks", "inference_us", "deadline_miss_rate",
               "overruns", "pid", "release", "window_s")


def bench_instance(duration_s: float) -> str:
    """The bench unit's instance for a run of ``duration_s``: the unit reads its duration from it."""
    if not duration_s > 0:
        raise ValueError("duration_s must be > 0, not {:g}".format(duration_s))
    return "{:g}".format(duration_s)


def bench_unit(unit_name: str, duration_s: float) -> str:
    """``jetpolicy-runner-bench`` and 5 -> ``jetpolicy-runner-bench@5.service``."""
    return "{}@{}.service".format(unit_name, bench_instance(duration_s))


def bench_result_files(results_dir: str, duration_s: float) -> tuple[str, str]:
    """Where the bench unit's StandardOutput= and StandardError= write (its template says so)."""
    instance = bench_instance(duration_s)
    return (os.path.join(results_dir, instance + ".json"), os.path.join(results_dir, instance + ".stderr"))


def window_command(
    jetpolicy: str,
    status_file: str,
    duration_s: float,
    pid: int | None = None,
    release: str | None = None,
) -> list[str]:
    cmd = [jetpolicy, "window", "--status", status_file, "--duration", f"{duration_s:g}"]
    if pid is not None:
        cmd += ["--pid", str(pid)]
    if release:
        cmd += ["--release", release]
    return cmd


def parse_main_pid(stdout: str) -> int:
    """``systemctl show --property=MainPID --value UNIT`` -> the pid; ValueError when it is not a
    number. 0 means the unit has no running main process."""
    text = stdout.strip()
    if not text.isdigit():
        raise ValueError("MainPID {!r} is not a number".format(text))
    return int(text)


def parse_bench_output(stdout: str, required: tuple[str, ...] = BENCH_KEYS) -> dict[str, Any]:
    """The bench (or window) JSON object; raises ValueError naming what is wrong.

    Progress goes to stderr, so stdout should be one JSON object; to be tolerant of a stray
    line, the last line that parses as an object is used."""
    candidates = [stdout.strip()] + [line.strip() for line in reversed(stdout.splitlines())]
    for text in candidates:
        if not text.startswith("{"):
            continue
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict):
            missing = [key for key in required if key not in data]
            if missing:
                raise ValueError("JSON lacks {}".format(", ".join(missing)))
            return data
    raise ValueError("no JSON object on stdout")


def release_id(release_dir: str) -> str:
    """``/opt/jetpolicy/current`` -> the ``releases/<id>`` it points to."""
    return os.path.basename(os.path.realpath(release_dir.rstrip("/")))


def fact_content(bench: dict[str, Any]) -> str:
    """Stable serialisation for the facts.d file (read by ``setup`` as JSON)."""
    return json.dumps(bench, indent=2, sort_keys=True) + "\n"
