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
  - With O(source=bench), starts the runner's bench unit C(<bench_unit>@S.service) (installed by the
    policy_service role beside the runner unit), which runs C(jetpolicy bench --config <runner config>
    --duration-s S) on synthetic observations with the runner's release, backend, engine, rate and
    real-time settings, as the runner's user and under its scheduling, CPU affinity and sandbox, never
    as a root process beside the service. The unit writes the JSON and its stderr to
    O(bench_results_dir); the release it benchmarked must be the one expected.
  - Returns the JSON (see docs/architecture.md; both have C(inference_us), C(deadline_miss_rate),
    C(backend), C(ticks), C(rate_hz), and C(process), what the kernel reported for the measured
    process, user, scheduler, CPUs and seccomp) as C(ansible_facts.policy_bench), with the release id
    and a timestamp added.
  - Saves the same JSON to O(fact_path) (atomic write) so C(ansible -m setup) shows it as
    C(ansible_local.jetpolicy_bench).
  - A measurement is not a configuration change, so the task reports C(changed=false);
    C(fact_written) tells whether the fact file was (re)written.
  - In check mode nothing runs and the task is skipped with a reason.
options:
  source:
    description:
      - C(live) measures the running service (C(jetpolicy window)); C(bench) runs the bench unit
        (C(jetpolicy bench) as the runner runs); C(auto) live, else bench when the service ran no
        inference in the window.
    type: str
    choices: [auto, live, bench]
    default: auto
  release_dir:
    description:
      - Release directory (for example C(/opt/jetpolicy/current)); without O(release_id), the release it
        points to is the one the measured runner (live) or bench (bench) must have loaded.
    type: path
  release_id:
    description:
      - The release id the measured runner or bench must have loaded; default the directory
        O(release_dir) points to. O(source=bench) needs one of the two.
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
  duration_s:
    description: Window (O(source=live)) or benchmark (O(source=bench)) length in seconds.
    type: float
    default: 10
  bench_unit:
    description:
      - The bench template unit (without C(@.service)); C(<bench_unit>@<duration_s>.service) is
        started. policy_service installs C(<policy_service_name>-bench@.service).
    type: str
    default: jetpolicy-runner-bench
  bench_results_dir:
    description:
      - Where the bench unit writes C(<duration_s>.json) and C(<duration_s>.stderr) (its
        StandardOutput= and StandardError=); created root-only when missing.
    type: path
    default: /run/jetpolicy-bench
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

- name: Benchmark the current release for 30 s as the runner runs it (its bench unit)
  policy_bench:
    source: bench
    release_dir: /opt/jetpolicy/current
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
  description:
    - The window argv (in check mode it lacks C(--pid), not read then), or the C(systemctl start) of
      the bench unit.
  returned: always
  type: list
  elements: str
bench_unit:
  description: The bench unit instance that ran.
  returned: when a bench ran
  type: str
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
  description: Exit status of the window command or of the bench unit's start.
  returned: when it ran
  type: int
stderr_tail:
  description: Last lines of the window's or the bench's stderr.
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
    bench_result_files,
    bench_unit,
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


def systemctl_bin(module, why, result):
    systemctl = module.get_bin_path("systemctl")
    if systemctl is None:
        module.fail_json(msg="systemctl not found: cannot %s" % why, **result)
    return systemctl


def systemctl_show(module, unit, prop, result):
    cmd = [systemctl_bin(module, "read %s of %s" % (prop, unit), result), "show", "--property=" + prop,
           "--value", unit]
    # C locale: the value is parsed.
    rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg="systemctl show %s failed (rc=%d): %s" % (unit, rc, err.strip() or "no stderr"),
                         rc=rc, stderr=err[-4000:], **result)
    return out


def main_pid(module, service, result):
    """The unit's MainPID: the process the window must measure (0: not running)."""
    out = systemctl_show(module, service, "MainPID", result)
    try:
        pid = parse_main_pid(out)
    except ValueError as exc:
        module.fail_json(msg="systemctl show %s: %s" % (service, exc), stdout=out[-2000:], **result)
    if pid == 0:
        module.fail_json(msg="%s has no running main process (MainPID 0): there is no live loop to measure"
                             % service, **result)
    return pid


def read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return ""


