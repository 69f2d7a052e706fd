#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: trtexec
short_description: Build a TensorRT engine from an ONNX model on the robot with trtexec
version_added: "0.1.0"
description:
  - Builds C(engine_dir/<cache_key>.engine) from O(onnx) with NVIDIA's C(trtexec).
  - C(cache_key) is a sha256 over the ONNX sha256, the TensorRT version, the device model, the
    precision and every engine-affecting flag (and the INT8 calibration cache content). An existing
    engine with that key is reused (C(changed=false)); O(force) rebuilds it.
  - The engine is written to a temporary file in O(engine_dir) and moved into place atomically only
    after trtexec printed C(&&&& PASSED), exited 0 and the file exists, so an engine already at that
    path stays in use when a build fails, times out or is killed; the temporary file is removed then.
    Temporary files left by a module process that died (connection lost, power cut) are removed on
    the next build.
  - The build is bounded by O(build_timeout_s) (coreutils C(timeout)) and O(build_memory_limit_mb)
    (util-linux C(prlimit --data), RLIMIT_DATA); a build stopped by either fails naming the limit.
  - When trtexec cannot write the engine (C(Saving engine to file failed.)), the failure names the
    likely cause (read-only filesystem, permission denied, disk full) with the free space of O(engine_dir).
  - The GPU name, compute capability and builder precision that trtexec printed are returned, and a
    measured run bound by host enqueue time rather than GPU compute is flagged in RV(metrics).
  - Flags follow the TensorRT major version (TensorRT 10 removed C(--workspace), C(--buildOnly) and
    C(--explicitBatch)).
  - The build metrics (parsed from the trtexec output, or from C(--exportTimes) JSON when O(export_times)
    is on) are saved next to the engine as C(<cache_key>.json) and returned again when the engine is reused.
options:
  onnx:
    description: Path of the ONNX model on the robot.
    type: path
    required: true
  engine_dir:
    description: Directory of the engines; created when missing.
    type: path
    required: true
  precision:
    description: Builder precision. C(best) lets TensorRT pick per layer.
    type: str
    choices: [fp32, fp16, int8, best]
    default: fp16
  calibration_cache:
    description:
      - INT8 calibration cache (C(--calib)). Without it trtexec uses placeholder INT8 scales,
        fine for timing but not for accuracy.
    type: path
  dla_core:
    description:
      - Run on this DLA core (C(--useDLACore)). Needs O(precision) fp16, int8 or best.
    type: int
  allow_gpu_fallback:
    description: Let layers the DLA cannot run fall back to the GPU (C(--allowGPUFallback)).
    type: bool
    default: false
  workspace_mib:
    description:
      - Builder workspace limit in MiB. TensorRT < 8.4 C(--workspace=N), 8.4 to 9.x
        C(--memPoolSize=workspace:N), 10.x C(--memPoolSize=workspace:NM).
    type: int
  shapes:
    description:
      - Optimization profile for dynamic inputs, by input name, each with C(min), C(opt) and C(max)
        given as a list of dims or a C(1x48) string. Becomes C(--minShapes/--optShapes/--maxShapes).
    type: dict
  timing_cache:
    description: Timing cache file (C(--timingCacheFile)); speeds up rebuilds.
    type: path
  extra_args:
    description:
      - More trtexec flags, part of the cache key. Must not contain C(--onnx), C(--saveEngine),
        C(--loadEngine), C(--exportTimes) or C(--exportProfile).
    type: list
    elements: str
    default: []
  measure:
    description:
      - Run trtexec's timed inference after the build to get latency/throughput metrics.
        When false the build-only flag is passed (C(--buildOnly) on 8.x, C(--skipInference) on 10.x)
        and only the build time is reported. Not part of the cache key.
    type: bool
    default: true
  export_times:
    description:
      - Also write per-inference timings with C(--exportTimes) and prefer them for the latency numbers.
        Not part of the cache key.
    type: bool
    default: true
  force:
    description: Rebuild even when an engine with the same cache key exists.
    type: bool
    default: false
  build_timeout_s:
    description:
      - Stop trtexec (TERM, then KILL 10 s later) when the build and measurement run longer than this
        many seconds, and fail. C(0) disables it. Runs trtexec under coreutils C(timeout).
    type: int
    default: 3600
  build_memory_limit_mb:
    description:
      - Cap trtexec's host memory (RLIMIT_DATA, through util-linux C(prlimit --data)) at this many MiB;
        an allocation above it fails and the build aborts, instead of the kernel OOM killer picking a
        victim on the robot (possibly the running policy). C(0) means no cap.
      - RLIMIT_DATA counts private writable memory (heap, anonymous mappings). RLIMIT_AS is not used, as
        the CUDA driver reserves far more virtual address space than the robot has RAM, so an address-space
        cap breaks CUDA initialisation. GPU memory is bounded by O(workspace_mib), not by this.
    type: int
    default: 0
  trtexec_path:
    description: trtexec binary. Default C(/usr/src/tensorrt/bin/trtexec) (JetPack), then C(PATH).
    type: path
  device_model:
    description: Device model for the cache key. Default from C(/proc/device-tree/model).
    type: str
  tensorrt_version:
    description:
      - TensorRT version (C(10.3.0)) for flag selection and the cache key. Default from C(dpkg-query)
        (C(libnvinfer-bin), C(libnvinfer10), C(libnvinfer8), C(tensorrt)), then C(NvInferVersion.h).
        The trtexec banner of the build is checked against it.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports whether it would build (and the command) without running trtexec.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Build on the robot that runs the engine; engines are specific to the TensorRT version and GPU.
  - DLA is worth using mainly in INT8.
