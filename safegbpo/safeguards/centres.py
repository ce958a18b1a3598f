"""Safe-centre approximations of the ray mask for induced safe sets (SPEC §5, Eq 52–54).

A centre strategy returns, for a batch of actions, the :class:`RayGeometry` the ray mask needs:
the safe centre ``c_s``, ``lam_S`` and ``lam_A`` along the direction ``v = (a - c_s)/||a - c_s||``
and the rows to leave unchanged.

* :class:`ZonotopicCentre` (Eq 52–53) — solve the conic program
  ``max geo_mean(l)`` s.t. ``Z = <c, G_dir diag(l)> ⊆ A ∩ A_s(s)`` for the ``K`` unit generator
  directions ``G_dir`` (``K = 2d`` by default) drawn **once per instance** from a seeded
  ``torch.Generator`` (reproducible; the reference redraws them at every call).  Then
  ``c_s = c`` and ``lam_S`` is measured on ``Z`` (an under-approximation of the safe set, as
  SPEC §5 prescribes) by the LP ``max t`` s.t. ``t v in <0, G_Z>``, ``t <= lam_A``.  Every
  action is mapped (the ray mask intervenes everywhere except at the centre, Table 1).
* :class:`OrthogonalCentre` (Eq 54) — only for unsafe actions: ``a_b = g_BP(a)`` (QP),
  ``n = (a_b - a)/||a_b - a||``, ``t* = max t`` s.t. ``a_b + t n in A ∩ A_s(s)`` (LP, Eq 47),
  ``c_s = a_b + (t*/2) n``, ``lam_S = t*/2``, ``lam_A`` from ``c_s`` along ``-n``.  Actions the
  projection leaves in place (``||a_b - a|| <= 1e-7``) are returned unchanged.

Gradients flow through both programs (cvxpylayers), w.r.t. the action and, through the
linearisation, the state; nothing is detached.

Exact backend (SPEC §11): :class:`ExactZonotopicCentre` and :class:`ExactOrthogonalCentre`
compute the same geometry on the exact polytope of each state
(:mod:`~safegbpo.safeguards.polytope`): the centre program with the exact containment
``H c + |H G_dir| l <= h`` (:func:`~safegbpo.safeguards.exact.zonotopic_centre`, implicit
gradients w.r.t. the state), ``lam_S`` on ``Z`` by the ratio test over the facets of ``Z``, and
for the orthogonal centre the exact projection and the ratio test of Eq 47 on the polytope.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from safegbpo.safeguards import exact
from safegbpo.safeguards.action_set import ActionSetData, ActionSetStructure
from safegbpo.safeguards.certify import Certificate, ZonotopeCertificate
from safegbpo.safeguards.geometry import box_distance, safe_norm, unit_direction
from safegbpo.safeguards.problems import (
    ProjectionProblem,
    RayProblem,
    ZonotopeRayProblem,
    ZonotopicCentreProblem,
)

__all__ = ["CENTRES", "RayGeometry", "ZonotopicCentre", "OrthogonalCentre",
           "ExactZonotopicCentre", "ExactOrthogonalCentre", "draw_directions"]

#: Names of the centre strategies.
CENTRES = ("zonotopic", "orthogonal")

#: The orthogonal centre treats an action as safe when its projection moved it at most this far.
SAFE_DISTANCE = 1e-7


@dataclass(frozen=True)
class RayGeometry:
    """What the ray mask needs per row: ``centre (N, d)``, ``lam_S (N,)``, ``lam_A (N,)``,
    ``unchanged (N,)`` (rows returned as they are) and ``solved (N,)`` (all programs
    succeeded).  Unsolved rows hold finite placeholders.

    For the certification (cvxpylayers backend), the output of every row lies on the segment
    from ``start`` to ``end`` ``(N, d)`` (centre and safe boundary point), whose candidate Eq 5/6
    certificates are ``start_certificate`` and ``end_certificate`` (``None`` for the exact
    backend, which certifies every output against all rows).  ``fixed`` ``(N, d)`` is the
    output of the ``unchanged`` rows (``None``: the action itself).
    """

    centre: Tensor
    lam_S: Tensor
    lam_A: Tensor
    unchanged: Tensor
    solved: Tensor
    start: Tensor
    end: Tensor
    start_certificate: Certificate | None = None
    end_certificate: Certificate | None = None
    fixed: Tensor | None = None
    distance: Tensor | None = None


def _centre_directions(structure: ActionSetStructure, num_directions: int | None,
                       seed: int | None, centre_gradient: bool) -> Tensor:
    """``G_dir (d, K)`` of the zonotopic centre (``K = 2d`` by default), drawn identically for
    both backends; validates ``centre_gradient``."""
    if not isinstance(centre_gradient, bool):
        raise ValueError(f"centre_gradient must be a bool, got {centre_gradient!r}")
    d = structure.action_dim
    return draw_directions(d, 2 * d if num_directions is None else num_directions, seed)


def draw_directions(dim: int, num: int, seed: int | None) -> Tensor:
    """``num`` unit directions in ``R^dim`` (columns of a ``(dim, num)`` tensor), uniform on the
    sphere, from ``torch.Generator().manual_seed(seed)`` (``seed=None``: fresh entropy)."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num_directions must be a positive integer, got {num!r}")
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        generator.manual_seed(seed)
    directions = torch.randn(dim, num, generator=generator, dtype=torch.float64)
    norms = directions.norm(dim=0)
    while bool((norms < 1e-8).any()):  # measure-zero event; redraw the degenerate columns
        bad = norms < 1e-8
        directions[:, bad] = torch.randn(dim, int(bad.sum()), generator=generator,
                                         dtype=torch.float64)
        norms = directions.norm(dim=0)
    return directions / norms


