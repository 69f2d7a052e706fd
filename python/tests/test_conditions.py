"""Conditions sampling: tegrastats lines of real boards parsed, the tegrastats process started and
always stopped, /proc and /sys read on other hosts, and the time series kept short."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import List

import pytest
from fake_proc import fake_proc_tree

from jetpolicy.robot.conditions import (
    REPLAY_NOTE,
    SERIES_POINTS,
    BackgroundSampling,
    ConditionSampler,
    ConditionsError,
    TegrastatsSampler,
    select_sampler,
    thin_evenly,
)
from jetpolicy.robot.tegrastats import CpuCore, TegrastatsParseError, parse_tegrastats_line

RECORDED = Path(__file__).resolve().parents[2] / "sim/l4t/recorded/tegrastats_agx_orin_64gb.txt"
AGX_ORIN = RECORDED.read_text(encoding="utf-8").splitlines()[0]

# Lines recorded on real boards, quoted by DataDog/datadog-agent's Jetson check tests
# (pkg/collector/corechecks/nvidia/jetson/jetson_test.go, commit 020f92f4a5f6).
TX2 = (
    "RAM 2344/7852MB (lfb 1154x4MB) SWAP 0/3926MB (cached 0MB) CPU [1%@345,off,off,1%@345,0%@345,2%@345] "
    "EMC_FREQ 4%@1600 GR3D_FREQ 0%@624 APE 150 PLL@37.5C MCPU@37.5C PMIC@100C Tboard@32C GPU@35C "
    "BCPU@37.5C thermal@36.5C Tdiode@34.25C VDD_SYS_GPU 152/152 VDD_SYS_SOC 687/687 VDD_4V0_WIFI 0/0 "
    "VDD_IN 3056/3056 VDD_SYS_CPU 152/152 VDD_SYS_DDR 883/883"
)
NANO = (
    "RAM 534/3964MB (lfb 98x4MB) SWAP 5/1982MB (cached 1MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [16%@204,9%@204,0%@204,0%@204] EMC_FREQ 0%@204 GR3D_FREQ 0%@76 APE 25 PLL@34C CPU@36.5C "
    "PMIC@100C GPU@36C AO@39.5C thermal@36.25C POM_5V_IN 1022/1022 POM_5V_GPU 0/0 POM_5V_CPU 204/204"
)
AGX_XAVIER = (
    "RAM 721/31927MB (lfb 7291x4MB) SWAP 0/15963MB (cached 0MB) "
    "CPU [2%@1190,0%@1190,0%@1190,0%@1190,off,off,off,off] EMC_FREQ 0%@665 GR3D_FREQ 0%@318 APE 150 "
    "MTS fg 0% bg 0% AO@37.5C GPU@37.5C Tdiode@40C PMIC@100C AUX@36C CPU@37.5C thermal@36.9C Tboard@37C "
    "GPU 0/0 CPU 311/311 SOC 932/932 CV 0/0 VDDRQ 621/621 SYS5V 1482/1482"
)
R36 = (
    "RAM 29114/30697MB (lfb 3x4MB)    SWAP 4915/15348MB (cached 1MB) CPU [3%@729,4%@729,0%@729,1%@729,"
    "0%@2201,100%@2201,1%@2201,0%@2201,100%@2201,0%@2201,0%@2201,0%@2201] EMC_FREQ 1%@2133 "
    "GR3D_FREQ 0%@[305,305] NVENC      off  NVDEC    off NVJPG off NVJPG1    off         VIC        off"
    "          OFA           off          NVDLA0    off       NVDLA1     off          PVA0_FREQ off"
    "         APE           174        cpu@53.062C soc2@48.25C soc0@48.843C  gpu@47.812C tj@53.062C "
    "soc1@48.968C    VDD_GPU_SOC 3205mW/3205mW VDD_CPU_CV 4405mW/4405mW VIN_SYS_5V0 4767mW/4767mW"
)
# Jetson TX1 on L4T 28.1, quoted in hordiales/jetson-tx1-dev SCRIPTS.md: one clock for all cores.
TX1_R28 = (
    "RAM 3468/3983MB (lfb 48x4MB) SWAP 873/8192MB (cached 295MB) cpu [17%,13%,29%,5%]@408 "
    "EMC 1%@408 APE 25 GR3D 3%@76"
)


# ---- The parser ----------------------------------------------------------------------------------


def test_the_recorded_agx_orin_line_parses_to_its_figures() -> None:
    """sim/l4t/recorded's AGX Orin 64GB line: RAM, twelve cores at 729 MHz, GR3D 0 %, five
    sensors and three rails in mW (current/average)."""
    line = parse_tegrastats_line(AGX_ORIN)
    assert (line.ram_used_mb, line.ram_total_mb) == (13123.0, 62841.0)
    assert [core.load_percent for core in line.cpus] == [3, 4, 1, 4, 1, 3, 2, 1, 4, 2, 1, 1]
    assert {core.mhz for core in line.cpus} == {729} and all(core.online for core in line.cpus)
    assert line.gpu_percent == 0.0
    assert line.temperatures_c == {"cpu": 48.156, "soc2": 43.562, "soc0": 45.125, "tj": 48.156,
                                   "soc1": 44.343}  # fmt: skip
    assert line.rails_mw == {"VDD_GPU_SOC": (3193.0, 3193.0), "VDD_CPU_CV": (399.0, 399.0),
                             "VIN_SYS_5V0": (4306.0, 4306.0)}  # fmt: skip
    assert line.cpu_percent == round(27 / 12, 1) and line.temp_max_c == 48.156


def test_a_tx2_line_with_cores_off_and_rails_without_units() -> None:
    """JetPack 4 on a TX2 (datadog-agent jetson_test.go tx2Sample): `off` cores carry no figures
    and do not count in the mean; rails print bare numbers; the GPU's clock follows its load."""
    line = parse_tegrastats_line(TX2)
    assert line.cpus[1] == CpuCore(online=False) and line.cpus[2] == CpuCore(online=False)
    assert [c.load_percent for c in line.cpus if c.online] == [1, 1, 0, 2]
    assert line.cpu_percent == 1.0
    assert line.gpu_percent == 0.0 and line.ram_used_mb == 2344.0
    assert line.rails_mw["VDD_IN"] == (3056.0, 3056.0) and len(line.rails_mw) == 6
    assert line.temperatures_c["Tdiode"] == 34.25 and line.temperatures_c["PMIC"] == 100.0


