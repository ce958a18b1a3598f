"""Shared fixtures of the safeguard tests: task envs, independent safety checks.

The independent check of P1 (:func:`independent_violation`) linearises the *task model* itself at
every state separately (``torch.func.jacrev`` on ``model.dynamics``, not ``env.linearise``) and
solves the HiGHS LPs of :mod:`safegbpo.sets.containment` — nothing of the safeguards' own
solvers or certificates is used.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import pytest
import torch

from safegbpo.envs import make_vec
from safegbpo.safesets import SafeSet, get_safe_set
from safegbpo.sets.containment import gauge_lp, induced_containment_margin, point_in_zonotope
from safegbpo.tasks import task_names

#: The registered tasks (taken at import, before any test registers a fake task).
TASKS = task_names()
F64 = torch.float64
TOL = 1e-7


@cache
def task_safe_set(task: str) -> SafeSet:
    """The project's certified safe set of ``task`` (computed once and cached per user)."""
    return get_safe_set(task)


def make_env(task: str, num_envs: int, seed: int = 0):
    env = make_vec(task, num_envs, seed=seed, safe_set=task_safe_set(task))
    env.reset(seed=seed)
    return env


def random_states(env, num: int, generator: torch.Generator) -> torch.Tensor:
    """``num`` states of the safe state set ∩ S: ``c + G b`` with half of the factors ``b``
    uniform in ``[-1, 1]^m`` and half at ``0.97`` times a random sign vector (close to the
    vertices, where the safe action sets are smallest); states outside ``S`` are redrawn."""
    c, G = env.safe_set.state.center[0], env.safe_set.state.generators[0]
    low, high = env.model.state_bounds()
    m = G.shape[1]
    states: list[torch.Tensor] = []
    count = 0
    while count < num:
        uniform = torch.rand(num, m, generator=generator, dtype=F64) * 2 - 1
        signs = (torch.randint(0, 2, (num, m), generator=generator) * 2 - 1).to(F64) * 0.97
        factors = torch.where(torch.arange(num).unsqueeze(-1) % 2 == 0, uniform, signs)
        candidates = c + factors @ G.T
        inside = candidates[((candidates >= low) & (candidates <= high)).all(-1)]
        states.append(inside)
        count += len(inside)
    return torch.cat(states)[:num]


def random_actions(num: int, dim: int, generator: torch.Generator, spread: float = 2.0):
    """Actions uniform in ``[-spread, spread]^d`` (inside and outside ``A``), plus the corners
    and the centre of ``A``."""
    actions = (torch.rand(num, dim, generator=generator, dtype=F64) * 2 - 1) * spread
    actions[0] = 0.0
    actions[1] = 1.0
    if num > 2:
        actions[2] = -1.0
    return actions


def model_linearisation(model, state: torch.Tensor):
    """``f0, B, E`` of one state ``(n,)`` from the task model (independent of the env)."""
    a0 = torch.zeros(model.action_dim, dtype=F64)
    w0 = 0.5 * sum(model.noise_bounds(dtype=F64))  # centre of W (not 0 for the energy task)

    def f(s, a, w):
        return model.dynamics(s[None], a[None], w[None])[0]

    B = torch.func.jacrev(f, argnums=1)(state, a0, w0)
    E = torch.func.jacrev(f, argnums=2)(state, a0, w0)
    return f(state, a0, w0), B, E


def exact_induced_margin(model, c_S, G_S, state: torch.Tensor, action: torch.Tensor) -> float:
    """Eq 7 exactly: ``max_w gauge_{S_s}(f(s, a, w))`` over the vertices ``w`` of ``W``, with the
    task model's own dynamics and HiGHS gauge LPs (``<= 1`` iff ``f(s, a, W) ⊆ S_s``)."""
    low, high = model.noise_bounds()
    worst = 0.0
    for signs in itertools.product((0, 1), repeat=model.noise_dim):
        w = torch.where(torch.tensor(signs, dtype=torch.bool), high, low)
        nxt = model.dynamics(state[None].double(), action[None].double(), w[None])[0].numpy()
        worst = max(worst, gauge_lp(G_S, nxt - c_S))
    return worst


def independent_violation(env, states: torch.Tensor, actions: torch.Tensor) -> np.ndarray:
    """Per row: how much ``actions[i]`` violates ``A ∩ A_s(states[i])`` (``<= TOL`` = safe).

    ``max(box excess, [U_s gauge - 1], induced margin - 1)`` with HiGHS LPs and a per-state
    linearisation of the model.  The induced margin is the Eq-6 margin where it certifies
    (``<= 1``), else the *exact* one of Eq 7: the largest gauge in ``S_s`` of the next states
    at the ``2^{n_w}`` vertices of ``W`` (exact: the dynamics are affine in ``w``, ``S_s`` is
    convex; Eq 6 is only sufficient, SPEC §11).
    """
    model, safe_set = env.model, env.safe_set
    low_w, high_w = (x.numpy() for x in model.noise_bounds())
    G_W = np.diag(0.5 * (high_w - low_w))
    c_S, G_S = (x[0] for x in safe_set.state.numpy())
    violations = []
    for s, a in zip(states.detach(), actions.detach(), strict=True):
        assert torch.isfinite(a).all()
        worst = float((a.abs() - 1.0).max())
        if safe_set.action is not None:
            c_U, G_U = (x[0] for x in safe_set.action.numpy())
            if not point_in_zonotope(a.numpy(), c_U, G_U, tol=TOL):
                worst = max(worst, 1.0)
        f0, B, E = (x.detach().numpy() for x in model_linearisation(model, s))
        margin = induced_containment_margin(f0, B, E, G_W, a.numpy(), c_S, G_S)
        if margin > 1.0:
            margin = exact_induced_margin(model, c_S, G_S, s, a)
        violations.append(max(worst, margin - 1.0))
    return np.asarray(violations)


@pytest.fixture(scope="module", params=TASKS)
def task(request) -> str:
    return request.param
