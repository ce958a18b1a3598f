"""Shared helpers of the spec tests (importable: ``tests/spec`` is on ``sys.path``)."""

from __future__ import annotations

from spec.checks.probe import ProbeConfig

#: Small probe for unit tests: one batch of states, short bisection, three timed calls (P5
#: takes the fastest: robust to the load of a shared machine).
FAST_PROBE = ProbeConfig(rounds=1, bisection_steps=10, timing_calls=3, lipschitz_directions=1)


def make_env(task: str = "pendulum", num_envs: int | None = None, seed: int = 0):
    """The task's env with the project's certified safe set, reset with ``seed``."""
    from safegbpo.envs import make_vec

    env = make_vec(task, num_envs=num_envs, seed=seed)
    env.reset(seed=seed)
    return env