class ZonotopicCentre:
    """Zonotopic centre approximation (Eq 52–53); see the module docstring.

    Args:
        structure: the safe action set.
        num_directions: ``K`` (default ``2 d``).
        seed: seed of the direction generator (``None``: non-deterministic).
        solver_args: diffcp options.
        centre_gradient: differentiate ``Z`` (centre and lengths) w.r.t. the state through the
            conic program (default).  ``False`` treats ``Z`` as a constant of the state: the
            gradient w.r.t. the action is unchanged (``Z`` does not depend on it) but the ray
            mask then has no gradient w.r.t. the state at all (``Z`` carries all its state
            dependence); the forward+backward pass is about twice as fast on the quadrotor.
    """

    def __init__(self, structure: ActionSetStructure, num_directions: int | None = None,
                 seed: int | None = 0, solver_args: dict[str, Any] | None = None,
                 centre_gradient: bool = True) -> None:
        self.structure = structure
        self.centre_gradient = centre_gradient
        self.directions = _centre_directions(structure, num_directions, seed, centre_gradient)
        d, K = self.directions.shape
        self.problem = ZonotopicCentreProblem(structure, self.directions.numpy(), solver_args)
        self.ray = ZonotopeRayProblem(d, K, solver_args)

    def zonotope(self, data: ActionSetData,
                 like: Tensor) -> tuple[Tensor, Tensor, Tensor, ZonotopeCertificate]:
        """The under-approximation ``Z``: ``(centre (N, d), generators (N, d, K), ok (N,),
        certificate of Z ⊆ A_s)``.  Without :attr:`centre_gradient` the program is solved
        without autograd (``Z`` is then a constant w.r.t. the state)."""
        if self.centre_gradient:
            centre, lengths, ok, certificate = self.problem(data, like)
        else:
            with torch.no_grad():
                centre, lengths, ok, certificate = self.problem(data, like)
        directions = self.directions.to(dtype=like.dtype, device=like.device)
        return centre, directions * lengths.unsqueeze(-2), ok, certificate

    def geometry(self, action: Tensor, data: ActionSetData) -> RayGeometry:
        s = self.structure
        centre, generators, ok, certificate = self.zonotope(data, action)
        direction, _ = unit_direction(action - centre)
        lam_A = box_distance(centre, direction, s.tensor("box_low", action),
                             s.tensor("box_high", action))
        lam_S, factors, ray_ok = self.ray(generators, direction, lam_A)
        unchanged = torch.zeros_like(ok)
        end = centre + lam_S.unsqueeze(-1) * direction
        return RayGeometry(
            centre=centre, lam_S=lam_S, lam_A=lam_A, unchanged=unchanged, solved=ok & ray_ok,
            start=centre, end=end,
            start_certificate=certificate.point(torch.zeros_like(factors)),
            end_certificate=certificate.point(factors))


