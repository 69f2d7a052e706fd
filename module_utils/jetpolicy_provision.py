# -*- coding: utf-8 -*-
# Copyright: jetpolicy contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Decisions of the jetson_provision role, as plain functions.

The modules library/jetpolicy_provision_plan.py, library/jetpolicy_preflight.py and
library/jetpolicy_extlinux.py only gather inputs on the robot and call these. Runs on the
robot's Python (3.8 on JetPack 5), so no syntax newer than 3.8.

Package pins, per L4T release series. A TensorRT engine is only valid for the TensorRT
build that made it, and NVIDIA's apt repositories carry one JetPack per ``r<major>.<minor>``
suite, so the runner's packages are pinned to exactly what the robot's JetPack ships.
Sources (version strings are what ``dpkg -l`` prints on such robots):
- NVIDIA JetPack release notes, https://docs.nvidia.com/jetson/jetpack/release-notes/index.html
  (JetPack 5.1.x: CUDA 11.4, cuDNN 8.6, TensorRT 8.5.2; JetPack 6.0: CUDA 12.2, cuDNN 8.9,
  TensorRT 8.6.2; JetPack 6.1/6.2: CUDA 12.6, cuDNN 9.3, TensorRT 10.3).
- Torch-TensorRT "JetPack 6.1" page, https://pytorch.org/TensorRT/getting_started/jetpack.html
  (JetPack 6.1 = CUDA 12.6, TensorRT 10.3, cuDNN 9.3; checked with ``apt show nvidia-jetpack``).
- Apt repositories: ``deb https://repo.download.nvidia.com/jetson/common r35.x main`` (+ ``t194``/
  ``t234``) for L4T R35 and ``... r36.x main`` for L4T R36 (/etc/apt/sources.list.d/
  nvidia-l4t-apt-source.list as flashed).
- Public ``dpkg -l`` listings of a JetPack 5.1.3 robot (``libnvinfer8 8.5.2-1+cuda11.4``,
  ``python3-libnvinfer 8.5.2-1+cuda11.4``, ``libcudnn8 8.6.0.166-1+cuda11.4``,
  ``cuda-cudart-11-4 11.4.298-1``), of JetPack 6.0 sysroots (``libnvinfer8 8.6.2.3-1+cuda12.2``,
  ``libcudnn8 8.9.4.25-1+cuda12.2``) and of JetPack 6.1/6.2 robots (``libnvinfer10
  10.3.0.30-1+cuda12.5``, ``libcudnn9-cuda-12 9.3.0.75-1``, ``cuda-cudart-12-6 12.6.68-1``).
- ../shared/fixtures/trtexec/README.md: trtexec and its package (TRTEXEC_PATH, TRTEXEC_PACKAGE in
  jetpolicy_jetson.py), JetPack 5.1.x = TRT 8.5.2, 6.0 = 8.6.2, 6.1/6.2 = 10.3.0.
