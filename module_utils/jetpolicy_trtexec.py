# Copyright: (c) 2026, jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Decision logic of the ``trtexec`` module: flags, cache key, log parsing.

Plain typed functions, no Ansible objects, so pytest can test them directly.
Runs on the robot's Python 3.8+.

Every output format parsed here is one shown in the recorded logs under
``../shared/fixtures/trtexec/`` (real trtexec output) or printed by TensorRT's
own trtexec sources (``Engine built in N sec.``, ``Dynamic dimensions required
for input``, ``Saving engine to file failed.``, the enqueue-bound warning);
nothing is guessed. Source lines are cited at the regexes, by NVIDIA/TensorRT tag
(8.5.2 = JetPack 5.1, v8.6.1 for JetPack 6.0's 8.6.2, v10.3.0 = JetPack 6.1/6.2).
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = [
    "CACHE_KEY_FORMAT",
    "DEVICE_FACT_KEYS",
    "ENQUEUE_BOUND_RATIO",
    "KILL_GRACE_S",
    "PRECISIONS",
    "build_flags",
    "build_succeeded",
    "cache_key",
    "decode_version_tag",
    "enqueue_bound_verdict",
    "extract_failure_causes",
    "full_command",
    "killed_build_cause",
    "limit_wrapper",
    "log_tail",
    "merge_export_times",
    "metrics_from_parsed",
    "normalize_tensorrt_version",
    "parse_export_times",
    "parse_trtexec_log",
    "save_failure_cause",
    "stale_temp_files",
    "temp_engine_name",
    "tensorrt_version_from_header",
    "version_tuple",
]

CACHE_KEY_FORMAT = 1
PRECISIONS = ("fp32", "fp16", "int8", "best")

# Flags that are owned by the module: users must not pass them in extra_args.
_OWNED_FLAGS = ("--onnx", "--saveEngine", "--loadEngine", "--exportTimes", "--exportProfile")

# trtexec prefixes most lines with "[MM/DD/YYYY-HH:MM:SS] [I] " and TensorRT's own
# logger adds "[TRT] "; some copies drop the date (trt10.3_onnx_parse_failure.log line 1).
_PREFIX_RE = re.compile(
    r"^(?:\[\d{2}/\d{2}/\d{4}-\d{2}:\d{2}:\d{2}\]\s*)?(?:\[[IWEVF]\]\s*)?(?:\[TRT\]\s*)?"
)
# "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # cmd"; newer builds add "[b17]".
_BANNER_RE = re.compile(
    r"^&&&& (?P<status>RUNNING|PASSED|FAILED) TensorRT\.trtexec"
    r"(?: \[TensorRT v(?P<tag>\d+)\])?(?: \[b\d+\])?\s*#\s*(?P<cmd>.*)$"
)
_STAT_NAMES = {
    "Latency": "latency_ms",
    "Enqueue Time": "enqueue_ms",
    "H2D Latency": "h2d_ms",
    "GPU Compute Time": "gpu_compute_ms",
    "D2H Latency": "d2h_ms",
}
_STAT_LINE_RE = re.compile(r"^(?P<name>Latency|Enqueue Time|H2D Latency|GPU Compute Time|D2H Latency): (?P<body>.*)$")
_STAT_ITEM_RE = re.compile(r"(?P<key>min|max|mean|median|percentile\((?P<pct>[\d.]+)%\)) = (?P<val>[-\d.eE+]+) ms")
_FLOAT = r"([-\d.eE+]+)"

# "=== Device Information ===" block: "Selected Device: Xavier" / "Compute Capability: 7.2" in the
# xavier_trt8.5.2 log; the same two lines in TensorRT's setCudaDevice (sampleDevice.h in 8.5.2 and
# v8.6.1, sampleDevice.cpp in v10.3.0, which adds "Selected Device ID:"/"Selected Device UUID:" lines
# that the ": " right after "Device" keeps out).
_DEVICE_RE = re.compile(r"^Selected Device: (?P<name>.+?)\s*$")
_CC_RE = re.compile(r"^Compute Capability: (?P<cc>\d+\.\d+)\s*$")
# "=== Build Options ===" line "Precision: FP32" (xavier_trt8.5.2 log). printPrecision() in
# sampleOptions.cpp writes "FP32" then "+FP16", "+INT8" (8.5.2), "+FP8" (v8.6.1), "+BF16", "+INT4"
# (v10.3.0), or "Strongly Typed" (v10.3.0), then optionally " (obey precision constraints)" or
# " (prefer precision constraints)". TRT 10 omits Build Options with --loadEngine.
_PRECISION_RE = re.compile(
    r"^Precision: (?P<types>[A-Za-z0-9+ ]+?)(?: \((?P<constraints>obey|prefer) precision constraints\))?\s*$"
)
# sampleReporting.cpp printTrace (8.5.2, v8.6.1, v10.3.0): "GPU latency" is the mean compute time of
# the window, "Host latency" H2D+compute+D2H, "enqueue" the host enqueue time (orin_trt8.6 log).
_TRACE_RE = re.compile(
    rf"^Average on \d+ runs - GPU latency: {_FLOAT} ms - Host latency: {_FLOAT} ms \(enqueue {_FLOAT} ms\)"
)
# sampleReporting.cpp printPerformanceReport (8.5.2 line 241, v8.6.1 line 241, v10.3.0 line 271), printed
# when the median enqueue time exceeds 0.8 x the median GPU compute time.
_ENQUEUE_WARNING = "Throughput may be bound by Enqueue Time rather than GPU Compute"
# What trtexec prints when --saveEngine cannot be written: getEngineBuildEnv() in sampleEngines.cpp
# (8.5.2 line 1220, v8.6.1 line 1411, v10.3.0 line 1493) checks the ofstream after the write with
# SMP_RETVAL_IF_FALSE(..., "Saving engine to file failed.", ...) to gLogError, then trtexec.cpp prints
# "Engine set up failed" and "&&&& FAILED". sample::saveEngine() in the same file prints
# "Cannot open engine file: <path>" instead (trtexec's own save path does not call it, other samples do).
_SAVE_FAILED_RE = re.compile(r"^(?:Saving engine to file failed\.|Cannot open engine file: .*)$")


def version_tuple(version: str) -> tuple[int, ...]:
    """'8.5.2' -> (8, 5, 2); ignores non-numeric tails."""
    parts = []
    for piece in version.split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group(0)))
    return tuple(parts)


