"""Exact H-representations of zonotopes and their Pontryagin differences (SPEC §11).

A full-dimensional zonotope ``Z = <c, G>`` (``G`` ``(n, m)`` of rank ``n``) is a polytope whose
every facet is parallel to ``n - 1`` linearly independent generators.  Hence

``Z = { y : F y <= c^T F + |F G| 1 }``  with one unit normal ``f`` per (n-1)-subset of
generators of rank ``n - 1`` (``f`` orthogonal to the subset) and both signs ``±f``,

and the offsets are the support function of Eq 4, ``rho_Z(f) = f^T c + ||G^T f||_1``.  Any
direction gives a *valid* supporting half-space (the offset is exact for it), so duplicate or
nearly degenerate rows are harmless; only a *missing* facet would make the set too large, which
is why every subset of rank ``n - 1`` is used.

This module stores a polytope as **slabs** (:class:`HRep`): ``lower <= F y <= upper`` with unit
rows ``F`` ``(K, n)``, each slab being the pair of half-spaces ``±f``.  A zonotope's facets come
in such pairs, so the representation halves every matrix product.  Infinite bounds are allowed
(one-sided rows).

* :func:`zonotope_hrep` — the exact H-representation of ``<c, G>``;
* :func:`box_hrep` — ``[low, high]`` as ``n`` slabs;
* :meth:`HRep.pontryagin_difference` — ``P ⊖ <0, G_W> = { y : F y within
  [lower + |F G_W| 1, upper - |F G_W| 1] }``, exact for *any* H-representation of ``P`` (the
  support function of the subtrahend is subtracted row by row);
* :meth:`HRep.intersect`, :meth:`HRep.violation`, :meth:`HRep.contains`, :meth:`HRep.gauge`.

Numerics (documented decision).  Normals come from a batched SVD of the ``n x (n-1)`` subset
matrices (``n = 2``: the perpendicular of the generator, exactly).  A subset counts as rank
``n - 1`` when its smallest singular value exceeds ``rank_tol = 1e-12`` times its largest; a
subset dropped by this rule spans a "facet" thinner than ``1e-12`` times the generators' size,
so the H-polytope can exceed ``Z`` only by that order.  Normals equal to 12 decimals (after
fixing their sign) are merged.  Everything is float64 numpy; the sets are fixed per safe set and
computed once (:attr:`safegbpo.safesets.SafeSet.hrep` caches them).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["HRep", "MAX_SUBSETS", "RANK_TOL", "box_hrep", "zonotope_hrep",
           "zonotope_facet_normals"]

#: Relative rank tolerance of a generator subset (module docstring).
RANK_TOL = 1e-12
#: Refuse zonotopes with more (n-1)-subsets than this (memory/time grow with C(m, n-1)).
MAX_SUBSETS = 20_000_000
_CHUNK = 200_000
_DECIMALS = 12


def _matrix(x: Any, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN/inf")
    return arr


@dataclass(frozen=True, eq=False)
class HRep:
    """A polytope ``{ y : lower <= F y <= upper }`` as ``K`` slabs (module docstring).

    Attributes:
        normals: ``F`` ``(K, n)`` with unit rows.
        lower, upper: ``(K,)`` bounds (``-inf`` / ``+inf`` allowed: one-sided rows).
    """

    normals: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        F = _matrix(self.normals, "normals", 2)
        lower = np.asarray(self.lower, dtype=np.float64).reshape(-1)
        upper = np.asarray(self.upper, dtype=np.float64).reshape(-1)
        if lower.shape != (F.shape[0],) or upper.shape != (F.shape[0],):
            raise ValueError(f"lower/upper must have shape ({F.shape[0]},), got {lower.shape}, "
                             f"{upper.shape}")
        if np.isnan(lower).any() or np.isnan(upper).any():
            raise ValueError("lower/upper contain NaN")
        norms = np.linalg.norm(F, axis=1)
        if F.shape[0] and not np.allclose(norms, 1.0, rtol=0.0, atol=1e-12):
            raise ValueError("normals must be unit vectors")
        for name, value in (("normals", F), ("lower", lower), ("upper", upper)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    # -- properties ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.normals.shape[1])

    @property
    def num_slabs(self) -> int:
        """Number ``K`` of slabs (each up to two half-spaces)."""
        return int(self.normals.shape[0])

    @property
    def num_halfspaces(self) -> int:
        """Number of finite half-spaces ``±f^T y <= .``."""
        return int(np.isfinite(self.lower).sum() + np.isfinite(self.upper).sum())

    def is_empty_hint(self) -> bool:
        """``True`` if some slab has ``lower > upper`` (then the polytope is certainly empty)."""
        return bool(np.any(self.lower > self.upper))

    def halfspaces(self) -> tuple[np.ndarray, np.ndarray]:
        """One-sided form ``(A (2K', n), b (2K',))`` with ``A y <= b`` (finite rows only)."""
        up, lo = np.isfinite(self.upper), np.isfinite(self.lower)
        A = np.concatenate([self.normals[up], -self.normals[lo]])
        b = np.concatenate([self.upper[up], -self.lower[lo]])
        return A, b

    # -- operations ---------------------------------------------------------------------------
    def pontryagin_difference(self, generators: Any) -> HRep:
        """``P ⊖ <0, G_W>`` for ``G_W`` ``(n, p)``: every slab shrinks by ``|F G_W| 1`` on
        both sides (exact; the result may be empty, see :meth:`is_empty_hint`)."""
        G = _matrix(generators, "generators", 2)
        if G.shape[0] != self.dim:
            raise ValueError(f"generators must have {self.dim} rows, got {G.shape}")
        r = np.abs(self.normals @ G).sum(axis=1)
        return HRep(self.normals, self.lower + r, self.upper - r)

    def shifted(self, offset: Any) -> HRep:
        """``P + t`` (translation by ``t`` ``(n,)``)."""
        t = _matrix(offset, "offset", 1)
        s = self.normals @ t
        return HRep(self.normals, self.lower + s, self.upper + s)

    def intersect(self, other: HRep) -> HRep:
        """``P ∩ Q`` (the slabs of both)."""
        if other.dim != self.dim:
            raise ValueError(f"dimension mismatch: {self.dim} vs {other.dim}")
        return HRep(np.concatenate([self.normals, other.normals]),
                    np.concatenate([self.lower, other.lower]),
                    np.concatenate([self.upper, other.upper]))

    # -- queries ------------------------------------------------------------------------------
    def _points(self, points: Any) -> np.ndarray:
        p = _matrix(points, "points", 2) if np.ndim(points) == 2 else \
            _matrix(points, "points", 1)[None]
        if p.shape[1] != self.dim:
            raise ValueError(f"points must have shape (B, {self.dim}), got {p.shape}")
        return p

    def violation(self, points: Any) -> np.ndarray:
        """``(B,)`` largest distance by which ``points (B, n)`` violate a half-space (the rows
        are unit vectors, so this is a Euclidean distance to the violated half-space);
        ``<= 0`` inside."""
        p = self._points(points)
        v = (self.normals @ p.T).T  # (BLAS-friendly order for many rows)
        with np.errstate(invalid="ignore"):
            excess = np.maximum(v - self.upper, self.lower - v)
        return excess.max(axis=1) if excess.shape[1] else np.full(p.shape[0], -np.inf)

    def contains(self, points: Any, tol: float = 0.0) -> np.ndarray:
        """``(B,)`` bool: ``lower - tol <= F p <= upper + tol``."""
        return self.violation(points) <= tol

    def gauge(self, points: Any, center: Any) -> np.ndarray:
        """Gauge (Minkowski functional) of ``points - center`` w.r.t. ``P - center``: ``(B,)``,
        ``<= 1`` iff inside.  Exact for a polytope with ``center`` in its interior:
        ``max_k max(f_k^T v / (upper_k - f_k^T c), f_k^T v / (lower_k - f_k^T c))``."""
        p = self._points(points)
        c = _matrix(center, "center", 1)
        fc = self.normals @ c
        up, lo = self.upper - fc, self.lower - fc
        if np.any(up <= 0) or np.any(lo >= 0):
            raise ValueError("the gauge needs the centre in the interior of the polytope")
        v = (self.normals @ (p - c).T).T
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(np.where(np.isfinite(up), v / up, 0.0),
                               np.where(np.isfinite(lo), v / lo, 0.0))
        return ratio.max(axis=1) if ratio.shape[1] else np.zeros(p.shape[0])

    def __repr__(self) -> str:
        return f"HRep(n={self.dim}, slabs={self.num_slabs}, halfspaces={self.num_halfspaces})"


def box_hrep(low: Any, high: Any) -> HRep:
    """The box ``[low, high]`` as ``n`` axis-aligned slabs."""
    lo = _matrix(low, "low", 1)
    hi = _matrix(high, "high", 1)
    if lo.shape != hi.shape or np.any(lo > hi):
        raise ValueError(f"box needs low <= high of equal shape, got {lo}, {hi}")
    return HRep(np.eye(lo.size), lo, hi)


def _unique_directions(normals: np.ndarray) -> np.ndarray:
    """Unit ``normals`` with the sign fixed (largest-magnitude component positive) and
    duplicates (to :data:`_DECIMALS` decimals) removed."""
    if normals.shape[0] == 0:
        return normals
    normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    pivot = np.argmax(np.abs(normals), axis=1)
    sign = np.sign(normals[np.arange(normals.shape[0]), pivot])
    normals = normals * sign[:, None]
    _, index = np.unique(np.round(normals, _DECIMALS) + 0.0, axis=0, return_index=True)
    out = normals[np.sort(index)]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def zonotope_facet_normals(generators: Any, rank_tol: float = RANK_TOL) -> np.ndarray:
    """Unit facet normals (one per slab, sign fixed) of the zonotope with generators
    ``G`` ``(n, m)`` of rank ``n``: the normals of every (n-1)-subset of rank ``n - 1``.

    Raises:
        ValueError: ``G`` has rank ``< n`` (the zonotope has an empty interior and no
            H-representation of this form), or too many subsets (:data:`MAX_SUBSETS`).
    """
    G = _matrix(generators, "generators", 2)
    n, m = G.shape
    if n == 0:
        raise ValueError("a zonotope needs dimension n >= 1")
    scale = float(np.abs(G).max()) if G.size else 0.0
    if m == 0 or scale == 0.0 or np.linalg.matrix_rank(G / scale) < n:
        raise ValueError(f"the zonotope's generators have rank < n = {n}: it has an empty "
                         "interior, so it has no H-representation by facets")
    if n == 1:
        return np.ones((1, 1))
    # drop zero columns (they span nothing)
    G = G[:, np.abs(G).max(axis=0) > 0.0]
    m = G.shape[1]
    if n == 2:
        norms = np.linalg.norm(G, axis=0)
        normals = np.stack([-G[1], G[0]], axis=1) / norms[:, None]
        return _unique_directions(normals)
    count = math.comb(m, n - 1)
    if count > MAX_SUBSETS:
        raise ValueError(f"zonotope with m = {m} generators in n = {n} dimensions has "
                         f"C({m}, {n - 1}) = {count} generator subsets (> {MAX_SUBSETS}); its "
                         "exact H-representation is too large")
    # scale each generator to unit length: same span, better conditioned subsets
    G = G / np.linalg.norm(G, axis=0, keepdims=True)
    pieces = []
    subsets = itertools.combinations(range(m), n - 1)
    while True:
        chunk = np.fromiter(itertools.chain.from_iterable(itertools.islice(subsets, _CHUNK)),
                            dtype=np.int64)
        if chunk.size == 0:
            break
        idx = chunk.reshape(-1, n - 1)
        M = np.transpose(G[:, idx], (1, 0, 2))  # (S, n, n-1)
        U, s, _ = np.linalg.svd(M, full_matrices=True)
        keep = s[:, -1] > rank_tol * s[:, 0]
        pieces.append(_unique_directions(U[keep][:, :, -1]))
    return _unique_directions(np.concatenate(pieces))


def zonotope_hrep(center: Any, generators: Any, rank_tol: float = RANK_TOL) -> HRep:
    """Exact H-representation of ``<c, G>`` (module docstring): slabs
    ``f^T c - ||G^T f||_1 <= f^T y <= f^T c + ||G^T f||_1`` for every facet normal ``f``.

    Args:
        center: ``(n,)``; generators: ``(n, m)`` of rank ``n``.

    Raises:
        ValueError: bad shapes, NaN/inf, rank ``< n`` (see :func:`zonotope_facet_normals`).
    """
    c = _matrix(center, "center", 1)
    G = _matrix(generators, "generators", 2)
    if G.shape[0] != c.size:
        raise ValueError(f"center {c.shape} and generators {G.shape} do not match")
    F = zonotope_facet_normals(G, rank_tol)
    fc = F @ c
    width = np.abs(F @ G).sum(axis=1)
    return HRep(F, fc - width, fc + width)
