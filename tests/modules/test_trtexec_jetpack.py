"""trtexec as JetPack ships it (issue 11 item 7): device facts, failed saves, enqueue-bound runs,
bounded builds. Decision functions by table; the module end to end with replay_trtexec.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.jetpolicy_trtexec import (
    KILL_GRACE_S,
    enqueue_bound_verdict,
    killed_build_cause,
    limit_wrapper,
    metrics_from_parsed,
    parse_trtexec_log,
    save_failure_cause,
    stale_temp_files,
    temp_engine_name,
)
from moduletest import FIXTURES, HERE, fixture_text, load_module
from test_trtexec_parser import with_enqueue_warning

trtexec = load_module("trtexec")
REPLAY = HERE / "replay_trtexec.py"
MIB = 1024 * 1024


# --- enqueue-bound verdict ----------------------------------------------------------------------------

def test_verdict_on_the_trt10_summary() -> None:
    """The TRT 10 summary: enqueue median 0.549 ms vs GPU compute median 0.905 ms is 61%, not bound."""
    parsed = parse_trtexec_log(fixture_text("trt10.0_fp16_build_perf_summary.log"))
    metrics = dict(metrics_from_parsed(parsed), source="log")
    verdict = enqueue_bound_verdict(metrics, parsed)
    assert verdict["enqueue_bound"] is False and verdict["gpu_compute_gate_ok"] is True
    assert verdict["enqueue_to_gpu_compute"] == round(0.549438 / 0.904633, 4)
    assert verdict["enqueue_bound_reason"].startswith("log medians: enqueue 0.549438 ms is 61% of GPU compute 0.904633 ms")


def test_verdict_on_the_orin_trace_averages() -> None:
    """The Orin 8.6 excerpt has no GPU Compute summary line: the trace averages decide (not bound)."""
    parsed = parse_trtexec_log(fixture_text("orin_trt8.6_mnist_perf_summary.log"))
    verdict = enqueue_bound_verdict(dict(metrics_from_parsed(parsed), source="log"), parsed)
    assert verdict["enqueue_bound"] is False
    # medians of the four windows: enqueue (0.356763+0.363037)/2, GPU (4.77766+4.77773)/2
    assert verdict["enqueue_to_gpu_compute"] == round(((0.356763 + 0.363037) / 2) / ((4.77766 + 4.77773) / 2), 4)
    assert "medians of 4 trtexec trace averages" in verdict["enqueue_bound_reason"]


def test_verdict_from_the_trtexec_warning() -> None:
    """trtexec's own warning makes the run enqueue-bound and says a GPU-latency gate would lie."""
    parsed = parse_trtexec_log(with_enqueue_warning(fixture_text("trt10.0_fp16_build_perf_summary.log")))
    verdict = enqueue_bound_verdict(dict(metrics_from_parsed(parsed), source="log"), parsed)
    assert verdict["enqueue_bound"] is True and verdict["gpu_compute_gate_ok"] is False
    assert "trtexec warned" in verdict["enqueue_bound_reason"]
    assert "a gate on GPU compute latency (gpu_compute_ms) alone would understate" in verdict["enqueue_bound_reason"]


@pytest.mark.parametrize("enqueue,compute,bound", [
    (0.9, 1.0, True),     # 90% of GPU compute
    (0.81, 1.0, True),
    (0.8, 1.0, False),    # trtexec compares with '>': exactly 80% does not warn
    (0.5, 1.0, False),
    (2.0, 0.5, True),     # host slower than the GPU
])
def test_verdict_rule_on_medians(enqueue: float, compute: float, bound: bool) -> None:
    """Bound when median enqueue > 0.8 x median GPU compute (exportTimes numbers here)."""
    metrics = {"enqueue_ms": {"median": enqueue, "mean": 99.0}, "gpu_compute_ms": {"median": compute, "mean": 0.01},
               "source": "exportTimes"}
    verdict = enqueue_bound_verdict(metrics, {})
    assert verdict["enqueue_bound"] is bound and verdict["gpu_compute_gate_ok"] is not bound
    assert verdict["enqueue_bound_reason"].startswith("exportTimes medians")
    assert ("gate on GPU compute latency" in verdict["enqueue_bound_reason"]) is bound


@pytest.mark.parametrize("name", ["xavier_trt8.5.2_loadengine_dumpprofile.log", "orin_nx_trt10.3_loadengine_prolog.log"])
def test_no_verdict_without_timings(name: str) -> None:
    """--dumpProfile runs and prolog excerpts print no enqueue/GPU timing: no verdict, no guess."""
    parsed = parse_trtexec_log(fixture_text(name))
    assert enqueue_bound_verdict(metrics_from_parsed(parsed), parsed) == {}


