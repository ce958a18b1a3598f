"""Defaults shared by the spec's commands (kept import-light for the CLI)."""

from __future__ import annotations

__all__ = ["TASKS", "DEFAULT_SAMPLES"]

TASKS: tuple[str, ...] = ("pendulum", "quadrotor", "energy")

DEFAULT_SAMPLES = 32
"""States per audit (each with one action per category, plus Jacobians, finite differences and
bisections: ~60 safeguard calls per batch of ``num_envs`` states).  32 states keep
``python -m spec --all`` (10 audits + lemmas) at a few minutes on 2 cores while giving 128 P1
samples per audit."""
