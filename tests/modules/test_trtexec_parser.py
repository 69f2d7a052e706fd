"""trtexec log parsing against every recorded log in ../shared/fixtures/trtexec/."""

from __future__ import annotations

import pytest
from ansible.module_utils.jetpolicy_trtexec import (
    DEVICE_FACT_KEYS,
    build_succeeded,
    decode_version_tag,
    extract_failure_causes,
    metrics_from_parsed,
    parse_export_times,
    parse_trtexec_log,
)
from moduletest import FIXTURES, fixture_text


def test_every_fixture_log_has_a_test() -> None:
    """A new fixture log must get exact-number assertions here."""
    covered = {
        "orin_nx_trt10.3_loadengine_prolog.log",
        "orin_trt10.3_removed_options.log",
        "orin_trt8.6_mnist_perf_summary.log",
        "trt10.0_engine_version_mismatch.log",
        "trt10.0_fp16_build_perf_summary.log",
        "trt10.3_onnx_parse_failure.log",
        "xavier_trt8.5.2_loadengine_dumpprofile.log",
    }
    assert {p.name for p in FIXTURES.glob("*.log")} == covered


def test_trt10_fp16_performance_summary() -> None:
    """Full TRT 10 summary: every stat line, totals, CV warning, PASSED banner."""
    parsed = parse_trtexec_log(fixture_text("trt10.0_fp16_build_perf_summary.log"))
    assert parsed["status"] == "passed"
    assert parsed["tensorrt_version"] == "10.0.1"  # banner v100001
    assert parsed["throughput_qps"] == 742.821
    assert parsed["latency_ms"] == {"min": 1.23303, "max": 4.12598, "mean": 1.73074, "median": 1.38422,
                                    "p90": 2.68469, "p95": 2.87158, "p99": 3.07971}
    assert parsed["enqueue_ms"] == {"min": 0.423218, "max": 3.69971, "mean": 0.691059, "median": 0.549438,
                                    "p90": 1.1438, "p95": 1.41284, "p99": 2.52856}
    assert parsed["h2d_ms"] == {"min": 0.351685, "max": 0.591309, "mean": 0.408377, "median": 0.388214,
                                "p90": 0.48291, "p95": 0.501923, "p99": 0.530518}
    assert parsed["gpu_compute_ms"] == {"min": 0.872314, "max": 3.66479, "mean": 1.3108, "median": 0.904633,
                                        "p90": 2.23645, "p95": 2.40967, "p99": 2.62042}
    assert parsed["d2h_ms"] == {"min": 0.0065918, "max": 0.0541992, "mean": 0.0115569, "median": 0.0111084,
                                "p90": 0.0144043, "p95": 0.0166016, "p99": 0.041748}
    assert parsed["total_host_walltime_s"] == 3.00476
    assert parsed["total_gpu_compute_s"] == 2.92571
    assert parsed["gpu_compute_cv_pct"] == 43.467
    assert "build_time_s" not in parsed  # the excerpt has no "Engine built in" line
    assert parsed["command"].startswith("./trtexec --onnx=/home/trevitz/7.29.onnx")


def test_trt86_excerpt_stops_after_enqueue_time() -> None:
    """An excerpt ending early yields what it has; H2D/GPU compute/D2H stay absent."""
    parsed = parse_trtexec_log(fixture_text("orin_trt8.6_mnist_perf_summary.log"))
    assert parsed["throughput_qps"] == 208.729
    assert parsed["latency_ms"] == {"min": 4.81763, "max": 4.86572, "mean": 4.83767, "median": 4.83752,
                                    "p90": 4.84772, "p95": 4.85034, "p99": 4.85547}
    assert parsed["enqueue_ms"] == {"min": 0.345459, "max": 0.39978, "mean": 0.357979, "median": 0.356689,
                                    "p90": 0.365295, "p95": 0.372803, "p99": 0.384033}
    assert parsed["average_runs"] == 4
    for absent in ("h2d_ms", "gpu_compute_ms", "d2h_ms", "status", "tensorrt_version", "build_time_s"):
        assert absent not in parsed


