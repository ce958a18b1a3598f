"""Shared helpers of the algorithm tests: population envs and evaluators with the project's safe
set, one thread."""

from __future__ import annotations

from functools import cache

import pytest
import torch

from safegbpo.algorithms import Evaluator, population_env
from safegbpo.envs import make_vec
from safegbpo.safesets import SafeSet, get_safe_set


@cache
def task_safe_set(task: str) -> SafeSet:
    """The project's certified safe set of ``task`` (computed once, cached)."""
    return get_safe_set(task)


def make_env(task: str, num_envs: int, members: int = 1, **kwargs):
    """A population env of ``task`` (``members`` blocks of ``num_envs`` rows) on the project's
    safe set, not yet reset (``reset(seed=[one seed per block])``)."""
    return population_env(task, [num_envs] * members, safe_set=task_safe_set(task), **kwargs)


def make_plain_env(task: str, num_envs: int, seed: int = 0, **kwargs):
    """A plain ``SafeVectorEnv`` of ``task`` on the project's safe set (not yet reset)."""
    return make_vec(task, num_envs, seed=seed, safe_set=task_safe_set(task), **kwargs)


def make_evaluator(task: str, members: int = 1, **kwargs) -> Evaluator:
    """The SPEC §13 evaluator on the project's safe set."""
    return Evaluator(task, members, safe_set=task_safe_set(task), **kwargs)


def boundary_states(env, num: int, scale: float = 0.9) -> torch.Tensor:
    """``num`` states near vertices of the safe state zonotope (small safe action sets there),
    clamped to ``S``: ``c + scale * G sign(G^+ (s - c))`` for uniform safe states ``s``."""
    centre = env.safe_set.state.center[0]
    generators = env.safe_set.state.generators[0]
    pinv = torch.linalg.pinv(generators)
    states = make_vec(env.task, num, seed=0, safe_set=env.safe_set).sample_safe_states(num)
    signs = torch.sign((states - centre) @ pinv.T)
    low, high = env.model.state_bounds()
    return torch.clamp(centre + scale * signs @ generators.T, low, high)


@pytest.fixture(autouse=True)
def single_thread():
    """Run each test with one torch thread (as the training runner does): the networks are
    tiny and intra-op threading only slows them down on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
