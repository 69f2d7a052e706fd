#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: jetpolicy_nvpmodel
short_description: Set a Jetson's nvpmodel power mode, never rebooting by itself
description:
  - Queries C(nvpmodel -q); when the mode differs, runs C(nvpmodel -m MODE) and answers its
    interactive reboot prompt with C(no), so nvpmodel never reboots the robot behind Ansible.
  - Modes that cannot switch live (nvpmodel prints C(Reboot required for changing to this power
    mode)) are reported with RV(reboot_required). With O(stage_for_reboot=true) the mode is made the
    boot default instead (C(PM_CONFIG DEFAULT) in O(conf), the remembered mode in O(status_file)
    removed, which is how L4T picks the default at boot) and the caller reboots.
options:
  mode:
    description: nvpmodel mode id.
    type: int
    required: true
  stage_for_reboot:
    description: Make a reboot-only mode the boot default (the caller must then reboot).
    type: bool
    default: false
  conf:
    description: nvpmodel configuration whose C(PM_CONFIG DEFAULT) is set when staging.
    type: path
    default: /etc/nvpmodel.conf
  status_file:
    description: Where nvpmodel remembers the last mode (overrides the default at boot).
    type: path
    default: /var/lib/nvpmodel/status
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
- name: MAXN on an AGX Orin
  jetpolicy_nvpmodel:
    mode: 0
    stage_for_reboot: "{{ jetson_provision_allow_reboot }}"
  register: power
"""

RETURN = r"""
previous_mode:
  description: Mode id before the task.
  type: int
  returned: always
previous_name:
  description: Mode name before the task (C(MAXN), C(MODE_30W) ...).
  type: str
  returned: always
reboot_required:
  description: The mode only applies after a reboot (staged or not, see RV(staged)).
  type: bool
  returned: always
staged:
  description: The mode was made the boot default and waits for a reboot.
  type: bool
  returned: always
stdout:
  description: Output of C(nvpmodel -m).
  type: str
  returned: when nvpmodel -m ran
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jetpolicy_jetson import parse_nvpmodel_query
from ansible.module_utils.jetpolicy_provision import nvpmodel_needs_reboot


def stage_default(module, conf, status_file, mode):
    with open(conf) as handle:
        text = handle.read()
    new, count = re.subn(r"<\s*PM_CONFIG\s+DEFAULT=\d+\s*>", "< PM_CONFIG DEFAULT=%d >" % mode, text)
    if count == 0:
        module.fail_json(msg="%s has no '< PM_CONFIG DEFAULT=N >' line; cannot stage mode %d" % (conf, mode))
    if new != text:
        tmp = os.path.join(os.path.dirname(conf), ".%s.jetpolicy.tmp" % os.path.basename(conf))
        with open(tmp, "w") as handle:
            handle.write(new)
        module.atomic_move(tmp, conf)
    if os.path.exists(status_file):
        os.remove(status_file)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type="int", required=True),
            stage_for_reboot=dict(type="bool", default=False),
            conf=dict(type="path", default="/etc/nvpmodel.conf"),
            status_file=dict(type="path", default="/var/lib/nvpmodel/status"),
        ),
        supports_check_mode=True,
    )
    mode = module.params["mode"]
    nvpmodel = module.get_bin_path("nvpmodel", required=True)
    # C locale: the output is parsed.
    env = dict(LANG="C", LC_ALL="C")
    rc, out, err = module.run_command([nvpmodel, "-q"], environ_update=env)
    if rc != 0:
        module.fail_json(msg="nvpmodel -q failed (rc=%d)" % rc, rc=rc, stdout=out, stderr=err)
    query = parse_nvpmodel_query(out)
    current, name = query.mode_id, query.name
    result = dict(
        changed=False,
        previous_mode=current,
        previous_name=name,
        reboot_required=False,
        staged=False,
    )
    if current == mode:
        module.exit_json(msg="nvpmodel already in mode %d (%s)" % (mode, name), **result)
    if module.check_mode:
        result["changed"] = True
        module.exit_json(msg="would switch nvpmodel %s -> %d" % (current, mode), **result)
    # Answer the "DO YOU WANT TO REBOOT NOW?" prompt with no: reboots are the play's decision.
    rc, out, err = module.run_command([nvpmodel, "-m", str(mode)], data="no", environ_update=env)
    result["stdout"] = out
    if nvpmodel_needs_reboot(out + err):
        result["reboot_required"] = True
        if module.params["stage_for_reboot"]:
            stage_default(module, module.params["conf"], module.params["status_file"], mode)
            result.update(changed=True, staged=True)
            module.exit_json(msg="nvpmodel mode %d staged as boot default; reboot to apply" % mode, **result)
        module.exit_json(msg="nvpmodel mode %d needs a reboot; not switched" % mode, **result)
    if rc != 0:
        module.fail_json(msg="nvpmodel -m %d failed (rc=%d)" % (mode, rc), rc=rc, stdout=out, stderr=err)
    rc, out, err = module.run_command([nvpmodel, "-q"], environ_update=env)
    query = parse_nvpmodel_query(out)
    now, now_name = query.mode_id, query.name
    if now != mode:
        module.fail_json(msg="nvpmodel -m %d ran but nvpmodel -q reports %s" % (mode, now), stdout=out, stderr=err)
    result["changed"] = True
    module.exit_json(msg="nvpmodel %s -> %d (%s)" % (current, mode, now_name), **result)


if __name__ == "__main__":
    main()