def test_xavier_trt852_dumpprofile() -> None:
    """TRT 8.5.2 with --dumpProfile: no e2e summary, profile totals and load times instead."""
    parsed = parse_trtexec_log(fixture_text("xavier_trt8.5.2_loadengine_dumpprofile.log"))
    assert parsed["status"] == "passed"
    assert parsed["tensorrt_version"] == "8.5.2"
    assert parsed["engine_load_s"] == 0.0366376
    assert parsed["engine_deserialize_s"] == 1.89224
    assert parsed["e2e_timing_suppressed"] is True
    assert parsed["profile"] == {"iterations": 309, "total_ms": 3068.65, "average_ms": 9.9309, "median_ms": 9.1586}
    assert "throughput_qps" not in parsed and "latency_ms" not in parsed


def test_orin_nx_trt103_prolog_only() -> None:
    """A prolog-only excerpt: version and command, RUNNING status, no numbers."""
    parsed = parse_trtexec_log(fixture_text("orin_nx_trt10.3_loadengine_prolog.log"))
    assert parsed["status"] == "running"
    assert parsed["tensorrt_version"] == "10.3.0"
    assert metrics_from_parsed(parsed) == {}


def test_removed_options_trt103() -> None:
    """TRT 10 rejects --workspace/--buildOnly/--explicitBatch; causes name the replacements."""
    text = fixture_text("orin_trt10.3_removed_options.log")
    parsed = parse_trtexec_log(text)
    assert parsed["status"] == "failed"
    assert parsed["tensorrt_version"] == "10.3.0"
    causes = extract_failure_causes(text)
    assert [c.split(" (")[0] for c in causes] == [
        "unknown option --workspace", "unknown option --buildOnly", "unknown option --explicitBatch"]
    assert "--memPoolSize=workspace:N" in causes[0]
    assert "--skipInference" in causes[1]


def test_onnx_parse_failure_trt103() -> None:
    """ONNX parser failure: node number, op and message are extracted (first line has no date)."""
    text = fixture_text("trt10.3_onnx_parse_failure.log")
    parsed = parse_trtexec_log(text)
    assert parsed["status"] == "failed"
    assert parsed["errors"][0].startswith("Error[4]: ITensor::getDimensions")
    causes = extract_failure_causes(text)
    assert len(causes) == 1
    assert causes[0].startswith("ONNX parse failure: node 146 (Tile -> \"/Tile_output_0\")")
    assert "invalid node /Tile" in causes[0]
    assert "IIOneHotLayer cannot be used to compute a shape tensor" in causes[0]


def test_engine_version_mismatch_trt100() -> None:
    """kPLAN_MAGIC_TAG / deserialization failure -> incompatible engine cause."""
    text = fixture_text("trt10.0_engine_version_mismatch.log")
    assert parse_trtexec_log(text)["status"] == "failed"
    causes = extract_failure_causes(text)
    assert len(causes) == 1 and causes[0].startswith("incompatible engine")


def test_prefixless_lines_parse_the_same() -> None:
    """Lines without '[date] [I]' prefixes give the same numbers."""
    text = fixture_text("trt10.0_fp16_build_perf_summary.log")
    bare = "\n".join(line.split("] ", 2)[-1] if line.startswith("[") else line for line in text.splitlines())
    assert "[I]" not in bare
    assert parse_trtexec_log(bare) == parse_trtexec_log(text)


@pytest.mark.parametrize("tag,version", [("8502", "8.5.2"), ("8601", "8.6.1"), ("100300", "10.3.0"),
                                         ("100001", "10.0.1")])
def test_decode_version_tag(tag: str, version: str) -> None:
    """Banner tags: 8.x is MAJ*1000+MIN*100+PATCH, 10.x is MAJ*10000+MIN*100+PATCH."""
    assert decode_version_tag(tag) == version


def test_success_needs_passed_and_engine() -> None:
    """PASSED without an engine file, or rc!=0, is a failure."""
    passed = {"status": "passed"}
    assert build_succeeded(0, passed, True) == (True, "")
    assert build_succeeded(0, passed, False)[0] is False
    assert build_succeeded(1, passed, True)[0] is False
    assert build_succeeded(0, {"status": "failed"}, True)[0] is False
    assert build_succeeded(0, {}, True)[0] is False


