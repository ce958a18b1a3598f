"""Sampling of audit states and actions (SPEC §3: P1 must hold "for all a", in and outside A).

States are drawn *in the safe state set* ``S_s ∩ S`` — the only states a safeguard is
obliged to handle (recursive feasibility, SPEC §7) — and actions in four categories that
together cover where safeguards break:

``uniform``
    uniform in the feasible box ``A`` (what a tanh-squashed policy produces);
``outside``
    outside ``A``: at least one coordinate beyond ``±1`` (P1 demands safety for these too);
``boundary``
    within a relative distance ``delta`` (log-uniform in ``[1e-6, 1e-2]``) of the boundary of
    ``A ∩ A_s(s)``, on either side: along a random ray from an interior point, at
    ``(1 ± delta) t*`` with ``t*`` the independent Eq-47 ray distance;
``edges``
    near the set's edges/vertices (where faces meet and projections/ray masks are least
    regular): the support point of ``A ∩ A_s(s)`` in a random direction plus a random offset
    of length ``delta`` (log-uniform in ``[1e-6, 1e-2]``).

Every random draw uses the caller's :class:`torch.Generator` (never the global RNG); the
geometry comes from :class:`spec.checks.oracle.SafeActionOracle` (scipy LPs, independent of any
safeguard).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from spec.checks.oracle import SafeActionOracle

__all__ = [
    "CATEGORIES",
    "sample_safe_states",
    "sample_actions",
    "boundary_pairs",
    "random_directions",
]

CATEGORIES: tuple[str, ...] = ("uniform", "outside", "boundary", "edges")

DELTA_RANGE = (1e-6, 1e-2)
"""Relative distances of the ``boundary`` / ``edges`` samples from the boundary: from solver
accuracy (below it, inside and outside cannot be told apart) to clearly off the boundary."""

OUTSIDE_RANGE = (1.05, 3.0)
"""Magnitude of the out-of-box coordinates of ``outside`` samples (multiples of the box
half-width)."""


def _uniform(shape: Sequence[int], generator: torch.Generator, low: float = 0.0,
             high: float = 1.0) -> Tensor:
    return low + (high - low) * torch.rand(tuple(shape), generator=generator, dtype=torch.float64)


def _log_uniform(num: int, generator: torch.Generator, low: float, high: float) -> Tensor:
    return torch.exp(_uniform((num,), generator, math.log(low), math.log(high)))


def random_directions(num: int, dim: int, generator: torch.Generator) -> Tensor:
    """``num`` unit vectors uniform on the sphere ``S^{dim-1}``, ``(num, dim)``."""
    v = torch.randn((num, dim), generator=generator, dtype=torch.float64)
    norm = v.norm(dim=1, keepdim=True)
    # a zero draw has probability 0; guard anyway so no NaN can enter an audit
    v = torch.where(norm > 0, v / norm.clamp_min(1e-300), torch.ones_like(v) / math.sqrt(dim))
    return v


def sample_safe_states(env, num: int, generator: torch.Generator,
                       vertex_fraction: float = 0.25) -> Tensor:
    """``num`` states of ``S_s ∩ S`` ``(num, n)``, in ``env``'s dtype/device.

    A fraction ``vertex_fraction`` are extreme points of ``S_s`` (factors ``b`` in
    ``{-1, 1}^m``: the hardest states, where the safe action set is smallest); the others have
    factors uniform in ``[-1, 1]^m``.  Points outside the feasible state box ``S`` are redrawn.

    Raises:
        ValueError: ``num < 1``, ``vertex_fraction`` outside ``[0, 1]``, or the safe set
            (almost) never meets ``S``.
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if not 0.0 <= vertex_fraction <= 1.0:
        raise ValueError(f"vertex_fraction must lie in [0, 1], got {vertex_fraction}")
    zono = env.safe_set.state
    c = zono.center[0].detach().to(torch.float64).cpu()
    G = zono.generators[0].detach().to(torch.float64).cpu()
    m = G.shape[1]
    low, high = env.model.state_bounds(dtype=torch.float64)
    num_vertex = int(round(vertex_fraction * num))
    accepted: list[Tensor] = []
    for count, kind in ((num_vertex, "vertex"), (num - num_vertex, "uniform")):
        got = 0
        tries = 0
        while got < count:
            tries += 1
            if tries > 1000:
                raise ValueError("could not sample states of the safe set inside the feasible "
                                 "state box S (the safe set barely meets S)")
            size = 2 * (count - got) + 8
            if kind == "vertex":
                b = 2.0 * torch.randint(0, 2, (size, m), generator=generator).to(torch.float64) - 1
            else:
                b = _uniform((size, m), generator, -1.0, 1.0)
            s = c + b @ G.T
            inside = ((s >= low) & (s <= high)).all(dim=1)
            s = s[inside][: count - got]
            accepted.append(s)
            got += s.shape[0]
    states = torch.cat(accepted)
    perm = torch.randperm(num, generator=generator)
    return states[perm].to(dtype=env.dtype, device=env.device)


