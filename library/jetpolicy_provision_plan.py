#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: jetpolicy_provision_plan
short_description: Decide what jetson_provision does on this robot
description:
  - From the C(jetson) facts (module C(jetson_facts)) and the robot's apt sources, decides the
    pinned JetPack package set, whether the NVIDIA apt source may be used, the nvpmodel mode,
    and which L4T-only steps are skipped and why.
  - Read-only; the decisions live in C(module_utils/jetpolicy_provision.py).
options:
  jetson:
    description: The C(ansible_facts.jetson) dictionary.
    type: dict
    required: true
  apt_sources:
    description: Globs of apt source files searched for NVIDIA Jetson repository lines.
    type: list
    elements: str
    default: [/etc/apt/sources.list, /etc/apt/sources.list.d/*.list]
  extra_packages:
    description: Further package names to install (unpinned).
    type: list
    elements: str
    default: []
  nvpmodel_mode:
    description: Explicit nvpmodel mode id (group variable); wins over O(nvpmodel_mode_by_board).
    type: raw
  nvpmodel_mode_by_board:
    description: Board model substring to nvpmodel mode id.
    type: dict
    default: {}
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
- name: Decide packages, apt source and power mode
  jetpolicy_provision_plan:
    jetson: "{{ ansible_facts.jetson }}"
    nvpmodel_mode: "{{ jetson_provision_nvpmodel_mode }}"
    nvpmodel_mode_by_board:
      AGX Orin: 0
  register: plan
"""

RETURN = r"""
is_l4t:
  description: Whether the host is L4T (from the facts).
  type: bool
  returned: always
skip_reasons:
  description: L4T-only steps skipped on this host, each with its reason; empty on L4T.
  type: list
  elements: str
  returned: always
jetpack:
  description: JetPack line of the chosen package set (C(5.1.x), C(6.0), C(6.1/6.2)).
  type: str
  returned: on L4T with a known release
packages:
  description: apt specs C(name=version) to install.
  type: list
  elements: str
  returned: always
package_error:
  description: Why no package set is known for this L4T release (empty when known).
  type: str
  returned: always
apt_source_ok:
  description: Whether the NVIDIA apt source matches the L4T major (no mixed repositories).
  type: bool
  returned: always
apt_source_msg:
  description: What was found in the apt sources and the verdict.
  type: str
  returned: always
nvpmodel_mode:
  description: Wanted nvpmodel mode id, or null when none is configured for this board.
  type: int
  returned: always
nvpmodel_reason:
  description: Where RV(nvpmodel_mode) comes from, or why none.
  type: str
  returned: always
trtexec_path:
  description: Where JetPack installs trtexec (package C(libnvinfer-bin)).
  type: str
  returned: always
"""

import glob

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jetpolicy_jetson import TRTEXEC_PATH
from ansible.module_utils.jetpolicy_provision import (
    apt_package_specs,
    apt_source_verdict,
    desired_nvpmodel_mode,
    l4t_skip_reasons,
    package_set_for,
)


def read_sources(patterns):
    texts = []
    paths = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            try:
                with open(path) as handle:
                    texts.append(handle.read())
                paths.append(path)
            except (IOError, OSError):
                continue
    return "\n".join(texts), paths


def main():
    module = AnsibleModule(
        argument_spec=dict(
            jetson=dict(type="dict", required=True),
            apt_sources=dict(
                type="list",
                elements="str",
                default=["/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list"],
            ),
            extra_packages=dict(type="list", elements="str", default=[]),
            nvpmodel_mode=dict(type="raw"),
            nvpmodel_mode_by_board=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    jetson = module.params["jetson"]
    result = dict(
        changed=False,
        is_l4t=bool(jetson.get("is_l4t")),
        skip_reasons=l4t_skip_reasons(jetson),
        packages=[],
        package_error="",
        jetpack="",
        apt_source_ok=False,
        apt_source_msg="",
        nvpmodel_mode=None,
        nvpmodel_reason="",
        trtexec_path=TRTEXEC_PATH,
    )
    if not result["is_l4t"]:
        result["apt_source_msg"] = "not L4T: NVIDIA apt source not used"
        result["nvpmodel_reason"] = "not L4T: no nvpmodel"
        module.exit_json(**result)
    release = jetson.get("l4t_release")
    entry, error = package_set_for(release)
    if entry:
        result["packages"] = apt_package_specs(entry, module.params["extra_packages"])
        result["jetpack"] = entry["jetpack"]
    else:
        result["package_error"] = error
    text, paths = read_sources(module.params["apt_sources"])
    ok, message = apt_source_verdict(text, release, " + ".join(paths) or "the apt sources")
    result["apt_source_ok"] = ok
    result["apt_source_msg"] = message
    mode, reason = desired_nvpmodel_mode(
        jetson.get("board_model"),
        module.params["nvpmodel_mode"],
        module.params["nvpmodel_mode_by_board"],
    )
    result["nvpmodel_mode"] = mode
    result["nvpmodel_reason"] = reason
    module.exit_json(**result)


if __name__ == "__main__":
    main()