def test_export_times_summary() -> None:
    """--exportTimes entries give min/max/mean/median/percentiles; count records are skipped."""
    data = [{"count": 3}] + [
        {"startEnqMs": 0.0, "endEnqMs": 0.1 * i, "latencyMs": float(i), "computeMs": i / 2.0, "h2dMs": 0.1,
         "d2hMs": 0.2} for i in (1, 2, 3)]
    summary = parse_export_times(data)
    assert summary["inferences"] == 3
    assert summary["latency_ms"]["min"] == 1.0 and summary["latency_ms"]["max"] == 3.0
    assert summary["latency_ms"]["mean"] == 2.0 and summary["latency_ms"]["median"] == 2.0
    assert summary["gpu_compute_ms"]["max"] == 1.5
    assert parse_export_times({"not": "a list"}) == {}


# --- device, compute capability, builder precision (issue 11 item 7) ---------------------------------
# Only the Xavier 8.5.2 log carries the "=== Device Information ===" and "=== Build Options ===" blocks;
# the Orin 8.6 excerpt starts at the trace lines, the Orin NX 10.3 prolog ends before Device Information
# (and TRT 10 prints no Build Options with --loadEngine), the other logs are error tails or summaries.
DEVICE_FACTS = {
    "xavier_trt8.5.2_loadengine_dumpprofile.log": {"device_name": "Xavier", "compute_capability": "7.2",
                                                   "builder_precision": "FP32"},
    "orin_trt8.6_mnist_perf_summary.log": {},
    "orin_nx_trt10.3_loadengine_prolog.log": {},
    "orin_trt10.3_removed_options.log": {},
    "trt10.0_engine_version_mismatch.log": {},
    "trt10.0_fp16_build_perf_summary.log": {},
    "trt10.3_onnx_parse_failure.log": {},
}


@pytest.mark.parametrize("name,expected", sorted(DEVICE_FACTS.items()))
def test_device_facts_from_each_log(name: str, expected: dict) -> None:
    """Device name, compute capability and precision are read where the log prints them, absent elsewhere."""
    assert set(DEVICE_FACTS) == {p.name for p in FIXTURES.glob("*.log")}
    parsed = parse_trtexec_log(fixture_text(name))
    found = {key: parsed[key] for key in DEVICE_FACT_KEYS if key in parsed}
    assert found == expected


def test_device_lines_without_prefix() -> None:
    """The Xavier device block parses the same with its '[date] [I]' prefixes stripped."""
    text = fixture_text("xavier_trt8.5.2_loadengine_dumpprofile.log")
    bare = "\n".join(line.split("] ", 2)[-1] if line.startswith("[") else line for line in text.splitlines())
    parsed = parse_trtexec_log(bare)
    assert (parsed["device_name"], parsed["compute_capability"], parsed["builder_precision"]) == ("Xavier", "7.2", "FP32")


# printPrecision() in samples/common/sampleOptions.cpp writes "FP32", then "+FP16", "+INT8" (8.5.2),
# "+FP8" (v8.6.1), "+BF16", "+INT4", "Strongly Typed" (v10.3.0) and the constraints suffix; each is put
# in the Xavier log's own "Precision: FP32" line in place of "FP32".
@pytest.mark.parametrize("printed,precision,constraints", [
    ("FP32+FP16", "FP32+FP16", None),
    ("FP32+FP16+INT8", "FP32+FP16+INT8", None),
    ("FP32+FP16+BF16+INT8+FP8+INT4", "FP32+FP16+BF16+INT8+FP8+INT4", None),
    ("FP32+FP16 (obey precision constraints)", "FP32+FP16", "obey"),
    ("FP32+INT8 (prefer precision constraints)", "FP32+INT8", "prefer"),
    ("Strongly Typed", "Strongly Typed", None),
])
def test_precision_as_trtexec_prints_it(printed: str, precision: str, constraints: str | None) -> None:
    """Every form of the Precision line splits into the precision and the constraints."""
    text = fixture_text("xavier_trt8.5.2_loadengine_dumpprofile.log").replace("] Precision: FP32\n", f"] Precision: {printed}\n")
    assert f"Precision: {printed}" in text
    parsed = parse_trtexec_log(text)
    assert parsed["builder_precision"] == precision
    assert parsed.get("precision_constraints") == constraints
    assert "LayerPrecisions" not in parsed["builder_precision"]


# --- enqueue-bound evidence in the log ----------------------------------------------------------------

