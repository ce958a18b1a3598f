"""Batched zonotopes ``Z = <c, G> = { c + G b : ||b||_inf <= 1 }`` in torch (SPEC §1).

A :class:`Zonotope` holds a batch of zonotopes of equal dimension ``n`` and generator count
``m``: ``center`` ``(batch, n)``, ``generators`` ``(batch, n, m)``.  The set operations
(Minkowski sum Eq 2, linear map Eq 3, support function Eq 4, interval hull, sampling) are torch
expressions, differentiable in centre and generators.  Exact membership (Eq 5), the gauge and the
containment margin (Eq 6) are linear programs solved with scipy/HiGHS per batch element
(:mod:`safegbpo.sets.containment`) and are not differentiable.

Batch broadcasting: wherever two batched operands meet (two zonotopes, a zonotope and
points/directions/matrices), their batch sizes must be equal or one of them must be 1; a
batch-1 operand is broadcast, like torch broadcasting over the leading dimension.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from safegbpo.sets.containment import containment_margin_lp, min_inf_norm_factors
from safegbpo.sets.volume import DEFAULT_MAX_SUBSETS, exact_volume

__all__ = ["Zonotope"]


def _to_tensor(x: Any, name: str, dtype: torch.dtype, device: Any) -> Tensor:
    """Tensor of ``dtype`` on ``device`` (default: ``x``'s device, or CPU); keeps autograd."""
    if isinstance(x, Tensor):
        return x.to(dtype=dtype, device=device if device is not None else x.device)
    try:
        return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype, device=device)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a tensor ({exc})") from exc


def _broadcast_batch(*sizes: int) -> int:
    """Common batch size of operands whose batch sizes are equal or 1."""
    others = {s for s in sizes if s != 1}
    if len(others) > 1:
        raise ValueError(f"batch sizes {sizes} cannot be broadcast (must be equal or 1)")
    return others.pop() if others else 1


