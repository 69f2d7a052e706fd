"""Registers the module-test fixtures (the helpers live in moduletest.py, importable by name)."""

from __future__ import annotations

from moduletest import run_module

__all__ = ["run_module"]
