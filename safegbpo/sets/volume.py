"""Volume of zonotopes (used to compare safe sets).

The exact volume of ``<c, G>`` with ``G`` in ``R^{n x m}`` is (McMullen / Shephard)

``vol = 2^n * sum_{S subset {1..m}, |S| = n} |det G[:, S]|``,

a sum over ``C(m, n)`` determinants.  :func:`exact_volume` evaluates it vectorised in chunks and
refuses when the number of subsets exceeds ``max_subsets``; :func:`monte_carlo_volume` is the
estimate to use then (it samples the interval hull and counts exact Eq-5 memberships).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["DEFAULT_MAX_SUBSETS", "exact_volume", "monte_carlo_volume"]

DEFAULT_MAX_SUBSETS = 5_000_000
_CHUNK_ELEMENTS = 1 << 22  # entries of the (batch, chunk, n, n) determinant stack per chunk


def exact_volume(generators: Tensor, max_subsets: int = DEFAULT_MAX_SUBSETS) -> Tensor:
    """Exact volume of zonotopes with generators ``(batch, n, m)`` → ``(batch,)``.

    ``2^n * sum over n-subsets of columns |det|``; ``0`` when ``m < n``.  Differentiable in the
    generators (almost everywhere: ``|det|`` is not differentiable where a determinant is 0).

    Raises:
        ValueError: if ``C(m, n) > max_subsets`` (use :func:`monte_carlo_volume`).
    """
    if generators.ndim != 3:
        raise ValueError(f"generators: expected shape (batch, n, m), got {tuple(generators.shape)}")
    batch, n, m = generators.shape
    if m < n:
        return generators.new_zeros(batch)
    num_subsets = math.comb(m, n)
    if num_subsets > max_subsets:
        raise ValueError(
            f"exact volume needs C({m}, {n}) = {num_subsets} determinants, more than "
            f"max_subsets={max_subsets}; use safegbpo.sets.volume.monte_carlo_volume for an "
            f"estimate or raise max_subsets")
    chunk = max(1, _CHUNK_ELEMENTS // max(1, batch * n * n))
    combos = itertools.combinations(range(m), n)
    total = generators.new_zeros(batch)
    while True:
        idx = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, chunk)),
                          dtype=np.int64)
        if idx.size == 0:
            break
        idx_t = torch.as_tensor(idx.reshape(-1, n), device=generators.device)
        # (batch, n, chunk, n) -> (batch, chunk, n, n); columns of each square matrix are a subset
        sub = generators[:, :, idx_t].permute(0, 2, 1, 3)
        total = total + torch.linalg.det(sub).abs().sum(dim=1)
    return total * (2.0**n)


def monte_carlo_volume(
    zonotope, num_samples: int = 2000, generator: torch.Generator | None = None
) -> Tensor:
    """Monte-Carlo volume estimate ``(batch,)``: interval-hull volume times the hit rate.

    Draws ``num_samples`` points uniformly in the interval hull and tests exact membership
    (Eq 5, one LP each).  Standard error ``≈ hull_volume * sqrt(p (1 - p) / num_samples)``.
    Not differentiable.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    low, high = zonotope.interval_hull()
    low, high = low.detach(), high.detach()
    u = torch.rand((zonotope.batch_size, num_samples, zonotope.dim), generator=generator,
                   dtype=low.dtype, device=low.device)
    points = low[:, None, :] + u * (high - low)[:, None, :]
    hits = zonotope.contains(points).to(low.dtype).mean(dim=1)
    return hits * (high - low).prod(dim=-1)