The parsers of what the robot reports (``nvpmodel -q``, /proc/meminfo, free space) live in
jetpolicy_jetson.py, the facts module's module_utils, and are imported from there.
The CUDA runtime's package name already fixes CUDA major.minor; its patch level is matched
with an apt glob because it differs between point releases of one JetPack.
"""

from __future__ import absolute_import, division, print_function

import re

from ansible.module_utils.jetpolicy_jetson import TRTEXEC_PACKAGE

__metaclass__ = type


def _trt(version, so_major):
    """TensorRT runtime, plugins, ONNX parser, Python bindings, trtexec, all one version."""
    names = [
        "libnvinfer%s" % so_major,
        "libnvinfer-plugin%s" % so_major,
        "libnvonnxparsers%s" % so_major,
        TRTEXEC_PACKAGE,
        "python3-libnvinfer",
    ]
    return [(name, version) for name in names]


# (l4t major, first minor, last minor) -> description and pinned (package, version) pairs.
JETPACK_PACKAGE_SETS = [
    {
        "l4t_major": 35,
        "l4t_minors": (2, 6),
        "jetpack": "5.1.x",
        "apt_suite_major": "r35",
        "packages": _trt("8.5.2-1+cuda11.4", "8")
        + [("libcudnn8", "8.6.0.166-1+cuda11.4"), ("cuda-cudart-11-4", "11.4.*")],
    },
    {
        "l4t_major": 36,
        "l4t_minors": (2, 3),
        "jetpack": "6.0",
        "apt_suite_major": "r36",
        "packages": _trt("8.6.2.3-1+cuda12.2", "8")
        + [("libcudnn8", "8.9.4.25-1+cuda12.2"), ("cuda-cudart-12-2", "12.2.*")],
    },
    {
        "l4t_major": 36,
        "l4t_minors": (4, 4),
        "jetpack": "6.1/6.2",
        "apt_suite_major": "r36",
        "packages": _trt("10.3.0.30-1+cuda12.5", "10")
        + [("libcudnn9-cuda-12", "9.3.0.75-1"), ("cuda-cudart-12-6", "12.6.*")],
    },
]

NVIDIA_APT_RE = re.compile(
    r"^\s*deb(?:\s+\[[^\]]*\])?\s+(?P<url>https?://repo\.download\.nvidia\.com/jetson/(?P<component>\S+?))/?"
    r"\s+(?P<suite>\S+)"
)
SUITE_RE = re.compile(r"^r(?P<major>\d+)\.(?P<minor>\d+)$")
NVPMODEL_REBOOT_MARKER = "Reboot required for changing to this power mode"


def parse_l4t_release(release):
    """'36.4.0' or 'R35 (release), REVISION: 4.1' -> (36, 4); None when unreadable."""
    if not release:
        return None
    text = str(release).strip()
    match = re.match(r"^#?\s*R(\d+) \(release\), REVISION: (\d+)", text)
    if match:
        return int(match.group(1)), int(match.group(2))
    match = re.match(r"^[rR]?(\d+)\.(\d+)", text)
    if match:
        return int(match.group(1)), int(match.group(2))
    return None


def package_set_for(l4t_release):
    """The pinned package set for an L4T release, or an error message saying why none.

    Returns (entry or None, error or None).
    """
    parsed = parse_l4t_release(l4t_release)
    if parsed is None:
        return None, "cannot read the L4T release %r; expected like '36.4.0'" % (l4t_release,)
    major, minor = parsed
    for entry in JETPACK_PACKAGE_SETS:
        low, high = entry["l4t_minors"]
        if entry["l4t_major"] == major and low <= minor <= high:
            return entry, None
    return None, (
        "no pinned JetPack package set for L4T R%d.%d (known: %s); add one to "
        "JETPACK_PACKAGE_SETS in module_utils/jetpolicy_provision.py with its source"
        % (major, minor, ", ".join(_known_series()))
    )


def _known_series():
    out = []
    for entry in JETPACK_PACKAGE_SETS:
        low, high = entry["l4t_minors"]
        minors = str(low) if low == high else "%d-%d" % (low, high)
        out.append("R%d.%s (JetPack %s)" % (entry["l4t_major"], minors, entry["jetpack"]))
    return out


def apt_package_specs(entry, extra=None):
    """apt 'name=version' strings for a package set, plus extra names (unpinned)."""
    specs = ["%s=%s" % (name, version) for name, version in entry["packages"]]
    for name in extra or []:
        if name not in [spec.split("=", 1)[0] for spec in specs]:
            specs.append(name)
    return specs


def parse_nvidia_apt_sources(text):
    """NVIDIA Jetson apt lines in a sources.list text -> list of {url, component, suite}."""
    found = []
    for line in (text or "").splitlines():
        match = NVIDIA_APT_RE.match(line)
        if match:
            found.append(
                {
                    "url": match.group("url"),
                    "component": match.group("component"),
                    "suite": match.group("suite"),
                }
            )
    return found


def apt_source_verdict(sources_text, l4t_release, source_path="the apt source"):
    """Refuse an NVIDIA apt source that does not belong to the robot's L4T major.

    Mixing r35 and r36 repositories would pull libraries built for another L4T/driver onto
    the robot. Returns (ok, message); a differing minor is allowed but said in the message.
    """
    parsed = parse_l4t_release(l4t_release)
    if parsed is None:
        return False, "cannot read the L4T release %r" % (l4t_release,)
    major, minor = parsed
    entries = parse_nvidia_apt_sources(sources_text)
    if not entries:
        return False, (
            "%s has no 'deb https://repo.download.nvidia.com/jetson/... r%d.x main' line; "
            "restore the JetPack apt source (suite r%d.%d)" % (source_path, major, major, minor)
        )
    suites = sorted(set(entry["suite"] for entry in entries))
    bad = []
    for suite in suites:
        match = SUITE_RE.match(suite)
        if not match or int(match.group("major")) != major:
            bad.append(suite)
    if bad:
        return False, (
            "%s uses suite %s but this robot runs L4T R%d.%d: JetPack repositories must "
            "not be mixed; point it at r%d.%d (or reflash) before installing packages"
            % (source_path, ", ".join(bad), major, minor, major, minor)
        )
    if len(suites) > 1:
        return False, "%s mixes suites %s; use one (r%d.%d)" % (
            source_path,
            ", ".join(suites),
            major,
            minor,
        )
    note = "%s suite %s matches L4T R%d.%d" % (source_path, suites[0], major, minor)
    if suites[0] != "r%d.%d" % (major, minor):
        note += " (major only: the robot runs R%d.%d)" % (major, minor)
    return True, note


def nvpmodel_needs_reboot(output):
    """True when 'nvpmodel -m N' declined to switch live because the mode needs a reboot."""
    return NVPMODEL_REBOOT_MARKER.lower() in (output or "").lower()


def desired_nvpmodel_mode(board_model, explicit_mode, modes_by_board):
    """Which nvpmodel mode this robot should run in.

    explicit_mode (a group/host variable) wins; otherwise the first key of modes_by_board
    that is a substring of the board model. Returns (mode or None, reason).
    """
    if explicit_mode is not None and str(explicit_mode) != "":
        return int(explicit_mode), "jetson_provision_nvpmodel_mode=%s" % explicit_mode
    board = board_model or ""
    for key in sorted(modes_by_board or {}, key=len, reverse=True):
        if key and key.lower() in board.lower():
            return int(modes_by_board[key]), "board %r matches %r in jetson_provision_nvpmodel_mode_by_board" % (
                board,
                key,
            )
    return None, (
        "no power mode configured for board %r: set jetson_provision_nvpmodel_mode for its "
        "group (mode ids differ per module; see 'nvpmodel -p --verbose')" % (board or "unknown")
    )


def l4t_skip_reasons(jetson):
    """What the role skips on this host and why (printed, never silent)."""
    jetson = jetson or {}
    if jetson.get("is_l4t"):
        return []
    reason = jetson.get("reason") or "not an L4T system (no /etc/nv_tegra_release)"
    tasks = [
        "JetPack apt packages (TensorRT, python3-libnvinfer, CUDA runtime, cuDNN)",
        "NVIDIA apt source check",
        "trtexec location",
        "nvpmodel power mode",
        "jetson_clocks unit",
        "isolcpus in /boot/extlinux/extlinux.conf",
        "GPU device groups (video, render)",
    ]
    return ["%s skipped: %s" % (task, reason) for task in tasks]


def isolcpus_value(cpus):
    """[3] / '3' / '2-3' -> '2-3' style kernel cpulist string (validated)."""
    if isinstance(cpus, (list, tuple)):
        text = ",".join(str(int(cpu)) for cpu in cpus)
    else:
        text = str(cpus).strip()
    if not re.match(r"^\d+(-\d+)?(,\d+(-\d+)?)*$", text):
        raise ValueError("isolcpus cpu list %r is not like '3' or '2-3' or '1,3'" % (cpus,))
    return text


def extlinux_set_isolcpus(text, cpus, label=None):
    """Set (or with cpus None, remove) isolcpus/nohz_full/rcu_nocbs on the boot entry's APPEND.

    The entry is the DEFAULT label of extlinux.conf unless label is given. Returns
    (new_text, changed, message). Only that entry's APPEND line is touched.
    """
    lines = text.splitlines(True)
    target = label
    if target is None:
        for line in lines:
            match = re.match(r"^\s*DEFAULT\s+(\S+)", line)
            if match:
                target = match.group(1)
                break
    current_label = None
    append_index = None
    for index, line in enumerate(lines):
        match = re.match(r"^\s*LABEL\s+(\S+)", line)
        if match:
            current_label = match.group(1)
            continue
        if re.match(r"^\s*APPEND\s", line) and (target is None or current_label == target):
            append_index = index
            break
    if append_index is None:
        return text, False, "no APPEND line for boot entry %r" % (target,)
    line = lines[append_index]
    ending = "\n" if line.endswith("\n") else ""
    body = line.rstrip("\n")
    indent, rest = re.match(r"^(\s*APPEND\s+)(.*)$", body).groups()
    keep = [
        word
        for word in rest.split()
        if not re.match(r"^(isolcpus|nohz_full|rcu_nocbs)=", word)
    ]
    if cpus is not None:
        value = isolcpus_value(cpus)
        keep += ["isolcpus=%s" % value, "nohz_full=%s" % value, "rcu_nocbs=%s" % value]
    new_line = indent + " ".join(keep) + ending
    if new_line == line:
        return text, False, "boot entry %r already as wanted" % (target,)
    lines[append_index] = new_line
    return "".join(lines), True, "boot entry %r APPEND updated" % (target,)


def parse_thermal_millic(text):
    """A thermal_zone*/temp reading (millidegrees C) -> degrees C, None when unreadable."""
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    # Disabled zones read negative or absurd values; they say nothing about the chip.
    if value <= -40000 or value >= 200000:
        return None
    return value / 1000.0


_MIB = 1024 * 1024


def _ceil_mib(nbytes):
    return -(-int(nbytes or 0) // _MIB)


def space_needed(min_free_mb, artifact_bytes=0, engine_bytes=0, runtime_bytes=0):
    """What this deploy writes at the policy root plus the margin left free after it.

    Returns (total MiB, [(what, MiB), ...]) with only the parts that need room: the policy files
    not yet staged, the TensorRT engine estimate not yet built, the runtime bundle not yet
    installed, then the margin (jetson_provision_min_free_mb). Sizes round up to whole MiB.
    """
    parts = [
        (label, _ceil_mib(nbytes))
        for label, nbytes in (
            ("policy artifact", artifact_bytes),
            ("TensorRT engine estimate", engine_bytes),
            ("runtime bundle", runtime_bytes),
        )
        if nbytes
    ]
    parts.append(("margin (jetson_provision_min_free_mb)", int(min_free_mb)))
    return sum(mib for _what, mib in parts), parts


def preflight_verdicts(
    path,
    measured_path,
    free_mb,
    min_free_mb,
    memory_total_mb,
    memory_available_mb,
    max_memory_used_pct,
    temperatures,
    max_temp_c,
    space_parts=None,
):
    """Judge the measurements. Returns (problems, notes): problems fail the host.

    temperatures: {zone name: degrees C}. space_parts: [(what, MiB), ...] from space_needed, the
    room this deploy needs (default: min_free_mb alone). Each message names the path or zone, the
    numbers and the variable that sets the threshold, so the operator knows what to change.
    """
    problems = []
    notes = []
    where = path if measured_path == path else "%s (measured at %s)" % (path, measured_path)
    parts = space_parts or [("margin (jetson_provision_min_free_mb)", min_free_mb)]
    needed_mb = sum(mib for _what, mib in parts)
    breakdown = " + ".join("%s %d MiB" % (what, mib) for what, mib in parts)
    if free_mb is None:
        problems.append("%s: free space unreadable" % where)
    elif free_mb < needed_mb:
        problems.append(
            "%s has %d MiB free, needs %d MiB (%s); free space there or lower "
            "jetson_provision_min_free_mb" % (where, free_mb, needed_mb, breakdown)
        )
    else:
        notes.append("%s has %d MiB free (>= %d MiB: %s)" % (where, free_mb, needed_mb, breakdown))
    if memory_total_mb:
        used_pct = 100.0 * (memory_total_mb - (memory_available_mb or 0)) / memory_total_mb
        if used_pct > max_memory_used_pct:
            problems.append(
                "memory %.0f%% in use (%d of %d MiB available), limit %d%% "
                "(jetson_provision_max_memory_used_pct); stop other workloads or raise the limit"
                % (used_pct, memory_available_mb or 0, memory_total_mb, max_memory_used_pct)
            )
        else:
            notes.append("memory %.0f%% in use (limit %d%%)" % (used_pct, max_memory_used_pct))
    else:
        notes.append("memory unreadable (/proc/meminfo)")
    hot = sorted(
        (zone, temp) for zone, temp in (temperatures or {}).items() if temp is not None and temp > max_temp_c
    )
    if hot:
        problems.append(
            "temperature %s above %d C (jetson_provision_max_temp_c); let the robot cool down "
            "or check its fan"
            % (", ".join("%s=%.1f C" % (zone, temp) for zone, temp in hot), max_temp_c)
        )
    elif temperatures:
        notes.append("max temperature %.1f C (limit %d C)" % (max(temperatures.values()), max_temp_c))
    else:
        notes.append("no readable thermal zone; temperature not checked")
    return problems, notes


def time_sync_verdict(ntp_synchronized, policy):
    """timedatectl NTPSynchronized value + policy (fail|warn|ignore) -> (fail, message)."""
    value = (ntp_synchronized or "").strip().lower()
    if value == "yes":
        return False, "clock synchronized (NTP)"
    what = "clock not NTP-synchronized (timedatectl NTPSynchronized=%s)" % (value or "unknown")
    if policy == "fail":
        return True, what + "; start time sync or set jetson_provision_time_sync=warn"
    if policy == "ignore":
        return False, what + " (ignored: jetson_provision_time_sync=ignore)"
    return False, "WARNING: " + what + "; logs and history.jsonl times may be wrong"
