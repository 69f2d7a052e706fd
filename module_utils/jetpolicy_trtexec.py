# Copyright: (c) 2026, jetpolicy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decision logic of the ``trtexec`` module: flags, cache key, log parsing.

Plain typed functions, no Ansible objects, so pytest can test them directly.
Runs on the robot's Python 3.8+.

Every output format parsed here is one shown in the recorded logs under
``../shared/fixtures/trtexec/`` (real trtexec output) or printed by TensorRT's
own trtexec sources (``Engine built in N sec.``, ``Dynamic dimensions required
for input``); nothing is guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping, Sequence

__all__ = [
    "CACHE_KEY_FORMAT",
    "PRECISIONS",
    "build_flags",
    "build_succeeded",
    "cache_key",
    "decode_version_tag",
    "extract_failure_causes",
    "full_command",
    "log_tail",
    "merge_export_times",
    "metrics_from_parsed",
    "normalize_tensorrt_version",
    "parse_export_times",
    "parse_trtexec_log",
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
    errors, dynamic_inputs_without_shapes.
    """
    result: dict[str, Any] = {}
    errors: list[str] = []
    dynamic: list[str] = []
    averages = 0
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
        if re.match(r"^Average on \d+ runs - GPU latency:", line):
            averages += 1
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
    if averages:
        result["average_runs"] = averages
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


_METRIC_KEYS = (
    "build_time_s", "throughput_qps", "latency_ms", "gpu_compute_ms", "h2d_ms", "d2h_ms", "enqueue_ms",
    "total_host_walltime_s", "total_gpu_compute_s", "gpu_compute_cv_pct", "profile", "engine_load_s",
    "engine_deserialize_s",
)


def metrics_from_parsed(parsed: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metrics`` return value: the numeric part of a parsed log."""
    return {key: parsed[key] for key in _METRIC_KEYS if key in parsed}

