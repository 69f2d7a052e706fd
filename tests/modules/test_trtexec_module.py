"""The trtexec module end to end, with replay_trtexec.py (a test double replaying real logs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from moduletest import FIXTURES, HERE, load_module

trtexec = load_module("trtexec")
REPLAY = HERE / "replay_trtexec.py"


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    onnx = tmp_path / "release" / "policy.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"fake onnx bytes")
    counter = tmp_path / "runs.txt"
    argv = tmp_path / "argv.json"
    monkeypatch.setenv("REPLAY_LOG", str(FIXTURES / "trt10.0_fp16_build_perf_summary.log"))
    monkeypatch.setenv("REPLAY_COUNTER", str(counter))
    monkeypatch.setenv("REPLAY_ARGS", str(argv))
    args = {"onnx": str(onnx), "engine_dir": str(tmp_path / "engines"), "trtexec_path": str(REPLAY),
                "tensorrt_version": "10.0.1", "device_model": "NVIDIA Jetson AGX Orin Developer Kit",
                "precision": "fp16", "workspace_mib": 512}
    return {"args": args, "counter": counter, "argv": argv, "tmp": tmp_path}


def runs(setup: dict[str, Any]) -> int:
    counter = setup["counter"]
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_first_build_then_cached_then_forced(run_module, setup) -> None:
    """First run builds (changed, metrics); second is a no-op reusing metrics; force rebuilds."""
    first = run_module(trtexec, setup["args"])
    assert first.get("failed") is not True, first
    assert first["changed"] is True and first["rebuilt"] is True
    engine = Path(first["engine_path"])
    assert engine.name == first["cache_key"] + ".engine" and engine.is_file()
    assert first["metrics"]["throughput_qps"] == 742.821
    assert first["metrics"]["latency_ms"]["p99"] == 3.07971
    assert first["metrics"]["source"] == "log"  # the double writes no --exportTimes file
    assert first["tensorrt_version"] == "10.0.1" and first["rc"] == 0
    assert first["log_tail"][-1].startswith("&&&& PASSED")
    argv = json.loads(setup["argv"].read_text())
    assert "--memPoolSize=workspace:512M" in argv and "--fp16" in argv
    assert not any(a.startswith("--workspace") or a == "--explicitBatch" for a in argv)
    assert not list(engine.parent.glob(".*tmp*")), "temp files left behind"

    second = run_module(trtexec, setup["args"])
    assert second["changed"] is False and second["rebuilt"] is False
    assert second["engine_path"] == first["engine_path"]
    assert second["metrics"] == first["metrics"]
    assert runs(setup) == 1

    forced = run_module(trtexec, dict(setup["args"], force=True))
    assert forced["changed"] is True and forced["rebuilt"] is True
    assert runs(setup) == 2


def test_check_mode_does_not_run(run_module, setup) -> None:
    """Check mode reports would-build and the command without running trtexec."""
    result = run_module(trtexec, setup["args"], check_mode=True)
    assert result["changed"] is True and result["rebuilt"] is True
    assert result["cmd"][0] == str(REPLAY)
    assert runs(setup) == 0
    assert not Path(result["engine_path"]).exists()


def test_changed_option_gives_new_engine(run_module, setup) -> None:
    """A different precision is a different cache key, so it builds again."""
    first = run_module(trtexec, setup["args"])
    other = run_module(trtexec, dict(setup["args"], precision="best"))
    assert other["changed"] is True and other["cache_key"] != first["cache_key"]
    assert runs(setup) == 2


def test_parse_failure_log_fails_with_cause(run_module, setup, monkeypatch) -> None:
    """A failing build names the engine, the ONNX and the extracted cause; nothing is left."""
    monkeypatch.setenv("REPLAY_LOG", str(FIXTURES / "trt10.3_onnx_parse_failure.log"))
    result = run_module(trtexec, dict(setup["args"], tensorrt_version="10.3.0"))
    assert result["failed"] is True and result["rc"] == 1
    assert "ONNX parse failure: node 146" in result["msg"]
    assert setup["args"]["onnx"] in result["msg"] and result["engine_path"] in result["msg"]
    assert result["log_tail"][-1].startswith("&&&& FAILED")
    assert not Path(result["engine_path"]).exists()
    assert not list(Path(setup["args"]["engine_dir"]).iterdir())


def test_removed_options_log_fails_with_unknown_option(run_module, setup, monkeypatch) -> None:
    """The TRT 10 'Unknown option' log becomes an unknown-option cause."""
    monkeypatch.setenv("REPLAY_LOG", str(FIXTURES / "orin_trt10.3_removed_options.log"))
    result = run_module(trtexec, setup["args"])
    assert result["failed"] is True
    assert "unknown option --workspace" in result["msg"]


def test_passed_without_engine_file_fails(run_module, setup, monkeypatch) -> None:
    """'&&&& PASSED' alone is not success: the engine file must exist."""
    monkeypatch.setenv("REPLAY_ENGINE", "skip")
    result = run_module(trtexec, setup["args"])
    assert result["failed"] is True
    assert "wrote no engine file" in result["msg"]
    assert not Path(result["engine_path"]).exists()


def test_nonzero_rc_with_passed_fails(run_module, setup, monkeypatch) -> None:
    """A non-zero exit status fails even when the log says PASSED."""
    monkeypatch.setenv("REPLAY_RC", "3")
    result = run_module(trtexec, setup["args"])
    assert result["failed"] is True and result["rc"] == 3


def test_missing_onnx_fails(run_module, setup) -> None:
    """A missing ONNX file is named."""
    result = run_module(trtexec, dict(setup["args"], onnx="/nonexistent/policy.onnx"))
    assert result["failed"] is True and "/nonexistent/policy.onnx" in result["msg"]


def test_invalid_option_combination_fails(run_module, setup) -> None:
    """DLA with fp32 is refused before running anything."""
    result = run_module(trtexec, dict(setup["args"], precision="fp32", dla_core=0))
    assert result["failed"] is True and "DLA" in result["msg"]
    assert runs(setup) == 0
