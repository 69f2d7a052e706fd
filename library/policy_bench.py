#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: policy_bench
short_description: Measure the deployed policy's in-loop timing and keep it as a local fact
version_added: "0.1.0"
description:
  - With O(source=auto) (the default), measures live, and with bench when the live runner ran no
    inference in the window (C(jetpolicy window) exits 4 when it had no fresh observations, as on an
    idle robot with a live transport); C(live_refused) then says why.
  - With O(source=live), runs C(<venv>/bin/jetpolicy window --status FILE --duration S
    --pid PID [--release ID]), which reads the running service's own in-loop statistics between two
    of its status writes O(duration_s) apart, the PID being the unit's C(MainPID) (C(systemctl show)). Nothing else
    runs the policy, so the numbers are the service's, not a second process's competing with it. The
    command refuses a window written by another or a restarted process, on another release, from a
    stale status or with too few ticks, and the module fails with its cause.
  - With O(source=bench), runs C(<venv>/bin/jetpolicy bench --release DIR --rate-hz N --duration-s S
    --backend B [--engine F]), a second process running the policy in its own copy of the loop on
    synthetic observations, beside the service.
  - Returns the JSON (see docs/architecture.md; both have C(inference_us), C(deadline_miss_rate),
    C(backend), C(ticks), C(rate_hz)) as C(ansible_facts.policy_bench), with the release id and a
    timestamp added.
  - Saves the same JSON to O(fact_path) (atomic write) so C(ansible -m setup) shows it as
    C(ansible_local.jetpolicy_bench).
  - A measurement is not a configuration change, so the task reports C(changed=false);
    C(fact_written) tells whether the fact file was (re)written.
  - In check mode nothing runs and the task is skipped with a reason.
options:
  source:
    description:
      - C(live) measures the running service (C(jetpolicy window)); C(bench) a second process
        (C(jetpolicy bench)); C(auto) live, else bench when the service ran no inference in the window.
    type: str
    choices: [auto, live, bench]
    default: auto
  release_dir:
    description:
      - Release directory (for example C(/opt/jetpolicy/current)); required for O(source=bench), which
        benchmarks it.
      - With O(source=live) and no O(release_id), the release it points to is the one the runner must
        have loaded.
    type: path
  release_id:
    description:
      - With O(source=live), the release id the measured runner must have loaded (C(--release)).
      - The fact's C(release_id); default the directory O(release_dir) points to.
    type: str
  status_file:
    description: The runner's status file (O(source=live)).
    type: path
    default: /run/jetpolicy/status.json
  service:
    description: The runner's systemd unit; its C(MainPID) must be the status's writer (O(source=live)).
    type: str
    default: jetpolicy-runner
  venv:
    description: Runtime virtualenv holding C(bin/jetpolicy).
    type: path
    default: /opt/jetpolicy/runtime/current
  jetpolicy_bin:
    description: The C(jetpolicy) executable; default C(<venv>/bin/jetpolicy).
    type: path
  rate_hz:
    description: Control rate for O(source=bench); default the CLI's (the manifest's rate).
    type: float
  duration_s:
    description: Window (O(source=live)) or benchmark (O(source=bench)) length in seconds.
    type: float
    default: 10
  backend:
    description: Inference backend for O(source=bench).
    type: str
    choices: [auto, onnxruntime, tensorrt]
    default: auto
  engine:
    description: TensorRT engine for the C(tensorrt) backend (O(source=bench)).
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
    details: Does not measure; the task is skipped.
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
- name: Measure the running service over 5 s; it must be the unit's main process, on this release
  policy_bench:
    release_id: "{{ policy_release_id }}"
    duration_s: 5

- name: Benchmark the current release on TensorRT for 30 s at 100 Hz in a second process
  policy_bench:
    source: bench
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
      description:
        - C(jetpolicy window) (O(source=live)) or C(jetpolicy bench) (O(source=bench)) JSON plus
          C(release_id), C(release_dir), C(measured_at) (UTC ISO 8601).
        - The window's C(source) is C(live runner), with C(pid), C(release), C(window_s), C(updated_at)
          (start, end), the counters' differences and C(conditions) (its C(source) C(tegrastats) on L4T or
          C(proc); CPU, RAM, GPU, the runner's RSS, temperatures, rail power and a C(series) of at most 120
          points; C(simulated=replay) on the sim L4T robot); a bench's C(source) is C(bench), with
          C(conditions) too.
      returned: success
      type: dict
      sample:
        source: live runner
        backend: tensorrt
        rate_hz: 100
        ticks: 500
        window_s: 5.0
        pid: 4242
        release: 3f2a9c1d0b7e4a55
        inference_us: {p50: 185.1, p90: 194.4, p99: 262.0, max: 404.0}
        deadline_miss_rate: 0.0
        overruns: 0
        conditions: {samples: 21, cpu_percent: {mean: 23.5, max: 41.0}, runner_rss_mb: {min: 210.4, max: 210.4},
                     thermal_c: {thermal_zone0: {type: CPU-therm, min: 41.5, max: 42.0}}}
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
  description: The window or bench argv (in check mode a window's lacks C(--pid), not read then).
  returned: always
  type: list
  elements: str
main_pid:
  description: The service's C(MainPID), passed as C(--pid) (O(source=live)).
  returned: when it was read
  type: int
live_refused:
  description:
    - With O(source=auto), why the live window was not used (the service ran no inference in it);
      the result is then a bench's.
  returned: when auto fell back to bench
  type: str
rc:
  description: Exit status of the window or bench command.
  returned: when it ran
  type: int
stderr_tail:
  description: Last lines of the command's stderr.
  returned: when it ran
  type: list
  elements: str
"""

import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jetpolicy_bench import (
    BENCH_KEYS,
    NO_LIVE_INPUT_RC,
    SOURCES,
    WINDOW_KEYS,
    bench_command,
    fact_content,
    parse_bench_output,
    parse_main_pid,
    release_id,
    window_command,
)


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


def main_pid(module, service, result):
    """The unit's MainPID: the process the window must measure (0: not running)."""
    systemctl = module.get_bin_path("systemctl")
    if systemctl is None:
        module.fail_json(msg="systemctl not found: cannot read the MainPID of %s to measure it" % service, **result)
    cmd = [systemctl, "show", "--property=MainPID", "--value", service]
    # C locale: the value is parsed.
    rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg="systemctl show %s failed (rc=%d): %s" % (service, rc, err.strip() or "no stderr"),
                         rc=rc, stderr=err[-4000:], **result)
    try:
        pid = parse_main_pid(out)
    except ValueError as exc:
        module.fail_json(msg="systemctl show %s: %s" % (service, exc), stdout=out[-2000:], **result)
    if pid == 0:
        module.fail_json(msg="%s has no running main process (MainPID 0): there is no live loop to measure"
                             % service, **result)
    return pid


