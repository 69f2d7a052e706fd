"""Decisions of the jetson_provision role (module_utils/jetpolicy_provision.py)."""

from __future__ import annotations

import pytest
from ansible.module_utils.jetpolicy_provision import (
    apt_package_specs,
    apt_source_verdict,
    desired_nvpmodel_mode,
    extlinux_set_isolcpus,
    isolcpus_value,
    l4t_skip_reasons,
    nvpmodel_needs_reboot,
    package_set_for,
    parse_l4t_release,
    parse_thermal_millic,
    preflight_verdicts,
    space_needed,
    time_sync_verdict,
)

R36_SOURCE = (
    "deb https://repo.download.nvidia.com/jetson/common r36.4 main\n"
    "deb https://repo.download.nvidia.com/jetson/t234 r36.4 main\n"
)
R35_SOURCE = (
    "deb https://repo.download.nvidia.com/jetson/common r35.4 main\n"
    "deb https://repo.download.nvidia.com/jetson/t194 r35.4 main\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("36.4.0", (36, 4)),
        ("35.4.1", (35, 4)),
        ("r36.2", (36, 2)),
        ("# R35 (release), REVISION: 5.0, GCID: 1, BOARD: t186ref", (35, 5)),
        ("", None),
        (None, None),
        ("garbage", None),
    ],
)
def test_parse_l4t_release(text: str | None, expected: tuple[int, int] | None) -> None:
    """L4T releases are read from facts strings and from /etc/nv_tegra_release's first line."""
    assert parse_l4t_release(text) == expected


def test_jetpack6_2_gets_tensorrt10_pins() -> None:
    """L4T R36.4 (JetPack 6.1/6.2) pins TensorRT 10.3 + its Python bindings, cuDNN 9.3, CUDA 12.6."""
    entry, error = package_set_for("36.4.3")
    assert error is None
    specs = apt_package_specs(entry)
    assert "libnvinfer10=10.3.0.30-1+cuda12.5" in specs
    assert "python3-libnvinfer=10.3.0.30-1+cuda12.5" in specs
    assert "libnvinfer-bin=10.3.0.30-1+cuda12.5" in specs
    assert "libcudnn9-cuda-12=9.3.0.75-1" in specs
    assert "cuda-cudart-12-6=12.6.*" in specs
    assert not any(spec.startswith("libnvinfer8") for spec in specs)


def test_jetpack5_gets_tensorrt8_5_pins() -> None:
    """L4T R35.x (JetPack 5.1.x) pins TensorRT 8.5.2, cuDNN 8.6, CUDA 11.4; never TensorRT 10."""
    entry, error = package_set_for("35.4.1")
    assert error is None and entry["jetpack"] == "5.1.x"
    specs = apt_package_specs(entry)
    assert "libnvinfer8=8.5.2-1+cuda11.4" in specs
    assert "python3-libnvinfer=8.5.2-1+cuda11.4" in specs
    assert "libcudnn8=8.6.0.166-1+cuda11.4" in specs
    assert all("cuda12" not in spec and "libnvinfer10" not in spec for spec in specs)


def test_jetpack6_0_is_its_own_set() -> None:
    """L4T R36.3 (JetPack 6.0) has TensorRT 8.6.2, not JetPack 6.1's 10.3."""
    entry, _ = package_set_for("36.3.0")
    assert entry["jetpack"] == "6.0"
    assert "libnvinfer8=8.6.2.3-1+cuda12.2" in apt_package_specs(entry)


@pytest.mark.parametrize("release", ["35.1.0", "32.7.4", "38.2.0"])
def test_unknown_release_has_no_set_and_says_where_to_add(release: str) -> None:
    """An L4T release without a cited table row is refused, naming the table to extend."""
    entry, error = package_set_for(release)
    assert entry is None
    assert "JETPACK_PACKAGE_SETS" in error and release.split(".")[0] in error


def test_extra_packages_are_added_once() -> None:
    """Extra names are appended unpinned; a pinned name is not duplicated."""
    entry, _ = package_set_for("36.4.0")
    specs = apt_package_specs(entry, ["python3-venv", "python3-libnvinfer"])
    assert specs[-1] == "python3-venv"
    assert sum(spec.startswith("python3-libnvinfer") for spec in specs) == 1


def test_apt_source_matching_major_is_accepted() -> None:
    """An r36.4 source on L4T 36.4 is fine."""
    ok, message = apt_source_verdict(R36_SOURCE, "36.4.0", "nvidia-l4t-apt-source.list")
    assert ok, message


def test_apt_source_of_other_major_is_refused() -> None:
    """An r35 source on an L4T R36 robot is refused: repositories are never mixed."""
    ok, message = apt_source_verdict(R35_SOURCE, "36.4.0", "nvidia-l4t-apt-source.list")
    assert not ok
    assert "r35.4" in message and "R36.4" in message and "nvidia-l4t-apt-source.list" in message


def test_apt_source_mixing_suites_is_refused() -> None:
    """r36.3 and r36.4 lines together are refused."""
    mixed = R36_SOURCE + "deb https://repo.download.nvidia.com/jetson/common r36.3 main\n"
    ok, message = apt_source_verdict(mixed, "36.4.0")
    assert not ok and "mixes" in message


