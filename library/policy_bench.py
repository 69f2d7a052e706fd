#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: policy_bench
short_description: Run the deployed policy runtime's in-loop benchmark and keep it as a local fact
version_added: "0.1.0"
description:
  - Runs C(<venv>/bin/jetpolicy bench --release DIR --rate-hz N --duration-s S --backend B [--engine F])
    and returns its JSON (see docs/architecture.md) as C(ansible_facts.policy_bench), with the release id
    and a timestamp added.
  - Saves the same JSON to O(fact_path) (atomic write) so C(ansible -m setup) shows it as
    C(ansible_local.jetpolicy_bench).
  - A benchmark is a measurement, not a configuration change, so the task reports C(changed=false);
    C(fact_written) tells whether the fact file was (re)written.
  - In check mode nothing runs and the task is skipped with a reason.
options:
  release_dir:
    description: Release directory to benchmark (for example C(/opt/jetpolicy/current)).
    type: path
    required: true
  venv:
    description: Runtime virtualenv holding C(bin/jetpolicy).
    type: path
    default: /opt/jetpolicy/runtime/current
  jetpolicy_bin:
    description: The C(jetpolicy) executable; default C(<venv>/bin/jetpolicy).
    type: path
  rate_hz:
    description: Control rate; default the CLI's (the manifest's rate).
    type: float
  duration_s:
    description: Benchmark length in seconds.
    type: float
    default: 10
  backend:
    description: Inference backend.
    type: str
    choices: [auto, onnxruntime, tensorrt]
    default: auto
  engine:
    description: TensorRT engine for the C(tensorrt) backend.
    type: path
  fact_path:
    description: Local fact file to save the result to.
    type: path
    default: /etc/ansible/facts.d/jetpolicy_bench.fact
  save_fact:
    description: Whether to write O(fact_path).
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: Does not run the benchmark; the task is skipped.
  diff_mode:
    support: none
  platform:
    platforms: posix
  facts:
    support: full
author:
  - jetpolicy contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Benchmark the current release on TensorRT for 30 s at 100 Hz
  policy_bench:
    release_dir: /opt/jetpolicy/current
    backend: tensorrt
    engine: "{{ tensorrt_engine_path }}"
    rate_hz: 100
    duration_s: 30
  register: bench

- name: Fail when deadlines were missed
  ansible.builtin.assert:
    that: ansible_facts.policy_bench.deadline_miss_rate < 0.001
"""

RETURN = r"""
ansible_facts:
  description: The benchmark under C(policy_bench).
  returned: success, not in check mode
  type: dict
  contains:
    policy_bench:
      description: C(jetpolicy bench) JSON plus C(release_id), C(release_dir), C(measured_at) (UTC ISO 8601).
      returned: success
      type: dict
      sample:
        backend: tensorrt
        rate_hz: 100
        ticks: 3000
        inference_us: {p50: 180, p90: 210, p99: 260, max: 410}
        period_error_us: {p50: 12, p99: 55, max: 140}
        drift_pct: 0.01
        deadline_miss_rate: 0.0
        overruns: 0
        release_id: 3f2a9c1d0b7e4a55
        measured_at: "2026-11-23T17:00:00Z"
fact_path:
  description: The local fact file.
  returned: always
  type: str
fact_written:
  description: Whether the fact file content changed and was written.
  returned: always
  type: bool
cmd:
  description: The bench argv.
  returned: always
  type: list
  elements: str
rc:
  description: Exit status of the bench command.
  returned: when it ran
  type: int
stderr_tail:
  description: Last lines of the bench command's stderr.
  returned: when it ran
  type: list
  elements: str
"""

import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jetpolicy_bench import bench_command, fact_content, parse_bench_output, release_id


def write_fact(module, path, content):
    try:
        with open(path) as handle:
            if handle.read() == content:
                return False
    except (IOError, OSError):
        pass
    directory = os.path.dirname(path)
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)
        module.atomic_move(tmp, path)
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot write fact file %s: %s" % (path, exc))
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            release_dir=dict(type="path", required=True),
            venv=dict(type="path", default="/opt/jetpolicy/runtime/current"),
            jetpolicy_bin=dict(type="path"),
            rate_hz=dict(type="float"),
            duration_s=dict(type="float", default=10),
            backend=dict(type="str", default="auto", choices=["auto", "onnxruntime", "tensorrt"]),
            engine=dict(type="path"),
            fact_path=dict(type="path", default="/etc/ansible/facts.d/jetpolicy_bench.fact"),
            save_fact=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    jetpolicy = params["jetpolicy_bin"] or os.path.join(params["venv"], "bin", "jetpolicy")
    cmd = bench_command(jetpolicy, params["release_dir"], params["rate_hz"], params["duration_s"],
                        params["backend"], params["engine"])
    result = dict(changed=False, cmd=cmd, fact_path=params["fact_path"], fact_written=False)
    if module.check_mode:
        module.exit_json(skipped=True, msg="check mode: the benchmark was not run", **result)
    if not (os.path.isfile(jetpolicy) and os.access(jetpolicy, os.X_OK)):
        module.fail_json(msg="jetpolicy executable %s not found: deploy the runtime first or set jetpolicy_bin"
                             % jetpolicy, **result)
    if not os.path.isdir(params["release_dir"]):
        module.fail_json(msg="release_dir %s not found" % params["release_dir"], **result)

    rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
    stderr_tail = err.splitlines()[-20:]
    result.update(rc=rc, stderr_tail=stderr_tail)
    if rc != 0:
        module.fail_json(msg="jetpolicy bench failed for %s (rc=%d): %s" % (
            params["release_dir"], rc, stderr_tail[-1] if stderr_tail else "no stderr"),
            stdout=out[-2000:], stderr=err[-4000:], **result)
    try:
        bench = parse_bench_output(out)
    except ValueError as exc:
        module.fail_json(msg="jetpolicy bench for %s printed no usable JSON: %s" % (params["release_dir"], exc),
                         stdout=out[-2000:], stderr=err[-4000:], **result)
    bench["release_id"] = release_id(params["release_dir"])
    bench["release_dir"] = params["release_dir"]
    bench["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if params["save_fact"]:
        result["fact_written"] = write_fact(module, params["fact_path"], fact_content(bench))
    module.exit_json(ansible_facts={"policy_bench": bench}, **result)


if __name__ == "__main__":
    main()
