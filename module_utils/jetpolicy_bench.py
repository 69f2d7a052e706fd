# Copyright: (c) 2026, jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Logic of the ``policy_bench`` module: the bench command and its JSON (docs/architecture.md).

Runs on the robot's Python 3.8+.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["BENCH_KEYS", "bench_command", "fact_content", "parse_bench_output", "release_id"]

# Keys `jetpolicy bench` prints (docs/architecture.md, "CLI").
BENCH_KEYS = ("backend", "rate_hz", "ticks", "inference_us", "period_error_us", "drift_pct",
              "deadline_miss_rate", "overruns")


def bench_command(
    jetpolicy: str,
    release_dir: str,
    rate_hz: float | None = None,
    duration_s: float | None = None,
    backend: str = "auto",
    engine: str | None = None,
) -> list[str]:
    cmd = [jetpolicy, "bench", "--release", release_dir]
    if rate_hz is not None:
        cmd += ["--rate-hz", f"{rate_hz:g}"]
    if duration_s is not None:
        cmd += ["--duration-s", f"{duration_s:g}"]
    cmd += ["--backend", backend]
    if engine:
        cmd += ["--engine", engine]
    return cmd


def parse_bench_output(stdout: str) -> dict[str, Any]:
    """The bench JSON object; raises ValueError naming what is wrong.

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
            missing = [key for key in BENCH_KEYS if key not in data]
            if missing:
                raise ValueError("bench JSON lacks {}".format(", ".join(missing)))
            return data
    raise ValueError("no JSON object on stdout")


def release_id(release_dir: str) -> str:
    """``/opt/jetpolicy/current`` -> the ``releases/<id>`` it points to."""
    return os.path.basename(os.path.realpath(release_dir.rstrip("/")))


def fact_content(bench: dict[str, Any]) -> str:
    """Stable serialisation for the facts.d file (read by ``setup`` as JSON)."""
    return json.dumps(bench, indent=2, sort_keys=True) + "\n"