def decode_version_tag(tag: str) -> str:
    """Decode the banner's ``vNNNN`` tag (NV_TENSORRT_VERSION).

    TensorRT < 10 encodes MAJOR*1000 + MINOR*100 + PATCH (``v8502`` = 8.5.2),
    TensorRT >= 10 encodes MAJOR*10000 + MINOR*100 + PATCH (``v100300`` = 10.3.0,
    ``v100001`` = 10.0.1).
    """
    number = int(tag)
    if number >= 100000:
        return f"{number // 10000}.{(number // 100) % 100}.{number % 100}"
    return f"{number // 1000}.{(number // 100) % 10}.{number % 100}"


def normalize_tensorrt_version(raw: str) -> str | None:
    """MAJOR.MINOR.PATCH from a Debian version or a plain version.

    '8.5.2-1+cuda11.4' -> '8.5.2', '10.3.0.30-1+cuda12.5' -> '10.3.0', '8.6' -> '8.6.0'.
    """
    match = re.match(r"^\s*(?:\d+:)?(\d+)\.(\d+)(?:\.(\d+))?", raw or "")
    if not match:
        return None
    return "{}.{}.{}".format(match.group(1), match.group(2), match.group(3) or "0")


def tensorrt_version_from_header(text: str) -> str | None:
    """Version from NvInferVersion.h (``#define NV_TENSORRT_MAJOR 10`` ...)."""
    found: dict[str, str] = {}
    for name in ("MAJOR", "MINOR", "PATCH"):
        match = re.search(rf"#define\s+(?:NV_)?TENSORRT_{name}\s+(\d+)", text)
        if match:
            found[name] = match.group(1)
    if "MAJOR" not in found or "MINOR" not in found:
        return None
    return "{}.{}.{}".format(found["MAJOR"], found["MINOR"], found.get("PATCH", "0"))


def _shape_text(shape: Any) -> str:
    if isinstance(shape, (list, tuple)):
        return "x".join(str(int(d)) for d in shape)
    return str(shape).strip()