def main():
    module = AnsibleModule(
        argument_spec=dict(
            source=dict(type="str", default="auto", choices=list(SOURCES)),
            release_dir=dict(type="path"),
            release_id=dict(type="str"),
            status_file=dict(type="path", default="/run/jetpolicy/status.json"),
            service=dict(type="str", default="jetpolicy-runner"),
            venv=dict(type="path", default="/opt/jetpolicy/runtime/current"),
            jetpolicy_bin=dict(type="path"),
            rate_hz=dict(type="float"),
            duration_s=dict(type="float", default=10),
            backend=dict(type="str", default="auto", choices=["auto", "onnxruntime", "tensorrt"]),
            engine=dict(type="path"),
            fact_path=dict(type="path", default="/etc/ansible/facts.d/jetpolicy_bench.fact"),
            save_fact=dict(type="bool", default=True),
        ),
        required_if=[("source", "bench", ("release_dir",))],
        supports_check_mode=True,
    )
    params = module.params
    live = params["source"] in ("live", "auto")
    jetpolicy = params["jetpolicy_bin"] or os.path.join(params["venv"], "bin", "jetpolicy")
    expected_release = params["release_id"] or (release_id(params["release_dir"]) if params["release_dir"] else None)
    if live:
        cmd = window_command(jetpolicy, params["status_file"], params["duration_s"], release=expected_release)
        what = "jetpolicy window of %s" % params["service"]
    else:
        cmd = bench_command(jetpolicy, params["release_dir"], params["rate_hz"], params["duration_s"],
                            params["backend"], params["engine"])
        what = "jetpolicy bench for %s" % params["release_dir"]
    result = dict(changed=False, cmd=cmd, fact_path=params["fact_path"], fact_written=False)
    if module.check_mode:
        module.exit_json(skipped=True, msg="check mode: the %s was not measured" % params["source"], **result)
    if not (os.path.isfile(jetpolicy) and os.access(jetpolicy, os.X_OK)):
        module.fail_json(msg="jetpolicy executable %s not found: deploy the runtime first or set jetpolicy_bin"
                             % jetpolicy, **result)
    if params["release_dir"] and not os.path.isdir(params["release_dir"]):
        module.fail_json(msg="release_dir %s not found" % params["release_dir"], **result)
    if live:
        pid = main_pid(module, params["service"], result)
        result["main_pid"] = pid
        cmd = window_command(jetpolicy, params["status_file"], params["duration_s"], pid, expected_release)
        result["cmd"] = cmd

    rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
    stderr_tail = err.splitlines()[-20:]
    if params["source"] == "auto" and rc == NO_LIVE_INPUT_RC:
        # The service had nothing to infer on: measure its release with a second process instead.
        if not params["release_dir"]:
            module.fail_json(msg="%s ran no inference and no release_dir was given to bench instead: %s"
                                 % (params["service"], stderr_tail[-1] if stderr_tail else "no stderr"), **result)
        result["live_refused"] = stderr_tail[-1] if stderr_tail else "no inference in the window"
        live = False
        cmd = bench_command(jetpolicy, params["release_dir"], params["rate_hz"], params["duration_s"],
                            params["backend"], params["engine"])
        what = "jetpolicy bench for %s" % params["release_dir"]
        result["cmd"] = cmd
        rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
        stderr_tail = err.splitlines()[-20:]
    result.update(rc=rc, stderr_tail=stderr_tail)
    if rc != 0:
        module.fail_json(msg="%s failed (rc=%d): %s" % (what, rc, stderr_tail[-1] if stderr_tail else "no stderr"),
                         stdout=out[-2000:], stderr=err[-4000:], **result)
    try:
        bench = parse_bench_output(out, WINDOW_KEYS if live else BENCH_KEYS)
    except ValueError as exc:
        module.fail_json(msg="%s printed no usable JSON: %s" % (what, exc),
                         stdout=out[-2000:], stderr=err[-4000:], **result)
    bench.setdefault("source", "live runner" if live else "bench")
    # The window names the release the measured runner loaded (checked against --release).
    bench["release_id"] = bench.get("release") if live else expected_release
    bench["release_dir"] = params["release_dir"]
    bench["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if params["save_fact"]:
        result["fact_written"] = write_fact(module, params["fact_path"], fact_content(bench))
    module.exit_json(ansible_facts={"policy_bench": bench}, **result)


if __name__ == "__main__":
    main()
