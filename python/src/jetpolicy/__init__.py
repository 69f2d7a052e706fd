"""jetpolicy: trained control policies as real-time services on Jetson robots."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

