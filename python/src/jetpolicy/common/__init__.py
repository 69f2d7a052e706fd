"""Contracts both sides share: the policy manifest and the error type that carries a cause and a fix."""
