"""The runner's status file and Prometheus textfile, written atomically off the hot path.

Readers (health checks, the rollout gate, node_exporter's textfile collector) must never see a
half-written file, so both are written to a temporary file in the same directory and renamed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from jetpolicy.common.errors import JetpolicyError
from jetpolicy.common.schema import describe_problems, load_schema, version_problem
from jetpolicy.robot.miss_policy import MISS_STATES

__all__ = [
    "STATUS_REQUIRED_KEYS",
    "STATUS_SCHEMA",
    "STATUS_SCHEMA_VERSION",
    "StatusFileError",
    "StatusWriter",
    "read_status",
    "render_prometheus",
    "write_atomic",
]

# What every reader relies on (docs/architecture.md has the whole schema); a document without one
# of these was not written by the runner, or not completely.
STATUS_REQUIRED_KEYS = ("state", "pid", "rate_hz", "ticks", "updated_at")
# The status document's `schema_version` (runner-status.schema.json, docs/schemas.md).
STATUS_SCHEMA = "runner-status"
STATUS_SCHEMA_VERSION = 1


class StatusFileError(JetpolicyError):
    """The status file exists but cannot be read as a complete status document."""


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def read_status(path: Path) -> Optional[Dict[str, Any]]:
    """The last status written, or None when the runner has not written one yet.

    The runner replaces the file atomically, so a reader never sees it half-written: a file that
    is empty, truncated, not JSON or missing a required key was damaged by something else, and
    every reader (health check, tests, tools) gets the same StatusFileError naming the file.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StatusFileError(
            f"cannot read the runner status {path}: {exc.strerror}",
            "run the check as root or as the service user",
        ) from exc
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        what = "is empty" if not raw.strip() else f"is not JSON ({exc})"
        raise _damaged(path, what) from exc
    if not isinstance(data, dict):
        raise _damaged(path, f"holds a JSON {type(data).__name__}, not an object")
    missing = [key for key in STATUS_REQUIRED_KEYS if key not in data]
    if missing:
        raise _damaged(path, f"lacks {', '.join(missing)}")
    problem = version_problem(data, "schema_version", STATUS_SCHEMA_VERSION)
    if problem:
        raise StatusFileError(
            f"the runner status {path}: {problem}",
            "read it with the jetpolicy the service runs (<root>/runtime/current/bin/jetpolicy health)",
        )
    problems = load_schema(STATUS_SCHEMA).problems(data)
    if problems:
        raise _damaged(path, f"does not match its schema: {describe_problems(problems, STATUS_SCHEMA)}")
    return data