# --- failed save: likely cause ------------------------------------------------------------------------

@pytest.mark.parametrize("free,read_only,writable,onnx,start", [
    (0, False, True, 4 * MIB, "disk full: 0.0 MiB free in /e, the engine needs about 16.0 MiB"),
    (100 * MIB, False, True, 300 * MIB, "disk full: 100.0 MiB free in /e, the engine needs about 300.0 MiB"),
    (5 * 1024 * MIB, True, True, 4 * MIB, "read-only filesystem: /e is mounted read-only (5120 MiB free)"),
    (5 * 1024 * MIB, False, False, 4 * MIB, "permission denied: the user running trtexec cannot write /e (5120 MiB free)"),
    (0, False, False, 4 * MIB, "permission denied"),  # no write access is the cause before space
    (5 * 1024 * MIB, False, True, 4 * MIB, "neither a full disk nor a permission problem: /e is writable with 5120 MiB free"),
])
def test_save_failure_cause(free: int, read_only: bool, writable: bool, onnx: int, start: str) -> None:
    """Read-only, then permission, then space below max(ONNX size, 16 MiB), else unknown."""
    assert save_failure_cause("/e", free, read_only, writable, onnx).startswith(start)


# --- bounded builds -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rc,elapsed,timeout_s,memory,start", [
    (124, 61.0, 60, 0, "timed out: the build ran past build_timeout_s=60s"),
    (-9, 70.5, 60, 0, "timed out"),                       # timeout's KILL after the grace period
    (-9, 10.0, 60, 0, "killed by SIGKILL: most likely the kernel OOM killer"),
    (-6, 3.0, 60, 2048, "killed by SIGABRT under build_memory_limit_mb=2048"),
    (134, 3.0, 0, 2048, "killed by SIGABRT under build_memory_limit_mb=2048"),
    (-11, 3.0, 60, 0, "trtexec was killed by SIGSEGV"),
    (1, 3.0, 60, 2048, None),                              # trtexec's own failure
    (0, 3.0, 60, 2048, None),
    (124, 61.0, 0, 0, None),                               # no timeout set: 124 is not ours
])
def test_killed_build_cause(rc: int, elapsed: float, timeout_s: int, memory: int, start: str | None) -> None:
    """Exit status and elapsed time name the limit that stopped the build."""
    cause = killed_build_cause(rc, elapsed, timeout_s, memory)
    assert cause is None if start is None else cause.startswith(start)


def test_limit_wrapper() -> None:
    """timeout (TERM, KILL after the grace) outside prlimit --data; nothing without limits."""
    assert limit_wrapper(None, 0, None, 0) == []
    assert limit_wrapper("/usr/bin/timeout", 900, "/usr/bin/prlimit", 2048) == [
        "/usr/bin/timeout", "--signal=TERM", f"--kill-after={KILL_GRACE_S}", "900",
        "/usr/bin/prlimit", f"--data={2048 * MIB}:{2048 * MIB}", "--"]
    with pytest.raises(ValueError, match="build_timeout_s"):
        limit_wrapper("/usr/bin/timeout", -1, None, 0)
    with pytest.raises(ValueError, match="build_memory_limit_mb"):
        limit_wrapper(None, 0, "/usr/bin/prlimit", -5)


def test_stale_temp_files() -> None:
    """Only this module's temp names, and only those of dead processes."""
    key = "ab" * 32
    names = [temp_engine_name(key, 100), temp_engine_name(key, 200), f".{key}.times.tmp-100.json",
             f"{key}.engine", f"{key}.json", "timing.cache", ".other.engine.tmp-100"]
    assert stale_temp_files(names, lambda pid: pid == 200) == [temp_engine_name(key, 100), f".{key}.times.tmp-100.json"]


# --- the module end to end ----------------------------------------------------------------------------

@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    onnx = tmp_path / "release" / "policy.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"fake onnx bytes")
    monkeypatch.setenv("REPLAY_LOG", str(FIXTURES / "trt10.0_fp16_build_perf_summary.log"))
    for name in ("REPLAY_ENGINE", "REPLAY_SLEEP", "REPLAY_ALLOC_MB", "REPLAY_RC"):
        monkeypatch.delenv(name, raising=False)
    args = {"onnx": str(onnx), "engine_dir": str(tmp_path / "engines"), "trtexec_path": str(REPLAY),
            "tensorrt_version": "10.0.1", "device_model": "NVIDIA Jetson AGX Orin Developer Kit",
            "precision": "fp16", "workspace_mib": 512}
    return {"args": args, "tmp": tmp_path}


def built_engine(run_module, args: dict[str, Any]) -> tuple[Path, bytes]:
    first = run_module(trtexec, args)
    assert first.get("failed") is not True, first
    engine = Path(first["engine_path"])
    return engine, engine.read_bytes()


