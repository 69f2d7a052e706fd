"""Flag selection by TensorRT version and cache-key sensitivity."""

from __future__ import annotations

import pytest
from ansible.module_utils.jetpolicy_trtexec import build_flags, cache_key, full_command, parse_trtexec_log
from moduletest import fixture_text

SHAPES = {"obs": {"min": [1, 48], "opt": [1, 48], "max": [8, 48]}, "h_in": {"min": "1x64", "opt": "1x64", "max": "8x64"}}


def test_trt10_flags() -> None:
    """TRT 10: memPoolSize with unit, no --explicitBatch, --skipInference for build-only."""
    flags = build_flags("10.3.0", precision="fp16", workspace_mib=1024)
    assert flags == ["--fp16", "--memPoolSize=workspace:1024M"]
    cmd = full_command("/t", "/m.onnx", "/e", flags, "10.3.0", measure=False)
    assert cmd[-1] == "--skipInference" and "--buildOnly" not in cmd


def test_trt85_flags() -> None:
    """TRT 8.5 (JetPack 5.1): --explicitBatch, --memPoolSize in MiB, --buildOnly."""
    flags = build_flags("8.5.2", precision="fp16", workspace_mib=1024)
    assert flags == ["--explicitBatch", "--fp16", "--memPoolSize=workspace:1024"]
    assert full_command("/t", "/m.onnx", "/e", flags, "8.5.2", measure=False)[-1] == "--buildOnly"


def test_trt86_drops_explicit_batch() -> None:
    """TRT 8.6 deprecated --explicitBatch (no effect)."""
    assert build_flags("8.6.2", precision="fp32") == []


def test_trt82_uses_workspace() -> None:
    """TRT < 8.4 only knows --workspace."""
    assert "--workspace=512" in build_flags("8.2.1", workspace_mib=512)


def test_measure_adds_export_times() -> None:
    """Measuring with export_times adds --exportTimes, not a build-only flag."""
    cmd = full_command("/t", "/m.onnx", "/e", [], "10.3.0", measure=True, export_times="/x.json")
    assert cmd == ["/t", "--onnx=/m.onnx", "--saveEngine=/e", "--exportTimes=/x.json"]


def test_dla_int8_shapes_timing_cache() -> None:
    """DLA, calibration, shapes (sorted by input) and timing cache flags."""
    flags = build_flags("10.3.0", precision="int8", calibration_cache="/c.cache", dla_core=1,
                        allow_gpu_fallback=True, shapes=SHAPES, timing_cache="/t.cache", extra_args=["--noTF32"])
    assert flags == [
        "--int8", "--calib=/c.cache", "--useDLACore=1", "--allowGPUFallback",
        "--minShapes=h_in:1x64,obs:1x48", "--optShapes=h_in:1x64,obs:1x48", "--maxShapes=h_in:8x64,obs:8x48",
        "--timingCacheFile=/t.cache", "--noTF32"]


@pytest.mark.parametrize("kwargs,needle", [
    ({"precision": "fp32", "dla_core": 0}, "DLA"),
    ({"precision": "fp16", "calibration_cache": "/c"}, "calibration_cache"),
    ({"extra_args": ["--saveEngine=/x"]}, "--saveEngine"),
    ({"shapes": {"obs": {"min": [1], "opt": [1]}}}, "missing max"),
    ({"precision": "fp64"}, "precision"),
    ({"workspace_mib": 0}, "workspace_mib"),
])
def test_invalid_options(kwargs: dict, needle: str) -> None:
    """Bad combinations raise ValueError naming the option."""
    with pytest.raises(ValueError, match=needle):
        build_flags("10.3.0", **kwargs)


BASE = {"onnx_sha256": "a" * 64, "tensorrt_version": "10.3.0", "device_model": "NVIDIA Jetson AGX Orin Developer Kit",
            "precision": "fp16", "flags": ["--fp16"]}


def test_cache_key_stable() -> None:
    """Same inputs -> same key (sha256 hex)."""
    assert cache_key(**BASE) == cache_key(**dict(BASE))
    assert len(cache_key(**BASE)) == 64


