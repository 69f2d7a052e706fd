"""jetson_facts on fake root trees (real-format files) and on a non-L4T tree."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ansible.module_utils.jetpolicy_jetson import (
    jetpack_version,
    l4t_from_package_version,
    nearest_existing_parent,
    parse_dpkg_query,
    parse_meminfo,
    parse_nv_tegra_release,
    parse_nvpmodel_query,
)
from moduletest import load_module

jetson_facts = load_module("jetson_facts")

# Real first lines of /etc/nv_tegra_release (JetPack 5.1.2 and JetPack 6.1).
R35 = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n"
R36 = ("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13 04:36:44 UTC 2024\n"
       "# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n")
MEMINFO = "MemTotal:       64335836 kB\nMemFree:        50000000 kB\nMemAvailable:   59404884 kB\n"
DPKG_STATUS = """Package: nvidia-l4t-core
Status: install ok installed
Version: 36.4.0-20240912212859

Package: libnvinfer10
Status: install ok installed
Version: 10.3.0.30-1+cuda12.5

Package: cuda-cudart-12-6
Status: install ok installed
Version: 12.6.68-1

Package: libcudnn9-cuda-12
Status: install ok installed
Version: 9.3.0.75-1

Package: libnvinfer8
Status: deinstall ok config-files
Version: 8.6.2.3-1+cuda12.2
"""


def make_tree(root: Path, release: str | None = R36, dpkg: str | None = DPKG_STATUS) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "var/lib/dpkg").mkdir(parents=True)
    if release is not None:
        (root / "etc/nv_tegra_release").write_text(release)
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    (root / "proc/meminfo").write_text(MEMINFO)
    for node in ("nvhost-nvdla0", "nvhost-nvdla1", "nvhost-ctrl-nvdla0", "nvhost-gpu"):
        (root / "dev" / node).write_text("")
    if dpkg is not None:
        (root / "var/lib/dpkg/status").write_text(dpkg)
    trtexec = root / "usr/src/tensorrt/bin/trtexec"
    trtexec.parent.mkdir(parents=True)
    trtexec.write_text("#!/bin/sh\n")
    trtexec.chmod(0o755)
    (root / "opt").mkdir()
    return root


def facts(run_module, root: Path, **extra) -> dict:
    result = run_module(jetson_facts, dict(root_prefix=str(root), **extra))
    assert result["changed"] is False and "failed" not in result
    return result["ansible_facts"]["jetson"]


def test_orin_jetpack61_tree(run_module, tmp_path: Path) -> None:
    """An R36.4 tree: release, JetPack 6.1, versions from dpkg status, DLA, memory, disk."""
    jetson = facts(run_module, make_tree(tmp_path))
    assert jetson["is_l4t"] is True and jetson["reason"] == ""
    assert jetson["l4t_release"] == "36.4.0" and jetson["l4t_revision"] == "4.0"
    assert jetson["l4t_source"] == "/etc/nv_tegra_release"
    assert jetson["jetpack_version"] == "6.1"
    assert jetson["board_model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert jetson["tensorrt_version"] == "10.3.0"
    assert jetson["cuda_version"] == "12.6.68"
    assert jetson["cudnn_version"] == "9.3.0"
    assert jetson["trtexec_path"] == str(tmp_path / "usr/src/tensorrt/bin/trtexec")
    assert jetson["dla_cores"] == 2
    assert jetson["memory_total_mb"] == 64335836 // 1024
    assert jetson["memory_available_mb"] == 59404884 // 1024
    assert jetson["policy_root"] == "/opt/jetpolicy"
    assert isinstance(jetson["policy_root_free_mb"], int) and jetson["policy_root_free_mb"] >= 0
    assert jetson["nvpmodel_mode"] is None  # commands are not run against a fake root
    assert jetson["architecture"] == os.uname()[4]


def test_package_is_second_source(run_module, tmp_path: Path) -> None:
    """Without nv_tegra_release, nvidia-l4t-core's version still identifies L4T."""
    jetson = facts(run_module, make_tree(tmp_path, release=None))
    assert jetson["is_l4t"] is True and jetson["l4t_release"] == "36.4.0"
    assert jetson["l4t_source"] == "dpkg:nvidia-l4t-core"


def test_jetpack5_tree_with_cuda_version_json(run_module, tmp_path: Path) -> None:
    """R35.4.1 maps to JetPack 5.1.2; CUDA falls back to version.json."""
    root = make_tree(tmp_path, release=R35, dpkg="")
    (root / "usr/local/cuda").mkdir(parents=True)
    (root / "usr/local/cuda/version.json").write_text('{"cuda": {"name": "CUDA SDK", "version": "11.4.19"}}')
    jetson = facts(run_module, root)
    assert jetson["l4t_release"] == "35.4.1" and jetson["jetpack_version"] == "5.1.2"
    assert jetson["cuda_version"] == "11.4.19"
    assert jetson["tensorrt_version"] is None


