#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: jetpolicy_extlinux
short_description: Isolate CPUs for the policy through the L4T boot entry (extlinux.conf)
description:
  - Sets C(isolcpus=), C(nohz_full=) and C(rcu_nocbs=) on the APPEND line of the default boot
    entry of C(/boot/extlinux/extlinux.conf), or removes them with O(state=absent).
  - Only that APPEND line changes; the file is replaced atomically. Takes effect at the next
    boot, and the caller decides whether to reboot (RV(reboot_required)).
options:
  path:
    description: The extlinux configuration.
    type: path
    default: /boot/extlinux/extlinux.conf
  cpus:
    description: Kernel cpu list for the policy core(s), for example C(3) or C(2-3).
    type: str
  label:
    description: Boot entry LABEL to edit; the DEFAULT entry when unset.
    type: str
  state:
    description: Whether the isolation parameters are present.
    type: str
    choices: [present, absent]
    default: present
  backup:
    description: Keep a timestamped copy of the previous file.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
author:
  - jetpolicy contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Isolate CPU 3 for the policy loop
  jetpolicy_extlinux:
    cpus: "3"
  register: isolation

- name: Remove CPU isolation
  jetpolicy_extlinux:
    state: absent
"""

RETURN = r"""
message:
  description: What was done to which boot entry.
  type: str
  returned: always
reboot_required:
  description: True when the file changed (the kernel command line applies at boot).
  type: bool
  returned: always
backup_file:
  description: The copy of the previous file.
  type: str
  returned: when changed and O(backup=true)
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jetpolicy_provision import extlinux_set_isolcpus


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/boot/extlinux/extlinux.conf"),
            cpus=dict(type="str"),
            label=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            backup=dict(type="bool", default=True),
        ),
        required_if=[("state", "present", ["cpus"])],
        supports_check_mode=True,
    )
    path = module.params["path"]
    if not os.path.exists(path):
        module.fail_json(msg="%s not found: not an L4T boot configuration" % path)
    with open(path) as handle:
        before = handle.read()
    cpus = module.params["cpus"] if module.params["state"] == "present" else None
    try:
        after, changed, message = extlinux_set_isolcpus(before, cpus, module.params["label"])
    except ValueError as exc:
        module.fail_json(msg="%s: %s" % (path, exc))
    if "no APPEND line" in message:
        module.fail_json(msg="%s: %s" % (path, message))
    result = dict(changed=changed, message=message, reboot_required=changed)
    if module._diff:
        result["diff"] = dict(before=before, after=after, before_header=path, after_header=path)
    if changed and not module.check_mode:
        if module.params["backup"]:
            result["backup_file"] = module.backup_local(path)
        tmp = os.path.join(os.path.dirname(path), ".%s.jetpolicy.tmp" % os.path.basename(path))
        with open(tmp, "w") as handle:
            handle.write(after)
        module.atomic_move(tmp, path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