def leftovers(engine_dir: str) -> list[str]:
    return sorted(p.name for p in Path(engine_dir).iterdir() if ".tmp-" in p.name)


def test_xavier_device_facts_returned_and_kept(run_module, setup, monkeypatch) -> None:
    """GPU name, compute capability and precision from the 8.5.2 log are returned, and again on reuse."""
    monkeypatch.setenv("REPLAY_LOG", str(FIXTURES / "xavier_trt8.5.2_loadengine_dumpprofile.log"))
    args = dict(setup["args"], tensorrt_version="8.5.2", device_model="NVIDIA Jetson AGX Xavier Developer Kit")
    first = run_module(trtexec, args)
    assert first.get("failed") is not True, first
    facts = {k: first[k] for k in ("device_name", "compute_capability", "builder_precision")}
    assert facts == {"device_name": "Xavier", "compute_capability": "7.2", "builder_precision": "FP32"}
    assert "precision_constraints" not in first
    assert "enqueue_bound" not in first["metrics"]  # --dumpProfile: no end-to-end timing to judge
    again = run_module(trtexec, args)
    assert again["rebuilt"] is False
    assert {k: again[k] for k in facts} == facts


def test_trt10_summary_flags_not_enqueue_bound(run_module, setup) -> None:
    """The real TRT 10 run is GPU-bound: enqueue_bound false, the GPU-latency gate is fine; no device lines."""
    result = run_module(trtexec, setup["args"])
    assert result["metrics"]["enqueue_bound"] is False
    assert result["metrics"]["gpu_compute_gate_ok"] is True
    assert result["metrics"]["enqueue_to_gpu_compute"] == 0.6074
    assert "device_name" not in result and "compute_capability" not in result


def test_enqueue_warning_flags_the_run(run_module, setup, monkeypatch) -> None:
    """With trtexec's enqueue warning in the log the facts say enqueue-bound and distrust GPU latency."""
    log = setup["tmp"] / "enqueue_bound.log"
    log.write_text(with_enqueue_warning(fixture_text("trt10.0_fp16_build_perf_summary.log")))
    monkeypatch.setenv("REPLAY_LOG", str(log))
    result = run_module(trtexec, setup["args"])
    assert result.get("failed") is not True, result
    metrics = result["metrics"]
    assert metrics["enqueue_bound"] is True and metrics["gpu_compute_gate_ok"] is False
    assert "understate" in metrics["enqueue_bound_reason"]
    reused = run_module(trtexec, setup["args"])
    assert reused["metrics"]["enqueue_bound"] is True  # kept in the sidecar


@pytest.mark.parametrize("log,version,device", [
    ("orin_nx_trt10.3_loadengine_prolog.log", "10.3.0", None),
    ("xavier_trt8.5.2_loadengine_dumpprofile.log", "8.5.2", "Xavier"),
])
def test_failed_save_names_cause_and_free_space(run_module, setup, monkeypatch, log, version, device) -> None:
    """trtexec's 'Saving engine to file failed.' -> cause and the engine dir's free space; the old
    engine is untouched and trtexec's partial file removed."""
    args = dict(setup["args"], tensorrt_version=version)
    engine, content = built_engine(run_module, args)
    monkeypatch.setenv("REPLAY_LOG", str(FIXTURES / log))
    monkeypatch.setenv("REPLAY_ENGINE", "fail-save")
    result = run_module(trtexec, dict(args, force=True))
    assert result["failed"] is True and result["rc"] == 1
    assert "Saving engine to file failed." in result["msg"]
    assert result["causes"][0].startswith("engine not saved to ")
    assert result["save_failure_cause"].startswith("neither a full disk nor a permission problem")
    st = os.statvfs(args["engine_dir"])
    free_mib = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize / MIB
    assert abs(result["engine_dir_free_mib"] - free_mib) < 64
    assert "stays in use" in result["msg"]
    assert result.get("device_name") == device
    assert engine.read_bytes() == content
    assert leftovers(args["engine_dir"]) == []


@pytest.mark.parametrize("flag,start", [(0, "disk full: 0.0 MiB free in "), (os.ST_RDONLY, "read-only filesystem")])
def test_failed_save_on_a_full_or_read_only_disk(run_module, setup, monkeypatch, flag, start) -> None:
    """The statvfs of the engine dir decides: no free blocks is a full disk, ST_RDONLY read-only."""
    monkeypatch.setenv("REPLAY_ENGINE", "fail-save")
    monkeypatch.setenv("REPLAY_LOG", str(FIXTURES / "orin_nx_trt10.3_loadengine_prolog.log"))
    real = os.statvfs
    engine_dir = setup["args"]["engine_dir"]

    def statvfs(path):
        st = real(path)
        if os.fspath(path) != engine_dir:
            return st
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, 0, 0, st.f_files, st.f_ffree,
                                  st.f_favail, st.f_flag | flag, st.f_namemax))

    monkeypatch.setattr(os, "statvfs", statvfs)
    result = run_module(trtexec, dict(setup["args"], tensorrt_version="10.3.0"))
    assert result["failed"] is True
    assert result["save_failure_cause"].startswith(start)
    assert start in result["msg"]
    assert leftovers(engine_dir) == []