def run_bench_unit(module, params, result):
    """Start the bench unit for duration_s and wait for it (a oneshot); (rc, stdout, stderr)."""
    unit = bench_unit(params["bench_unit"], params["duration_s"])
    result["bench_unit"] = unit
    load_state = systemctl_show(module, unit, "LoadState", result).strip()
    if load_state != "loaded":
        module.fail_json(msg="bench unit %s is not installed (LoadState %s): the policy_service role installs it "
                             "with the runner unit; deploy with it, or measure the live runner (source=live)"
                             % (unit, load_state or "unknown"), **result)
    out_file, err_file = bench_result_files(params["bench_results_dir"], params["duration_s"])
    try:
        if not os.path.isdir(params["bench_results_dir"]):
            os.makedirs(params["bench_results_dir"], 0o700)
        for stale in (out_file, err_file):
            if os.path.lexists(stale):
                os.remove(stale)
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot prepare the bench results directory %s: %s"
                             % (params["bench_results_dir"], exc), **result)
    cmd = [systemctl_bin(module, "start the bench unit %s" % unit, result), "start", unit]
    result["cmd"] = cmd
    rc, _stdout, start_err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
    err = read_text(err_file)
    if rc != 0 and not err.strip():
        err = start_err
    return rc, read_text(out_file), err


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
            duration_s=dict(type="float", default=10),
            bench_unit=dict(type="str", default="jetpolicy-runner-bench"),
            bench_results_dir=dict(type="path", default="/run/jetpolicy-bench"),
            fact_path=dict(type="path", default="/etc/ansible/facts.d/jetpolicy_bench.fact"),
            save_fact=dict(type="bool", default=True),
        ),
        required_if=[("source", "bench", ("release_dir", "release_id"), True)],
        supports_check_mode=True,
    )
    params = module.params
    live = params["source"] in ("live", "auto")
    jetpolicy = params["jetpolicy_bin"] or os.path.join(params["venv"], "bin", "jetpolicy")
    expected_release = params["release_id"] or (release_id(params["release_dir"]) if params["release_dir"] else None)
    result = dict(changed=False, fact_path=params["fact_path"], fact_written=False)
    if not params["duration_s"] > 0:
        module.fail_json(msg="duration_s must be > 0, not %g" % params["duration_s"], cmd=[], **result)
    if live:
        result["cmd"] = window_command(jetpolicy, params["status_file"], params["duration_s"], release=expected_release)
        what = "jetpolicy window of %s" % params["service"]
    else:
        result["cmd"] = ["systemctl", "start", bench_unit(params["bench_unit"], params["duration_s"])]
    if module.check_mode:
        module.exit_json(skipped=True, msg="check mode: the %s was not measured" % params["source"], **result)
    if params["release_dir"] and not os.path.isdir(params["release_dir"]):
        module.fail_json(msg="release_dir %s not found" % params["release_dir"], **result)
    if live:
        if not (os.path.isfile(jetpolicy) and os.access(jetpolicy, os.X_OK)):
            module.fail_json(msg="jetpolicy executable %s not found: deploy the runtime first or set jetpolicy_bin"
                                 % jetpolicy, **result)
        pid = main_pid(module, params["service"], result)
        result["main_pid"] = pid
        cmd = window_command(jetpolicy, params["status_file"], params["duration_s"], pid, expected_release)
        result["cmd"] = cmd
        rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
        if params["source"] == "auto" and rc == NO_LIVE_INPUT_RC:
            # The service had nothing to infer on: benchmark its release as it would run it instead.
            result["live_refused"] = err.splitlines()[-1] if err.strip() else "no inference in the window"
            live = False
    if not live:
        what = "the bench unit %s" % bench_unit(params["bench_unit"], params["duration_s"])
        rc, out, err = run_bench_unit(module, params, result)
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
    if not live and expected_release and bench.get("release") not in (None, expected_release):
        module.fail_json(msg="%s benchmarked release %s, not %s: the current release changed during the gate; "
                             "run the deploy again" % (what, bench.get("release"), expected_release), **result)
    bench.setdefault("source", "live runner" if live else "bench")
    # The window names the release the measured runner loaded (checked against --release).
    bench["release_id"] = bench.get("release") or expected_release
    bench["release_dir"] = params["release_dir"]
    bench["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if params["save_fact"]:
        result["fact_written"] = write_fact(module, params["fact_path"], fact_content(bench))
    module.exit_json(ansible_facts={"policy_bench": bench}, **result)


if __name__ == "__main__":
    main()
