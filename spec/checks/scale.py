"""P1 at scale: millions of actions per task and safeguard (issue 10).

The LP oracle of :mod:`spec.checks.oracle` costs a few HiGHS solves per action (~ms): fine for
the probe's hundreds of samples, hopeless for 10^6.  :class:`VertexOracle` is an equally
independent, *vectorised* oracle for the P1 verdict alone:

* the successors ``f(s, a, w)`` of every action at the ``2^{n_w}`` vertices of the noise box
  ``W``, with the task's **nonlinear model dynamics** (exact for Eq 7: ``f`` is affine in ``w``
  and ``S_s`` convex) -- no linearisation, no Eq 6;
* **exact point containment** in ``S_s`` and ``U_s`` by the spec's own facet enumeration
  (:class:`ZonotopeFacets`): every facet normal of an ``n``-dimensional zonotope is the
  generalised cross product of ``n - 1`` of its generators, so
  ``gauge(p) = max_k |f_k (p - c)| / sum_j |f_k g_j|`` over all ``(n-1)``-subsets (subsets of
  lower rank give a zero normal and are dropped).  This is neither the safeguards'
  H-representation (:mod:`safegbpo.sets.hrep`) nor their LPs; it is cross-checked against the
  LP gauge of :func:`spec.checks.oracle.point_gauge` in the tests.

:func:`p1_at_scale` draws the actions in batches (states inside ``S_s`` -- uniform and near its
vertices --, on and outside its boundary; actions uniform in ``A``, outside ``A`` and of
magnitude up to :data:`spec.checks.probe.HUGE_ACTION`), calls the safeguard without autograd and
counts the rows that are unsafe and not flagged (``last_uncertified``).  P1 holds at scale iff
that count is zero and no call raised.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spec.checks.probe import HUGE_ACTION, OFFSET_FACTORS, call_safeguard
from spec.checks.probe import _flags as last_flags
from spec.checks.sampling import random_directions, sample_safe_states

__all__ = ["VertexOracle", "ZonotopeFacets", "p1_at_scale"]


class ZonotopeFacets:
    """Exact gauge of points w.r.t. a full-dimensional zonotope ``<c, G>`` from its facets
    (module docstring).  ``G`` ``(n, m)``; ``n = 1``: the interval ``c ± sum |G|``."""

    def __init__(self, center: np.ndarray, generators: np.ndarray) -> None:
        c = np.asarray(center, dtype=np.float64).reshape(-1)
        G = np.asarray(generators, dtype=np.float64)
        n, m = G.shape
        if np.linalg.matrix_rank(G) < n:
            raise ValueError(f"the zonotope is flat (rank {np.linalg.matrix_rank(G)} < {n})")
        if n == 1:
            normals = np.ones((1, 1))
        else:
            subsets = np.array(list(itertools.combinations(range(m), n - 1)))
            M = G.T[subsets]  # (K, n-1, n): rows are the generators of each subset
            # generalised cross product: normal_i = (-1)^i det(M without column i)
            cols = [np.delete(np.arange(n), i) for i in range(n)]
            normals = np.stack([(-1) ** i * np.linalg.det(M[:, :, cols[i]])
                                for i in range(n)], axis=1)
            norm = np.linalg.norm(normals, axis=1)
            keep = norm > 1e-12 * max(1.0, float(np.abs(G).max()) ** (n - 1))
            normals = normals[keep] / norm[keep, None]
        self.center = c
        self.normals = normals
        self.width = np.abs(normals @ G).sum(axis=1)  # support: h_k = f_k c + width_k

    def gauge(self, points: np.ndarray) -> np.ndarray:
        """``(P,)`` gauge of ``points (P, n)``: ``<= 1`` iff inside."""
        v = np.asarray(points, dtype=np.float64) - self.center
        return (np.abs(v @ self.normals.T) / self.width).max(axis=1)


class VertexOracle:
    """Vectorised P1 numbers for ``env``'s task (module docstring): ``margin(states, actions)``
    is the worst normalised margin (``<= 1`` safe) of box, ``U_s`` and the exact induced set."""

    def __init__(self, env: Any) -> None:
        model = env.model
        safe_set = env.safe_set
        self.model = model
        self.state_facets = ZonotopeFacets(safe_set.state.center[0].numpy(),
                                           safe_set.state.generators[0].numpy())
        self.action_facets = (None if safe_set.action is None else
                              ZonotopeFacets(safe_set.action.center[0].numpy(),
                                             safe_set.action.generators[0].numpy()))
        low, high = (x.numpy() for x in model.action_bounds(dtype=torch.float64))
        self.a0, self.radius = 0.5 * (low + high), 0.5 * (high - low)
        low_w, high_w = model.noise_bounds(dtype=torch.float64)
        self.noise_vertices = [torch.where(torch.tensor(s, dtype=torch.bool), high_w, low_w)
                               for s in itertools.product((0, 1), repeat=model.noise_dim)]

    def margin(self, states: Tensor, actions: Tensor) -> np.ndarray:
        s = states.detach().to(torch.float64).cpu()
        a = actions.detach().to(torch.float64).cpu()
        an = a.numpy()
        worst = np.max(np.abs(an - self.a0) / self.radius, axis=1)  # 1 + box excess
        if self.action_facets is not None:
            worst = np.maximum(worst, self.action_facets.gauge(an))
        with torch.no_grad():
            for w in self.noise_vertices:
                nxt = self.model.dynamics(s, a, w.expand(a.shape[0], -1)).numpy()
                worst = np.maximum(worst, self.state_facets.gauge(nxt))
        return np.where(np.isfinite(an).all(axis=1), worst, np.inf)


def _batch(env: Any, N: int, kind: int, gen: torch.Generator
           ) -> tuple[np.ndarray, Tensor, Tensor]:
    """``N`` (state, action) pairs: 90% of the states inside ``S_s`` (uniform and vertices),
    10% on / outside its boundary (the :data:`~spec.checks.probe.OFFSET_FACTORS` in turn; the
    recovery LP of their flagged rows dominates the cost); the actions of a batch are uniform
    in ``A``, outside ``A`` or huge (up to ``HUGE_ACTION``) in turn.  Returns per-row labels."""
    d = env.model.action_dim
    n_off = max(1, N // 10) if N >= 10 else 0
    inside = sample_safe_states(env, N - n_off, gen, 0.5).to(torch.float64)
    labels = ["state inside"] * (N - n_off)
    parts = [inside]
    if n_off:
        c = env.safe_set.state.center[0].to(torch.float64)
        G = env.safe_set.state.generators[0].to(torch.float64)
        signs = torch.where(torch.rand((n_off, G.shape[1]), generator=gen, dtype=torch.float64)
                            < 0.5, -1.0, 1.0).to(torch.float64)
        factors = torch.tensor([OFFSET_FACTORS[(kind + k) % len(OFFSET_FACTORS)]
                                for k in range(n_off)], dtype=torch.float64)
        low, high = (x.to(torch.float64) for x in env.model.state_bounds())
        parts.append(torch.clamp(c + factors[:, None] * (signs @ G.T), low, high))
        labels += ["state on boundary" if f == 1.0 else "state outside"
                   for f in factors.tolist()]
    states = torch.cat(parts)
    action_kind = kind % 3
    u = torch.rand((N, d), generator=gen, dtype=torch.float64)
    if action_kind == 0:
        actions, what = 2 * u - 1, "uniform action"
    elif action_kind == 1:
        actions, what = 3 * (2 * u - 1), "action outside A"
    else:
        scale = torch.exp(torch.rand(N, generator=gen, dtype=torch.float64)
                          * math.log(HUGE_ACTION))
        scale[0] = HUGE_ACTION
        actions, what = random_directions(N, d, gen) * scale.unsqueeze(-1), "huge action"
    return np.array([f"{lab}, {what}" for lab in labels], dtype=object), states, actions


def p1_at_scale(safeguard: Any, env: Any, num_actions: int, *, seed: int = 0,
                tol: float = 1e-6, batch: int = 1024,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Check P1 on ``num_actions`` (rounded up to whole batches) actions (module docstring).

    The safeguard is called with batches of ``batch`` rows and their states passed explicitly
    (the protocol's contract: ``g(action (N, d), state (N, n))`` for any ``N``); the env is not
    stepped or reset.

    Returns a JSON-ready dict: ``actions``, ``violations_unflagged``, ``flagged``,
    ``unsafe_but_flagged``, ``worst_unflagged_margin``, per-kind counts, ``errors``,
    ``seconds`` (wall clock of the whole pass), ``oracle_seconds``, ``holds``.
    """
    from safegbpo.safeguards import UncertifiedActionWarning

    if num_actions < 1:
        raise ValueError(f"num_actions must be >= 1, got {num_actions}")
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    oracle = VertexOracle(env)
    N = max(1, min(int(batch), int(num_actions)))
    batches = math.ceil(num_actions / N)
    counts: dict[str, dict[str, int]] = {}
    errors: list[str] = []
    total = unflagged = flagged = unsafe_flagged = 0
    worst = -math.inf
    oracle_seconds = 0.0
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncertifiedActionWarning)
        for b in range(batches):
            kinds, states, actions = _batch(env, N, b, gen)
            state = states.to(dtype=env.dtype, device=env.device)
            with torch.no_grad():
                out, err = call_safeguard(safeguard, actions.to(env.dtype), state)
            if out is None:
                errors.append(f"batch {b}: {err}")
                continue
            flags = last_flags(safeguard, N)
            t0 = time.perf_counter()
            margin = oracle.margin(state, out)
            oracle_seconds += time.perf_counter() - t0
            bad = ~(margin <= 1.0 + tol)
            for kind in set(kinds.tolist()):
                rows = kinds == kind
                row = counts.setdefault(kind, {"actions": 0, "unflagged": 0, "flagged": 0})
                row["actions"] += int(rows.sum())
                row["unflagged"] += int((bad & ~flags & rows).sum())
                row["flagged"] += int((flags & rows).sum())
            total += N
            unflagged += int((bad & ~flags).sum())
            flagged += int(flags.sum())
            unsafe_flagged += int((bad & flags).sum())
            if (bad & ~flags).any():
                worst = max(worst, float(margin[bad & ~flags].max()))
            if progress and b % max(1, batches // 20) == 0:
                progress(f"P1 at scale: {total}/{batches * N} actions")
    return {"actions": total, "violations_unflagged": unflagged, "flagged": flagged,
            "unsafe_but_flagged": unsafe_flagged,
            "worst_unflagged_margin": None if worst == -math.inf else worst,
            "by_kind": counts, "errors": errors[:5], "num_errors": len(errors),
            "seconds": time.perf_counter() - start, "oracle_seconds": oracle_seconds,
            "tolerance": tol, "holds": unflagged == 0 and not errors}