def test_a_nano_line_keeps_iram_out_of_the_rails() -> None:
    """Jetson Nano (datadog-agent nanoSample): POM_5V_* rails; `IRAM 0/252kB` is memory, no rail."""
    line = parse_tegrastats_line(NANO)
    assert line.rails_mw == {"POM_5V_IN": (1022.0, 1022.0), "POM_5V_GPU": (0.0, 0.0),
                             "POM_5V_CPU": (204.0, 204.0)}  # fmt: skip
    assert (line.ram_used_mb, line.ram_total_mb) == (534.0, 3964.0)
    assert [c.load_percent for c in line.cpus] == [16, 9, 0, 0] and line.cpus[0].mhz == 204


def test_an_agx_xavier_line_whose_rails_are_named_cpu_and_gpu() -> None:
    """AGX Xavier on JetPack 4 (datadog-agent agXSample): rails `CPU 311/311`, `GPU 0/0` next to
    the `CPU [...]` load field and the `CPU@37.5C` sensor; each is read as what it is."""
    line = parse_tegrastats_line(AGX_XAVIER)
    assert len(line.cpus) == 8 and sum(core.online for core in line.cpus) == 4
    assert line.rails_mw["CPU"] == (311.0, 311.0) and line.rails_mw["GPU"] == (0.0, 0.0)
    assert line.temperatures_c["CPU"] == 37.5 and line.temperatures_c["GPU"] == 37.5
    assert "MTS" not in line.rails_mw


def test_a_jetpack6_line_with_a_gpu_clock_array_and_engines_off() -> None:
    """L4T R36 (datadog-agent r36Sample): `GR3D_FREQ 0%@[305,305]`, padded columns, engines
    `off`: the unknown fields are passed over, the known ones read."""
    line = parse_tegrastats_line(R36)
    assert line.gpu_percent == 0.0 and line.ram_used_mb == 29114.0
    assert len(line.cpus) == 12 and line.cpus[5] == CpuCore(True, 100.0, 2201)
    assert line.temp_max_c == 53.062
    assert set(line.rails_mw) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"}


def test_an_l4t_28_line_with_one_clock_for_all_cores() -> None:
    """TX1 on L4T 28.1 (hordiales/jetson-tx1-dev SCRIPTS.md): lowercase `cpu [..]@408`, `GR3D 3%@76`."""
    line = parse_tegrastats_line(TX1_R28)
    assert [(c.load_percent, c.mhz) for c in line.cpus] == [(17, 408), (13, 408), (29, 408), (5, 408)]
    assert line.gpu_percent == 3.0 and line.temperatures_c == {} and line.rails_mw == {}


@pytest.mark.parametrize("text", ["", "garbage", "NVPM ERROR: failed to read PARAM EMC", "GR3D_FREQ 0%"])
def test_a_line_with_neither_ram_nor_cpu_is_refused(text: str) -> None:
    with pytest.raises(TegrastatsParseError, match="not a tegrastats line"):
        parse_tegrastats_line(text)


