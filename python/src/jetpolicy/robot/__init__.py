"""What runs on the robot: the real-time runner, its scheduler, transport and backends, releases,
health, status and the in-loop bench. Shipped in the robot's wheel; never imports the controller side."""

from __future__ import annotations

from typing import List

# The subpackage is imported by module (jetpolicy.robot.<module>); it re-exports nothing.
__all__: List[str] = []