author:
  - jetpolicy contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Build an FP16 engine for the current release
  trtexec:
    onnx: /opt/jetpolicy/releases/3f2a9c1d0b7e4a55/policy.onnx
    engine_dir: /opt/jetpolicy/engines
    precision: fp16
    workspace_mib: 1024
  register: engine

- name: INT8 on DLA core 0 with GPU fallback and a timing cache
  trtexec:
    onnx: /opt/jetpolicy/releases/3f2a9c1d0b7e4a55/policy.onnx
    engine_dir: /opt/jetpolicy/engines
    precision: int8
    calibration_cache: /opt/jetpolicy/releases/3f2a9c1d0b7e4a55/calib.cache
    dla_core: 0
    allow_gpu_fallback: true
    timing_cache: /opt/jetpolicy/engines/timing.cache

- name: Dynamic batch input, build only
  trtexec:
    onnx: /opt/jetpolicy/releases/3f2a9c1d0b7e4a55/policy.onnx
    engine_dir: /opt/jetpolicy/engines
    shapes:
      obs: {min: [1, 48], opt: [1, 48], max: [8, 48]}
    measure: false
"""

RETURN = r"""
engine_path:
  description: Path of the engine (existing, built, or that would be built in check mode).
  returned: always
  type: str
  sample: /opt/jetpolicy/engines/6c1f0d...e2.engine
cache_key:
  description: sha256 hex over ONNX sha256, TensorRT version, device model, precision and flags.
  returned: always
  type: str
rebuilt:
  description: Whether trtexec ran (or would run in check mode).
  returned: always
  type: bool