class OrthogonalCentre:
    """Orthogonal centre approximation (Eq 54); see the module docstring."""

    def __init__(self, structure: ActionSetStructure,
                 solver_args: dict[str, Any] | None = None) -> None:
        self.structure = structure
        self.projection = ProjectionProblem(structure, solver_args)
        self.ray = RayProblem(structure, solver_args)

    def geometry(self, action: Tensor, data: ActionSetData) -> RayGeometry:
        s = self.structure
        projected, ok, certificate = self.projection(action, data)

        def ray(boundary: Tensor, normal: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Any]:
            low, high = s.tensor("box_low", action), s.tensor("box_high", action)
            t_box = box_distance(boundary, normal, low + s.margin, high - s.margin)
            return self.ray(boundary, normal, t_box, data.subset(rows))

        geometry, rows, ray_certificate = _orthogonal(s, action, projected, ok, ray)
        end_certificate = (certificate if ray_certificate is None
                           else certificate.index_put(rows, ray_certificate))
        return replace(geometry, start_certificate=certificate, end_certificate=end_certificate)


def _orthogonal(s: ActionSetStructure, action: Tensor, projected: Tensor, ok: Tensor,
                ray: Any) -> tuple[RayGeometry, Tensor, Any]:
    """Eq 54 given the projections ``projected`` of ``action`` (both backends): for the rows the
    projection moved by more than :data:`SAFE_DISTANCE`, ``ray(boundary, normal, rows) -> (t,
    ok, extra)`` gives the safe extent along the inward normal; ``c_s`` is its midpoint.
    Returns the :class:`RayGeometry` (without certificates), the mapped rows and ``extra``
    (``None`` if none)."""
    offset = projected - action
    distance = safe_norm(offset)
    unsafe = ok & (distance > SAFE_DISTANCE)
    # placeholders (finite) for the rows that are not mapped
    centre = action.detach().clone()
    lam_S = torch.zeros_like(distance)
    lam_A = torch.ones_like(distance)
    solved = ok.clone()
    end = projected
    extra = None
    rows = torch.nonzero(unsafe).flatten()
    if rows.numel():
        low, high = s.tensor("box_low", action), s.tensor("box_high", action)
        normal, _ = unit_direction(offset[rows])
        boundary = projected[rows]
        t, ray_ok, extra = ray(boundary, normal, rows)
        half = 0.5 * t
        centre_rows = boundary + half.unsqueeze(-1) * normal
        centre = centre.index_put((rows,), centre_rows)
        lam_S = lam_S.index_put((rows,), half)
        lam_A = lam_A.index_put((rows,), box_distance(centre_rows, -normal, low, high))
        solved = solved.index_put((rows,), ray_ok & ok[rows])
        end = end.index_put((rows,), boundary + t.unsqueeze(-1) * normal)
    geometry = RayGeometry(centre=centre, lam_S=lam_S, lam_A=lam_A, unchanged=ok & ~unsafe,
                           solved=solved, start=projected, end=end)
    return geometry, rows, extra