def test_apt_source_mixing_majors_across_files_is_refused() -> None:
    """A stray r35 line next to the right r36 ones is still refused."""
    ok, message = apt_source_verdict(R36_SOURCE + R35_SOURCE, "36.4.0")
    assert not ok and "r35.4" in message


def test_apt_source_missing_is_refused() -> None:
    """No NVIDIA line at all: say what line is expected."""
    ok, message = apt_source_verdict("deb http://ports.ubuntu.com/ jammy main\n", "36.4.0")
    assert not ok and "r36.4" in message


def test_apt_source_other_minor_same_major_is_allowed_with_note() -> None:
    """Same major, other minor: allowed (apt pins still hold) but said."""
    ok, message = apt_source_verdict(R36_SOURCE, "36.3.0")
    assert ok and "major only" in message


def test_apt_source_with_options_and_commented_lines() -> None:
    """`deb [signed-by=...]` lines count; commented lines do not."""
    text = (
        "# deb https://repo.download.nvidia.com/jetson/common r35.4 main\n"
        "deb [signed-by=/usr/share/keyrings/jetson.gpg] https://repo.download.nvidia.com/jetson/common r36.4 main\n"
    )
    ok, _ = apt_source_verdict(text, "36.4.0")
    assert ok


def test_nvpmodel_reboot_detected() -> None:
    """Declined reboot prompt output (real) is recognised; a plain query is not."""
    out = (
        "NVPM WARN: Golden image context is already created\n"
        "NVPM WARN: Reboot required for changing to this power mode: 1\n"
        "NVPM WARN: DO YOU WANT TO REBOOT NOW? enter YES/yes to confirm:\n"
        "NVPM ERROR: optMask is 1, no request for power mode"
    )
    assert nvpmodel_needs_reboot(out)
    assert not nvpmodel_needs_reboot("NV Power Mode: MAXN\n0")


def test_nvpmodel_mode_explicit_wins() -> None:
    """A group variable beats the per-board table."""
    mode, reason = desired_nvpmodel_mode("NVIDIA Jetson AGX Orin Developer Kit", 3, {"AGX Orin": 0})
    assert mode == 3 and "jetson_provision_nvpmodel_mode" in reason


def test_nvpmodel_mode_by_board_longest_match() -> None:
    """The most specific board key wins."""
    table = {"Orin": 1, "Orin Nano": 2}
    assert desired_nvpmodel_mode("NVIDIA Jetson Orin Nano Developer Kit", None, table)[0] == 2
    assert desired_nvpmodel_mode("Jetson AGX Orin", "", table)[0] == 1


def test_nvpmodel_mode_unknown_board_is_left_alone() -> None:
    """No guess for an unknown board: mode ids differ per module."""
    mode, reason = desired_nvpmodel_mode("Jetson Xavier NX", None, {"AGX Orin": 0})
    assert mode is None and "jetson_provision_nvpmodel_mode" in reason


def test_skip_reasons_name_each_l4t_step() -> None:
    """On a non-L4T host each L4T-only step is listed with the facts' reason."""
    reasons = l4t_skip_reasons({"is_l4t": False, "reason": "no /etc/nv_tegra_release"})
    assert len(reasons) >= 5
    assert all(reason.endswith("no /etc/nv_tegra_release") for reason in reasons)
    assert any("nvpmodel" in reason for reason in reasons)
    assert l4t_skip_reasons({"is_l4t": True}) == []


EXTLINUX = """TIMEOUT 30
DEFAULT primary

MENU TITLE L4T boot options

LABEL primary
      MENU LABEL primary kernel
      LINUX /boot/Image
      INITRD /boot/initrd
      APPEND ${cbootargs} root=PARTUUID=abc rw rootwait rootfstype=ext4 console=ttyTCU0,115200

LABEL backup
      LINUX /boot/Image.bak
      APPEND ${cbootargs} root=PARTUUID=abc rw
"""


def test_extlinux_isolcpus_added_to_default_entry_only() -> None:
    """isolcpus/nohz_full/rcu_nocbs land on the DEFAULT entry's APPEND; others untouched."""
    after, changed, _ = extlinux_set_isolcpus(EXTLINUX, "3")
    assert changed
    primary, backup = after.split("LABEL backup")
    assert "isolcpus=3 nohz_full=3 rcu_nocbs=3" in primary
    assert "isolcpus" not in backup
    assert "console=ttyTCU0,115200 isolcpus=3" in primary


def test_extlinux_isolcpus_idempotent_and_replaces() -> None:
    """A second run changes nothing; another cpu list replaces, absent removes."""
    once, _, _ = extlinux_set_isolcpus(EXTLINUX, "3")
    again, changed, _ = extlinux_set_isolcpus(once, "3")
    assert not changed and again == once
    other, changed, _ = extlinux_set_isolcpus(once, [2, 3])
    assert changed and "isolcpus=2,3" in other and "isolcpus=3 " not in other
    removed, changed, _ = extlinux_set_isolcpus(once, None)
    assert changed and removed == EXTLINUX


