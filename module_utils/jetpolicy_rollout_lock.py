# -*- coding: utf-8 -*-
# Copyright: jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""One rollout per robot at a time: the lock file's rules, plain and tested.

The lock is a small JSON file naming its holder (run id, controller host and the controller's
ansible-playbook PID) with the time it was taken and last refreshed. It is created whole or not at
all (written to a temporary name, then hard-linked into place: link() fails if the lock exists, so
two runs can never both take it), refreshed by its holder at each rollout phase, and removed only by
its holder. Another run may take it over only when the holder is stale (not refreshed for
stale_after_s), when the caller names the exact holder it found dead (break_owner: the controller
checked that holder's process is gone), or when forced. A takeover renames the old file away first;
of two runs breaking the same lock, only one rename succeeds. The replaced holder is returned so
the caller reports it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

LOCK_VERSION = 1


def read_holder(path):
    """The holder recorded in the lock at path, None when there is no lock. A lock file that does not
    parse (a disk error; writes are never torn) is a holder named 'unreadable', aged by its mtime."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        stat = os.stat(path)
    except (IOError, OSError) as exc:
        if getattr(exc, "errno", None) == 2:
            return None
        raise
    try:
        holder = json.loads(raw.decode("utf-8"))
        if not isinstance(holder, dict) or "owner" not in holder:
            raise ValueError("no owner")
    except ValueError:
        holder = {"owner": "unreadable", "acquired_at": stat.st_mtime}
    holder.setdefault("refreshed_at", holder.get("acquired_at", stat.st_mtime))
    holder["refreshed_at"] = max(float(holder["refreshed_at"]), stat.st_mtime)
    return holder


def holder_age(holder, now):
    """Seconds since the holder last refreshed the lock."""
    return max(0.0, now - float(holder.get("refreshed_at", now)))


def describe(holder, now):
    """'run R from controller C (pid P), taken 12 s ago, refreshed 3 s ago' for messages."""
    taken = float(holder.get("acquired_at", now))
    return "run %s from controller %s (pid %s), taken %d s ago, refreshed %d s ago" % (
        holder.get("owner"),
        holder.get("controller", "unknown"),
        holder.get("controller_pid", "unknown"),
        max(0, int(now - taken)),
        int(holder_age(holder, now)),
    )


def _write_new(path, record):
    """Create the lock at path holding record, atomically; False if a lock is already there."""
    directory = os.path.dirname(path) or "."
    temp = os.path.join(directory, ".%s.%d.%d.tmp" % (os.path.basename(path), os.getpid(), int(time.time() * 1e6)))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, json.dumps(record, sort_keys=True).encode("utf-8") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
        return True
    except OSError as exc:
        if exc.errno == 17:  # EEXIST: someone holds it
            return False
        raise
    finally:
        os.unlink(temp)


def _replace(path, record):
    directory = os.path.dirname(path) or "."
    temp = os.path.join(directory, ".%s.%d.refresh.tmp" % (os.path.basename(path), os.getpid()))
    with open(temp, "w") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temp, path)


def _break(path, now):
    """Remove the current lock by moving it aside first; False if another run moved it first."""
    aside = "%s.broken-%d-%d" % (path, int(now), os.getpid())
    try:
        os.rename(path, aside)
    except OSError as exc:
        if exc.errno == 2:
            return False
        raise
    os.unlink(aside)
    return True


def try_acquire(path, record, now, stale_after_s, break_owner=None, force=False):
    """One attempt to take or refresh the lock for record['owner'].

    Returns a dict: acquired (bool), refreshed (the caller already held it), taken_over (the holder
    replaced, or None), held_by (the holder when not acquired), why (why a holder was replaced)."""
    result = {"acquired": False, "refreshed": False, "taken_over": None, "held_by": None, "why": None}
    mine = dict(record, version=LOCK_VERSION, acquired_at=now, refreshed_at=now)
    if _write_new(path, mine):
        result["acquired"] = True
        return result
    holder = read_holder(path)
    if holder is None:  # released between our two looks: try once more
        result["acquired"] = _write_new(path, mine)
        return result
    if holder.get("owner") == record["owner"]:
        kept = dict(holder, refreshed_at=now)
        _replace(path, kept)
        result.update(acquired=True, refreshed=True)
        return result
    why = None
    if force:
        why = "forced (jetpolicy_lock_force)"
    elif break_owner is not None and holder.get("owner") == break_owner:
        why = "its controller process is gone"
    elif holder_age(holder, now) > stale_after_s:
        why = "stale: not refreshed for %d s (more than %d s)" % (int(holder_age(holder, now)), stale_after_s)
    if why is None:
        result["held_by"] = holder
        return result
    if _break(path, now) and _write_new(path, mine):
        result.update(acquired=True, taken_over=holder, why=why)
        return result
    result["held_by"] = read_holder(path) or holder
    return result


def release(path, owner):
    """Remove the lock if owner holds it. Returns (released, holder): a lock another run holds (it
    took over a lock this run let go stale) is never removed."""
    holder = read_holder(path)
    if holder is None:
        return False, None
    if holder.get("owner") != owner:
        return False, holder
    os.unlink(path)
    return True, holder
