"""A policy root on disk for the release tests: staged releases, runtime venvs and runner configs."""

from __future__ import annotations

import json
from pathlib import Path


def stage(root: Path, release_id: str) -> None:
    release = root / "releases" / release_id
    release.mkdir(parents=True)
    (release / "policy.onnx").write_bytes(b"onnx")
    (release / "policy.json").write_text("{}")


def runtime(root: Path, key: str) -> str:
    venv = root / "runtime" / "venvs" / key
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "jetpolicy").write_text("#!/bin/sh\n")
    return str(venv)


def config(root: Path, name: str) -> str:
    """A runner config file named `name`; its content names it, so two configs never compare equal."""
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / name).write_text(json.dumps({"name": name}))
    return name


def deploy(root: Path, release_id: str, **parts: str) -> None:
    """Switch and commit, as a deploy whose gate passed does."""
    from jetpolicy.robot.releases import commit, switch_release

    switch_release(root, release_id, "deploy", **parts)
    commit(root, "gate passed", release_id)
