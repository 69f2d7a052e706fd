"""trtexec log parsing against every recorded log in ../shared/fixtures/trtexec/."""

from __future__ import annotations

import pytest
from ansible.module_utils.jetpolicy_trtexec import (
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
