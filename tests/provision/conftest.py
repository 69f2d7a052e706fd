"""Make `ansible.module_utils.jetpolicy_provision` importable from the repo's module_utils/."""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils

REPO = Path(__file__).resolve().parents[2]
_MODULE_UTILS = str(REPO / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)
