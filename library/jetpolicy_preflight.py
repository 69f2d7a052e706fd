#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: jetpolicy_preflight
short_description: Measure a robot's free disk, memory and temperature and judge them
description:
  - Reads free space at O(path) (or its nearest existing parent), C(/proc/meminfo) and
    C(/sys/class/thermal/thermal_zone*/temp), and returns verdicts against the thresholds.
  - Never fails by itself on a verdict; the caller fails the host with RV(problems) so the
    message can name the host. Read-only, so it runs in check mode too.
  - The judging lives in C(module_utils/jetpolicy_provision.py) (C(preflight_verdicts)).
options:
  path:
    description: Directory whose filesystem must have O(min_free_mb) free (the policy root).
    type: path
    required: true
  min_free_mb:
    description:
      - MiB that must stay free at O(path) after this deploy's files (the margin).
      - The requirement is O(artifact_bytes) + O(engine_bytes) + O(runtime_bytes) (each rounded up
        to MiB) + this; the failure message gives each part, the total, the free space and the path.
    type: int
    default: 512
  artifact_bytes:
    description: Size of the policy files this deploy still stages (0 when the release is on the robot).
    type: int
    default: 0
  engine_bytes:
    description: Estimated size of the TensorRT engine still to be built (0 when none will be).
    type: int
    default: 0
  runtime_bytes:
    description: Estimated size of the runtime bundle still to be installed (0 when installed).
    type: int
    default: 0
  artifact_present_path:
    description:
      - A file whose existence means the policy files are already on the robot; O(artifact_bytes)
        then counts as 0. Looked up here, so the caller needs no stat task of its own.
    type: path
  engine_present_path:
    description: Like O(artifact_present_path), for O(engine_bytes) (the release's engine link).
    type: path
  runtime_present_path:
    description: Like O(artifact_present_path), for O(runtime_bytes) (the runtime the service runs).
    type: path
  max_memory_used_pct:
    description: Maximum share of memory in use (100 - MemAvailable/MemTotal), in percent.
    type: int
    default: 90
  max_temp_c:
    description: Maximum temperature of any readable thermal zone, degrees C.
    type: int
    default: 85
  thermal_glob:
    description: Glob of thermal zone directories.
    type: str
    default: /sys/class/thermal/thermal_zone*
  time_sync:
    description:
      - What an unsynchronized clock (C(timedatectl show -p NTPSynchronized)) does.
      - C(fail) adds a problem, C(warn) prints an Ansible warning, C(ignore) only notes it.
    type: str
    choices: [fail, warn, ignore]
    default: warn
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
author:
  - jetpolicy contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Judge the robot before staging
  jetpolicy_preflight:
    path: /opt/jetpolicy
    min_free_mb: 512
    artifact_bytes: 52428800
    artifact_present_path: /opt/jetpolicy/releases/0123456789abcdef/policy.onnx
    engine_bytes: 104857600
  register: preflight

- name: Fail the host with the verdict
  ansible.builtin.fail:
    msg: "{{ inventory_hostname }}: {{ preflight.problems | join('; ') }}"
  when: preflight.problems | length > 0
"""

RETURN = r"""
measured_path:
  description: Where free space was measured (O(path) or its nearest existing parent).
  type: str
  returned: always
free_mb:
  description: Free MiB available to unprivileged users at RV(measured_path).
  type: int
  returned: always
needed_mb:
  description: MiB this deploy needs free at O(path) (the parts in RV(space_parts), summed).
  type: int
  returned: always
already_present:
  description: Which of C(artifact), C(engine), C(runtime) were found at their O(artifact_present_path)-style paths.
  type: list
  elements: str
  returned: always
space_parts:
  description: What the requirement is made of, as C([what, MiB]) pairs; the margin last.
  type: list
  elements: list
  returned: always
memory_total_mb:
  description: MemTotal in MiB.
  type: int
  returned: always
memory_available_mb:
  description: MemAvailable in MiB.
  type: int
  returned: always
temperatures:
  description: Readable thermal zones, C(type) name to degrees C.
  type: dict
  returned: always
problems:
  description: Threshold violations, one message each (path or zone, numbers, variable to change).
  type: list
  elements: str
  returned: always
notes:
  description: Checks that passed, with their numbers.
  type: list
  elements: str
  returned: always
ntp_synchronized:
  description: C(timedatectl show -p NTPSynchronized --value) (C(yes), C(no), empty when unavailable).
  type: str
  returned: always
passed:
  description: True when RV(problems) is empty.
  type: bool
  returned: always
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jetpolicy_jetson import nearest_existing_parent, parse_meminfo
from ansible.module_utils.jetpolicy_provision import (
    parse_thermal_millic,
    preflight_verdicts,
    space_needed,
    time_sync_verdict,
)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def read_temperatures(pattern):
    temperatures = {}
    for zone in sorted(glob.glob(pattern)):
        value = parse_thermal_millic(_read(os.path.join(zone, "temp")))
        if value is None:
            continue
        name = (_read(os.path.join(zone, "type")) or "").strip() or os.path.basename(zone)
        key = name if name not in temperatures else "%s(%s)" % (name, os.path.basename(zone))
        temperatures[key] = value
    return temperatures


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            min_free_mb=dict(type="int", default=512),
            artifact_bytes=dict(type="int", default=0),
            engine_bytes=dict(type="int", default=0),
            runtime_bytes=dict(type="int", default=0),
            artifact_present_path=dict(type="path"),
            engine_present_path=dict(type="path"),
            runtime_present_path=dict(type="path"),
            max_memory_used_pct=dict(type="int", default=90),
            max_temp_c=dict(type="int", default=85),
            thermal_glob=dict(type="str", default="/sys/class/thermal/thermal_zone*"),
            time_sync=dict(type="str", choices=["fail", "warn", "ignore"], default="warn"),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    measured = nearest_existing_parent("/", path)
    try:
        stat = os.statvfs(measured)
        free_mb = stat.f_bavail * stat.f_frsize // (1024 * 1024)
    except OSError as exc:
        module.fail_json(msg="cannot stat filesystem of %s: %s" % (measured, exc))
    memory = parse_meminfo(_read("/proc/meminfo"))
    total_mb, available_mb = memory["memory_total_mb"], memory["memory_available_mb"]
    temperatures = read_temperatures(module.params["thermal_glob"])
    already_present = [
        part for part in ("artifact", "engine", "runtime")
        if module.params[part + "_present_path"] and os.path.exists(module.params[part + "_present_path"])
    ]
    still_needed = dict(
        (part, 0 if part in already_present else module.params[part + "_bytes"])
        for part in ("artifact", "engine", "runtime")
    )
    needed_mb, space_parts = space_needed(
        module.params["min_free_mb"],
        artifact_bytes=still_needed["artifact"],
        engine_bytes=still_needed["engine"],
        runtime_bytes=still_needed["runtime"],
    )
    problems, notes = preflight_verdicts(
        path=path,
        measured_path=measured,
        free_mb=free_mb,
        min_free_mb=module.params["min_free_mb"],
        memory_total_mb=total_mb,
        memory_available_mb=available_mb,
        max_memory_used_pct=module.params["max_memory_used_pct"],
        temperatures=temperatures,
        max_temp_c=module.params["max_temp_c"],
        space_parts=space_parts,
    )
    ntp = ""
    timedatectl = module.get_bin_path("timedatectl")
    if timedatectl:
        rc, out, _err = module.run_command(
            [timedatectl, "show", "-p", "NTPSynchronized", "--value"], environ_update=dict(LC_ALL="C")
        )
        ntp = out.strip() if rc == 0 else ""
    time_failed, time_message = time_sync_verdict(ntp, module.params["time_sync"])
    if time_failed:
        problems.append(time_message)
    else:
        notes.append(time_message)
        if time_message.startswith("WARNING: "):
            module.warn(time_message[len("WARNING: "):])
    module.exit_json(
        changed=False,
        already_present=already_present,
        ntp_synchronized=ntp,
        measured_path=measured,
        free_mb=free_mb,
        needed_mb=needed_mb,
        space_parts=[list(part) for part in space_parts],
        memory_total_mb=total_mb,
        memory_available_mb=available_mb,
        temperatures=temperatures,
        problems=problems,
        notes=notes,
        passed=not problems,
    )


if __name__ == "__main__":
    main()
