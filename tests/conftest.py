"""Every controller-side suite: ``ansible.module_utils.jetpolicy_*`` importable from the folder
ansible.cfg names (what ``module_utils = ...`` does for real runs)."""

from __future__ import annotations

import ansible.module_utils
from ansible_paths import MODULE_UTILS

if str(MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(MODULE_UTILS))