class Zonotope:
    """A batch of zonotopes ``<c, G>`` with ``c`` ``(batch, n)`` and ``G`` ``(batch, n, m)``.

    Args:
        center: ``(batch, n)`` or ``(n,)``; tensor, numpy array or nested list.
        generators: ``(batch, n, m)`` or ``(n, m)``.  An unbatched (or batch-1) centre or
            generator matrix is broadcast to the batch size of the other argument (``(n,)``
            with ``(n, m)`` gives batch 1).
        dtype: floating dtype (default ``torch.float64``).
        device: target device (default: the device of the first tensor argument, else CPU).

    Raises:
        ValueError: inconsistent shapes, non-finite entries, ``n == 0``.
    """

    __slots__ = ("_center", "_generators")
    __array_ufunc__ = None  # let ``ndarray + Zonotope`` / ``ndarray @ Zonotope`` defer to us

    def __init__(
        self,
        center: Any,
        generators: Any,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        if device is None:
            device = next((x.device for x in (center, generators) if isinstance(x, Tensor)),
                          None)
        c = _to_tensor(center, "center", dtype, device)
        G = _to_tensor(generators, "generators", dtype, device)
        if c.ndim not in (1, 2):
            raise ValueError(f"center: expected shape (batch, n) or (n,), got {tuple(c.shape)}")
        if G.ndim not in (2, 3):
            raise ValueError(f"generators: expected shape (batch, n, m) or (n, m), "
                             f"got {tuple(G.shape)}")
        n = c.shape[-1]
        if n == 0:
            raise ValueError("center: dimension n must be >= 1, got shape "
                             f"{tuple(c.shape)}")
        if G.shape[-2] != n:
            raise ValueError(f"generators: expected shape (batch, {n}, m) to match center "
                             f"{tuple(c.shape)}, got {tuple(G.shape)}")
        if c.ndim == 1:
            c = c.unsqueeze(0)
        if G.ndim == 2:
            G = G.unsqueeze(0)
        if c.shape[0] != G.shape[0]:
            try:
                batch = _broadcast_batch(c.shape[0], G.shape[0])
            except ValueError:
                raise ValueError(f"batch size mismatch: center has shape {tuple(c.shape)}, "
                                 f"generators {tuple(G.shape)}") from None
            c, G = c.expand(batch, -1), G.expand(batch, -1, -1)
        if not bool(torch.isfinite(c).all()):
            raise ValueError("center contains NaN/inf")
        if not bool(torch.isfinite(G).all()):
            raise ValueError("generators contains NaN/inf")
        self._center = c
        self._generators = G

    # ------------------------------------------------------------------------------------
    # construction and basic properties
    # ------------------------------------------------------------------------------------
    @classmethod
    def from_box(
        cls,
        low: Any,
        high: Any,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Zonotope:
        """The box ``[low, high]`` as ``<(low + high)/2, diag((high - low)/2)>``.

        ``low``, ``high``: ``(n,)`` or ``(batch, n)`` (broadcast against each other).

        Raises:
            ValueError: shapes differ, NaN/inf, or ``low > high`` somewhere (empty box).
        """
        if device is None:
            device = next((x.device for x in (low, high) if isinstance(x, Tensor)), None)
        lo = _to_tensor(low, "low", dtype, device)
        hi = _to_tensor(high, "high", dtype, device)
        if lo.ndim not in (1, 2) or hi.ndim not in (1, 2) or lo.shape[-1] != hi.shape[-1]:
            raise ValueError(f"from_box: low and high must have shape (n,) or (batch, n) with the "
                             f"same n, got {tuple(lo.shape)} and {tuple(hi.shape)}")
        if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
            raise ValueError("from_box: low/high contains NaN/inf")
        if lo.ndim == 2 or hi.ndim == 2:
            lo, hi = (t if t.ndim == 2 else t.unsqueeze(0) for t in (lo, hi))
            _broadcast_batch(lo.shape[0], hi.shape[0])
        lo, hi = torch.broadcast_tensors(lo, hi)
        empty = lo > hi
        if bool(empty.any()):
            bad = torch.nonzero(empty)[0].tolist()
            raise ValueError(f"from_box: empty box, low > high at index {bad} "
                             f"({float(lo[tuple(bad)])} > {float(hi[tuple(bad)])})")
        center = (lo + hi) / 2
        generators = torch.diag_embed((hi - lo) / 2)
        return cls(center, generators, dtype=dtype, device=device)

    @property
    def center(self) -> Tensor:
        """Centres ``(batch, n)``."""
        return self._center

    @property
    def generators(self) -> Tensor:
        """Generator matrices ``(batch, n, m)``."""
        return self._generators

    @property
    def batch_size(self) -> int:
        return self._center.shape[0]

    @property
    def dim(self) -> int:
        """State-space dimension ``n``."""
        return self._center.shape[1]

    @property
    def num_generators(self) -> int:
        """Number of generators ``m``."""
        return self._generators.shape[2]

    @property
    def dtype(self) -> torch.dtype:
        return self._center.dtype

    @property
    def device(self) -> torch.device:
        return self._center.device

    def __len__(self) -> int:
        return self.batch_size

    def __repr__(self) -> str:
        return (f"Zonotope(batch_size={self.batch_size}, dim={self.dim}, "
                f"num_generators={self.num_generators}, dtype={self.dtype}, "
                f"device={self.device})")

    def __getitem__(self, index: Any) -> Zonotope:
        """Select batch elements; an integer index keeps the batch dimension (batch 1)."""
        if isinstance(index, int):
            if not -self.batch_size <= index < self.batch_size:
                raise IndexError(f"index {index} out of range for batch size {self.batch_size}")
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        c, G = self._center[index], self._generators[index]
        if c.ndim != 2:
            raise IndexError(f"index {index!r} must select along the batch dimension only")
        return Zonotope(c, G, dtype=self.dtype, device=self.device)

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> Zonotope:
        """Copy on another device and/or dtype (differentiable, like :meth:`Tensor.to`)."""
        return Zonotope(self._center, self._generators, dtype=dtype or self.dtype,
                        device=device if device is not None else self.device)

    def detach(self) -> Zonotope:
        return Zonotope(self._center.detach(), self._generators.detach(), dtype=self.dtype,
                        device=self.device)

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """``(center (batch, n), generators (batch, n, m))`` as float64 numpy arrays."""
        return (self._center.detach().cpu().numpy().astype(np.float64),
                self._generators.detach().cpu().numpy().astype(np.float64))

    def is_box(self, tol: float = 0.0) -> Tensor:
        """``(batch,)`` bool: every generator has at most one entry with ``|.| > tol``
        (the zonotope is an axis-aligned box)."""
        return ((self._generators.abs() > tol).sum(dim=1) <= 1).all(dim=-1)

    # ------------------------------------------------------------------------------------
    # operand helpers
    # ------------------------------------------------------------------------------------
    def _as_batched(self, x: Any, name: str, trailing: int) -> Tensor:
        """Tensor with a batch dimension; ``x`` has ``trailing`` non-batch dims or one more."""
        t = _to_tensor(x, name, self.dtype, self.device)
        if t.ndim == trailing:
            t = t.unsqueeze(0)
        elif t.ndim != trailing + 1:
            raise ValueError(f"{name}: expected {trailing} or {trailing + 1} dimensions "
                             f"(unbatched or batched), got shape {tuple(t.shape)}")
        _broadcast_batch(self.batch_size, t.shape[0])
        return t

    def _expanded(self, batch: int) -> tuple[Tensor, Tensor]:
        return (self._center.expand(batch, -1), self._generators.expand(batch, -1, -1))

    # ------------------------------------------------------------------------------------
    # set operations (torch, differentiable)
    # ------------------------------------------------------------------------------------
    def minkowski_sum(self, other: Zonotope | Any) -> Zonotope:
        """Minkowski sum (Eq 2) ``<c1 + c2, [G1 G2]>``, or translation ``<c + t, G>`` when
        ``other`` is a vector ``t`` ``(n,)`` / ``(batch, n)``."""
        if isinstance(other, Zonotope):
            if other.dim != self.dim:
                raise ValueError(f"Minkowski sum of zonotopes of dimension {self.dim} and "
                                 f"{other.dim}")
            batch = _broadcast_batch(self.batch_size, other.batch_size)
            c1, G1 = self._expanded(batch)
            c2, G2 = other.to(self.device, self.dtype)._expanded(batch)
            return Zonotope(c1 + c2, torch.cat([G1, G2], dim=-1), dtype=self.dtype,
                            device=self.device)
        return self.translate(other)

    def translate(self, t: Any) -> Zonotope:
        """Translation ``<c + t, G>`` by ``t`` ``(n,)`` or ``(batch, n)``."""
        t = self._as_batched(t, "translation", 1)
        if t.shape[-1] != self.dim:
            raise ValueError(f"translation: expected last dimension {self.dim}, got shape "
                             f"{tuple(t.shape)}")
        batch = _broadcast_batch(self.batch_size, t.shape[0])
        c, G = self._expanded(batch)
        return Zonotope(c + t, G, dtype=self.dtype, device=self.device)

    def __add__(self, other: Zonotope | Any) -> Zonotope:
        return self.minkowski_sum(other)

    def __radd__(self, other: Any) -> Zonotope:
        return self.minkowski_sum(other)

    def __sub__(self, other: Any) -> Zonotope:
        """Translation by ``-t`` (the Minkowski/Pontryagin difference is not provided)."""
        if isinstance(other, Zonotope):
            return NotImplemented
        return self.translate(-_to_tensor(other, "translation", self.dtype, self.device))

    def linear_map(self, M: Any) -> Zonotope:
        """Linear map (Eq 3) ``<M c, M G>`` with ``M`` ``(k, n)`` or ``(batch, k, n)``."""
        M = self._as_batched(M, "M", 2)
        if M.shape[-1] != self.dim:
            raise ValueError(f"linear_map: M must have {self.dim} columns, got shape "
                             f"{tuple(M.shape)}")
        center = torch.matmul(M, self._center.unsqueeze(-1)).squeeze(-1)
        generators = torch.matmul(M, self._generators)
        return Zonotope(center, generators, dtype=self.dtype, device=self.device)

    def __rmatmul__(self, M: Any) -> Zonotope:
        return self.linear_map(M)

    def support(self, l: Any) -> Tensor:
        """Support function (Eq 4) ``rho(l) = l^T c + ||G^T l||_1``.

        ``l``: ``(n,)`` → ``(batch,)``; ``(batch, n)`` → ``(batch,)``; ``(batch, k, n)`` →
        ``(batch, k)`` (``k`` directions per zonotope).
        """
        l = _to_tensor(l, "l", self.dtype, self.device)
        if l.ndim == 1:
            l = l.unsqueeze(0)
        if l.ndim not in (2, 3) or l.shape[-1] != self.dim:
            raise ValueError(f"l: expected shape (n,), (batch, n) or (batch, k, n) with "
                             f"n = {self.dim}, got {tuple(l.shape)}")
        _broadcast_batch(self.batch_size, l.shape[0])
        squeeze = l.ndim == 2
        if squeeze:
            l = l.unsqueeze(1)
        value = torch.einsum("bkn,bn->bk", l, self._center.expand(l.shape[0], -1)
                             if self.batch_size == 1 else self._center)
        proj = torch.matmul(l, self._generators)  # (batch, k, m) = (G^T l)^T
        value = value + proj.abs().sum(dim=-1)
        return value.squeeze(1) if squeeze else value

    def support_point(self, l: Any) -> Tensor:
        """A maximiser of ``l^T x`` over ``Z``: ``c + G sign(G^T l)``; ``l`` as in
        :meth:`support`, result ``(batch, n)`` or ``(batch, k, n)``."""
        l = _to_tensor(l, "l", self.dtype, self.device)
        if l.ndim == 1:
            l = l.unsqueeze(0)
        squeeze = l.ndim == 2
        if squeeze:
            l = l.unsqueeze(1)
        factors = torch.sign(torch.matmul(l, self._generators))  # (batch, k, m)
        points = self.points_from_factors(factors)
        return points.squeeze(1) if squeeze else points

    def interval_hull(self) -> tuple[Tensor, Tensor]:
        """Smallest enclosing box ``(c - |G| 1, c + |G| 1)``, each ``(batch, n)``."""
        radius = self._generators.abs().sum(dim=-1)
        return self._center - radius, self._center + radius

    # ------------------------------------------------------------------------------------
    # sampling and vertices
    # ------------------------------------------------------------------------------------
    def points_from_factors(self, factors: Any) -> Tensor:
        """Points ``c + G b`` for factors ``b``: ``(batch, k, m)`` or ``(k, m)`` (shared across
        the batch) → ``(batch, k, n)``.  The factors are not checked to lie in the unit cube."""
        b = _to_tensor(factors, "factors", self.dtype, self.device)
        if b.ndim == 2:
            b = b.unsqueeze(0)
        if b.ndim != 3 or b.shape[-1] != self.num_generators:
            raise ValueError(f"factors: expected shape (batch, k, {self.num_generators}) or "
                             f"(k, {self.num_generators}), got {tuple(b.shape)}")
        _broadcast_batch(self.batch_size, b.shape[0])
        return self._center.unsqueeze(1) + torch.matmul(b, self._generators.transpose(1, 2))

    def sample(
        self,
        num: int,
        generator: torch.Generator | None = None,
        method: str = "uniform-factors",
        return_factors: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``num`` points of each zonotope, ``(batch, num, n)``.

        Methods:
            ``"uniform-factors"``: ``b`` uniform in the unit cube ``[-1, 1]^m``; the points lie
                in ``Z`` but are *not* uniformly distributed on ``Z`` (they concentrate near the
                centre when ``m > n``).
            ``"sign-factors"``: ``b`` uniform on ``{-1, 1}^m`` (the cube's vertices); includes
                the extreme points of ``Z`` with positive probability.

        Args:
            generator: torch RNG for reproducibility (never the global RNG state if given).
            return_factors: also return the factors ``(batch, num, m)``.
        """
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        shape = (self.batch_size, num, self.num_generators)
        if method == "uniform-factors":
            b = 2 * torch.rand(shape, generator=generator, dtype=self.dtype,
                               device=self.device) - 1
        elif method == "sign-factors":
            bits = torch.randint(0, 2, shape, generator=generator, device=self.device)
            b = (2 * bits - 1).to(self.dtype)
        else:
            raise ValueError(f"unknown sampling method {method!r}; expected 'uniform-factors' "
                             f"or 'sign-factors'")
        points = self.points_from_factors(b)
        return (points, b) if return_factors else points

    def vertices_2d(self, tol: float = 1e-12) -> list[Tensor]:
        """Polygon vertices of 2-D zonotopes, counter-clockwise, one ``(k_i, 2)`` tensor each.

        Standard construction: zero generators are dropped, the others flipped into the upper
        half-plane, parallel ones merged and the rest sorted by angle; starting at the lowest
        point ``c - sum g`` the polygon walks ``+2 g`` in order of increasing angle, then ``-2 g``
        in the same order.  ``k_i = 2 * (#directions)`` (2 for a segment, 1 for a point).
        Differentiable in the centre and generators.
        """
        if self.dim != 2:
            raise ValueError(f"vertices_2d needs a 2-D zonotope, got dimension {self.dim}")
        result = []
        for i in range(self.batch_size):
            c, G = self._center[i], self._generators[i]
            norms = G.detach().norm(dim=0)
            scale = float(norms.max()) if norms.numel() else 0.0
            g = G[:, norms > tol * scale] if scale > 0 else G[:, :0]
            if g.shape[1] == 0:
                result.append(c.unsqueeze(0))
                continue
            gn = g.detach().norm(dim=0)
            flip = (g[1] < -tol * gn) | ((g[1].abs() <= tol * gn) & (g[0] < 0))
            g = torch.where(flip, -g, g)
            angle = torch.atan2(torch.where(g[1].abs() <= tol * gn, torch.zeros_like(g[1]),
                                            g[1]), g[0]).detach()
            order = torch.argsort(angle)
            g, angle = g[:, order], angle[order]
            new_group = torch.cat([angle.new_ones(1, dtype=torch.bool),
                                   (angle[1:] - angle[:-1]) > 1e-9])
            group = torch.cumsum(new_group.long(), 0) - 1
            merged = g.new_zeros(2, int(group[-1]) + 1).index_add(1, group, g)  # (2, k)
            lowest = c - merged.sum(dim=1)
            steps = 2 * torch.cumsum(merged.T, dim=0)  # (k, 2)
            lower = torch.cat([lowest.unsqueeze(0), lowest + steps[:-1]])
            highest = lowest + steps[-1]
            upper = torch.cat([highest.unsqueeze(0), highest - steps[:-1]])
            result.append(torch.cat([lower, upper]))
        return result

    # ------------------------------------------------------------------------------------
    # LPs (scipy HiGHS, per batch element; not differentiable)
    # ------------------------------------------------------------------------------------
    def gauge(self, v: Any) -> Tensor:
        """Gauge ``min { ||b||_inf : G b = v }`` (``+inf`` if ``v`` is not in ``range(G)``).

        ``v``: ``(n,)`` / ``(batch, n)`` → ``(batch,)``; ``(batch, k, n)`` → ``(batch, k)``.
        Square, well-conditioned ``G`` use the closed form ``||G^{-1} v||_inf``, all others one
        HiGHS LP per vector (:func:`safegbpo.sets.containment.gauge_lp`).
        """
        return self._gauge_and_factors(v, "v")[0]

    def factors(self, points: Any) -> tuple[Tensor, Tensor]:
        """Minimum-norm factors of points: ``b`` with ``c + G b = p`` and minimal
        ``||b||_inf`` (= the gauge of ``p - c``; ``p in Z`` iff it is ``<= 1``).

        ``points``: ``(n,)`` / ``(batch, n)`` → ``b`` ``(batch, m)``, gauge ``(batch,)``;
        ``(batch, k, n)`` → ``(batch, k, m)``, ``(batch, k)``.  Rows of ``b`` are NaN where no
        factor exists (gauge ``+inf``).  The minimiser need not be unique: this is *a* factor,
        not a continuous function of ``p``.  Not differentiable.
        """
        p = _to_tensor(points, "points", self.dtype, self.device).detach()
        if p.ndim not in (1, 2, 3):
            raise ValueError(f"points: expected shape (n,), (batch, n) or (batch, k, n), got "
                             f"{tuple(p.shape)}")
        center = self._center.detach()
        diff = p - (center.unsqueeze(1) if p.ndim == 3 else center)
        gauge, b = self._gauge_and_factors(diff, "points")
        return b, gauge

    def _gauge_and_factors(self, v: Any, name: str) -> tuple[Tensor, Tensor]:
        v = _to_tensor(v, name, self.dtype, self.device).detach()
        if v.ndim == 1:
            v = v.unsqueeze(0)
        if v.ndim not in (2, 3) or v.shape[-1] != self.dim:
            raise ValueError(f"{name}: expected shape (n,), (batch, n) or (batch, k, n) with "
                             f"n = {self.dim}, got {tuple(v.shape)}")
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name} contains NaN/inf")
        squeeze = v.ndim == 2
        if squeeze:
            v = v.unsqueeze(1)
        batch = _broadcast_batch(self.batch_size, v.shape[0])
        v_np = v.cpu().numpy().astype(np.float64)
        G_np = self.numpy()[1]
        gauges = np.empty((batch, v.shape[1]))
        factors = np.empty((batch, v.shape[1], self.num_generators))
        for i in range(batch):
            G = G_np[i if G_np.shape[0] > 1 else 0]
            gauges[i], factors[i] = _gauge_many(G, v_np[i if v_np.shape[0] > 1 else 0])
        gauge = torch.as_tensor(gauges, dtype=self.dtype, device=self.device)
        b = torch.as_tensor(factors, dtype=self.dtype, device=self.device)
        return (gauge.squeeze(1), b.squeeze(1)) if squeeze else (gauge, b)

    def contains(self, points: Any, tol: float = 1e-9) -> Tensor:
        """Exact point containment (Eq 5): ``gauge(p - c) <= 1 + tol``.

        ``points``: ``(n,)`` / ``(batch, n)`` → bool ``(batch,)``; ``(batch, k, n)`` →
        ``(batch, k)``.  ``tol`` is added to the LP's own accuracy (see
        :mod:`safegbpo.sets.containment`).
        """
        p = _to_tensor(points, "points", self.dtype, self.device).detach()
        if p.ndim == 1:
            p = p.unsqueeze(0)
        if p.ndim == 2:
            diff = p - self._center.detach()
        elif p.ndim == 3:
            diff = p - self._center.detach().unsqueeze(1)
        else:
            raise ValueError(f"points: expected shape (n,), (batch, n) or (batch, k, n), got "
                             f"{tuple(p.shape)}")
        return self.gauge(diff) <= 1.0 + tol

    def containment_margin(self, outer: Zonotope) -> Tensor:
        """Containment margin of Eq 6 for ``self ⊆ outer``, ``(batch,)``.

        ``min ||[Gamma, beta]||_inf`` s.t. ``G_self = G_outer Gamma``,
        ``c_outer - c_self = G_outer beta``; ``<= 1`` certifies containment (sufficient
        condition only), ``+inf`` when no ``Gamma, beta`` exist.
        """
        if not isinstance(outer, Zonotope):
            raise TypeError(f"outer must be a Zonotope, got {type(outer).__name__}")
        if outer.dim != self.dim:
            raise ValueError(f"containment of a {self.dim}-D zonotope in a {outer.dim}-D one")
        batch = _broadcast_batch(self.batch_size, outer.batch_size)
        c1, G1 = self.numpy()
        c2, G2 = outer.numpy()
        out = np.empty(batch)
        for i in range(batch):
            j1 = i if self.batch_size > 1 else 0
            j2 = i if outer.batch_size > 1 else 0
            out[i] = containment_margin_lp(c1[j1], G1[j1], c2[j2], G2[j2])
        return torch.as_tensor(out, dtype=self.dtype, device=self.device)

    def is_subset_of(self, outer: Zonotope, tol: float = 1e-9) -> Tensor:
        """``(batch,)`` bool certificate of ``self ⊆ outer`` (Eq 6 margin ``<= 1 + tol``);
        ``False`` means "not certified", not "not contained"."""
        return self.containment_margin(outer) <= 1.0 + tol

    # ------------------------------------------------------------------------------------
    # volume
    # ------------------------------------------------------------------------------------
    def volume(self, max_subsets: int = DEFAULT_MAX_SUBSETS) -> Tensor:
        """Exact volume ``(batch,)``: ``2^n sum_{|S| = n} |det G[:, S]|`` (0 when ``m < n``).

        Raises ``ValueError`` when ``C(m, n) > max_subsets``; use
        :func:`safegbpo.sets.volume.monte_carlo_volume` for an estimate then.
        """
        return exact_volume(self._generators, max_subsets=max_subsets)


def _gauge_many(G: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauges ``(k,)`` and minimising factors ``(k, m)`` (NaN rows where infeasible) of the
    rows of ``V`` ``(k, n)`` w.r.t. ``<0, G>`` ``(n, m)``; batched LPs of
    :func:`~safegbpo.sets.containment.min_inf_norm_factors`."""
    if G.shape[1] == 0:  # <0, []> = {0}
        gauges = np.where(np.any(V != 0.0, axis=1), np.inf, 0.0)
        return gauges, np.zeros((V.shape[0], 0))
    factors = min_inf_norm_factors(G, V)
    gauges = np.abs(factors).max(axis=1)
    factors[~np.isfinite(gauges)] = np.nan
    return gauges, factors