# ---- The /proc sampler ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def proc_tree(tmp_path: Path, pid: int = 4242) -> ConditionSampler:
    """A sampler over fake_proc_tree; its clock is a FakeClock advanced by the test."""
    proc, thermal = fake_proc_tree(tmp_path, pid)
    return ConditionSampler(pid, proc=proc, thermal=thermal, monotonic=FakeClock())


def test_the_proc_sampler_reads_cpu_memory_rss_and_zones(tmp_path: Path) -> None:
    """CPU from /proc/stat deltas, memory used as MemTotal - MemAvailable, the runner's RSS, each
    zone's min/max (null for one whose temp cannot be read), and one series point per sample."""
    sampler = proc_tree(tmp_path)
    clock = sampler.monotonic
    assert isinstance(clock, FakeClock)
    sampler.sample()
    (tmp_path / "proc/stat").write_text("cpu  150 0 150 900 0 0 0 0 0 0\n")  # 100 busy of 200
    (tmp_path / "thermal/thermal_zone0/temp").write_text("43000\n")
    clock.now += 0.25
    sampler.sample()
    (tmp_path / "proc/stat").write_text("cpu  160 0 160 1080 0 0 0 0 0 0\n")  # 20 busy of 200
    (tmp_path / "proc/4242/status").write_text("VmRSS:\t  215040 kB\n")
    (tmp_path / "proc/meminfo").write_text("MemTotal:  8000000 kB\nMemAvailable:  5900800 kB\n")
    clock.now += 0.25
    sampler.sample()
    assert sampler.summary() == {
        "source": "proc",
        "samples": 3,
        "cpu_percent": {"mean": 30.0, "max": 50.0},
        "ram_used_mb": {"min": 2000.0, "max": 2050.0},
        "gpu_percent": None,
        "runner_pid": 4242,
        "runner_rss_mb": {"min": 200.0, "max": 210.0},
        "thermal_c": {
            "thermal_zone0": {"type": "CPU-therm", "min": 41.5, "max": 43.0},
            "thermal_zone1": {"type": "GPU-therm", "min": None, "max": None},
        },
        "series": [
            {"t": 0.0, "cpu_percent": None, "ram_used_mb": 2000.0, "temp_max_c": 41.5},
            {"t": 0.25, "cpu_percent": 50.0, "ram_used_mb": 2000.0, "temp_max_c": 43.0},
            {"t": 0.5, "cpu_percent": 10.0, "ram_used_mb": 2050.0, "temp_max_c": 43.0},
        ],
    }


def test_a_host_without_proc_or_thermal_zones_gives_null_readings(tmp_path: Path) -> None:
    """A container without thermal zones (or /proc entries for the pid): every reading is null."""
    sampler = ConditionSampler(None, proc=tmp_path / "no-proc", thermal=tmp_path / "no-sys")
    sampler.sample()
    sampler.sample()
    summary = sampler.summary()
    assert {key: summary[key] for key in ("cpu_percent", "ram_used_mb", "runner_rss_mb", "thermal_c")} == {
        "cpu_percent": None, "ram_used_mb": None, "runner_rss_mb": None, "thermal_c": None,
    }  # fmt: skip
    assert summary["samples"] == 2 and [p["temp_max_c"] for p in summary["series"]] == [None, None]


def test_a_long_run_keeps_at_most_the_series_limit_evenly(tmp_path: Path) -> None:
    """1000 samples: SERIES_POINTS points, the first and the last among them, evenly spaced."""
    assert thin_evenly(list(range(5))) == [0, 1, 2, 3, 4]
    thinned = thin_evenly(list(range(1000)))
    assert len(thinned) == SERIES_POINTS and thinned[0] == 0 and thinned[-1] == 999
    gaps = {b - a for a, b in zip(thinned, thinned[1:])}
    assert gaps <= {8, 9}  # 999 / 119 = 8.4
    sampler = proc_tree(tmp_path)
    for _ in range(300):
        sampler.sample()
    assert len(sampler.summary()["series"]) == SERIES_POINTS and sampler.summary()["samples"] == 300


def test_background_sampling_samples_at_entry_and_exit(tmp_path: Path) -> None:
    sampler = proc_tree(tmp_path)
    with BackgroundSampling(sampler, interval_s=60.0):
        pass
    assert sampler.samples == 2


# ---- The tegrastats sampler ----------------------------------------------------------------------


def fake_tegrastats(tmp_path: Path, ignore_term: bool = False) -> Path:
    """An executable printing the recorded AGX Orin line every --interval ms, its argv written
    to argv.txt and its pid to pid.txt; with `ignore_term` it survives SIGTERM (a stuck one)."""
    script = tmp_path / "tegrastats"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, sys, time\n"
        f"open({str(tmp_path / 'argv.txt')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        f"open({str(tmp_path / 'pid.txt')!r}, 'w').write(str(os.getpid()))\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
        + f"line = {AGX_ORIN!r}\n"
        "interval = int(sys.argv[sys.argv.index('--interval') + 1]) / 1000.0\n"
        "print('banner without figures', flush=True)\n"
        "while True:\n"
        "    print(line, flush=True)\n"
        "    time.sleep(interval)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def wait_for_lines(sampler: TegrastatsSampler, count: int) -> None:
    deadline = time.monotonic() + 20.0
    while sampler.summary()["samples"] < count:
        assert time.monotonic() < deadline, "the fake tegrastats printed nothing"
        time.sleep(0.02)


