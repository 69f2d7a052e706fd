"""Whether a deployment is done: what the links select, what the runner loaded, what was committed.

A switch moves the links at once, but the robot only runs the new deployment once the runner
restarted on it, and only keeps it once the deploy's gate passed on it. The three are recorded in
three places, and the switch trusts none of them alone:

- the links (<root>/deployment, read by jetpolicy.robot.releases.current_deployment);
- the runner's status file, whose `loaded` field names the release, runtime and runner config the
  process resolved once when it started (jetpolicy.robot.runner.loaded_deployment);
- the history: a switch is appended as `pending` with the boot it happened in, and `jetpolicy
  release commit` appends a `commit` record once the gate passed on it.

History written before this existed has no `pending` field: those records read as committed, so
robots already in service are not all treated as half-deployed by their first new deploy.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from jetpolicy.robot.status import StatusFileError, read_status

__all__ = [
    "BOOT_ID_FILE",
    "COMMITTED",
    "PENDING",
    "STATUS_MAX_AGE_S",
    "Deployment",
    "boot_id",
    "commit_state",
    "last_committed",
    "latest_switch",
    "loaded_from_status",
    "record_matches",
    "running_deployment",
    "same_deployment",
    "why_not_done",
]

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
COMMITTED = "committed"
PENDING = "pending"
# The runner rewrites its status every status_interval_s (0.5 s by default): a status older than
# this was left by a runner that hangs or is gone.
STATUS_MAX_AGE_S = 30.0


@dataclass(frozen=True)
class Deployment:
    release: Optional[str]
    # Absolute path of the runtime virtualenv; None when the robot predates runtime tracking.
    runtime: Optional[str] = None
    # File name under <root>/configs/.
    config: Optional[str] = None


def boot_id(path: Path = BOOT_ID_FILE) -> Optional[str]:
    """This boot's id (a new one at every boot); None where the kernel does not provide it."""
    try:
        return path.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def _same_runtime(one: Optional[str], other: Optional[str]) -> bool:
    # The role names a venv by its path, the runner by its resolved sys.prefix: compare resolved.
    if one is None or other is None:
        return True
    return os.path.realpath(one) == os.path.realpath(other)


def same_deployment(one: Deployment, other: Deployment) -> bool:
    """Same release, and the same runtime and config where both name one."""
    return (
        one.release == other.release
        and _same_runtime(one.runtime, other.runtime)
        and (one.config is None or other.config is None or one.config == other.config)
    )


def record_matches(record: Mapping[str, Any], deployment: Deployment) -> bool:
    """Whether a history record's `to` side is `deployment`; records from before runtime tracking
    lack runtime_to/config_to and match on the release alone."""
    recorded = Deployment(record.get("to"), record.get("runtime_to"), record.get("config_to"))
    return same_deployment(recorded, deployment)


def _is_pending(record: Mapping[str, Any]) -> bool:
    return record.get("action") == "switch" and record.get("pending") is True


def commit_state(history: Sequence[Mapping[str, Any]], deployment: Deployment) -> str:
    """PENDING when the newest record moving the robot to `deployment` is a switch not committed
    since; else COMMITTED (a commit, a rollback or recovery, an old record, or no record at all: a
    robot from before the history has nothing to wait for)."""
    for record in reversed(history):
        if record.get("action") in ("switch", "rollback", "recover", "commit") and record_matches(
            record, deployment
        ):
            return PENDING if _is_pending(record) else COMMITTED
    return COMMITTED


def latest_switch(
    history: Sequence[Mapping[str, Any]], deployment: Deployment
) -> Optional[Mapping[str, Any]]:
    """The newest switch record to `deployment` (what a commit confirms), if any."""
    found: Optional[Mapping[str, Any]] = None
    for record in reversed(history):
        if record.get("action") == "switch" and record_matches(record, deployment):
            found = record
            break
    return found


def last_committed(history: Sequence[Mapping[str, Any]], other_than: Deployment) -> Optional[Deployment]:
    """The newest deployment, other than `other_than`, that the history says was kept."""
    for record in reversed(history):
        if record.get("action") not in ("switch", "rollback", "recover", "commit") or not record.get("to"):
            continue
        if _is_pending(record) or record_matches(record, other_than):
            continue
        candidate = Deployment(str(record["to"]), record.get("runtime_to"), record.get("config_to"))
        if commit_state(history, candidate) == COMMITTED:
            return candidate
    return None


def loaded_from_status(status: Mapping[str, Any]) -> Optional[Deployment]:
    """What the runner that wrote `status` loaded; None for a runner too old to say."""
    loaded = status.get("loaded")
    if not isinstance(loaded, dict) or not loaded.get("release"):
        return None
    return Deployment(str(loaded["release"]), loaded.get("runtime"), loaded.get("config"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user (the service account)
    return True


def running_deployment(
    status_file: Path,
    main_pid: Optional[int] = None,
    now: Optional[float] = None,
    max_age_s: float = STATUS_MAX_AGE_S,
) -> Tuple[Optional[Deployment], str]:
    """What the runner running now loaded, or None and why no running runner can say.

    `main_pid` is the unit's MainPID (0: the unit runs nothing); without it the status's own pid
    must be alive. A status written by another process, or not rewritten for `max_age_s`, is stale.
    """
    try:
        status = read_status(status_file)
    except StatusFileError as exc:
        return None, str(exc)
    if status is None:
        return None, f"no runner status at {status_file} (the runner is not running)"
    pid = int(status.get("pid", 0))
    if status.get("state") != "running":
        return None, f"the runner's state is {status.get('state')!r}, not 'running'"
    if main_pid is not None and main_pid != pid:
        if main_pid == 0:
            return None, "the unit has no main process (the runner is not running)"
        return None, f"the status was written by pid {pid}, the unit's main pid is {main_pid} (stale status)"
    if main_pid is None and not _pid_alive(pid):
        return None, f"the status was written by pid {pid}, which is gone"
    age = (time.time() if now is None else now) - float(status.get("updated_at", 0.0))
    if age > max_age_s:
        return None, f"the status was last written {age:.0f} s ago (the runner hangs)"
    loaded = loaded_from_status(status)
    if loaded is None:
        return None, "the runner does not say what it loaded (a jetpolicy from before `loaded`)"
    return loaded, ""


def _describe(deployment: Deployment) -> str:
    parts = [str(deployment.release)]
    if deployment.runtime:
        parts.append(f"runtime {deployment.runtime}")
    if deployment.config:
        parts.append(f"config {deployment.config}")
    return " with ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0]


def why_not_done(
    links: Deployment,
    target: Deployment,
    history: Sequence[Mapping[str, Any]],
    running: Optional[Tuple[Optional[Deployment], str]] = None,
) -> List[str]:
    """Why `target` is not yet what this robot runs and keeps; empty when it is.

    `running` is running_deployment()'s answer; None when the caller has no runner to ask (a
    switch by hand), and then the links and the history decide alone."""
    if links != target:
        return [f"links at {_describe(links)}, not {_describe(target)}"]
    reasons = []
    if running is not None:
        loaded, why = running
        if loaded is None:
            reasons.append(f"links at {target.release} but {why}")
        elif not same_deployment(loaded, target):
            reasons.append(f"links at {_describe(target)} but the runner runs {_describe(loaded)}")
    if commit_state(history, target) == PENDING:
        reasons.append(f"switch to {target.release} never committed")
    return reasons

