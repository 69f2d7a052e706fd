#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: jetson_facts
short_description: Gather NVIDIA Jetson (L4T) facts for policy deployment
version_added: "0.1.0"
description:
  - Returns C(ansible_facts.jetson) describing the L4T release, JetPack, board, TensorRT/CUDA/cuDNN
    versions, trtexec location, power mode, DLA cores, memory and the free space under the policy root.
  - On a host that is not L4T it returns C(is_l4t=false) with the reason and every fact it can still
    read (memory, disk, architecture). It never fails.
  - Read-only; the same in check mode.
options:
  policy_root:
    description:
      - Directory the policies are deployed to. Its free space is measured on the nearest existing
        parent, so the fact is available before the first deployment.
    type: path
    default: /opt/jetpolicy
  root_prefix:
    description:
      - Root of the filesystem to inspect. Tests point it at a fake tree.
      - When it is not C(/), commands (C(dpkg-query), C(nvpmodel)) are not run; package versions
        come from C(<root_prefix>/var/lib/dpkg/status) instead.
    type: path
    default: /
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
  facts:
    support: full
notes:
  - L4T release comes from C(/etc/nv_tegra_release), else from the version of the
    C(nvidia-l4t-core) package (for example C(36.4.0-20240912212859)).
  - JetPack is mapped from the L4T release with a table taken from NVIDIA's JetPack archive;
    releases not in the table map to the JetPack line (C(6.x)).
  - DLA cores are counted as C(/dev/nvhost-nvdla<N>) device nodes.
  - On jetpolicy's simulated robots (marker C(/etc/jetpolicy-sim-l4t)) C(simulated)
    is C(replay), because the NVIDIA tools there are replay doubles.
author:
  - jetpolicy contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Gather Jetson facts
  jetson_facts:

- name: Measure free space under a custom policy root
  jetson_facts:
    policy_root: /data/jetpolicy

- name: Skip TensorRT work on hosts that are not L4T
  ansible.builtin.debug:
    msg: "{{ ansible_facts.jetson.reason }}"
  when: not ansible_facts.jetson.is_l4t
"""

RETURN = r"""
ansible_facts:
  description: Facts under the C(jetson) key.
  returned: always
  type: dict
  contains:
    jetson:
      description: Jetson facts; unknown values are null.
      returned: always
      type: dict
      sample:
        is_l4t: true
        reason: ""
        l4t_release: "36.4.0"
        l4t_revision: "4.0"
        l4t_source: /etc/nv_tegra_release
        jetpack_version: "6.1"
        board_model: NVIDIA Jetson AGX Orin Developer Kit
        tensorrt_version: "10.3.0"
        cuda_version: "12.6.68"
        cudnn_version: "9.3.0"
        trtexec_path: /usr/src/tensorrt/bin/trtexec
        nvpmodel_mode: MAXN
        nvpmodel_mode_id: 0
        dla_cores: 2
        memory_total_mb: 62841
        memory_available_mb: 58012
        policy_root: /opt/jetpolicy
        policy_root_free_mb: 41230
        architecture: aarch64
        simulated: null
        simulated_tools: []
      contains:
        simulated:
          description:
            - C(replay) on jetpolicy's simulated L4T robots (C(/etc/jetpolicy-sim-l4t), written by
              C(sim/l4t/dress.sh)), whose trtexec, nvpmodel, jetson_clocks and tegrastats are replay
              doubles printing recorded output; null on a real robot.
          returned: always
          type: str
        simulated_tools:
          description: Paths of the replay doubles named by the marker (empty on a real robot).
          returned: always
          type: list
          elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jetpolicy_jetson import (
    L4T_CORE_PACKAGE,
    base_facts,
    count_dla_cores,
    cuda_version_from_files,
    free_mb,
    jetpack_version,
    nearest_existing_parent,
    parse_dpkg_query,
    parse_dpkg_status,
    parse_meminfo,
    parse_nv_tegra_release,
    parse_nvpmodel_query,
    pick_versions,
    read_board_model,
    read_sim_marker,
    read_text,
    trtexec_candidates,
)

DPKG_PATTERNS = [L4T_CORE_PACKAGE, "libnvinfer*", "tensorrt", "nvidia-tensorrt", "cuda-cudart-*", "libcudnn*"]


def installed_packages(module, root):
    if root == "/":
        dpkg_query = module.get_bin_path("dpkg-query")
        if dpkg_query:
            # rc is 1 when some patterns match nothing; the matching lines are still printed.
            _rc, out, _err = module.run_command(
                [dpkg_query, "-W", "-f=${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"] + DPKG_PATTERNS,
                environ_update={"LC_ALL": "C"},
            )
            return parse_dpkg_query(out)
    status = read_text(root, "/var/lib/dpkg/status")
    return parse_dpkg_status(status) if status else {}


def gather(module, root, policy_root):
    facts = base_facts()
    facts["architecture"] = os.uname()[4]
    facts["policy_root"] = policy_root
    facts.update(read_sim_marker(root))

    packages = installed_packages(module, root)
    versions = pick_versions(packages)
    release_text = read_text(root, "/etc/nv_tegra_release")
    release = parse_nv_tegra_release(release_text) if release_text else None
    if release:
        facts.update(is_l4t=True, l4t_release=release["release"], l4t_revision=release["revision"],
                     l4t_source="/etc/nv_tegra_release")
    elif versions["l4t_package_release"]:
        release_number = versions["l4t_package_release"]
        facts.update(is_l4t=True, l4t_release=release_number, l4t_revision=release_number.split(".", 1)[1],
                     l4t_source="dpkg:%s" % L4T_CORE_PACKAGE)
    elif release_text is None:
        facts["reason"] = "/etc/nv_tegra_release not found: not an L4T (Jetson) host"
    else:
        facts["reason"] = "/etc/nv_tegra_release has no '# R<major> (release), REVISION:' line: not an L4T (Jetson) host"
    facts["jetpack_version"] = jetpack_version(facts["l4t_release"])
    facts["board_model"] = read_board_model(root)
    facts["tensorrt_version"] = versions["tensorrt_version"]
    facts["cuda_version"] = versions["cuda_version"] or cuda_version_from_files(root)
    facts["cudnn_version"] = versions["cudnn_version"]

    for candidate in trtexec_candidates(root):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            facts["trtexec_path"] = candidate
            break
    else:
        if root == "/":
            facts["trtexec_path"] = module.get_bin_path("trtexec")

    if root == "/":
        nvpmodel = module.get_bin_path("nvpmodel")
        if nvpmodel:
            _rc, out, _err = module.run_command([nvpmodel, "-q"], environ_update={"LC_ALL": "C"})
            query = parse_nvpmodel_query(out)
            facts["nvpmodel_mode"], facts["nvpmodel_mode_id"] = query.name, query.mode_id

    facts["dla_cores"] = count_dla_cores(root)
    facts.update(parse_meminfo(read_text(root, "/proc/meminfo")))
    facts["policy_root_free_mb"] = free_mb(nearest_existing_parent(root, policy_root))
    return facts


def main():
    module = AnsibleModule(
        argument_spec=dict(
            policy_root=dict(type="path", default="/opt/jetpolicy"),
            root_prefix=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    root = module.params["root_prefix"] or "/"
    try:
        facts = gather(module, root, module.params["policy_root"])
    except Exception as exc:  # noqa: BLE001 - facts must never fail a play; report what broke
        facts = base_facts()
        facts["reason"] = "jetson_facts could not inspect %s: %s" % (root, exc)
    module.exit_json(changed=False, ansible_facts={"jetson": facts})


if __name__ == "__main__":
    main()
