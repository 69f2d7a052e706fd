#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: jetpolicy_clocks
short_description: Lock a Jetson's clocks for a measurement and put them back as they were
description:
  - O(state=locked) stores the clock state with C(jetson_clocks --store FILE), pins the clocks with
    C(jetson_clocks) and returns what C(jetson_clocks --show) then reports (governor and minimum,
    maximum and current frequency of each CPU and clock domain).
  - O(state=restored) runs C(jetson_clocks --restore FILE) and removes the file, so the robot is left
    at the clocks it had before O(state=locked); run it in an C(always) section, so a failed
    measurement restores them too.
  - A store file left by a run that never restored (a killed controller) is kept, not overwritten
    by the locked state, so the next restore returns to the clocks from before that run.
  - The pair leaves the robot as it found it, so neither task reports C(changed); RV(locked) and
    RV(restored) say what was done.
  - On the simulated L4T robot (marker C(/etc/jetpolicy-sim-l4t)) C(jetson_clocks) is a replay double
    and RV(simulated) is C(replay); its C(--show) is a recording of another machine.
options:
  state:
    description: C(locked) (store, then lock) or C(restored).
    type: str
    choices: [locked, restored]
    required: true
  store_file:
    description: Where C(jetson_clocks --store) keeps the clock state until the restore.
    type: path
    default: /var/lib/jetpolicy/clocks-before-measurement.conf
  jetson_clocks:
    description: The C(jetson_clocks) script (L4T installs it as C(/usr/bin/jetson_clocks)).
    type: path
    default: /usr/bin/jetson_clocks
  sim_marker:
    description: File whose presence marks the simulated L4T robot.
    type: path
    default: /etc/jetpolicy-sim-l4t
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Touches no clock; the task is skipped.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Needs root, like C(jetson_clocks) itself.
author:
  - jetpolicy contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Measure with the clocks locked, and restore them whatever happens
  block:
    - name: Store and lock the clocks
      jetpolicy_clocks:
        state: locked
      register: clocks
    - name: Measure
      policy_bench:
        release_id: "{{ policy_release_id }}"
  always:
    - name: Restore the clocks
      jetpolicy_clocks:
        state: restored
"""

RETURN = r"""
locked:
  description: Whether C(jetson_clocks) pinned the clocks in this task.
  returned: always
  type: bool
store_kept:
  description: The store file already existed (a run that never restored) and was kept.
  returned: state=locked
  type: bool
restored:
  description: Whether C(jetson_clocks --restore) ran in this task.
  returned: always
  type: bool
show:
  description:
    - C(jetson_clocks --show) after locking, parsed; C(domains) maps cpu0, GPU, EMC... to
      C(governor), C(min_khz), C(max_khz), C(current_khz), C(online), C(pinned) (minimum = maximum);
      C(all_pinned) for every online domain.
  returned: state=locked, not in check mode
  type: dict
  sample:
    soc_family: tegra234
    machine: NVIDIA Jetson Orin NX Engineering Reference Developer Kit
    online_cpus: 0-7
    power_mode: null
    all_pinned: false
    domains: {cpu0: {governor: schedutil, min_khz: 729600, max_khz: 1984000, current_khz: 1728000, online: true, pinned: false}}
simulated:
  description: C(replay) on the simulated L4T robot, else null.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jetpolicy_clocks import parse_clocks_show


def run(module, argv, result, what):
    rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg="%s failed (rc=%d): %s" % (what, rc, (err or out).strip() or "no output"),
                         rc=rc, stdout=out[-2000:], stderr=err[-2000:], **result)
    return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", required=True, choices=["locked", "restored"]),
            store_file=dict(type="path", default="/var/lib/jetpolicy/clocks-before-measurement.conf"),
            jetson_clocks=dict(type="path", default="/usr/bin/jetson_clocks"),
            sim_marker=dict(type="path", default="/etc/jetpolicy-sim-l4t"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    script, store = params["jetson_clocks"], params["store_file"]
    result = dict(changed=False, locked=False, restored=False,
                  simulated="replay" if os.path.exists(params["sim_marker"]) else None)
    if module.check_mode:
        module.exit_json(skipped=True, msg="check mode: no clock was touched", **result)
    if not (os.path.isfile(script) and os.access(script, os.X_OK)):
        module.fail_json(msg="%s not found: jetson_clocks comes with L4T (JetPack); this is not a Jetson, or set "
                             "policy_gate_lock_clocks=false" % script, **result)
    if params["state"] == "restored":
        if os.path.exists(store):
            run(module, [script, "--restore", store], result, "jetson_clocks --restore %s" % store)
            os.remove(store)
            result["restored"] = True
        else:
            result["msg"] = "no stored clock state at %s: nothing to restore" % store
        module.exit_json(**result)
    result["store_kept"] = os.path.exists(store)
    if not result["store_kept"]:
        directory = os.path.dirname(store)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        run(module, [script, "--store", store], result, "jetson_clocks --store %s" % store)
    run(module, [script], result, "jetson_clocks")
    result["locked"] = True
    out = run(module, [script, "--show"], result, "jetson_clocks --show")
    try:
        result["show"] = parse_clocks_show(out)
    except ValueError as exc:
        result["show"] = None
        result["msg"] = "clocks locked; %s" % exc
    module.exit_json(**result)


if __name__ == "__main__":
    main()
