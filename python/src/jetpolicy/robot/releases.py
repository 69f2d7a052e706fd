"""Release bookkeeping on the robot: what the service runs, atomic switches, and their history.

What the service runs is a *deployment*: a policy release, the runtime virtualenv and the runner
configuration it runs with. One directory per deployment holds a link to each, and one symlink
selects the deployment; the three paths the service and the roles read go through it and never
change themselves:

    <root>/deployments/<sha16>/release      -> ../../releases/<id>    (policy.onnx, policy.json, ...)
    <root>/deployments/<sha16>/runtime      -> <venv>                 (the jetpolicy package)
    <root>/deployments/<sha16>/runner.json  -> ../../configs/<sha16>.json
    <root>/deployment       -> deployments/<sha16>   (the one link a switch moves: one rename)
    <root>/current          -> deployment/release
    <root>/runtime/current  -> ../deployment/runtime
    <root>/runner.json      -> deployment/runner.json

A switch is one rename of `<root>/deployment`, so a boot at any moment finds the old triple or the
new one, never a mix; it then appends one JSON line to `<root>/history.jsonl` (time, action,
from/to release, runtime and config, reason). A rollback finds the deployment that was active
before the current one there and restores all of it, so a new runtime or a new runner
configuration that breaks the service is undone together with the policy. A robot whose three
links still point straight at their targets (before deployments existed) is converted on its next
switch without changing what it runs, and only then switched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from jetpolicy.common.errors import ConfigError, JetpolicyError
from jetpolicy.common.schema import describe_problems, load_schema, version_problem
from jetpolicy.robot.deployment_state import (
    COMMITTED,
    PENDING,
    Deployment,
    boot_id,
    commit_state,
    last_committed,
    latest_switch,
    running_deployment,
    why_not_done,
)

__all__ = [
    "CONFIG_DIR",
    "CONFIG_LINK",
    "DEPLOYMENTS_DIR",
    "DEPLOYMENT_LINK",
    "HISTORY_SCHEMA",
    "HISTORY_SCHEMA_VERSION",
    "REQUIRED_FILES",
    "RUNTIME_LINK",
    "UNLINKED_ENGINE_GRACE_S",
    "Deployment",
    "History",
    "HistoryVersionError",
    "SwitchResult",
    "commit",
    "current_deployment",
    "current_release",
    "prune_engines",
    "prune_releases",
    "read_history",
    "read_history_checked",
    "read_history_counted",
    "recover",
    "register",
    "releases_to_prune",
    "rollback",
    "rollback_deployment",
    "rollback_target",
    "switch_release",
]

REQUIRED_FILES = ("policy.onnx", "policy.json")
RUNTIME_LINK = Path("runtime") / "current"
CONFIG_LINK = Path("runner.json")
CONFIG_DIR = Path("configs")
DEPLOYMENT_LINK = Path("deployment")
DEPLOYMENTS_DIR = Path("deployments")
RELEASE_LINK = Path("current")
# Each history line's `schema_version` (release-history-record.schema.json, docs/schemas.md).
HISTORY_SCHEMA = "release-history-record"
HISTORY_SCHEMA_VERSION = 1
# What each of the service's paths points at once it goes through <root>/deployment.
_INDIRECT = {
    RELEASE_LINK: "deployment/release",
    RUNTIME_LINK: "../deployment/runtime",
    CONFIG_LINK: "deployment/runner.json",
}


class HistoryVersionError(JetpolicyError):
    """The history holds records of a newer schema_version, so no rollback target can be trusted."""


@dataclass(frozen=True)
class SwitchResult:
    changed: bool
    previous: Optional[str]
    current: str
    action: str
    reason: str
    runtime: Optional[str] = None
    previous_runtime: Optional[str] = None
    config: Optional[str] = None
    previous_config: Optional[str] = None
    notes: str = ""
    # Why a switch to what the links already select still counts as one (the runner runs something
    # else, or the switch was never committed): "; "-joined, empty otherwise.
    why: str = ""


def _link_target(link: Path) -> Optional[str]:
    """What `link` selects: the target of <root>/deployment/<part> when the link goes through the
    deployment, else (a robot from before deployments) its own target."""
    if not link.is_symlink():
        return None
    target = os.readlink(link)
    if target in _INDIRECT.values():
        part = link.parent / target
        return os.readlink(part) if part.is_symlink() else None
    return target


def current_release(root: Path) -> Optional[str]:
    target = _link_target(root / RELEASE_LINK)
    return Path(target).name if target else None


def current_deployment(root: Path) -> Deployment:
    config = _link_target(root / CONFIG_LINK)
    return Deployment(
        release=current_release(root),
        runtime=_link_target(root / RUNTIME_LINK),
        config=Path(config).name if config else None,
    )


@dataclass(frozen=True)
class History:
    """The history records a reader can use, and one line per record it had to pass over."""

    records: List[Dict[str, Any]]
    # "<file> line N: why", for torn lines and records off the schema.
    unreadable: List[str]
    # The same for records a newer jetpolicy wrote (a newer schema_version): what they say is unknown.
    newer: List[str]


def read_history_checked(root: Path) -> History:
    """Every history line read and checked against the schema; no line is ever a reason to fail."""
    path = root / "history.jsonl"
    if not path.exists():
        return History([], [], [])
    schema = load_schema(HISTORY_SCHEMA)
    history = History([], [], [])
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        # A torn line after power loss must not block a rollback: counted and passed over.
        if not isinstance(record, dict):
            history.unreadable.append(f"{where}: not a JSON object (torn)")
            continue
        problem = version_problem(record, "schema_version", HISTORY_SCHEMA_VERSION)
        if problem:
            history.newer.append(f"{where}: {problem}")
            continue
        problems = schema.problems(record)
        if problems:
            history.unreadable.append(f"{where}: {describe_problems(problems, HISTORY_SCHEMA)}")
            continue
        history.records.append(record)
    return history


def read_history_counted(root: Path) -> Tuple[List[Dict[str, Any]], int]:
    """The history records and how many lines could not be read (a torn write, a damaged disk)."""
    history = read_history_checked(root)
    return history.records, len(history.unreadable) + len(history.newer)


def read_history(root: Path) -> List[Dict[str, Any]]:
    return read_history_counted(root)[0]


def _append_history(root: Path, record: Dict[str, Any]) -> None:
    with (root / "history.jsonl").open("ab+") as handle:
        # A write cut by power loss leaves a line without its newline; appending to it would make
        # this record part of the torn line and lose it too.
        handle.seek(0, os.SEEK_END)
        torn = False
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
            handle.seek(0, os.SEEK_END)
        line = json.dumps(record, sort_keys=True) + "\n"
        handle.write((("\n" if torn else "") + line).encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def _check_release(root: Path, release_id: str) -> None:
    release = root / "releases" / release_id
    missing = [name for name in REQUIRED_FILES if not (release / name).is_file()]
    if not release.is_dir() or missing:
        raise JetpolicyError(
            f"release {release_id} is not complete in {root}/releases "
            f"(missing {', '.join(missing) or 'directory'})",
            "stage it with deploy.yml before switching",
        )


def _runtime_problem(runtime: str) -> Optional[str]:
    if not Path(runtime).is_absolute():
        return f"runtime {runtime} is not an absolute path"
    if not (Path(runtime) / "bin" / "jetpolicy").is_file():
        return f"runtime {runtime} has no bin/jetpolicy"
    return None


def _config_problem(root: Path, config: str) -> Optional[str]:
    if Path(config).name != config:
        return f"runner config {config} must be a file name under {root / CONFIG_DIR}"
    if not (root / CONFIG_DIR / config).is_file():
        return f"runner config {root / CONFIG_DIR / config} does not exist"
    return None


def _check_parts(root: Path, target: Deployment) -> None:
    problems = [
        problem
        for problem in (
            _runtime_problem(target.runtime) if target.runtime else None,
            _config_problem(root, target.config) if target.config else None,
        )
        if problem
    ]
    if problems:
        raise JetpolicyError(
            "; ".join(problems), "stage the runtime and config with deploy.yml before switching"
        )


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _swap_link(link: Path, target: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.parent / f".{link.name}.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    # rename(2) replaces the link atomically: readers see the old or the new target, never neither.
    os.replace(tmp, link)
    _fsync_dir(link.parent)


def _deployment_id(deployment: Deployment) -> str:
    text = json.dumps(asdict(deployment), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _write_deployment(root: Path, deployment: Deployment) -> str:
    """<root>/deployments/<id>/ with a link to each part the deployment names; complete or absent
    (built beside it and renamed), and never changed once there."""
    name = _deployment_id(deployment)
    final = root / DEPLOYMENTS_DIR / name
    links = {"release": f"../../releases/{deployment.release}"}
    if deployment.runtime:
        links["runtime"] = deployment.runtime
    if deployment.config:
        links["runner.json"] = f"../../{CONFIG_DIR}/{deployment.config}"
    if final.is_dir():
        found = {entry.name: os.readlink(entry) for entry in final.iterdir() if entry.is_symlink()}
        if found == links:
            return name
        _remove_dir(final)  # damaged (a prune cut short): never the active one, rebuilt below
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for entry, target in links.items():
        os.symlink(target, tmp / entry)
    _fsync_dir(tmp)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    return name


def _remove_dir(path: Path) -> None:
    # Renamed away first: a removal cut short leaves a hidden leftover, not a half deployment.
    trash = path.parent / f".tmp-{path.name}-removed-{os.getpid()}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _route_through_deployment(root: Path, deployment: Deployment) -> None:
    """Point the service's paths at <root>/deployment/<part>; each conversion keeps the target it
    had (the deployment link selects the same parts), so doing it is not a switch."""
    wanted = {
        RELEASE_LINK: True,
        RUNTIME_LINK: bool(deployment.runtime),
        CONFIG_LINK: bool(deployment.config),
    }
    for link, needed in wanted.items():
        if needed and _link_target_text(root / link) != _INDIRECT[link]:
            _swap_link(root / link, _INDIRECT[link])


def _link_target_text(link: Path) -> Optional[str]:
    return os.readlink(link) if link.is_symlink() else None


def _prune_deployments(root: Path, keep: Iterable[str]) -> None:
    """Deployment directories are a few links each and rebuilt on demand: keep the active one and
    the one a rollback returns to first, drop the rest (and any half-built one)."""
    directory = root / DEPLOYMENTS_DIR
    kept = set(keep)
    for entry in directory.iterdir() if directory.is_dir() else []:
        if entry.name not in kept and entry.is_dir() and not entry.is_symlink():
            if entry.name.startswith("."):
                shutil.rmtree(entry, ignore_errors=True)
            else:
                _remove_dir(entry)


def _routed(root: Path, deployment: Deployment) -> bool:
    """Whether every path of `deployment` already goes through <root>/deployment."""
    needed = [RELEASE_LINK]
    needed += [RUNTIME_LINK] if deployment.runtime else []
    needed += [CONFIG_LINK] if deployment.config else []
    return all(_link_target_text(root / link) == _INDIRECT[link] for link in needed)


def _apply(root: Path, previous: Deployment, target: Deployment) -> None:
    kept = []
    if previous.release is not None and not _routed(root, previous):
        # A robot from before deployments (or links an older runtime moved one at a time): select
        # what it runs now through a deployment first, so the switch below is still one rename.
        old = _write_deployment(root, previous)
        _swap_link(root / DEPLOYMENT_LINK, f"{DEPLOYMENTS_DIR}/{old}")
        _route_through_deployment(root, previous)
        kept.append(old)
    elif previous.release is not None:
        kept.append(Path(str(_link_target_text(root / DEPLOYMENT_LINK))).name)
    name = _write_deployment(root, target)
    # The switch: one rename moves release, runtime and config together.
    _swap_link(root / DEPLOYMENT_LINK, f"{DEPLOYMENTS_DIR}/{name}")
    _route_through_deployment(root, target)
    _prune_deployments(root, [name, *kept])


def _switch(
    root: Path,
    wanted: Deployment,
    reason: str,
    action: str,
    notes: str = "",
    running: Optional[Tuple[Optional[Deployment], str]] = None,
    dry_run: bool = False,
) -> SwitchResult:
    release = wanted.release
    if release is None:
        raise JetpolicyError("no release named to switch to", "pass the release id")
    _check_release(root, release)
    # A dry run asks before the runner config is written: its parts may not exist yet.
    if not dry_run:
        _check_parts(root, wanted)
    previous = current_deployment(root)
    # A part not named keeps what the robot runs now.
    target = Deployment(release, wanted.runtime or previous.runtime, wanted.config or previous.config)
    history = read_history(root)
    # Only a switch asks whether the runner runs it and whether it was committed: a rollback or a
    # recovery goes to a deployment that was committed, and its restart comes with it.
    why = why_not_done(previous, target, history, running) if action == "switch" else []
    result = SwitchResult(
        changed=target != previous or bool(why),
        previous=previous.release,
        current=release,
        action=action,
        reason=reason,
        runtime=target.runtime,
        previous_runtime=previous.runtime,
        config=target.config,
        previous_config=previous.config,
        notes=notes,
        why="; ".join(why) if target == previous else "",
    )
    if target == previous or dry_run:
        # Nothing to move (or only asked). Still changed when the runner or the commit lags behind
        # the links (a deploy cut off after its switch): the caller restarts and gates it; the
        # pending record of that switch, if any, stays the one a commit or a recovery reads.
        return result
    _apply(root, previous, target)
    record: Dict[str, Any] = {
        "schema_version": HISTORY_SCHEMA_VERSION,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "action": action,
        "from": previous.release,
        "to": target.release,
        "runtime_from": previous.runtime,
        "runtime_to": target.runtime,
        "config_from": previous.config,
        "config_to": target.config,
        "reason": reason,
    }
    if action == "switch":
        # Kept only once committed; a boot before that starts the last committed deployment
        # (recover), a restart in this boot (the deploy's own) does not.
        record["pending"] = True
        record["boot_id"] = boot_id()
    if notes:
        record["notes"] = notes
    _append_history(root, record)
    return result


def switch_release(
    root: Path,
    release_id: str,
    reason: str,
    runtime: Optional[str] = None,
    config: Optional[str] = None,
    running: Optional[Tuple[Optional[Deployment], str]] = None,
    dry_run: bool = False,
) -> SwitchResult:
    """Switch to the deployment; `running` (running_deployment()'s answer) makes a switch to what
    the links already select count as done only when that runner runs it. `dry_run` says whether
    it would change anything (`changed`, `why`) and changes nothing."""
    wanted = Deployment(release_id, runtime, config)
    return _switch(root, wanted, reason, action="switch", running=running, dry_run=dry_run)


def _led_to(record: Dict[str, Any], current: Deployment) -> bool:
    """Whether this switch record moved the robot into `current`; parts that `current` leaves as
    None, and records written before runtime tracking, match on the release alone."""
    return (
        record.get("action") == "switch"
        and bool(record.get("from"))
        and record.get("to") == current.release
        and (current.runtime is None or record.get("runtime_to", current.runtime) == current.runtime)
        and (current.config is None or record.get("config_to", current.config) == current.config)
    )


def _before(history: List[Dict[str, Any]], current: Deployment) -> Optional[Deployment]:
    # Exact match first; then on the release alone, for a switch whose history line was never
    # written (power lost after the rename), or links moved one at a time by an older runtime.
    for wanted in (current, Deployment(current.release)):
        for record in reversed(history):
            if _led_to(record, wanted):
                return Deployment(str(record["from"]), record.get("runtime_from"), record.get("config_from"))
    return None


def rollback_deployment(root: Path) -> Deployment:
    """The last committed deployment before the current one: the one before it, or further back
    past switches that were never committed (deploys cut off before their gate)."""
    current = current_deployment(root)
    if current.release is None:
        raise JetpolicyError(f"{root}/current does not exist", "deploy a release first")
    read = read_history_checked(root)
    if read.newer:
        # The records this jetpolicy cannot read may be the switch into the current deployment:
        # guessing past them could return to the wrong one.
        raise HistoryVersionError(
            f"cannot pick a rollback target: {read.newer[0]}",
            "roll back with the newer jetpolicy that wrote it (its runtime's bin/jetpolicy release rollback)",
        )
    history, skipped = read.records, len(read.unreadable)
    target = _before(history, current)
    seen = {current}
    while target is not None and commit_state(history, target) == PENDING and target not in seen:
        seen.add(target)
        further = _before(history, target)
        if further is None:
            break  # nothing committed before it: the uncommitted one is still better than none
        target = further
    if target is not None:
        return target
    unreadable = f" ({skipped} unreadable line(s) skipped)" if skipped else ""
    raise JetpolicyError(
        f"no release before {current.release} in {root}/history.jsonl{unreadable}",
        "there is nothing to roll back to",
    )


def rollback_target(root: Path) -> str:
    """The release that was active before the current one was switched to."""
    return str(rollback_deployment(root).release)


def _usable(root: Path, target: Deployment) -> Tuple[Deployment, str]:
    """`target` less the parts pruned since (old runtimes are removed after policy_runtime_keep
    deploys), which are no reason to stay on a failing release: those keep what runs now."""
    notes = []
    runtime_problem = _runtime_problem(target.runtime) if target.runtime else None
    if runtime_problem:
        notes.append(f"{runtime_problem}; kept the current runtime")
        target = replace(target, runtime=None)
    config_problem = _config_problem(root, target.config) if target.config else None
    if config_problem:
        notes.append(f"{config_problem}; kept the current runner config")
        target = replace(target, config=None)
    return target, "; ".join(notes)


def rollback(root: Path, reason: str) -> SwitchResult:
    target, notes = _usable(root, rollback_deployment(root))
    return _switch(root, target, reason, action="rollback", notes=notes)


@dataclass(frozen=True)
class CommitResult:
    changed: bool
    release: Optional[str]
    runtime: Optional[str]
    config: Optional[str]
    reason: str


def commit(root: Path, reason: str, release_id: Optional[str] = None) -> CommitResult:
    """Record that the deployment the links select passed its gate (a `commit` record), so a
    re-run calls it done and a boot keeps it. `release_id` is the release the gate measured: a
    robot whose links select another one is refused, not committed."""
    current = current_deployment(root)
    if current.release is None:
        raise JetpolicyError(f"{root}/current does not exist", "deploy a release first")
    if release_id is not None and release_id != current.release:
        raise JetpolicyError(
            f"cannot commit {release_id}: the links select {current.release}",
            "gate and commit the release the robot was switched to",
        )
    history = read_history(root)
    result = CommitResult(False, current.release, current.runtime, current.config, reason)
    if commit_state(history, current) == COMMITTED:
        return result
    switch = latest_switch(history, current) or {}
    _append_history(
        root,
        {
            "schema_version": HISTORY_SCHEMA_VERSION,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "action": "commit",
            # The switch this confirms, so the last line still says what moved.
            "from": switch.get("from"),
            "to": current.release,
            "runtime_from": switch.get("runtime_from"),
            "runtime_to": current.runtime,
            "config_from": switch.get("config_from"),
            "config_to": current.config,
            "reason": reason,
        },
    )
    return replace(result, changed=True)


def recover(
    root: Path, reason: str = "boot with an uncommitted switch", boot: Optional[str] = None
) -> SwitchResult:
    """Run at every start of the runner unit: when the links select a switch that was never
    committed and the robot booted since it was made, go back to the last committed deployment.

    A restart in the boot of the switch (the deploy's own restart, a crash restart before the
    gate) keeps it: the deploy is still deciding. `boot` is this boot's id (tests)."""
    current = current_deployment(root)
    nothing = SwitchResult(False, current.release, str(current.release), "recover", reason)
    if current.release is None:
        return nothing
    history = read_history(root)
    switch = latest_switch(history, current)
    if switch is None or commit_state(history, current) != PENDING:
        return replace(nothing, notes="the current deployment is committed")
    now = boot if boot is not None else boot_id()
    if not switch.get("boot_id") or not now or switch.get("boot_id") == now:
        # Same boot, or no way to tell: reverting the deploy's own restart would undo it.
        return replace(nothing, notes="switched in this boot: left to the deploy that made it")
    target = last_committed(history, current)
    if target is None:
        return replace(nothing, notes="no committed deployment to go back to: kept the uncommitted one")
    target, notes = _usable(root, target)
    return _switch(root, target, reason, action="recover", notes=notes)


def releases_to_prune(
    releases: Sequence[Tuple[str, float]], protected: Iterable[Optional[str]], keep: int
) -> List[str]:
    """Which of `releases` ((id, mtime) pairs) pruning removes, newest first.

    The protected ones (the current release, the one a rollback returns to, a release staged but
    not yet switched to) are never removed and count towards `keep`; the newest others fill what is
    left. Counting the protected ones in is what makes a second prune remove nothing.
    """
    if keep < 1:
        raise ConfigError(f"keep must be at least 1 release, got {keep}", "keep 2 or more for a rollback")
    present = {release for release, _ in releases}
    kept = {release for release in protected if release in present}
    others = sorted(
        ((mtime, release) for release, mtime in releases if release not in kept), reverse=True
    )
    room = max(keep - len(kept), 0)
    return [release for _, release in others[room:]]


def prune_releases(root: Path, keep: int, also_keep: Iterable[str] = ()) -> List[str]:
    """Remove the releases under <root>/releases beyond `keep` (see releases_to_prune); returns
    the removed ids. Staging directories (`.staging-*`, a deploy in progress) are not releases."""
    releases_dir = root / "releases"
    found = (
        [(entry.name, entry.stat().st_mtime) for entry in releases_dir.iterdir()
         if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith(".")]
        if releases_dir.is_dir() else []
    )  # fmt: skip
    try:
        previous: Optional[str] = rollback_target(root)
    except HistoryVersionError:
        raise  # which release a rollback needs is unknown: remove none
    except JetpolicyError:
        previous = None  # no current release, or nothing before it
    removed = releases_to_prune(found, [current_release(root), previous, *also_keep], keep)
    for release in removed:
        shutil.rmtree(releases_dir / release)
    return removed


# trtexec's cache: <engines>/<64 hex cache key>.engine and its sidecar <key>.json.
_CACHED_ENGINE = re.compile(r"^[0-9a-f]{64}\.engine$")
# An engine no link has pointed at is either a killed build's (trtexec moved it into place, the
# link task never ran) or one a deploy running now has just built and is about to link: the two
# look alike on disk, so only one left untouched this long is taken for a leftover. A build takes
# minutes, the link follows it by seconds.
UNLINKED_ENGINE_GRACE_S = 30 * 60


def prune_engines(
    root: Path,
    engine_dir: Optional[Path] = None,
    unlinked_grace_s: float = UNLINKED_ENGINE_GRACE_S,
    now: Optional[float] = None,
) -> List[str]:
    """Remove the engines of releases no longer on disk: their `by-release/<id>.engine` links, then
    each cached engine (and its sidecar) that only those links pointed at. A cached engine that no
    link pointed at before this prune goes once it is `unlinked_grace_s` old (see
    UNLINKED_ENGINE_GRACE_S). Returns the removed names, links as `by-release/<id>.engine`.
    Engines are rebuilt from the ONNX when needed again."""
    engines = engine_dir or root / "engines"
    by_release = engines / "by-release"
    releases_dir = root / "releases"
    removed: List[str] = []
    kept_targets = set()
    pruned_targets = set()
    for link in sorted(by_release.iterdir()) if by_release.is_dir() else []:
        if not link.name.endswith(".engine"):
            continue
        if (releases_dir / link.name[: -len(".engine")]).is_dir():
            kept_targets.add(os.path.realpath(link))
            continue
        pruned_targets.add(os.path.realpath(link))
        link.unlink()
        removed.append(f"by-release/{link.name}")
    oldest = (time.time() if now is None else now) - unlinked_grace_s
    for engine in sorted(engines.iterdir()) if engines.is_dir() else []:
        if not _CACHED_ENGINE.match(engine.name):
            continue
        target = os.path.realpath(engine)
        if target in kept_targets:
            continue
        if target not in pruned_targets and engine.stat().st_mtime > oldest:
            continue  # never linked yet: maybe a build a running deploy is about to link
        engine.unlink()
        engine.with_suffix(".json").unlink(missing_ok=True)  # the sidecar (build record)
        removed.append(engine.name)
    return removed


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("release", help="switch, roll back or show releases on this robot")
    parser.add_argument("--root", type=Path, default=Path("/opt/jetpolicy"))
    sub = parser.add_subparsers(dest="release_command", required=True)
    switch = sub.add_parser("switch", help="point current at a staged release (atomic)")
    switch.add_argument("release_id")
    switch.add_argument("--reason", default="deploy")
    switch.add_argument("--runtime", help="runtime virtualenv to run with (absolute path); default: keep")
    switch.add_argument("--config", help="runner config file name under <root>/configs/; default: keep")
    switch.add_argument(
        "--status", type=Path, help="the runner's status file: done only if the runner there runs the target"
    )
    switch.add_argument("--pid", type=int, help="the unit's MainPID, which must have written --status")
    switch.add_argument(
        "--check", action="store_true", help="say whether it would switch (changed, why); change nothing"
    )
    done = sub.add_parser("commit", help="record that the current deployment passed its gate (keep it)")
    done.add_argument("--release", help="the release the gate measured; refused if the links select another")
    done.add_argument("--reason", default="gate passed")
    back_at_boot = sub.add_parser(
        "recover", help="at the runner's start: undo a switch never committed when the robot rebooted since"
    )
    back_at_boot.add_argument("--reason", default="boot with an uncommitted switch")
    back = sub.add_parser("rollback", help="return to the release active before the current one")
    back.add_argument("--reason", default="manual rollback")
    sub.add_parser("show", help="current release, rollback target and history as JSON")
    prune = sub.add_parser(
        "prune", help="remove old releases and their engines; never the current release or the one before it"
    )
    prune.add_argument("--keep", type=int, default=3, help="releases left in all, protected ones included")
    prune.add_argument("--also-keep", action="append", default=[], help="a release id to keep (staged)")
    prune.add_argument("--engine-dir", type=Path, help="TensorRT engine cache; default: <root>/engines")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    root: Path = args.root
    if args.release_command == "switch":
        running = running_deployment(args.status, args.pid) if args.status else None
        result = switch_release(
            root, args.release_id, args.reason, args.runtime, args.config, running, dry_run=args.check
        )
        print(json.dumps(asdict(result)))
    elif args.release_command == "commit":
        print(json.dumps(asdict(commit(root, args.reason, args.release))))
    elif args.release_command == "recover":
        recovered = recover(root, args.reason)
        # The journal of the unit start says what the boot found.
        print(json.dumps(asdict(recovered)))
    elif args.release_command == "rollback":
        print(json.dumps(asdict(rollback(root, args.reason))))
    elif args.release_command == "prune":
        removed = prune_releases(root, args.keep, args.also_keep)
        engines = prune_engines(root, args.engine_dir)
        pruned = {"changed": bool(removed or engines), "removed": removed, "engines_removed": engines}
        print(json.dumps(pruned))
    else:
        try:
            target: Optional[Dict[str, Any]] = asdict(rollback_deployment(root))
        except JetpolicyError:
            target = None
        read = read_history_checked(root)
        print(
            json.dumps(
                {
                    "current": asdict(current_deployment(root)),
                    "deployment": _link_target_text(root / DEPLOYMENT_LINK),
                    "rollback_target": target,
                    "history": read.records,
                    "history_unreadable_lines": len(read.unreadable) + len(read.newer),
                    # Which lines, and why: torn, off the schema, or written by a newer jetpolicy.
                    "history_problems": read.unreadable + read.newer,
                }
            )
        )
    return 0