def test_sim_marker_says_the_tools_are_replayed(run_module, tmp_path: Path) -> None:
    """The marker sim/l4t/dress.sh writes makes the facts say 'replay' and name the doubles; a real
    L4T tree (no marker) says null; a marker that is not JSON still says simulated."""
    root = make_tree(tmp_path / "sim", release=R35)
    doubles = ["/usr/src/tensorrt/bin/trtexec", "/usr/sbin/nvpmodel", "/usr/bin/jetson_clocks", "/usr/bin/tegrastats"]
    (root / "etc/jetpolicy-sim-l4t").write_text(json.dumps({
        "simulated": "replay", "profile": "L4T R35.4.1 / JetPack 5.1.2", "doubles": doubles,
        "sources": "/opt/jetpolicy-sim-l4t/recorded/README.md"}) + "\n")
    jetson = facts(run_module, root)
    assert jetson["simulated"] == "replay" and jetson["simulated_tools"] == doubles
    assert jetson["is_l4t"] is True and jetson["l4t_release"] == "35.4.1"
    real = facts(run_module, make_tree(tmp_path / "real"))
    assert real["simulated"] is None and real["simulated_tools"] == []
    (root / "etc/jetpolicy-sim-l4t").write_text("simulated\n")
    assert facts(run_module, root)["simulated"] == "unknown"


def test_non_l4t_tree(run_module, tmp_path: Path) -> None:
    """A plain Linux tree: is_l4t false with the reason, memory still reported, no failure."""
    root = tmp_path
    (root / "proc").mkdir()
    (root / "proc/meminfo").write_text(MEMINFO)
    jetson = facts(run_module, root, policy_root="/opt/jetpolicy")
    assert jetson["is_l4t"] is False
    assert jetson["reason"] == "/etc/nv_tegra_release not found: not an L4T (Jetson) host"
    assert jetson["l4t_release"] is None and jetson["jetpack_version"] is None
    assert jetson["board_model"] is None and jetson["dla_cores"] == 0 and jetson["trtexec_path"] is None
    assert jetson["memory_total_mb"] == 64335836 // 1024
    assert isinstance(jetson["policy_root_free_mb"], int)


def test_check_mode_same_result(run_module, tmp_path: Path) -> None:
    """Read-only: check mode returns the same facts."""
    root = make_tree(tmp_path)
    normal = run_module(jetson_facts, {"root_prefix": str(root)})
    checked = run_module(jetson_facts, {"root_prefix": str(root)}, check_mode=True)
    assert normal["ansible_facts"] == checked["ansible_facts"]


def test_parsers() -> None:
    """nv_tegra_release, package version, nvpmodel -q and JetPack table."""
    assert parse_nv_tegra_release(R36)["release"] == "36.4.0"
    assert parse_nv_tegra_release(R36)["board"] == "generic"
    assert parse_nv_tegra_release("garbage") is None
    assert l4t_from_package_version("36.4.0-20240912212859") == "36.4.0"
    # jetbot issue #49 (non-root adds NVPM ERROR lines) and jetpack-nixos #460.
    assert parse_nvpmodel_query(
        "NV Power Mode: 5W\n1\nNVPM ERROR: Error opening /sys/kernel/nvpmodel_emc_cap/emc_iso_cap: 13\n") == ("5W", 1)
    assert parse_nvpmodel_query("NV Power Mode: MAXN\n0\n") == ("MAXN", 0)
    assert parse_nvpmodel_query("") == (None, None)
    assert jetpack_version("36.3.0") == "6.0" and jetpack_version("36.4.3") == "6.2"
    assert jetpack_version("36.9.0") == "6.x" and jetpack_version(None) is None
    assert parse_dpkg_query("libnvinfer10\t10.3.0.30-1+cuda12.5\tii \nlibnvinfer8\t8.6.2\trc \n") == {
        "libnvinfer10": "10.3.0.30-1+cuda12.5"}


def test_nvpmodel_query_fields_by_name() -> None:
    """One parser for facts and the nvpmodel module: fields by name, warnings before it skipped."""
    query = parse_nvpmodel_query("NVPM WARN: fan mode is not set to cool\nNV Power Mode: MODE_30W\n2\n")
    assert (query.name, query.mode_id) == ("MODE_30W", 2)
    assert parse_nvpmodel_query(None).mode_id is None


def test_meminfo_parsing() -> None:
    """MiB from /proc/meminfo; MemFree stands in for a missing MemAvailable; no MemTotal, no numbers."""
    assert parse_meminfo("MemTotal: 8000000 kB\nMemFree: 1 kB\nMemAvailable: 4096000 kB\n") == {
        "memory_total_mb": 7812, "memory_available_mb": 4000}
    assert parse_meminfo("MemTotal: 8000000 kB\nMemFree: 2048000 kB\n")["memory_available_mb"] == 2000
    assert parse_meminfo("") == {"memory_total_mb": None, "memory_available_mb": None}
    assert parse_meminfo(None)["memory_total_mb"] is None


def test_nearest_existing_parent(tmp_path: Path) -> None:
    """Free space of a not-yet-created policy root is measured at its nearest existing parent."""
    (tmp_path / "opt").mkdir()
    assert nearest_existing_parent(str(tmp_path), "/opt/jetpolicy/releases") == str(tmp_path / "opt")
    assert nearest_existing_parent(str(tmp_path), "/srv/x") == str(tmp_path)
    assert nearest_existing_parent("/", "/no-such-dir-jetpolicy/x") == "/"
