# Copyright: (c) 2026, jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Decision and parsing logic of the ``jetson_facts`` module.

Plain typed functions over a root directory (``root_prefix``) so pytest can point them at a
fake filesystem tree. Runs on the robot's Python 3.8+. Never raises for a missing or odd
file: the facts module must never fail.

Sources for the formats parsed here:
- ``/etc/nv_tegra_release`` first line, e.g.
  ``# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: ...``
  (JetPack 5) and ``# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, ...``
  (JetPack 6); real copies are quoted in OE4T/meta-tegra and many Jetson READMEs.
- ``nvpmodel -q`` prints ``NV Power Mode: <NAME>`` then the mode id on the next line
  (NVIDIA-AI-IOT/jetbot issue #49: ``NV Power Mode: 5W`` / ``1``; anduril/jetpack-nixos
  pull request #460: ``NV Power Mode: MAXN`` / ``0``); without root it adds
  ``NVPM ERROR: ...`` lines, which are ignored.
- DLA cores are the ``/dev/nvhost-nvdla<N>`` device nodes (Xavier and Orin have two).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping, NamedTuple, Optional

__all__ = [
    "JETPACK_BY_L4T",
    "SIM_MARKER",
    "TENSORRT_PACKAGES",
    "TRTEXEC_PACKAGE",
    "TRTEXEC_PATH",
    "NvpmodelQuery",
    "base_facts",
    "count_dla_cores",
    "cuda_version_from_files",
    "free_mb",
    "jetpack_version",
    "l4t_from_package_version",
    "nearest_existing_parent",
    "parse_dpkg_query",
    "parse_dpkg_status",
    "parse_meminfo",
    "parse_nv_tegra_release",
    "parse_nvpmodel_query",
    "pick_versions",
    "read_board_model",
    "read_sim_marker",
    "read_text",
    "root_path",
    "trtexec_candidates",
]

# L4T (Jetson Linux) release -> JetPack release. Source: NVIDIA's JetPack archive
# (https://developer.nvidia.com/embedded/jetpack-archive, each "JetPack X with Jetson Linux Y"
# page) and the Jetson Linux archive (https://docs.nvidia.com/jetson/archives, which lists
# 36.2 DP, 36.3, 36.4, 36.4.3, 36.4.4, 38.2, 38.4). The fixtures README agrees: JetPack 6.0 =
# TensorRT 8.6.2 on 36.3, 6.1/6.2 = TensorRT 10.3 on 36.4.x.
JETPACK_BY_L4T: dict[str, str] = {
    "32.6.1": "4.6",
    "32.7.1": "4.6.1",
    "32.7.2": "4.6.2",
    "32.7.3": "4.6.3",
    "32.7.4": "4.6.4",
    "32.7.5": "4.6.5",
    "32.7.6": "4.6.6",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "35.6.1": "5.1.5",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
    "38.2.0": "7.0",
    "38.4.0": "7.1",
}
# Fallback when the exact release is not in the table: the JetPack major line.
_JETPACK_FAMILY = {"32": "4.x", "34": "5.0 DP", "35": "5.x", "36": "6.x", "38": "7.x"}

# Where JetPack installs trtexec (not on PATH by default), and the package that ships it
# (../shared/fixtures/trtexec/README.md). The one home of both: the facts module, the trtexec module
# and the provisioning plan import them from here.
TRTEXEC_PATH = "/usr/src/tensorrt/bin/trtexec"
TRTEXEC_PACKAGE = "libnvinfer-bin"
# Packages whose version is the installed TensorRT, in the order they are asked: the first one
# installed answers (jetson_facts and the trtexec module both read this list).
TENSORRT_PACKAGES = (TRTEXEC_PACKAGE, "libnvinfer10", "libnvinfer8", "tensorrt", "nvidia-tensorrt")
CUDNN_PACKAGES = ("libcudnn9-cuda-12", "libcudnn9", "libcudnn8")
L4T_CORE_PACKAGE = "nvidia-l4t-core"


def root_path(root: str, path: str) -> str:
    """``path`` (absolute, robot view) inside ``root``."""
    return os.path.join(root, path.lstrip("/"))


def read_text(root: str, path: str) -> str | None:
    try:
        with open(root_path(root, path), "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def parse_nv_tegra_release(text: str) -> dict[str, str] | None:
    """``# R36 (release), REVISION: 4.0, GCID: ..., BOARD: generic, ...`` ->
    {'release': '36.4.0', 'major': '36', 'revision': '4.0', 'board': 'generic', 'gcid': ...}."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    match = re.match(r"^#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?", first)
    if not match:
        return None
    revision = "{}.{}".format(match.group(2), match.group(3) or "0")
    info = {"major": match.group(1), "revision": revision, "release": f"{match.group(1)}.{revision}"}
    for key in ("GCID", "BOARD", "EABI", "DATE"):
        field = re.search(rf"{key}:\s*([^,]+)", first)
        if field:
            info[key.lower()] = field.group(1).strip()
    return info


def l4t_from_package_version(version: str) -> str | None:
    """``36.4.0-20240912212859`` (nvidia-l4t-core) -> ``36.4.0``."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    if not match:
        return None
    return "{}.{}.{}".format(match.group(1), match.group(2), match.group(3) or "0")


def jetpack_version(l4t_release: str | None) -> str | None:
    if not l4t_release:
        return None
    if l4t_release in JETPACK_BY_L4T:
        return JETPACK_BY_L4T[l4t_release]
    return _JETPACK_FAMILY.get(l4t_release.split(".")[0])


def parse_dpkg_query(text: str) -> dict[str, str]:
    """Lines of ``dpkg-query -W -f='${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'`` ->
    {package: version} for installed packages (status ``ii``)."""
    versions: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not parts[1].strip():
            continue
        if len(parts) >= 3 and not parts[2].startswith("ii"):
            continue
        versions[parts[0].split(":")[0].strip()] = parts[1].strip()
    return versions


def parse_dpkg_status(text: str) -> dict[str, str]:
    """``/var/lib/dpkg/status`` stanzas -> {package: version} of installed packages."""
    versions: dict[str, str] = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith(" "):
                key, value = line.split(":", 1)
                fields[key.strip()] = value.strip()
        status = fields.get("Status", "").split()
        if "Package" in fields and "Version" in fields and status and status[-1] == "installed":
            versions[fields["Package"]] = fields["Version"]
    return versions


def _short_version(raw: str, parts: int = 3) -> str:
    """``8.6.0.166-1+cuda11.4`` -> ``8.6.0``; ``12.6.68-1`` -> ``12.6.68``."""
    match = re.match(r"^\s*(?:\d+:)?([\d.]+)", raw)
    if not match:
        return raw
    return ".".join(match.group(1).strip(".").split(".")[:parts])


def pick_versions(packages: Mapping[str, str]) -> dict[str, str | None]:
    """TensorRT / CUDA / cuDNN / L4T versions from installed package versions."""
    result: dict[str, str | None] = {
        "tensorrt_version": None, "cuda_version": None, "cudnn_version": None, "l4t_package_release": None,
    }
    for name in TENSORRT_PACKAGES:
        if name in packages:
            result["tensorrt_version"] = _short_version(packages[name])
            break
    for name in CUDNN_PACKAGES:
        if name in packages:
            result["cudnn_version"] = _short_version(packages[name])
            break
    cudart = sorted((name for name in packages if re.match(r"^cuda-cudart-\d+-\d+$", name)), reverse=True)
    if cudart:
        result["cuda_version"] = _short_version(packages[cudart[0]])
    if L4T_CORE_PACKAGE in packages:
        result["l4t_package_release"] = l4t_from_package_version(packages[L4T_CORE_PACKAGE])
    return result


def cuda_version_from_files(root: str) -> str | None:
    """``/usr/local/cuda/version.json`` (``{"cuda": {"version": "12.6.1"}}``, CUDA >= 11.1)
    or the older ``version.txt`` (``CUDA Version 10.2.89``)."""
    text = read_text(root, "/usr/local/cuda/version.json")
    if text:
        try:
            data = json.loads(text)
            version = data.get("cuda", {}).get("version")
            if version:
                return str(version)
        except (ValueError, AttributeError):
            pass
    text = read_text(root, "/usr/local/cuda/version.txt")
    if text:
        match = re.search(r"CUDA Version\s+([\d.]+)", text)
        if match:
            return match.group(1)
    return None


def read_board_model(root: str) -> str | None:
    """``/proc/device-tree/model`` is NUL-terminated."""
    text = read_text(root, "/proc/device-tree/model")
    if text is None:
        return None
    model = text.replace("\x00", "").strip()
    return model or None


def parse_meminfo(text: str | None) -> dict[str, int | None]:
    """/proc/meminfo -> {'memory_total_mb', 'memory_available_mb'} in MiB (meminfo prints kB).

    Both are None without a MemTotal line; MemAvailable falls back to MemFree (kernels < 3.14).
    """
    values: dict[str, int] = {}
    for match in re.finditer(r"^(\w+):\s+(\d+)\s*kB", text or "", re.MULTILINE):
        values[match.group(1)] = int(match.group(2))
    if "MemTotal" not in values:
        return {"memory_total_mb": None, "memory_available_mb": None}
    available = values.get("MemAvailable", values.get("MemFree", 0))
    return {"memory_total_mb": values["MemTotal"] // 1024, "memory_available_mb": available // 1024}


class NvpmodelQuery(NamedTuple):
    """What ``nvpmodel -q`` says: read the fields by name (``.mode_id``), never by position."""

    name: Optional[str]
    mode_id: Optional[int]


def parse_nvpmodel_query(text: str | None) -> NvpmodelQuery:
    """``NV Power Mode: MAXN`` + ``0`` -> NvpmodelQuery(name='MAXN', mode_id=0).

    The id is the line right after the name; ``NVPM ...`` warning and error lines (printed
    without root, or around them) are skipped.
    """
    name: str | None = None
    mode_id: int | None = None
    lines = [line.strip() for line in (text or "").splitlines()]
    lines = [line for line in lines if line and not line.startswith("NVPM")]
    for index, line in enumerate(lines):
        match = re.match(r"^NV Power Mode:\s*(.*)$", line)
        if match:
            name = match.group(1).strip() or None
            if index + 1 < len(lines) and re.match(r"^\d+$", lines[index + 1]):
                mode_id = int(lines[index + 1])
            break
    return NvpmodelQuery(name, mode_id)


# Written by sim/l4t/dress.sh on jetpolicy's simulated robots, whose NVIDIA tools are replay doubles.
SIM_MARKER = "/etc/jetpolicy-sim-l4t"


def read_sim_marker(root: str) -> dict[str, Any]:
    """``simulated`` ('replay' or another kind named by the marker; None on a real robot) and
    ``simulated_tools`` (the paths of the doubles) from the sim marker, so no fact from a double is
    mistaken for a Jetson's. A marker that is not JSON still says the robot is simulated."""
    text = read_text(root, SIM_MARKER)
    if text is None:
        return {"simulated": None, "simulated_tools": []}
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    tools = data.get("doubles")
    return {
        "simulated": str(data.get("simulated") or "unknown"),
        "simulated_tools": [str(tool) for tool in tools] if isinstance(tools, list) else [],
    }


def count_dla_cores(root: str) -> int:
    """Number of ``/dev/nvhost-nvdla<N>`` nodes (0 when none or ``/dev`` unreadable)."""
    try:
        names = os.listdir(root_path(root, "/dev"))
    except OSError:
        return 0
    return len([name for name in names if re.match(r"^nvhost-nvdla\d+$", name)])


def nearest_existing_parent(root: str, path: str) -> str:
    """The deepest existing directory on the way to ``path`` (inside root): free space of a
    policy root that does not exist yet is measured there."""
    candidate = root_path(root, path)
    while not os.path.isdir(candidate):
        parent = os.path.dirname(candidate)
        if parent == candidate:
            break
        candidate = parent
    return candidate


def free_mb(path: str) -> int | None:
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return int(stats.f_bavail * stats.f_frsize // (1024 * 1024))


def trtexec_candidates(root: str) -> list[str]:
    """Where JetPack installs trtexec, inside root (PATH is the caller's fallback)."""
    return [root_path(root, TRTEXEC_PATH)]


def base_facts() -> dict[str, Any]:
    """Every fact key, so consumers can rely on presence (None = unknown)."""
    return {
        "is_l4t": False,
        "reason": "",
        "l4t_release": None,
        "l4t_revision": None,
        "l4t_source": None,
        "jetpack_version": None,
        "board_model": None,
        "tensorrt_version": None,
        "cuda_version": None,
        "cudnn_version": None,
        "trtexec_path": None,
        "nvpmodel_mode": None,
        "nvpmodel_mode_id": None,
        "dla_cores": 0,
        "memory_total_mb": None,
        "memory_available_mb": None,
        "policy_root": None,
        "policy_root_free_mb": None,
        "architecture": None,
        "simulated": None,
        "simulated_tools": [],
    }