def test_extlinux_bad_cpu_list_rejected() -> None:
    """Anything but a kernel cpu list is refused before touching the boot entry."""
    with pytest.raises(ValueError):
        isolcpus_value("3; rm -rf /")


def test_extlinux_without_append_reports() -> None:
    """A file without an APPEND line is reported, not edited."""
    _, changed, message = extlinux_set_isolcpus("DEFAULT x\nLABEL x\n LINUX /Image\n", "3")
    assert not changed and "no APPEND" in message


def test_thermal_parsing() -> None:
    """Millidegrees to degrees, disabled zones ignored."""
    assert parse_thermal_millic("45500\n") == 45.5
    assert parse_thermal_millic("-256000") is None
    assert parse_thermal_millic("n/a") is None


def _verdicts(**overrides: object) -> tuple[list[str], list[str]]:
    args: dict[str, object] = dict(
        path="/opt/jetpolicy",
        measured_path="/opt/jetpolicy",
        free_mb=4000,
        min_free_mb=512,
        memory_total_mb=8000,
        memory_available_mb=4000,
        max_memory_used_pct=90,
        temperatures={"cpu-thermal": 50.0},
        max_temp_c=85,
    )
    args.update(overrides)
    return preflight_verdicts(**args)  # type: ignore[arg-type]


def test_preflight_passes_healthy_robot() -> None:
    """Enough disk, memory and a cool chip: no problems, notes carry the numbers."""
    problems, notes = _verdicts()
    assert problems == []
    assert any("4000 MiB free" in note for note in notes)


def test_preflight_low_disk_message_names_path_numbers_and_variable() -> None:
    """The disk verdict names the path, both numbers and the variable to change."""
    problems, _ = _verdicts(free_mb=12)
    assert problems == [
        "/opt/jetpolicy has 12 MiB free, needs 512 MiB (margin (jetson_provision_min_free_mb) 512 MiB); "
        "free space there or lower jetson_provision_min_free_mb"
    ]


def test_preflight_needs_room_for_this_artifact_its_engine_and_the_runtime() -> None:
    """A 600 MiB ONNX with its engine (2 x) and a runtime still to install need more than the
    margin: a robot with 1500 MiB free fails, and the message adds up the parts with the path."""
    total, parts = space_needed(512, artifact_bytes=600 * 2**20 + 1, engine_bytes=1200 * 2**20,
                                runtime_bytes=300 * 2**20)  # fmt: skip
    assert total == 601 + 1200 + 300 + 512
    problems, _ = _verdicts(free_mb=1500, space_parts=parts)
    assert problems == [
        "/opt/jetpolicy has 1500 MiB free, needs 2613 MiB (policy artifact 601 MiB + TensorRT engine "
        "estimate 1200 MiB + runtime bundle 300 MiB + margin (jetson_provision_min_free_mb) 512 MiB); "
        "free space there or lower jetson_provision_min_free_mb"
    ]
    problems, notes = _verdicts(free_mb=4000, space_parts=parts)
    assert problems == [] and any("needs" not in n and ">= 2613 MiB" in n for n in notes)


def test_preflight_counts_only_what_is_not_on_the_robot_yet() -> None:
    """Parts already there (release staged, engine built, runtime installed) need no room."""
    assert space_needed(512) == (512, [("margin (jetson_provision_min_free_mb)", 512)])
    assert space_needed(512, artifact_bytes=0, engine_bytes=3 * 2**20)[0] == 515


def test_preflight_measured_at_parent_is_said() -> None:
    """When the root does not exist yet, the message says where it was measured."""
    problems, _ = _verdicts(measured_path="/opt", free_mb=1)
    assert "(measured at /opt)" in problems[0]


def test_preflight_memory_and_temperature() -> None:
    """Memory over the limit and a hot zone are both reported with numbers."""
    problems, _ = _verdicts(memory_available_mb=400, temperatures={"cpu-thermal": 91.5, "gpu": 60.0})
    assert len(problems) == 2
    assert "95% in use" in problems[0] and "jetson_provision_max_memory_used_pct" in problems[0]
    assert "cpu-thermal=91.5 C" in problems[1] and "gpu" not in problems[1]


def test_preflight_without_thermal_zones_notes_it() -> None:
    """A host without readable zones (a sim robot) passes, saying the check did not run."""
    problems, notes = _verdicts(temperatures={})
    assert problems == [] and any("temperature not checked" in note for note in notes)


@pytest.mark.parametrize(
    ("value", "policy", "fails", "needle"),
    [
        ("yes", "fail", False, "synchronized"),
        ("no", "fail", True, "jetson_provision_time_sync=warn"),
        ("no", "warn", False, "WARNING"),
        ("", "ignore", False, "ignored"),
    ],
)
def test_time_sync_verdict(value: str, policy: str, fails: bool, needle: str) -> None:
    """NTPSynchronized=no fails only with policy fail; warn says WARNING."""
    failed, message = time_sync_verdict(value, policy)
    assert failed is fails and needle in message