def test_trace_average_lines_are_read() -> None:
    """The four 'Average on 10 runs' lines of the Orin 8.6 log give GPU, host and enqueue times."""
    parsed = parse_trtexec_log(fixture_text("orin_trt8.6_mnist_perf_summary.log"))
    assert parsed["trace_averages"] == [
        {"gpu_ms": 4.78064, "host_ms": 4.83948, "enqueue_ms": 0.356567},
        {"gpu_ms": 4.77766, "host_ms": 4.83599, "enqueue_ms": 0.356763},
        {"gpu_ms": 4.7771, "host_ms": 4.83513, "enqueue_ms": 0.363037},
        {"gpu_ms": 4.77773, "host_ms": 4.8364, "enqueue_ms": 0.363794},
    ]
    assert "enqueue_bound_warning" not in parsed


def test_no_fixture_has_the_enqueue_warning() -> None:
    """None of the recorded runs was enqueue-bound: no warning line is seen in any of them."""
    for path in FIXTURES.glob("*.log"):
        assert "enqueue_bound_warning" not in parse_trtexec_log(path.read_text()), path.name


# sampleReporting.cpp (8.5.2 line 241, v8.6.1 line 241, v10.3.0 line 271) prints this to the warning
# stream after "Total GPU Compute Time", before the coefficient-of-variance warning.
ENQUEUE_WARNING = ("[09/08/2025-20:11:30] [W] * Throughput may be bound by Enqueue Time rather than GPU Compute "
                   "and the GPU may be under-utilized.\n"
                   "[09/08/2025-20:11:30] [W]   If not already in use, --useCudaGraph (utilize CUDA graphs where "
                   "possible) may increase the throughput.\n")


def with_enqueue_warning(text: str) -> str:
    anchor = "[09/08/2025-20:11:30] [W] * GPU compute time is unstable"
    assert anchor in text
    return text.replace(anchor, ENQUEUE_WARNING + anchor, 1)


def test_enqueue_warning_is_seen() -> None:
    """trtexec's own enqueue-bound warning sets enqueue_bound_warning; the other numbers are unchanged."""
    text = fixture_text("trt10.0_fp16_build_perf_summary.log")
    parsed = parse_trtexec_log(with_enqueue_warning(text))
    assert parsed["enqueue_bound_warning"] is True
    assert parsed["gpu_compute_cv_pct"] == 43.467
    plain = parse_trtexec_log(text)
    assert {k: v for k, v in parsed.items() if k != "enqueue_bound_warning"} == plain


# --- failed engine save -------------------------------------------------------------------------------
# What trtexec prints when --saveEngine cannot be written (sampleEngines.cpp getEngineBuildEnv, then
# trtexec.cpp), after the prolog of a real run; the FAILED banner as in the recorded logs.
SAVE_FAILURE = ("[04/21/2025-16:34:20] [E] Saving engine to file failed.\n"
                "[04/21/2025-16:34:20] [E] Engine set up failed\n"
                "&&&& FAILED TensorRT.trtexec [TensorRT v100300] # /usr/src/tensorrt/bin/trtexec "
                "--onnx=policy.onnx --saveEngine=/opt/jetpolicy/engines/x.engine\n")


def test_save_failure_is_named() -> None:
    """'Saving engine to file failed.' becomes engine_save_error and a cause naming the write."""
    text = fixture_text("orin_nx_trt10.3_loadengine_prolog.log") + SAVE_FAILURE
    parsed = parse_trtexec_log(text)
    assert parsed["status"] == "failed"
    assert parsed["engine_save_error"] == "Saving engine to file failed."
    assert extract_failure_causes(text) == ["trtexec could not write the engine file ('Saving engine to file failed.')"]


def test_sample_save_engine_message_is_named() -> None:
    """sample::saveEngine's 'Cannot open engine file: <path>' is a save failure too."""
    line = "[04/21/2025-16:34:20] [E] Cannot open engine file: /opt/jetpolicy/engines/x.engine\n"
    parsed = parse_trtexec_log(fixture_text("orin_nx_trt10.3_loadengine_prolog.log") + line)
    assert parsed["engine_save_error"] == "Cannot open engine file: /opt/jetpolicy/engines/x.engine"


@pytest.mark.parametrize("name", sorted(DEVICE_FACTS))
def test_no_fixture_is_a_save_failure(name: str) -> None:
    """None of the recorded logs is mistaken for a failed save."""
    assert "engine_save_error" not in parse_trtexec_log(fixture_text(name))