@pytest.mark.parametrize("field,value", [
    ("onnx_sha256", "b" * 64), ("tensorrt_version", "10.3.1"), ("device_model", "NVIDIA Jetson Orin NX"),
    ("precision", "int8"), ("flags", ["--fp16", "--memPoolSize=workspace:512M"]),
])
def test_cache_key_changes_with_each_input(field: str, value: object) -> None:
    """Every input changes the key."""
    assert cache_key(**dict(BASE, **{field: value})) != cache_key(**BASE)


def test_cache_key_changes_with_calibration_content() -> None:
    """The INT8 calibration cache content is part of the key."""
    assert cache_key(**BASE, calibration_cache_sha256="c" * 64) != cache_key(**BASE)


@pytest.mark.parametrize("kwargs", [
    {"workspace_mib": 256}, {"dla_core": 0}, {"dla_core": 0, "allow_gpu_fallback": True},
    {"shapes": SHAPES}, {"timing_cache": "/t"}, {"extra_args": ["--noTF32"]}, {"precision": "best"},
])
def test_each_flag_changes_the_key(kwargs: dict) -> None:
    """Each engine-affecting option yields different flags, hence a different key."""
    plain = build_flags("10.3.0", precision="fp16")
    changed = build_flags("10.3.0", **dict({"precision": "fp16"}, **kwargs))
    assert plain != changed
    assert cache_key(**dict(BASE, flags=plain)) != cache_key(**dict(BASE, flags=changed))


@pytest.mark.parametrize(
    ("log", "shapes"),
    [
        # A model with two dynamic inputs, profile 1..10 points (TensorRT 10.3).
        ("trt10.3_onnx_parse_failure.log",
         {"point_coords": {"min": [1, 1, 2], "opt": [1, 1, 2], "max": [1, 10, 2]},
          "point_labels": {"min": [1, 1], "opt": [1, 1], "max": [1, 10]}}),
        # One input, min = opt = max (TensorRT 10.3 on a Jetson, JetPack 6).
        ("orin_trt10.3_removed_options.log",
         {"images": {"min": [1, 3, 640, 640], "opt": [1, 3, 640, 640], "max": [1, 3, 640, 640]}}),
    ],
)  # fmt: skip
def test_shape_flags_are_written_as_recorded_trtexec_command_lines_show(log: str, shapes: dict) -> None:
    """The profile flags (what a manifest's tensorrt.profiles becomes) are exactly the tokens of the
    trtexec command lines recorded in the fixtures' banners: NAME:DxD..., inputs joined by commas."""
    recorded = parse_trtexec_log(fixture_text(log))["command"].split()
    flags = build_flags("10.3.0", precision="int8", calibration_cache="/r/calib.cache", shapes=shapes)
    assert flags[:2] == ["--int8", "--calib=/r/calib.cache"]
    shape_flags = flags[2:]
    assert [f.split("=", 1)[0] for f in shape_flags] == ["--minShapes", "--optShapes", "--maxShapes"]
    assert all(flag in recorded for flag in shape_flags), (shape_flags, recorded)


def test_int8_calibration_and_batch_profile_flags_and_key() -> None:
    """INT8 + calibration cache + a batch 1/4/8 profile (a manifest's tensorrt section): the flags,
    and a key that changes with the cache content and with the profile."""
    shapes = {"obs": {"min": [1, 48], "opt": [4, 48], "max": [8, 48]}}
    flags = build_flags("8.5.2", precision="int8", calibration_cache="/r/calib.cache", shapes=shapes)
    assert flags == ["--explicitBatch", "--int8", "--calib=/r/calib.cache",
                     "--minShapes=obs:1x48", "--optShapes=obs:4x48", "--maxShapes=obs:8x48"]  # fmt: skip
    key = cache_key("a" * 64, "8.5.2", "orin", "int8", flags, "c" * 64)
    assert key != cache_key("a" * 64, "8.5.2", "orin", "int8", flags, "d" * 64)
    wider = build_flags("8.5.2", precision="int8", calibration_cache="/r/calib.cache",
                        shapes={"obs": {"min": [1, 48], "opt": [4, 48], "max": [16, 48]}})  # fmt: skip
    assert key != cache_key("a" * 64, "8.5.2", "orin", "int8", wider, "c" * 64)