def assert_gone(tmp_path: Path, sampler: TegrastatsSampler) -> None:
    assert sampler.process is not None and sampler.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid.txt").read_text()), 0)


def test_tegrastats_runs_while_entered_and_its_lines_make_the_summary(tmp_path: Path) -> None:
    """`tegrastats --interval 50` starts on entry; its lines give CPU, RAM, GPU, sensors, rails and
    the series; the banner is counted as unparsed; on exit the process is gone."""
    sampler = TegrastatsSampler(
        4242, fake_tegrastats(tmp_path), interval_ms=50, proc=tmp_path / "none",
        sim_marker=tmp_path / "no-marker",
    )  # fmt: skip
    with sampler:
        wait_for_lines(sampler, 3)
        sampler.sample()
    assert_gone(tmp_path, sampler)
    assert (tmp_path / "argv.txt").read_text() == "--interval 50"
    summary = sampler.summary()
    assert summary["source"] == "tegrastats" and summary["samples"] >= 3 and summary["unparsed_lines"] == 1
    assert summary["cpu_percent"] == {"mean": 2.2, "max": 2.2}
    assert summary["ram_used_mb"] == {"min": 13123.0, "max": 13123.0}
    assert summary["gpu_percent"] == {"min": 0.0, "max": 0.0}
    assert summary["thermal_c"]["tj"] == {"type": "tj", "min": 48.156, "max": 48.156}
    assert summary["power_mw"]["VDD_GPU_SOC"] == {"min": 3193.0, "max": 3193.0}
    assert summary["runner_pid"] == 4242 and summary["runner_rss_mb"] is None  # no /proc entry
    times: List[float] = [point["t"] for point in summary["series"]]
    assert times == sorted(times) and summary["series"][0]["temp_max_c"] == 48.156
    assert "simulated" not in summary


def test_tegrastats_is_stopped_when_the_measurement_raises(tmp_path: Path) -> None:
    sampler = TegrastatsSampler(None, fake_tegrastats(tmp_path), interval_ms=50, proc=tmp_path / "none")
    with pytest.raises(RuntimeError, match="the window failed"), sampler:
        wait_for_lines(sampler, 1)
        raise RuntimeError("the window failed")
    assert_gone(tmp_path, sampler)


def test_a_tegrastats_that_ignores_sigterm_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jetpolicy.robot.conditions.STOP_TIMEOUT_S", 0.3)
    sampler = TegrastatsSampler(None, fake_tegrastats(tmp_path, ignore_term=True), interval_ms=50,
                                proc=tmp_path / "none")  # fmt: skip
    with sampler:
        wait_for_lines(sampler, 1)
    assert_gone(tmp_path, sampler)
    assert sampler.process is not None and sampler.process.returncode == -9


def test_on_the_sim_l4t_robot_the_figures_are_marked_a_replay(tmp_path: Path) -> None:
    """With /etc/jetpolicy-sim-l4t present, tegrastats is the replay double: the summary says so."""
    marker = tmp_path / "jetpolicy-sim-l4t"
    marker.write_text("")
    sampler = TegrastatsSampler(None, fake_tegrastats(tmp_path), interval_ms=50, proc=tmp_path / "none",
                                sim_marker=marker)  # fmt: skip
    with sampler:
        wait_for_lines(sampler, 1)
    summary = sampler.summary()
    assert summary["simulated"] == "replay" and summary["note"] == REPLAY_NOTE


def test_selection_auto_proc_and_tegrastats(tmp_path: Path) -> None:
    """auto takes tegrastats only where it is executable; tegrastats asked for on a host without
    it is refused with the fix; proc is always /proc."""
    script = fake_tegrastats(tmp_path)
    assert isinstance(select_sampler("auto", 1, tegrastats=script), TegrastatsSampler)
    assert isinstance(select_sampler("proc", 1, tegrastats=script), ConditionSampler)
    script.chmod(0o644)
    assert isinstance(select_sampler("auto", 1, tegrastats=script), ConditionSampler)
    assert isinstance(select_sampler("auto", 1, tegrastats=tmp_path / "missing"), ConditionSampler)
    with pytest.raises(ConditionsError, match="not an executable file") as info:
        select_sampler("tegrastats", 1, tegrastats=tmp_path / "missing")
    assert "--conditions proc" in info.value.fix