def sample_actions(oracle: SafeActionOracle, category: str, generator: torch.Generator) -> Tensor:
    """One action per oracle state ``(K, d)`` (float64, CPU) of the given category (module
    docstring).

    Raises:
        ValueError: unknown category, or the safe action set of a state is empty (the state is
            not recursively feasible: the safe set is broken, not the safeguard).
    """
    K, d = oracle.num_states, oracle.action_dim
    low = torch.as_tensor(oracle.low)
    high = torch.as_tensor(oracle.high)
    a0, radius = 0.5 * (low + high), 0.5 * (high - low)
    if category == "uniform":
        return low + (high - low) * _uniform((K, d), generator)
    if category == "outside":
        u = _uniform((K, d), generator, -1.0, 1.0)
        # at least one coordinate (the first of a random permutation) leaves the box
        outside = _uniform((K, d), generator) < 0.5
        first = torch.randint(0, d, (K,), generator=generator)
        outside[torch.arange(K), first] = True
        sign = torch.where(_uniform((K, d), generator) < 0.5, -1.0, 1.0)
        far = sign * _uniform((K, d), generator, *OUTSIDE_RANGE)
        return a0 + radius * torch.where(outside, far, u)
    if category == "boundary":
        inside, outside = boundary_pairs(oracle, generator)
        delta_side = _uniform((K, 1), generator) < 0.5
        return torch.where(delta_side, inside, outside)
    if category == "edges":
        directions = random_directions(K, d, generator).numpy()
        offsets = random_directions(K, d, generator) * _log_uniform(K, generator,
                                                                    *DELTA_RANGE)[:, None]
        out = torch.empty((K, d), dtype=torch.float64)
        for i in range(K):
            p = oracle.support_point(i, directions[i])
            if p is None:
                raise ValueError(f"the safe action set of state {oracle.states[i].tolist()} is "
                                 "empty (the safe state set is not recursively feasible)")
            out[i] = torch.as_tensor(p)
        return out + offsets
    raise ValueError(f"unknown action category {category!r}; expected one of {CATEGORIES}")


def boundary_pairs(oracle: SafeActionOracle, generator: torch.Generator,
                   delta: float | None = None) -> tuple[Tensor, Tensor]:
    """Pairs straddling the boundary of ``A ∩ A_s(s)``: ``(inside, outside)``, each ``(K, d)``.

    For state ``i``: an interior point ``p0`` (:meth:`SafeActionOracle.interior_point`), a
    random unit direction ``v``, the Eq-47 ray distance ``t*``; then ``inside = p0 +
    (1 - delta) t* v`` and ``outside = p0 + (1 + delta) t* v``.  ``delta`` defaults to a
    log-uniform draw in :data:`DELTA_RANGE` per pair.
    """
    K, d = oracle.num_states, oracle.action_dim
    directions = random_directions(K, d, generator).numpy()
    if delta is None:
        deltas = _log_uniform(K, generator, *DELTA_RANGE).numpy()
    else:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must lie in (0, 1), got {delta}")
        deltas = np.full(K, float(delta))
    inside = np.empty((K, d))
    outside = np.empty((K, d))
    for i in range(K):
        p0 = oracle.interior_point(i)
        if p0 is None:
            raise ValueError(f"the safe action set of state {oracle.states[i].tolist()} is empty "
                             "(the safe state set is not recursively feasible)")
        t = oracle.ray_distance(i, p0, directions[i])
        if not np.isfinite(t):
            raise RuntimeError(f"oracle: interior point of state {i} is not in its own set")
        inside[i] = p0 + (1.0 - deltas[i]) * t * directions[i]
        outside[i] = p0 + (1.0 + deltas[i]) * t * directions[i]
    return torch.as_tensor(inside), torch.as_tensor(outside)
