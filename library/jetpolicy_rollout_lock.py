#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: jetpolicy_rollout_lock
short_description: Take, refresh or release a robot's rollout lock (one rollout per robot at a time)
description:
  - With O(state=present), takes the lock file at O(path) for O(owner), or refreshes it when
    O(owner) holds it already; waits up to O(wait_s) for another holder to let go.
  - A holder is replaced only when it is stale (not refreshed for O(stale_after_s)), when it is
    exactly O(break_owner) (the controller found that run's process gone), or with O(force).
  - With O(state=absent), removes the lock if O(owner) holds it; another run's lock is left alone.
  - Taking or releasing its own lock is bookkeeping of the run, not a change to the robot, so it
    reports C(changed) only when it replaced another run's lock.
  - The rules live in C(module_utils/jetpolicy_rollout_lock.py).
options:
  path:
    description: The lock file; its directory is created (mode 0755) if missing.
    type: path
    required: true
  owner:
    description: The run taking the lock (jetpolicy's run id).
    type: str
    required: true
  controller:
    description: The controller's host name, recorded for messages and the dead-holder check.
    type: str
    default: unknown
  controller_pid:
    description: The PID of the controller's ansible-playbook, recorded for the dead-holder check.
    type: int
    default: 0
  state:
    description: V(present) takes or refreshes the lock, V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  wait_s:
    description: Seconds to wait for another holder to release the lock before failing.
    type: int
    default: 0
  stale_after_s:
    description:
      - A lock its holder has not refreshed for this long is stale and may be taken over. Longer than
        the longest phase of a rollout (an engine build on the robot included).
    type: int
    default: 7200
  break_owner:
    description:
      - Replace the lock if, and only if, this run holds it (the controller checked that its
        ansible-playbook process is gone). Compared with the holder at the moment of replacing.
    type: str
  force:
    description: Replace any holder. Only for a holder known to be dead on another controller.
    type: bool
    default: false
  fail_when_held:
    description: Fail when the lock stays held (else return RV(acquired)=false and RV(held_by)).
    type: bool
    default: true
notes:
  - In check mode nothing is written; a lock held by another run is reported as a warning.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the lock is free or whose it is, and writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
author:
  - jetpolicy contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Take this robot's rollout lock
  jetpolicy_rollout_lock:
    path: /opt/jetpolicy/rollout.lock
    owner: "{{ lookup('env', 'JETPOLICY_RUN_ID') }}"
    controller: ops-laptop
    controller_pid: 41234
    wait_s: 30

- name: Release it
  jetpolicy_rollout_lock:
    path: /opt/jetpolicy/rollout.lock
    owner: "{{ lookup('env', 'JETPOLICY_RUN_ID') }}"
    state: absent
"""

RETURN = r"""
acquired:
  description: Whether O(owner) holds the lock now (state=present).
  returned: always
  type: bool
refreshed:
  description: O(owner) held the lock already; its refresh time was moved to now.
  returned: always
  type: bool
released:
  description: The lock was removed (state=absent).
  returned: always
  type: bool
held_by:
  description: The other holder (owner, controller, controller_pid, acquired_at, refreshed_at) when not acquired.
  returned: when another run holds the lock
  type: dict
taken_over:
  description: The holder this run replaced, and RV(why).
  returned: when a holder was replaced
  type: dict
why:
  description: Why a holder was replaced (stale, its controller process gone, forced).
  returned: when a holder was replaced
  type: str
waited_s:
  description: Seconds spent waiting for another holder.
  returned: always
  type: float
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jetpolicy_rollout_lock import describe, read_holder, release, try_acquire


def _present(module, path, params):
    record = {
        "owner": params["owner"],
        "controller": params["controller"],
        "controller_pid": params["controller_pid"],
    }
    started = time.time()
    deadline = started + max(0, params["wait_s"])
    while True:
        now = time.time()
        if module.check_mode:
            holder = read_holder(path)
            held = holder is not None and holder.get("owner") != params["owner"]
            if held:
                module.warn("the rollout lock %s is held by %s" % (path, describe(holder, now)))
            return dict(changed=False, acquired=not held, refreshed=False, released=False,
                        held_by=holder if held else None, waited_s=0.0)
        outcome = try_acquire(path, record, now, params["stale_after_s"],
                              break_owner=params["break_owner"], force=params["force"])
        if outcome["acquired"] or now >= deadline:
            break
        time.sleep(min(1.0, max(0.0, deadline - now)))
    waited = round(time.time() - started, 1)
    result = dict(changed=outcome["taken_over"] is not None, acquired=outcome["acquired"],
                  refreshed=outcome["refreshed"], released=False, waited_s=waited)
    if outcome["taken_over"] is not None:
        result["taken_over"] = outcome["taken_over"]
        result["why"] = outcome["why"]
        module.warn("took over the rollout lock %s from %s: %s"
                    % (path, describe(outcome["taken_over"], now), outcome["why"]))
    if not outcome["acquired"]:
        holder = outcome["held_by"]
        result["held_by"] = holder
        if params["fail_when_held"]:
            module.fail_json(
                msg="another rollout holds this robot: %s (lock %s; waited %s s). One rollout per robot "
                    "at a time: let it finish, or raise jetpolicy_lock_wait_s to wait for it. If that run "
                    "is dead on another controller, re-run with -e jetpolicy_lock_force=true; a lock not "
                    "refreshed for %d s is taken over by itself." % (
                        describe(holder, time.time()), path, waited, params["stale_after_s"]),
                **result)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            owner=dict(type="str", required=True),
            controller=dict(type="str", default="unknown"),
            controller_pid=dict(type="int", default=0),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            wait_s=dict(type="int", default=0),
            stale_after_s=dict(type="int", default=7200),
            break_owner=dict(type="str"),
            force=dict(type="bool", default=False),
            fail_when_held=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    if not params["owner"].strip():
        module.fail_json(msg="owner is empty: pass the run's id (jetpolicy's JETPOLICY_RUN_ID)")
    directory = os.path.dirname(path) or "."
    try:
        if params["state"] == "absent":
            if module.check_mode:
                module.exit_json(changed=False, acquired=False, refreshed=False, released=False, waited_s=0.0)
            released, holder = release(path, params["owner"])
            result = dict(changed=False, acquired=False, refreshed=False, released=released, waited_s=0.0)
            if holder is not None and not released:
                result["held_by"] = holder
                module.warn("the rollout lock %s is held by %s now, not by %s: left alone"
                            % (path, describe(holder, time.time()), params["owner"]))
            module.exit_json(**result)
        if not os.path.isdir(directory) and not module.check_mode:
            os.makedirs(directory, 0o755)
        module.exit_json(**_present(module, path, params))
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot use the rollout lock %s: %s. Check the directory exists and is writable "
                             "by root, and the disk is not full (df %s)." % (path, exc, directory))


if __name__ == "__main__":
    main()