def _damaged(path: Path, what: str) -> StatusFileError:
    return StatusFileError(
        f"the runner status {path} {what}: it is torn or was not written by the runner",
        "only the runner writes it (atomically); stop whatever else writes there, then restart the service",
    )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(status: Mapping[str, Any]) -> str:
    """Prometheus text exposition of a status snapshot (see docs/architecture.md for the fields)."""
    lines: List[str] = []
    # fmt: off

    def metric(name: str, kind: str, help_text: str, samples: List[str]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(samples)

    release = _escape(str(status.get("release", "")))
    backend = _escape(str(status.get("backend", "")))
    metric("jetpolicy_info", "gauge", "Running release and backend.",
           [f'jetpolicy_info{{release="{release}",backend="{backend}"}} 1'])
    running = 1 if status.get("state") == "running" else 0
    metric("jetpolicy_up", "gauge", "1 while the control loop runs.", [f"jetpolicy_up {running}"])
    counters = (
        ("jetpolicy_ticks_total", "ticks", "Control ticks run."),
        ("jetpolicy_overruns_total", "overruns", "Releases found already passed (skip policy)."),
        ("jetpolicy_stale_ticks_total", "stale_ticks", "Ticks with no fresh observation (stale)."),
        ("jetpolicy_safe_actions_total", "safe_actions", "Safe actions published instead of inference."),
        ("jetpolicy_missed_deadlines_total", "missed_deadlines", "Periods whose action was late or skipped."),
        ("jetpolicy_late_actions_dropped_total", "late_actions_dropped",
         "Inference results ready after their deadline, not published."),
        ("jetpolicy_nonfinite_outputs_total", "nonfinite_outputs", "Policy outputs with NaN or Inf."),
    )
    for name, key, help_text in counters:
        metric(name, "counter", help_text, [f"{name} {int(status[key])}"])
    miss = status["miss_policy"]
    metric("jetpolicy_degraded", "gauge", "1 while the miss policy commands the safe action.",
           [f"jetpolicy_degraded {1 if miss['state'] == 'degraded' else 0}"])
    metric("jetpolicy_miss_policy_state", "gauge", "The miss policy's state (1 for the current one).",
           [f'jetpolicy_miss_policy_state{{state="{name}"}} {int(miss["state"] == name)}'
            for name in MISS_STATES])
    metric("jetpolicy_consecutive_missed_deadlines", "gauge", "Missed deadlines in a row right now.",
           [f"jetpolicy_consecutive_missed_deadlines {int(miss['consecutive_misses'])}"])
    metric("jetpolicy_deadline_miss_ratio", "gauge", "Releases whose action was late or skipped.",
           [f"jetpolicy_deadline_miss_ratio {status['deadline_miss_rate']:.6g}"])
    latency = status["latency_us"]
    quantiles = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("1", "max"))
    metric("jetpolicy_latency_seconds", "gauge", "Tick work time, observation in to action out.",
           [f'jetpolicy_latency_seconds{{quantile="{q}"}} {latency[k] / 1e6:.9f}' for q, k in quantiles])
    metric("jetpolicy_jitter_seconds", "gauge", "Standard deviation of the actual control period.",
           [f"jetpolicy_jitter_seconds {status['jitter_us'] / 1e6:.9f}"])
    # .get: a status from before these counters existed still renders.
    transport_counters = (
        ("jetpolicy_capped_polls_total", "capped_polls",
         "Ticks that read max_packets_per_tick datagrams and left more queued for later ticks."),
        ("jetpolicy_receive_queue_drops_total", "queue_drops",
         "Observation datagrams the kernel dropped because the socket queue was full (udp)."),
    )
    for name, key, help_text in transport_counters:
        metric(name, "counter", help_text, [f"{name} {int(status.get(key, 0))}"])
    # A timestamp gauge (alert on time() - it); no sample before the first observation, or from a
    # runner older than the field: 0 would read as "the last one came in 1970".
    last_observation = status.get("last_observation_at")
    metric("jetpolicy_last_observation_timestamp_seconds", "gauge",
           "Unix time of the last fresh observation the loop took.",
           [] if last_observation is None
           else [f"jetpolicy_last_observation_timestamp_seconds {float(last_observation):.3f}"])
    by_reason = sorted(status.get("rejected_by_reason", {}).items())
    metric("jetpolicy_rejected_packets_total", "counter", "Observation packets dropped, by reason.",
           [f'jetpolicy_rejected_packets_total{{reason="{_escape(r)}"}} {n}' for r, n in by_reason])
    # fmt: on
    return "\n".join(lines) + "\n"


class StatusWriter:
    """Writes the status JSON and (optionally) the Prometheus textfile."""

    def __init__(self, status_file: Path, metrics_file: Optional[Path] = None) -> None:
        self.status_file = status_file
        self.metrics_file = metrics_file
        self.writes = 0
        self.errors = 0
        self.last_error = ""

    def write(self, status: Mapping[str, Any]) -> bool:
        """Write both files; an I/O error is counted and kept, never raised into the control loop."""
        try:
            write_atomic(self.status_file, json.dumps(status, sort_keys=True) + "\n")
            if self.metrics_file is not None:
                write_atomic(self.metrics_file, render_prometheus(status))
        except OSError as exc:
            self.errors += 1
            self.last_error = f"{exc.filename}: {exc.strerror}"
            return False
        self.writes += 1
        return True