class ExactZonotopicCentre:
    """Zonotopic centre (Eq 52–53) on the exact safe action set (module docstring).

    Args:
        action_set: the safeguard's :class:`~safegbpo.safeguards.polytope.ExactActionSet`.
        num_directions, seed, centre_gradient: as for :class:`ZonotopicCentre` (the directions
            are drawn identically, so both backends use the same ``G_dir``).
    """

    def __init__(self, action_set: Any, num_directions: int | None = None,
                 seed: int | None = 0, centre_gradient: bool = True) -> None:
        self.action_set = action_set
        self.structure = action_set.structure
        self.centre_gradient = centre_gradient
        self.directions = _centre_directions(self.structure, num_directions, seed,
                                             centre_gradient)
        self._fixed: dict | None = None
        self._previous: dict | None = None

    def _guesses(self) -> list[dict]:
        """Warm starts of the centre program: the previous call's active sets (states move
        little between steps) and the optimum over the state-independent rows alone (the
        answer wherever no induced row touches ``Z``); both are verified per state."""
        if self._fixed is None:
            s = self.structure
            fixed: dict = {}
            exact.zonotopic_centre(self.action_set.fixed_polytope(), self.directions,
                                   s.box_center, 0.5 * (s.box_high - s.box_low),
                                   self.directions, cache=fixed)
            fixed["relaxation"] = True
            self._fixed = fixed
        return [g for g in (self._fixed, self._previous) if g is not None]

    def zonotope(self, data: ActionSetData,
                 like: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        """``Z``: ``(centre (N, d), generators (N, d, K), ok (N,), None)``; without
        :attr:`centre_gradient` it carries no autograd graph."""
        s = self.structure
        poly = self.action_set.polytope(data)
        radius = 0.5 * (s.box_high - s.box_low)
        warm = self._guesses()
        cache: dict[str, Any] = {}
        with torch.set_grad_enabled(self.centre_gradient and torch.is_grad_enabled()):
            centre, lengths, ok = exact.zonotopic_centre(poly, self.directions, s.box_center,
                                                         radius, like, warm=warm, cache=cache)
        self._previous = cache
        directions = self.directions.to(dtype=like.dtype, device=like.device)
        return centre, directions * lengths.unsqueeze(-2), ok, None

    def geometry(self, action: Tensor, data: ActionSetData) -> RayGeometry:
        s = self.structure
        centre, generators, ok, _ = self.zonotope(data, action)
        if s.action_dim == 1:
            # 1-D: Z is the interval c -+ sum_j |g_j| l_j, the ray direction a sign
            delta = action - centre
            up = delta >= 0
            lam_A = torch.where(up, s.cached_tensor("box_high", action) - centre,
                                centre - s.cached_tensor("box_low", action))[:, 0]
            lam_S = torch.minimum(generators.abs().sum(-1)[:, 0], lam_A)
            return RayGeometry(centre=centre, lam_S=lam_S, lam_A=lam_A,
                               unchanged=torch.zeros_like(ok), solved=ok, start=centre,
                               end=centre, distance=delta.abs()[:, 0])
        direction, distance = unit_direction(action - centre)
        lam_A = box_distance(centre, direction, s.cached_tensor("box_low", action),
                             s.cached_tensor("box_high", action))
        lam_S = torch.minimum(exact.zonotope_ray_distance(centre, generators, direction), lam_A)
        # start/end are only used by the cvxpylayers certificates
        return RayGeometry(centre=centre, lam_S=lam_S, lam_A=lam_A,
                           unchanged=torch.zeros_like(ok), solved=ok, start=centre, end=centre,
                           distance=distance)


class ExactOrthogonalCentre:
    """Orthogonal centre (Eq 54) on the exact safe action set (module docstring).  Actions the
    exact projection moves by at most :data:`SAFE_DISTANCE` are returned *projected* (i.e.
    unchanged when safe: the projection of a safe action is the action itself)."""

    def __init__(self, action_set: Any) -> None:
        self.action_set = action_set
        self.structure = action_set.structure

    def geometry(self, action: Tensor, data: ActionSetData) -> RayGeometry:
        poly = self.action_set.polytope(data)
        projected, ok, _ = exact.project(action, poly)

        def ray(boundary: Tensor, normal: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, None]:
            t, ray_ok = exact.ray_distance(boundary, normal, poly.subset(rows.cpu().numpy()))
            return t, ray_ok, None

        geometry, _, _ = _orthogonal(self.structure, action, projected, ok, ray)
        return replace(geometry, fixed=projected)