def test_timeout_keeps_the_old_engine(run_module, setup, monkeypatch) -> None:
    """A build that runs past build_timeout_s is stopped, its temp engine removed, the old one kept."""
    engine, content = built_engine(run_module, setup["args"])
    monkeypatch.setenv("REPLAY_SLEEP", "30")
    started = time.monotonic()
    result = run_module(trtexec, dict(setup["args"], force=True, build_timeout_s=1))
    assert time.monotonic() - started < 15
    assert result["failed"] is True and result["rc"] == 124
    assert result["causes"][0].startswith("timed out: the build ran past build_timeout_s=1s")
    assert "raise build_timeout_s" in result["msg"] and "stays in use" in result["msg"]
    assert result["launch_prefix"][-1] == "1" and result["launch_prefix"][1] == "--signal=TERM"
    assert engine.read_bytes() == content
    assert leftovers(setup["args"]["engine_dir"]) == []


def test_memory_cap_aborts_the_build(run_module, setup, monkeypatch) -> None:
    """An allocation over build_memory_limit_mb (RLIMIT_DATA) aborts trtexec; the failure names the cap."""
    engine, content = built_engine(run_module, setup["args"])
    monkeypatch.setenv("REPLAY_ALLOC_MB", "1024")
    result = run_module(trtexec, dict(setup["args"], force=True, build_memory_limit_mb=128))
    assert result["failed"] is True and result["rc"] == -signal.SIGABRT
    assert result["causes"][0].startswith("killed by SIGABRT under build_memory_limit_mb=128")
    assert f"--data={128 * MIB}:{128 * MIB}" in result["launch_prefix"]
    assert engine.read_bytes() == content
    assert leftovers(setup["args"]["engine_dir"]) == []


def test_memory_cap_and_timeout_let_a_normal_build_pass(run_module, setup, monkeypatch) -> None:
    """Under both limits a build within them succeeds, with the same metrics."""
    monkeypatch.setenv("REPLAY_ALLOC_MB", "16")
    result = run_module(trtexec, dict(setup["args"], build_timeout_s=60, build_memory_limit_mb=1024))
    assert result.get("failed") is not True, result
    assert result["metrics"]["throughput_qps"] == 742.821
    assert Path(result["engine_path"]).is_file()
    assert leftovers(setup["args"]["engine_dir"]) == []


def test_no_limits_no_prefix(run_module, setup) -> None:
    """build_timeout_s 0 and no memory cap run trtexec directly (check mode shows the prefix)."""
    result = run_module(trtexec, dict(setup["args"], build_timeout_s=0), check_mode=True)
    assert result["launch_prefix"] == []
    default = run_module(trtexec, setup["args"], check_mode=True)
    assert default["launch_prefix"][0].endswith("timeout") and default["launch_prefix"][-1] == "3600"


def test_stale_temp_of_a_dead_build_is_removed(run_module, setup) -> None:
    """A temp engine left by a dead module process is removed by the next build; a live one is kept."""
    key = run_module(trtexec, setup["args"], check_mode=True)["cache_key"]
    engine_dir = Path(setup["args"]["engine_dir"])
    engine_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = engine_dir / temp_engine_name(key, dead.pid)
    live = engine_dir / temp_engine_name(key, os.getppid())
    stale.write_bytes(b"x" * 1024)
    live.write_bytes(b"y")
    result = run_module(trtexec, setup["args"])
    assert result.get("failed") is not True, result
    assert not stale.exists()
    assert live.exists()


def test_stale_temp_is_removed_when_the_engine_is_cached(run_module, setup) -> None:
    """A run that builds nothing (cache hit) still removes what a killed build left, not in check mode."""
    first = run_module(trtexec, setup["args"])
    assert first["rebuilt"], first
    engine_dir = Path(setup["args"]["engine_dir"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = engine_dir / temp_engine_name(first["cache_key"], dead.pid)
    stale.write_bytes(b"x" * 1024)
    assert not run_module(trtexec, setup["args"], check_mode=True)["rebuilt"]
    assert stale.exists()
    cached = run_module(trtexec, setup["args"])
    assert not cached["rebuilt"] and not cached["changed"], cached
    assert not stale.exists()
