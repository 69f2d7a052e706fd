"""Errors that carry a cause and a fix, so the CLI and Ansible can print one clear line."""

from __future__ import annotations

from typing import List

__all__ = ["BackendError", "ConfigError", "JetpolicyError", "ManifestError", "PolicyValidationError"]


class JetpolicyError(Exception):
    """Base error: `cause` says what is wrong, `fix` what the user should do."""

    def __init__(self, cause: str, fix: str = "") -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause}; fix: {fix}" if fix else cause)


class ManifestError(JetpolicyError):
    """The policy manifest is missing, malformed or inconsistent."""


class PolicyValidationError(JetpolicyError):
    """An ONNX model does not match its manifest (or is not a valid ONNX model)."""

    def __init__(self, problems: List[str], fix: str = "") -> None:
        self.problems = problems
        super().__init__("; ".join(problems), fix)


class BackendError(JetpolicyError):
    """An inference backend cannot load or run the policy."""


class ConfigError(JetpolicyError):
    """A runner configuration value is invalid."""