def _shapes_flags(shapes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not shapes:
        return []
    flags = []
    for kind, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
        items = []
        for name in sorted(shapes):
            spec = shapes[name] or {}
            if kind not in spec or spec[kind] in (None, ""):
                raise ValueError(f"shapes.{name} needs min, opt and max (missing {kind})")
            items.append(f"{name}:{_shape_text(spec[kind])}")
        flags.append("{}={}".format(flag, ",".join(items)))
    return flags


def build_flags(
    tensorrt_version: str,
    precision: str = "fp16",
    workspace_mib: int | None = None,
    dla_core: int | None = None,
    allow_gpu_fallback: bool = False,
    calibration_cache: str | None = None,
    shapes: Mapping[str, Mapping[str, Any]] | None = None,
    timing_cache: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The engine-affecting trtexec flags for this TensorRT version (part of the cache key).

    Version rules (sources: fixtures README + orin_trt10.3_removed_options.log for TRT 10;
    NVIDIA's "Migrating trtexec Usage from TensorRT 8.x to 10.x" page; the TRT 8.5.2 prolog in
    xavier_trt8.5.2_loadengine_dumpprofile.log already shows "Memory Pools: workspace"):

    - workspace: TRT < 8.4 ``--workspace=N`` (MiB); 8.4 to 9.x ``--memPoolSize=workspace:N``
      (MiB; --workspace is deprecated there since the builder's max-workspace API was deprecated
      in 8.3); TRT >= 10 ``--memPoolSize=workspace:NM`` (``--workspace`` removed).
    - ``--explicitBatch``: only for TRT < 8.6. trtexec 8.6 prints "--explicitBatch flag has been
      deprecated and has no effect" and enables explicit batch for ONNX by itself
      (NVIDIA/TensorRT issue #3734); TRT 10 removed it ("Unknown option").
    """
    if precision not in PRECISIONS:
        raise ValueError("precision must be one of {}, got {!r}".format(", ".join(PRECISIONS), precision))
    version = version_tuple(tensorrt_version)
    if len(version) < 2:
        raise ValueError(f"cannot read TensorRT version {tensorrt_version!r} (expected MAJOR.MINOR[.PATCH])")
    major_minor = version[:2]
    for arg in extra_args:
        name = str(arg).split("=", 1)[0]
        if name in _OWNED_FLAGS:
            raise ValueError(f"extra_args must not contain {name}: the module sets it")
    if dla_core is not None and precision == "fp32":
        raise ValueError("dla_core needs precision fp16, int8 or best: the DLA does not run FP32")
    if calibration_cache and precision not in ("int8", "best"):
        raise ValueError("calibration_cache is only used with precision int8 or best")

    flags: list[str] = []
    if major_minor < (8, 6):
        flags.append("--explicitBatch")
    if precision != "fp32":
        flags.append(f"--{precision}")
    if calibration_cache:
        flags.append(f"--calib={calibration_cache}")
    if workspace_mib is not None:
        if workspace_mib <= 0:
            raise ValueError(f"workspace_mib must be positive, got {workspace_mib}")
        if major_minor < (8, 4):
            flags.append(f"--workspace={workspace_mib}")
        elif version[0] < 10:
            flags.append(f"--memPoolSize=workspace:{workspace_mib}")
        else:
            flags.append(f"--memPoolSize=workspace:{workspace_mib}M")
    if dla_core is not None:
        if dla_core < 0:
            raise ValueError(f"dla_core must be >= 0, got {dla_core}")
        flags.append(f"--useDLACore={dla_core}")
        if allow_gpu_fallback:
            flags.append("--allowGPUFallback")
    flags.extend(_shapes_flags(shapes or {}))
    if timing_cache:
        flags.append(f"--timingCacheFile={timing_cache}")
    flags.extend(str(arg) for arg in extra_args)
    return flags


def full_command(
    trtexec_path: str,
    onnx: str,
    engine_out: str,
    flags: Sequence[str],
    tensorrt_version: str,
    measure: bool = True,
    export_times: str | None = None,
) -> list[str]:
    """argv for the build. ``measure`` false adds the build-only flag of the version
    (``--buildOnly`` in 8.x, ``--skipInference`` in 10.x). Measurement flags are not part of
    the cache key: they do not change the engine."""
    cmd = [trtexec_path, f"--onnx={onnx}", f"--saveEngine={engine_out}"]
    cmd.extend(flags)
    if not measure:
        cmd.append("--skipInference" if version_tuple(tensorrt_version)[0] >= 10 else "--buildOnly")
    elif export_times:
        cmd.append(f"--exportTimes={export_times}")
    return cmd


def cache_key(
    onnx_sha256: str,
    tensorrt_version: str,
    device_model: str,
    precision: str,
    flags: Sequence[str],
    calibration_cache_sha256: str | None = None,
) -> str:
    """sha256 over everything that makes an engine valid for a robot."""
    payload = {
        "format": CACHE_KEY_FORMAT,
        "onnx_sha256": onnx_sha256,
        "tensorrt_version": tensorrt_version,
        "device_model": device_model,
        "precision": precision,
        "flags": list(flags),
        "calibration_cache_sha256": calibration_cache_sha256,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _strip(line: str) -> str:
    return _PREFIX_RE.sub("", line.rstrip("\r\n"), count=1)


def _stat_block(body: str) -> dict[str, float]:
    stats: dict[str, float] = {}
    for item in _STAT_ITEM_RE.finditer(body):
        pct = item.group("pct")
        key = f"p{float(pct):g}" if pct else item.group("key")
        stats[key] = float(item.group("val"))
    return stats


def parse_trtexec_log(text: str) -> dict[str, Any]:
    """Parse trtexec output (8.x or 10.x, with or without ``[date] [I]`` prefixes).

    Returns only what the text contains: keys of missing fields are absent.
    Keys: status ('running'|'passed'|'failed'), tensorrt_version, command, build_time_s,
    engine_load_s, engine_deserialize_s, throughput_qps, latency_ms, enqueue_ms, h2d_ms,
    gpu_compute_ms, d2h_ms (dicts min/max/mean/median/p90/p95/p99), total_host_walltime_s,
    total_gpu_compute_s, gpu_compute_cv_pct, average_runs, profile, e2e_timing_suppressed,
    errors, dynamic_inputs_without_shapes, device_name, compute_capability, builder_precision,
    precision_constraints, trace_averages (list of {gpu_ms, host_ms, enqueue_ms}),
    enqueue_bound_warning, engine_save_error (the trtexec line).
    """
    result: dict[str, Any] = {}
    errors: list[str] = []
    dynamic: list[str] = []
    trace: list[dict[str, float]] = []
    in_profile = False
    for raw in text.splitlines():
        banner = _BANNER_RE.match(raw.strip())
        if banner:
            status = banner.group("status").lower()
            if status != "running" or "status" not in result:
                result["status"] = status
            if banner.group("tag"):
                result["tensorrt_version"] = decode_version_tag(banner.group("tag"))
            result["command"] = banner.group("cmd").strip()
            continue
        is_error = bool(re.match(r"^(?:\[[^\]]*\]\s*)?\[E\]", raw))
        line = _strip(raw)
        if is_error and line:
            errors.append(line.strip())
        match = re.match(r"^TensorRT version: (\d+\.\d+\.\d+)", line)
        if match and "tensorrt_version" not in result:
            result["tensorrt_version"] = match.group(1)
            continue
        match = _DEVICE_RE.match(line)
        if match:
            result.setdefault("device_name", match.group("name"))
            continue
        match = _CC_RE.match(line)
        if match:
            result.setdefault("compute_capability", match.group("cc"))
            continue
        match = _PRECISION_RE.match(line)
        if match and "builder_precision" not in result:
            result["builder_precision"] = match.group("types").strip()
            if match.group("constraints"):
                result["precision_constraints"] = match.group("constraints")
            continue
        if _ENQUEUE_WARNING in line:
            result["enqueue_bound_warning"] = True
            continue
        match = _SAVE_FAILED_RE.match(line.strip())
        if match:
            result.setdefault("engine_save_error", match.group(0))
            continue
        match = re.match(rf"^Engine built in {_FLOAT} sec", line)
        if match:
            result["build_time_s"] = float(match.group(1))
            continue
        match = re.match(rf"^Engine loaded in {_FLOAT} sec", line)
        if match:
            result["engine_load_s"] = float(match.group(1))
            continue
        match = re.match(rf"^Engine deserialized in {_FLOAT} sec", line)
        if match:
            result["engine_deserialize_s"] = float(match.group(1))
            continue
        match = re.match(rf"^Throughput: {_FLOAT} qps", line)
        if match:
            result["throughput_qps"] = float(match.group(1))
            continue
        match = _STAT_LINE_RE.match(line)
        if match:
            stats = _stat_block(match.group("body"))
            if stats:
                result[_STAT_NAMES[match.group("name")]] = stats
            continue
        match = re.match(rf"^Total Host Walltime: {_FLOAT} s", line)
        if match:
            result["total_host_walltime_s"] = float(match.group(1))
            continue
        match = re.match(rf"^Total GPU Compute Time: {_FLOAT} s", line)
        if match:
            result["total_gpu_compute_s"] = float(match.group(1))
            continue
        match = re.search(rf"GPU compute time is unstable, with coefficient of variance = {_FLOAT}%", line)
        if match:
            result["gpu_compute_cv_pct"] = float(match.group(1))
            continue
        match = _TRACE_RE.match(line)
        if match:
            trace.append({"gpu_ms": float(match.group(1)), "host_ms": float(match.group(2)),
                          "enqueue_ms": float(match.group(3))})
            continue
        if line.startswith("The e2e network timing is not reported"):
            result["e2e_timing_suppressed"] = True
            continue
        match = re.match(r"^=== Profile \((\d+) iterations ?\) ===", line)
        if match:
            result["profile"] = {"iterations": int(match.group(1))}
            in_profile = True
            continue
        if in_profile:
            match = re.match(rf"^\s*Total\s+{_FLOAT}\s+{_FLOAT}\s+{_FLOAT}\s+{_FLOAT}\s*$", line)
            if match:
                result["profile"].update(
                    total_ms=float(match.group(1)),
                    average_ms=float(match.group(2)),
                    median_ms=float(match.group(3)),
                )
                in_profile = False
            continue
        match = re.match(r"^Dynamic dimensions required for input: ([^,]+), but no shapes were provided", line)
        if match:
            dynamic.append(match.group(1).strip())
    if trace:
        result["average_runs"] = len(trace)
        result["trace_averages"] = trace
    if errors:
        result["errors"] = errors
    if dynamic:
        result["dynamic_inputs_without_shapes"] = dynamic
    return result


# Replacements for options TensorRT 10 removed (fixtures README, NVIDIA migration guide).
_REMOVED_IN_TRT10 = {
    "--workspace": "use --memPoolSize=workspace:N (workspace_mib does this)",
    "--buildOnly": "use --skipInference",
    "--explicitBatch": "drop it: networks are always explicit batch",
    "--minTiming": "use --avgTiming",
}


def extract_failure_causes(text: str) -> list[str]:
    """Human causes of a failed trtexec run, most specific first (empty when none found)."""
    causes: list[str] = []
    lines = [_strip(raw) for raw in text.splitlines()]
    joined = "\n".join(lines)

    unknown = []
    for line in lines:
        match = re.match(r"^Unknown option: (--[A-Za-z0-9_]+)", line)
        if match:
            unknown.append(match.group(1))
    for option in unknown:
        hint = _REMOVED_IN_TRT10.get(option)
        causes.append(
            "unknown option {}{}".format(option, f" (removed in TensorRT 10: {hint})" if hint else "")
        )

    if "Failed to parse onnx file" in joined or "Parsing model failed" in joined or "In function parseNode" in joined:
        detail = []
        node = re.search(r"While parsing node number (\d+) \[(\w+) -> ([^\]]*)\]", joined)
        if node:
            detail.append(f"node {node.group(1)} ({node.group(2)} -> {node.group(3)})")
        invalid = re.search(r"Invalid Node - (\S+)", joined)
        if invalid:
            detail.append(f"invalid node {invalid.group(1)}")
        unsupported = re.search(r"No importer registered for op: (\S+)", joined)
        if unsupported:
            detail.append(f"unsupported op {unsupported.group(1)}")
        internal = re.search(r"Error Code \d+: Internal Error \(([^)]*(?:\([^)]*\))?[^)]*)\)", joined)
        if internal:
            detail.append(internal.group(1).strip())
        causes.append("ONNX parse failure" + (": " + "; ".join(detail) if detail else ""))

    if "kPLAN_MAGIC_TAG" in joined or "Engine deserialization failed" in joined or "Serialization assertion" in joined:
        causes.append(
            "incompatible engine: it was built by another TensorRT version or device "
            "(serialization magic tag / deserialization failed); rebuild it on this robot"
        )

    save_error = next((line.strip() for line in lines if _SAVE_FAILED_RE.match(line.strip())), None)
    if save_error:
        causes.append(f"trtexec could not write the engine file ({save_error!r})")

    if re.search(r"OutOfMemory|out of memory|Requested amount of GPU memory", joined):
        causes.append("out of GPU memory during the build: lower workspace_mib, stop other GPU users, or add swap")

    for name in re.findall(r"Dynamic dimensions required for input: ([^,]+), but no shapes were provided", joined):
        causes.append(
            f"input {name.strip()} has dynamic dimensions but no shapes were given: set shapes.{name.strip()} min/opt/max"
        )

    if not causes:
        for line in (raw for raw in text.splitlines()):
            if re.match(r"^(?:\[[^\]]*\]\s*)?\[E\]", line):
                causes.append(_strip(line).strip())
                break
    return causes


def build_succeeded(rc: int, parsed: Mapping[str, Any], engine_exists: bool) -> tuple[bool, str]:
    """Success needs rc 0, a ``&&&& PASSED`` line and the engine file; else the reason."""
    if rc != 0:
        return False, f"trtexec exited with rc={rc}"
    if parsed.get("status") != "passed":
        return False, "no '&&&& PASSED' line in trtexec output"
    if not engine_exists:
        return False, "trtexec reported PASSED but wrote no engine file"
    return True, ""


def log_tail(text: str, lines: int = 40) -> list[str]:
    return text.splitlines()[-lines:]


def _percentile(sorted_values: Sequence[float], pct: float) -> float:
    # Nearest-rank percentile, the definition trtexec's reporting uses for its summary.
    if not sorted_values:
        raise ValueError("no values")
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100.0 * len(sorted_values)) - 1))
    return sorted_values[rank]


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    count = len(ordered)
    middle = count // 2
    median = ordered[middle] if count % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0
    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": sum(ordered) / count,
        "median": median,
        "p90": _percentile(ordered, 90),
        "p95": _percentile(ordered, 95),
        "p99": _percentile(ordered, 99),
    }


def parse_export_times(data: Any) -> dict[str, Any]:
    """Per-inference timings of ``--exportTimes`` (a JSON list of objects with ``latencyMs``,
    ``computeMs``, ``h2dMs``/``inMs``, ``d2hMs``/``outMs``, ``startEnqMs``/``endEnqMs``).
    Returns summary dicts (ms) for what is present; entries without ``latencyMs`` (such as a
    leading count record) are ignored."""
    if not isinstance(data, list):
        return {}
    series: dict[str, list[float]] = {"latency_ms": [], "gpu_compute_ms": [], "h2d_ms": [], "d2h_ms": [], "enqueue_ms": []}
    for entry in data:
        if not isinstance(entry, dict) or "latencyMs" not in entry:
            continue
        series["latency_ms"].append(float(entry["latencyMs"]))
        for key, names in (("gpu_compute_ms", ("computeMs",)), ("h2d_ms", ("h2dMs", "inMs")), ("d2h_ms", ("d2hMs", "outMs"))):
            for name in names:
                if name in entry:
                    series[key].append(float(entry[name]))
                    break
        if "startEnqMs" in entry and "endEnqMs" in entry:
            series["enqueue_ms"].append(float(entry["endEnqMs"]) - float(entry["startEnqMs"]))
    result: dict[str, Any] = {key: _summary(values) for key, values in series.items() if values}
    if series["latency_ms"]:
        result["inferences"] = len(series["latency_ms"])
    return result


def merge_export_times(log_metrics: Mapping[str, Any], export: Mapping[str, Any]) -> dict[str, Any]:
    """Prefer exportTimes numbers (exact per-inference data) over the log's rounded summary."""
    merged = dict(log_metrics)
    for key, value in export.items():
        merged[key] = value
    if export:
        merged["source"] = "exportTimes"
    elif log_metrics:
        merged["source"] = "log"
    return merged


# What trtexec printed about the GPU and the builder precision: returned by the module and kept in the
# sidecar so a reused engine reports them too.
DEVICE_FACT_KEYS = ("device_name", "compute_capability", "builder_precision", "precision_constraints")

_METRIC_KEYS = (
    "build_time_s", "throughput_qps", "latency_ms", "gpu_compute_ms", "h2d_ms", "d2h_ms", "enqueue_ms",
    "total_host_walltime_s", "total_gpu_compute_s", "gpu_compute_cv_pct", "profile", "engine_load_s",
    "engine_deserialize_s",
)


def metrics_from_parsed(parsed: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metrics`` return value: the numeric part of a parsed log."""
    return {key: parsed[key] for key in _METRIC_KEYS if key in parsed}


# --- enqueue-bound runs -----------------------------------------------------------------------------

# trtexec's own threshold: sampleReporting.cpp kENQUEUE_BOUND_REPORTING_THRESHOLD{0.8F} (8.5.2, v8.6.1,
# v10.3.0), compared with ">" on the medians. Using the same rule keeps our verdict and trtexec's warning
# in agreement, and it is the right cut: when the host needs more than 80% of the GPU's compute time just
# to enqueue the next inference, any host jitter (a busy control loop on the same CPU) leaves the GPU idle,
# so the step time follows the CPU, not the engine.
ENQUEUE_BOUND_RATIO = 0.8

_GATE_NOTE = (
    "a gate on GPU compute latency (gpu_compute_ms) alone would understate the time per inference: "
    "gate on 1000/throughput_qps or on latency_ms plus enqueue_ms instead"
)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


def enqueue_bound_verdict(metrics: Mapping[str, Any], parsed: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the measured run was bound by host enqueue time rather than GPU compute.

    Evidence, first found wins: trtexec's own warning line; the medians of ``enqueue_ms`` and
    ``gpu_compute_ms`` in ``metrics`` (exportTimes or the log's summary); the medians of the
    "Average on N runs" trace lines (GPU latency there is the compute time). Rule: bound when
    median enqueue > ENQUEUE_BOUND_RATIO x median GPU compute. Returns {} when undecidable, else
    ``enqueue_bound``, ``enqueue_bound_reason``, ``gpu_compute_gate_ok`` (false when bound: a
    latency gate on GPU compute time would then lie) and, from numbers, ``enqueue_to_gpu_compute``.
    """
    if parsed.get("enqueue_bound_warning"):
        return {
            "enqueue_bound": True,
            "enqueue_bound_reason": "trtexec warned: 'Throughput may be bound by Enqueue Time rather than "
                                    "GPU Compute and the GPU may be under-utilized'; " + _GATE_NOTE,
            "gpu_compute_gate_ok": False,
        }
    enqueue = (metrics.get("enqueue_ms") or {}).get("median")
    compute = (metrics.get("gpu_compute_ms") or {}).get("median")
    source = "{} medians".format(metrics.get("source", "log"))
    if enqueue is None or not compute:
        trace = parsed.get("trace_averages") or []
        if not trace:
            return {}
        enqueue = _median([t["enqueue_ms"] for t in trace])
        compute = _median([t["gpu_ms"] for t in trace])
        source = "medians of {} trtexec trace averages".format(len(trace))
        if not compute:
            return {}
    ratio = enqueue / compute
    bound = enqueue > ENQUEUE_BOUND_RATIO * compute
    reason = "{}: enqueue {:g} ms is {:.0%} of GPU compute {:g} ms ({} the {:.0%} at which trtexec warns)".format(
        source, enqueue, ratio, compute, "above" if bound else "not above", ENQUEUE_BOUND_RATIO)
    if bound:
        reason += "; " + _GATE_NOTE
    return {
        "enqueue_bound": bound,
        "enqueue_bound_reason": reason,
        "gpu_compute_gate_ok": not bound,
        "enqueue_to_gpu_compute": round(ratio, 4),
    }


# --- failed engine saves ------------------------------------------------------------------------------

# Least free space that can hold a small policy's engine; below it (or below the ONNX size) the engine
# most likely did not fit. An engine carries the network's weights (about the ONNX size in FP32, half in
# FP16) plus the chosen kernels, so the ONNX file's size is the natural lower bound of what it needs.
_MIN_ENGINE_FREE_BYTES = 16 * 1024 * 1024


def save_failure_cause(
    engine_dir: str,
    free_bytes: int,
    read_only: bool,
    writable: bool,
    onnx_bytes: int,
) -> str:
    """The likely cause of a failed engine save, from the engine directory as it is after the failure
    (``free_bytes`` read with statvfs while trtexec's partial file is still there)."""
    free_mib = free_bytes / 1048576.0
    if read_only:
        return "read-only filesystem: {} is mounted read-only ({:.0f} MiB free)".format(engine_dir, free_mib)
    if not writable:
        return ("permission denied: the user running trtexec cannot write {} ({:.0f} MiB free); "
                "run as its owner (tensorrt_engine_become_user) or fix its ownership".format(engine_dir, free_mib))
    needed = max(onnx_bytes, _MIN_ENGINE_FREE_BYTES)
    if free_bytes < needed:
        return ("disk full: {:.1f} MiB free in {}, the engine needs about {:.1f} MiB or more "
                "(ONNX {:.1f} MiB); free space there or point engine_dir at a larger disk".format(
                    free_mib, engine_dir, needed / 1048576.0, onnx_bytes / 1048576.0))
    return ("neither a full disk nor a permission problem: {} is writable with {:.0f} MiB free; "
            "see the trtexec log".format(engine_dir, free_mib))


# --- build limits (timeout, memory cap) -------------------------------------------------------------

# Seconds between the TERM sent at build_timeout_s and the KILL that follows if trtexec is still running.
KILL_GRACE_S = 10


def limit_wrapper(
    timeout_bin: str | None,
    timeout_s: int,
    prlimit_bin: str | None,
    memory_limit_mb: int,
) -> list[str]:
    """argv prefix that bounds the build: coreutils ``timeout`` then util-linux ``prlimit --data``.

    run_command has no timeout and no preexec hook, so the bounds come from two wrappers that every
    Ubuntu/L4T root filesystem has (coreutils, util-linux). ``timeout`` sends TERM at the deadline,
    KILL after KILL_GRACE_S, and exits 124 (or dies by KILL). The memory cap is RLIMIT_DATA, not
    RLIMIT_AS: the CUDA driver reserves host virtual address space far beyond physical memory at
    context and pool creation (NVIDIA/cuda-python issue #2381 measured 2x device memory per pool), so an
    address-space cap near the robot's RAM fails CUDA before the build starts. RLIMIT_DATA (Linux >= 4.7,
    JetPack 5/6 run 5.10/5.15) counts only private writable mappings: the builder's heap and anonymous
    memory, which is what grows during a build. GPU memory is bounded by workspace_mib, not by this.
    """
    wrapper: list[str] = []
    if timeout_s:
        if timeout_s < 0 or not timeout_bin:
            raise ValueError("build_timeout_s needs a positive value and the timeout binary")
        wrapper += [timeout_bin, "--signal=TERM", f"--kill-after={KILL_GRACE_S}", str(timeout_s)]
    if memory_limit_mb:
        if memory_limit_mb < 0 or not prlimit_bin:
            raise ValueError("build_memory_limit_mb needs a positive value and the prlimit binary")
        limit = memory_limit_mb * 1024 * 1024
        wrapper += [prlimit_bin, f"--data={limit}:{limit}", "--"]
    return wrapper


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def killed_build_cause(rc: int, elapsed_s: float, timeout_s: int, memory_limit_mb: int) -> str | None:
    """Why a bounded build ended without trtexec finishing, or None when it ended on its own.

    trtexec itself exits 0 or 1 (reportPass/reportFail). rc 124 is ``timeout``'s deadline exit; a
    negative rc is death by a signal (run_command's Popen convention; ``timeout`` re-raises the child's
    signal). A KILL at or after the deadline is the timeout's KILL; an ABRT or SEGV under a memory cap
    is an allocation that failed at the cap (C++ bad_alloc ends in abort()).
    """
    if timeout_s and (rc == 124 or (rc in (-9, 137) and elapsed_s >= timeout_s)):
        return ("timed out: the build ran past build_timeout_s={}s and was stopped after {:.0f}s; "
                "raise build_timeout_s (0 disables it) or give trtexec the device to itself".format(
                    timeout_s, elapsed_s))
    if rc < 0 or rc > 128:
        number = -rc if rc < 0 else rc - 128
        name = _signal_name(number)
        if memory_limit_mb and number in (signal.SIGABRT, signal.SIGSEGV, signal.SIGKILL):
            return ("killed by {} under build_memory_limit_mb={}: an allocation above the cap fails and "
                    "aborts the build; raise build_memory_limit_mb (0 disables it) or lower "
                    "workspace_mib".format(name, memory_limit_mb))
        if number == signal.SIGKILL:
            return ("killed by SIGKILL: most likely the kernel OOM killer (see dmesg); lower workspace_mib, "
                    "stop other GPU users or add swap")
        return "trtexec was killed by {}".format(name)
    return None


# --- temporary engine files ------------------------------------------------------------------------

_TEMP_RE = re.compile(r"^\.(?P<key>[0-9a-f]{64})\.(?:engine|times)\.tmp-(?P<pid>\d+)(?:\.json)?$")


def temp_engine_name(key: str, pid: int) -> str:
    """Name of the file trtexec writes before the engine is moved into place (hidden, per process)."""
    return f".{key}.engine.tmp-{pid}"


def stale_temp_files(names: Iterable[str], is_alive: Callable[[int], bool]) -> list[str]:
    """Temporary engine/exportTimes files left by builds whose module process is gone (killed with the
    connection, or power loss): they hold no live engine and only eat the disk engines need."""
    stale = []
    for name in sorted(names):
        match = _TEMP_RE.match(name)
        if match and not is_alive(int(match.group("pid"))):
            stale.append(name)
    return stale
