"""Contracts both sides share: the policy manifest and the error type that carries a cause and a fix."""

from __future__ import annotations

from typing import List

# The subpackage is imported by module (jetpolicy.common.<module>); it re-exports nothing.
__all__: List[str] = []
