"""Ansible's search paths for the controller-side tests, read from ansible.cfg (their one home).

ansible.cfg's ``library``, ``module_utils`` and ``roles_path`` are what real runs use; the tests
load modules and module_utils from the same places instead of spelling the folders again.
Molecule cannot read ansible.cfg (it writes its own): .config/molecule/config.yml repeats the
three, and tests/rollout/test_playbooks.py checks that it agrees with ansible.cfg.
"""

from __future__ import annotations

import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_CFG = REPO / "ansible.cfg"


def cfg_path(key: str) -> Path:
    """A [defaults] path of ansible.cfg, resolved as Ansible does: relative to the file."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ANSIBLE_CFG, encoding="utf-8")
    value = parser.get("defaults", key).split(":")[0].strip()
    return (ANSIBLE_CFG.parent / value).resolve()


LIBRARY = cfg_path("library")
MODULE_UTILS = cfg_path("module_utils")
ROLES = cfg_path("roles_path")

__all__ = ["ANSIBLE_CFG", "LIBRARY", "MODULE_UTILS", "REPO", "ROLES", "cfg_path"]
