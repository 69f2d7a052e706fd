"""What runs on the controller: export and validation of policies, parity references, the runtime
bundler, rollouts and their reports. Never shipped to a robot."""

from __future__ import annotations

from typing import List

# The subpackage is imported by module (jetpolicy.controller.<module>); it re-exports nothing.
__all__: List[str] = []