metrics:
  description:
    - Numbers found in the trtexec output; absent keys were not printed. C(source) is C(exportTimes)
      or C(log). Latency-like values are dicts with min, max, mean, median, p90, p95, p99 (ms).
    - C(enqueue_bound) (with C(enqueue_bound_reason)) is true when trtexec printed its "Throughput may
      be bound by Enqueue Time rather than GPU Compute" warning, or when the median enqueue time is above
      0.8 x the median GPU compute time (trtexec's own threshold), from exportTimes, the summary, or the
      "Average on N runs" trace lines. C(gpu_compute_gate_ok) is then false, as the host, not the GPU,
      sets the time per inference, so a gate on C(gpu_compute_ms) alone would pass an engine that is
      slower in practice. Absent when the run printed no timing (O(measure) false, C(--dumpProfile)).
  returned: always
  type: dict
  sample:
    build_time_s: 41.2
    throughput_qps: 742.821
    latency_ms: {min: 1.23303, max: 4.12598, mean: 1.73074, median: 1.38422, p90: 2.68469, p95: 2.87158, p99: 3.07971}
    gpu_compute_ms: {min: 0.872314, mean: 1.3108}
    h2d_ms: {mean: 0.408377}
    d2h_ms: {mean: 0.0115569}
    enqueue_ms: {mean: 0.691059}
    source: log
    enqueue_bound: false
    enqueue_bound_reason: "log medians: enqueue 0.549438 ms is 61% of GPU compute 0.904633 ms (not above the 80% at which trtexec warns)"
    gpu_compute_gate_ok: true
    enqueue_to_gpu_compute: 0.6074
tensorrt_version:
  description: TensorRT version used for the flags and the key.
  returned: always
  type: str
  sample: "10.3.0"
device_model:
  description: Device model used for the key.
  returned: always
  type: str
cmd:
  description:
    - The trtexec argv (run, or that would run). It runs behind the C(timeout)/C(prlimit) prefix of
      RV(launch_prefix) when O(build_timeout_s) or O(build_memory_limit_mb) are set.
  returned: always
  type: list
  elements: str
launch_prefix:
  description: The C(timeout) and C(prlimit) argv put in front of RV(cmd); empty when neither limit is set.
  returned: when trtexec ran or would run
  type: list
  elements: str
device_name:
  description: GPU name trtexec printed (C(Selected Device:) in its Device Information), e.g. C(Xavier).
  returned: when trtexec printed it (also for a reused engine, from its metadata)
  type: str
  sample: Xavier
compute_capability:
  description: CUDA compute capability trtexec printed (C(Compute Capability:)), e.g. C(7.2) on Xavier, C(8.7) on Orin.
  returned: when trtexec printed it (also for a reused engine, from its metadata)
  type: str
  sample: "7.2"
builder_precision:
  description:
    - Precisions enabled in the builder as trtexec printed them (C(Precision:) in its Build Options),
      e.g. C(FP32), C(FP32+FP16), C(FP32+FP16+INT8), or C(Strongly Typed) on TensorRT 10.
  returned: when trtexec printed it (also for a reused engine, from its metadata)
  type: str
  sample: FP32+FP16
precision_constraints:
  description: C(obey) or C(prefer) when trtexec reported precision constraints.
  returned: when trtexec printed them
  type: str
log_tail:
  description: Last lines of the trtexec output.
  returned: when trtexec ran
  type: list
  elements: str
rc:
  description: trtexec exit status.
  returned: when trtexec ran
  type: int
causes:
  description:
    - Failure causes, most specific first; from the log, from the exit status (timeout, memory cap,
      signal) and, for a failed engine save, the likely cause found on the robot.
  returned: failure
  type: list
  elements: str
engine_dir_free_mib:
  description: Free space in O(engine_dir) (statvfs) right after trtexec failed to save the engine.
  returned: when the engine could not be saved
  type: float
save_failure_cause:
  description: Likely cause of a failed engine save (read-only filesystem, permission denied, disk full).
  returned: when the engine could not be saved
  type: str
"""

import errno
import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.jetpolicy_trtexec import (
    DEVICE_FACT_KEYS,
    build_flags,
    build_succeeded,
    cache_key,
    enqueue_bound_verdict,
    extract_failure_causes,
    full_command,
    killed_build_cause,
    limit_wrapper,
    log_tail,
    merge_export_times,
    metrics_from_parsed,
    normalize_tensorrt_version,
    parse_export_times,
    parse_trtexec_log,
    save_failure_cause,
    stale_temp_files,
    temp_engine_name,
    tensorrt_version_from_header,
)

# trtexec's JetPack location and the TensorRT packages asked for its version: one home, shared
# with jetson_facts.
from ansible.module_utils.jetpolicy_jetson import TENSORRT_PACKAGES, TRTEXEC_PATH

VERSION_HEADERS = (
    "/usr/include/aarch64-linux-gnu/NvInferVersion.h",
    "/usr/include/x86_64-linux-gnu/NvInferVersion.h",
    "/usr/include/NvInferVersion.h",
)


def find_trtexec(module):
    if module.params["trtexec_path"]:
        path = module.params["trtexec_path"]
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            module.fail_json(msg="trtexec_path %s is not an executable file" % path)
        return path
    if os.path.isfile(TRTEXEC_PATH) and os.access(TRTEXEC_PATH, os.X_OK):
        return TRTEXEC_PATH
    path = module.get_bin_path("trtexec")
    if not path:
        module.fail_json(msg="trtexec not found at %s nor on PATH: install TensorRT (JetPack's "
                             "libnvinfer-bin) or set trtexec_path" % TRTEXEC_PATH)
    return path


def detect_tensorrt_version(module):
    """dpkg first (the installed package is what trtexec links against), then the C header.
    Running trtexec only to read its banner would cost a CUDA init; the banner of the build
    itself is checked afterwards instead."""
    dpkg_query = module.get_bin_path("dpkg-query")
    if dpkg_query:
        for package in TENSORRT_PACKAGES:
            rc, out, _err = module.run_command([dpkg_query, "-W", "-f=${Version}", package],
                                               environ_update={"LC_ALL": "C"})
            version = normalize_tensorrt_version(out) if rc == 0 else None
            if version:
                return version, "dpkg:%s" % package
    for header in VERSION_HEADERS:
        if os.path.isfile(header):
            with open(header) as handle:
                version = tensorrt_version_from_header(handle.read())
            if version:
                return version, header
    return None, None


def read_device_model():
    try:
        with open("/proc/device-tree/model", "rb") as handle:
            model = handle.read().decode("utf-8", "replace").replace("\x00", "").strip()
            return model or None
    except (IOError, OSError):
        return None


def read_sidecar(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return {}


def write_json_atomic(module, path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    module.atomic_move(tmp, path)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        # EPERM: it exists but belongs to someone else.
        return exc.errno == errno.EPERM
    return True


def remove_stale_temp_files(module, engine_dir):
    try:
        names = os.listdir(engine_dir)
    except OSError:
        return
    for name in stale_temp_files(names, pid_alive):
        remove_quietly(os.path.join(engine_dir, name))
        module.warn("removed %s left in %s by a build whose process is gone" % (name, engine_dir))


def engine_dir_space(engine_dir):
    """(free bytes, read-only, writable) of engine_dir for the user running trtexec; root may use the
    blocks ext4 reserves for it, other users only the available ones."""
    st = os.statvfs(engine_dir)
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize, bool(st.f_flag & os.ST_RDONLY), os.access(engine_dir, os.W_OK)


def remove_quietly(*paths):
    for path in paths:
        if path and os.path.exists(path):
            try:
                os.unlink(path)
            except OSError:
                pass


def main():
    module = AnsibleModule(
        argument_spec=dict(
            onnx=dict(type="path", required=True),
            engine_dir=dict(type="path", required=True),
            precision=dict(type="str", default="fp16", choices=["fp32", "fp16", "int8", "best"]),
            calibration_cache=dict(type="path"),
            dla_core=dict(type="int"),
            allow_gpu_fallback=dict(type="bool", default=False),
            workspace_mib=dict(type="int"),
            shapes=dict(type="dict"),
            timing_cache=dict(type="path"),
            extra_args=dict(type="list", elements="str", default=[]),
            measure=dict(type="bool", default=True),
            export_times=dict(type="bool", default=True),
            force=dict(type="bool", default=False),
            build_timeout_s=dict(type="int", default=3600),
            build_memory_limit_mb=dict(type="int", default=0),
            trtexec_path=dict(type="path"),
            device_model=dict(type="str"),
            tensorrt_version=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    onnx = params["onnx"]
    engine_dir = params["engine_dir"]
    if not os.path.isfile(onnx):
        module.fail_json(msg="ONNX model %s not found" % onnx)
    calibration = params["calibration_cache"]
    if calibration and not os.path.isfile(calibration):
        module.fail_json(msg="calibration_cache %s not found" % calibration)

    trtexec = find_trtexec(module)
    if params["tensorrt_version"]:
        tensorrt_version = normalize_tensorrt_version(params["tensorrt_version"])
        if not tensorrt_version:
            module.fail_json(msg="tensorrt_version %r is not MAJOR.MINOR[.PATCH]" % params["tensorrt_version"])
    else:
        tensorrt_version, _source = detect_tensorrt_version(module)
        if not tensorrt_version:
            module.fail_json(msg="cannot detect the TensorRT version (no libnvinfer package, no NvInferVersion.h) "
                                 "for %s: set tensorrt_version" % trtexec)
    device_model = params["device_model"] or read_device_model()
    if not device_model:
        device_model = "unknown"
        module.warn("device model unknown (/proc/device-tree/model unreadable): engines are keyed as 'unknown'")

    try:
        flags = build_flags(
            tensorrt_version,
            precision=params["precision"],
            workspace_mib=params["workspace_mib"],
            dla_core=params["dla_core"],
            allow_gpu_fallback=params["allow_gpu_fallback"],
            calibration_cache=calibration,
            shapes=params["shapes"],
            timing_cache=params["timing_cache"],
            extra_args=params["extra_args"],
        )
    except ValueError as exc:
        module.fail_json(msg="invalid trtexec options for %s: %s" % (onnx, exc))

    key = cache_key(
        module.sha256(onnx), tensorrt_version, device_model, params["precision"], flags,
        module.sha256(calibration) if calibration else None,
    )
    engine_path = os.path.join(engine_dir, "%s.engine" % key)
    sidecar_path = os.path.join(engine_dir, "%s.json" % key)
    result = dict(changed=False, rebuilt=False, engine_path=engine_path, cache_key=key,
                  tensorrt_version=tensorrt_version, device_model=device_model, metrics={})

    if os.path.isfile(engine_path) and not params["force"]:
        # A build killed earlier (connection lost, power cut) left its temporary files: remove them
        # even when this run builds nothing.
        if not module.check_mode:
            remove_stale_temp_files(module, engine_dir)
        sidecar = read_sidecar(sidecar_path)
        result.update(metrics=sidecar.get("metrics", {}), cmd=sidecar.get("cmd", []))
        result.update((name, sidecar[name]) for name in DEVICE_FACT_KEYS if name in sidecar)
        module.exit_json(**result)

    timeout_s = params["build_timeout_s"]
    memory_limit_mb = params["build_memory_limit_mb"]
    try:
        prefix = limit_wrapper(
            module.get_bin_path("timeout", required=True) if timeout_s else None, timeout_s,
            module.get_bin_path("prlimit", required=True) if memory_limit_mb else None, memory_limit_mb)
    except ValueError as exc:
        module.fail_json(msg="invalid build limits for %s: %s" % (engine_path, exc))

    tmp_engine = os.path.join(engine_dir, temp_engine_name(key, os.getpid()))
    times_path = os.path.join(engine_dir, ".%s.times.tmp-%d.json" % (key, os.getpid())) \
        if params["export_times"] and params["measure"] else None
    cmd = full_command(trtexec, onnx, tmp_engine, flags, tensorrt_version,
                       measure=params["measure"], export_times=times_path)
    result.update(changed=True, rebuilt=True, cmd=cmd, launch_prefix=prefix)
    if module.check_mode:
        module.exit_json(msg="would build %s with trtexec" % engine_path, **result)

    if not os.path.isdir(engine_dir):
        try:
            os.makedirs(engine_dir, 0o755)
        except OSError as exc:
            module.fail_json(msg="cannot create engine_dir %s: %s" % (engine_dir, exc))
    remove_stale_temp_files(module, engine_dir)

    started = time.time()
    # C locale: the output is parsed, so keep trtexec's messages untranslated.
    rc, out, err = module.run_command(prefix + cmd, environ_update={"LC_ALL": "C"})
    elapsed = time.time() - started
    text = out + ("\n" + err if err else "")
    parsed = parse_trtexec_log(text)
    device_facts = dict((name, parsed[name]) for name in DEVICE_FACT_KEYS if name in parsed)
    ok, reason = build_succeeded(rc, parsed, os.path.isfile(tmp_engine) and os.path.getsize(tmp_engine) > 0)
    tail = log_tail(text)
    if not ok:
        causes = extract_failure_causes(text)
        killed = killed_build_cause(rc, elapsed, timeout_s, memory_limit_mb)
        if killed:
            causes.insert(0, killed)
        extra = {}
        if parsed.get("engine_save_error") or (rc == 0 and parsed.get("status") == "passed"):
            # Read before the partial file is removed: that is the disk trtexec failed to write.
            free_bytes, read_only, writable = engine_dir_space(engine_dir)
            cause = save_failure_cause(engine_dir, free_bytes, read_only, writable, os.path.getsize(onnx))
            causes.insert(0, "engine not saved to %s: %s" % (tmp_engine, cause))
            extra.update(save_failure_cause=cause, engine_dir_free_mib=round(free_bytes / 1048576.0, 1))
        remove_quietly(tmp_engine, times_path)
        kept = " (the engine already at that path stays in use)" if os.path.isfile(engine_path) else ""
        module.fail_json(
            msg="trtexec failed to build engine %s from %s%s: %s" % (
                engine_path, onnx, kept, "%s (%s)" % ("; ".join(causes), reason) if causes else reason),
            reason=reason, causes=causes, rc=rc, stdout=out[-4000:], stderr=err[-4000:],
            log_tail=tail, cmd=cmd, launch_prefix=prefix, cache_key=key, engine_path=engine_path,
            tensorrt_version=tensorrt_version, changed=False, **dict(device_facts, **extra)
        )

    export = {}
    if times_path and os.path.isfile(times_path):
        try:
            with open(times_path) as handle:
                export = parse_export_times(json.load(handle))
        except (IOError, OSError, ValueError) as exc:
            module.warn("could not read --exportTimes JSON %s: %s; using the log numbers" % (times_path, exc))
    metrics = merge_export_times(metrics_from_parsed(parsed), export)
    metrics.update(enqueue_bound_verdict(metrics, parsed))
    metrics.setdefault("wall_time_s", round(elapsed, 3))
    if metrics.get("enqueue_bound"):
        module.warn("engine %s: %s" % (engine_path, metrics["enqueue_bound_reason"]))
    banner_version = parsed.get("tensorrt_version")
    if banner_version and banner_version != tensorrt_version:
        module.warn("trtexec banner reports TensorRT %s but the cache key uses %s: set tensorrt_version"
                    % (banner_version, tensorrt_version))

    module.atomic_move(tmp_engine, engine_path)
    remove_quietly(times_path)
    sidecar = {
        "cache_key": key, "onnx": onnx, "tensorrt_version": tensorrt_version, "device_model": device_model,
        "precision": params["precision"], "flags": flags, "cmd": cmd, "metrics": metrics,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    sidecar.update(device_facts)
    write_json_atomic(module, sidecar_path, sidecar)
    result.update(metrics=metrics, rc=rc, log_tail=tail, **device_facts)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
