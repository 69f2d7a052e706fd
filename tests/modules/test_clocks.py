"""jetpolicy_clocks with a stand-in jetson_clocks that prints the real recorded `--show` (Jetson Orin
NX, JetPack 5; sim/l4t/recorded/README.md) and keeps --store/--restore files as the real one does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils.jetpolicy_clocks import parse_clocks_show
from ansible_paths import REPO
from moduletest import load_module, write_executable

jetpolicy_clocks = load_module("jetpolicy_clocks")
SHOW = REPO / "sim/l4t/recorded/jetson_clocks_show_orin_nx_r35.txt"


def fake_jetson_clocks(tmp_path: Path, fail: str = "") -> tuple[Path, Path]:
    """(script, calls file). `fail` names the argument (`--store`, `lock`, ...) that exits 1."""
    calls = tmp_path / "calls.jsonl"
    state = tmp_path / "state"
    script = tmp_path / "jetson_clocks"
    write_executable(script, (
        "#!/usr/bin/env python3\nimport json, shutil, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "what = sys.argv[1] if len(sys.argv) > 1 else 'lock'\n"
        f"if what == {fail!r}:\n    sys.stderr.write('jetson_clocks: ' + what + ' refused\\n'); sys.exit(1)\n"
        f"if what == '--show':\n    sys.stdout.write(open({str(SHOW)!r}).read())\n"
        f"elif what == '--store':\n    open(sys.argv[2], 'w').write(open({str(state)!r}).read())\n"
        f"elif what == '--restore':\n    shutil.copyfile(sys.argv[2], {str(state)!r})\n"
        f"else:\n    open({str(state)!r}, 'w').write('locked\\n')\n"))  # fmt: skip
    state.write_text("as before\n")
    return script, calls


def calls_of(calls: Path) -> list[list[str]]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def args(tmp_path: Path, script: Path, state: str) -> dict[str, str]:
    return {"state": state, "jetson_clocks": str(script), "store_file": str(tmp_path / "store/clocks.conf"),
            "sim_marker": str(tmp_path / "no-marker")}  # fmt: skip


def test_recorded_show_is_parsed() -> None:
    """The recording's seven CPU lines (cpu0-cpu6, an excerpt) as domains (frequencies in kHz as printed), none pinned."""
    show = parse_clocks_show(SHOW.read_text())
    assert show["soc_family"] == "tegra234" and show["online_cpus"] == "0-7"
    assert show["machine"] == "NVIDIA Jetson Orin NX Engineering Reference Developer Kit"
    assert sorted(show["domains"]) == [f"cpu{n}" for n in range(7)]
    assert show["domains"]["cpu5"] == {"governor": "schedutil", "online": True, "min_khz": 729600,
                                       "max_khz": 1984000, "current_khz": 1984000, "pinned": False}  # fmt: skip
    assert show["all_pinned"] is False


def test_a_minimum_raised_to_the_maximum_is_pinned() -> None:
    """jetson_clocks pins a domain by raising MinFreq to MaxFreq: the recorded lines with that done."""
    lines = [line.replace("MinFreq=729600", "MinFreq=1984000") for line in SHOW.read_text().splitlines()]
    assert parse_clocks_show("\n".join(lines))["all_pinned"] is True


def test_output_naming_no_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="named no clock"):
        parse_clocks_show("SOC family:tegra234  Machine:x\nOnline CPUs: 0-7\n")


def test_lock_stores_first_then_pins_and_reports_the_clocks(run_module, tmp_path: Path) -> None:
    script, calls = fake_jetson_clocks(tmp_path)
    result = run_module(jetpolicy_clocks, args(tmp_path, script, "locked"))
    assert "failed" not in result, result
    store = str(tmp_path / "store/clocks.conf")
    assert calls_of(calls) == [["--store", store], [], ["--show"]]
    assert result["locked"] is True and result["store_kept"] is False and result["changed"] is False
    assert result["show"]["domains"]["cpu0"]["current_khz"] == 1728000 and result["simulated"] is None
    assert Path(store).read_text() == "as before\n"


def test_restore_returns_to_the_stored_state_and_removes_it(run_module, tmp_path: Path) -> None:
    script, calls = fake_jetson_clocks(tmp_path)
    run_module(jetpolicy_clocks, args(tmp_path, script, "locked"))
    assert (tmp_path / "state").read_text() == "locked\n"
    result = run_module(jetpolicy_clocks, args(tmp_path, script, "restored"))
    assert result["restored"] is True and result["changed"] is False
    assert (tmp_path / "state").read_text() == "as before\n"
    assert not (tmp_path / "store/clocks.conf").exists()
    assert calls_of(calls)[-1] == ["--restore", str(tmp_path / "store/clocks.conf")]


def test_a_store_left_by_an_interrupted_run_is_kept(run_module, tmp_path: Path) -> None:
    """A lock without restore (the controller was killed), then a new lock: the store keeps the
    clocks from before the first, so the restore goes back to them, not to the locked state."""
    script, calls = fake_jetson_clocks(tmp_path)
    run_module(jetpolicy_clocks, args(tmp_path, script, "locked"))
    result = run_module(jetpolicy_clocks, args(tmp_path, script, "locked"))
    assert result["store_kept"] is True
    assert [call for call in calls_of(calls) if call[:1] == ["--store"]] == [["--store", str(tmp_path / "store/clocks.conf")]]
    run_module(jetpolicy_clocks, args(tmp_path, script, "restored"))
    assert (tmp_path / "state").read_text() == "as before\n"


def test_restore_without_a_store_touches_nothing(run_module, tmp_path: Path) -> None:
    script, calls = fake_jetson_clocks(tmp_path)
    result = run_module(jetpolicy_clocks, args(tmp_path, script, "restored"))
    assert result["restored"] is False and "nothing to restore" in result["msg"] and calls_of(calls) == []


@pytest.mark.parametrize("fail", ["--store", "lock", "--show"])
def test_a_refusal_names_the_command(run_module, tmp_path: Path, fail: str) -> None:
    script, _ = fake_jetson_clocks(tmp_path, fail=fail)
    result = run_module(jetpolicy_clocks, args(tmp_path, script, "locked"))
    command = "jetson_clocks" if fail == "lock" else f"jetson_clocks {fail}"
    assert result["failed"] is True and result["msg"].startswith(command)
    assert f"jetson_clocks: {fail} refused" in result["msg"]


def test_not_a_jetson_is_named(run_module, tmp_path: Path) -> None:
    result = run_module(jetpolicy_clocks, args(tmp_path, tmp_path / "absent", "locked"))
    assert result["failed"] is True and "jetson_clocks comes with L4T" in result["msg"]


def test_check_mode_touches_no_clock(run_module, tmp_path: Path) -> None:
    script, calls = fake_jetson_clocks(tmp_path)
    result = run_module(jetpolicy_clocks, args(tmp_path, script, "locked"), check_mode=True)
    assert result["skipped"] is True and calls_of(calls) == []


def test_the_sim_robot_is_marked_simulated(run_module, tmp_path: Path) -> None:
    script, _ = fake_jetson_clocks(tmp_path)
    (tmp_path / "marker").write_text("")
    result = run_module(jetpolicy_clocks, dict(args(tmp_path, script, "locked"), sim_marker=str(tmp_path / "marker")))
    assert result["simulated"] == "replay"
