"""Ray mask (SPEC §5, paper Section 5.3): Eq 46 (linear), Eq 64 (hyperbolic), Eq 47.

Every action is moved along the ray from a safe centre ``c_s`` through it:
with ``v = (a - c_s)/||a - c_s||``, ``lam_a = ||a - c_s||``, ``lam_S`` the distance from ``c_s``
to the boundary of the safe set along ``v`` (Eq 47) and ``lam_A`` the distance to the boundary
of the feasible box ``A`` (closed form),

* linear (Eq 46): ``g(a) = c_s + v lam_a lam_S / lam_A``;
* hyperbolic (Eq 64): ``g(a) = c_s + v lam_S tanh(lam_a / lam_S) / tanh(lam_A / lam_S)``;
* ``g(c_s) = c_s``.

Both map the boundary of ``A`` onto the safe boundary.  Two decisions of this implementation:

* **Actions outside A** (``lam_a > lam_A``; the paper's tanh-squashed policies never produce
  them) are first moved radially onto the boundary of ``A``: ``lam_a := min(lam_a, lam_A)``.
  Without this, the linear map would send them *beyond* the safe boundary (a bug of the public
  reference implementation).  The map stays continuous; outside ``A`` its radial derivative is 0.
* **Smoothness at the centre.** ``g`` is evaluated as ``c_s + (a - c_s) * h(lam_a)/lam_a`` with
  ``h(r)/r`` written without a division by ``r`` (``lam_S/lam_A``, resp.
  ``tanhc(r/lam_S)/tanh(lam_A/lam_S)``), so ``a = c_s`` gives ``c_s`` with finite gradients.

The safe centre comes from a centre strategy (:mod:`safegbpo.safeguards.centres`): the
zonotopic approximation (Eq 52–53; ``lam_S`` measured on the approximating zonotope ``Z``) or
the orthogonal approximation (Eq 54; only unsafe actions are mapped).  For an explicit safe
zonotope ``<c, G>`` the centre is ``c`` and ``lam_S = min(1/gauge(v), lam_A)``
(:func:`ray_mask`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from safegbpo.safeguards.action_set import ActionSetData
from safegbpo.safeguards.centres import (
    CENTRES,
    ExactOrthogonalCentre,
    ExactZonotopicCentre,
    OrthogonalCentre,
    ZonotopicCentre,
)
from safegbpo.safeguards.certify import Certificate
from safegbpo.safeguards.geometry import box_distance, tanhc, unit_direction
from safegbpo.safeguards.problems import ZonotopeRayProblem
from safegbpo.safeguards.protocol import Safeguard

__all__ = ["MAPPINGS", "RayMask", "radial_scale", "ray_mask", "ray_mask_map"]

#: Names of the ray-mask mappings.
MAPPINGS = ("linear", "hyperbolic")

# lam_S below this is treated as this value inside tanh(./lam_S) (the limit h -> lam_S -> 0).
_MIN_LAM_S = 1e-12


def _check_mapping(mapping: str) -> str:
    if mapping not in MAPPINGS:
        raise ValueError(f"unknown ray-mask mapping {mapping!r}; expected one of {MAPPINGS}")
    return mapping


def radial_scale(distance: Tensor, lam_S: Tensor, lam_A: Tensor,
                 mapping: str = "linear") -> Tensor:
    """``h(r) / r`` of the ray mask, with ``h`` the radial map (Eq 46 / Eq 64), all ``(N,)``.

    ``r <= lam_A``: linear ``lam_S / lam_A``; hyperbolic
    ``tanhc(r / lam_S) / tanh(lam_A / lam_S)`` (``tanhc(x) = tanh(x)/x``).
    ``r > lam_A`` (outside ``A``): ``lam_S / r`` (i.e. ``h(r) = h(lam_A) = lam_S``).
    """
    _check_mapping(mapping)
    inside = distance <= lam_A
    far = lam_S / torch.where(inside, torch.ones_like(distance), distance)
    if mapping == "linear":
        lam_A_safe = torch.where(lam_A > 0, lam_A, torch.ones_like(lam_A))
        near = torch.where(lam_A > 0, lam_S / lam_A_safe, torch.zeros_like(lam_S))
    else:
        lam = lam_S.clamp_min(_MIN_LAM_S)
        near = tanhc(torch.minimum(distance, lam_A) / lam) / torch.tanh(
            lam_A.clamp_min(_MIN_LAM_S) / lam)
    return torch.where(inside, near, far)


def ray_mask_map(action: Tensor, centre: Tensor, lam_S: Tensor, lam_A: Tensor,
                 mapping: str = "linear", distance: Tensor | None = None) -> Tensor:
    """The ray-mask map ``c_s + (a - c_s) h(lam_a)/lam_a`` (Eq 46 / Eq 64; module docstring).

    Args:
        action, centre: ``(N, d)``.
        lam_S, lam_A: ``(N,)`` distances from ``centre`` to the safe / feasible boundary along
            the direction of ``action - centre``.
        mapping: ``'linear'`` or ``'hyperbolic'``.
        distance: ``||action - centre||`` ``(N,)`` if already known (saves its computation).

    Returns:
        ``(N, d)``; ``g(c_s) = c_s`` exactly.
    """
    delta = action - centre
    if distance is None:
        _, distance = unit_direction(delta)
    return centre + delta * radial_scale(distance, lam_S, lam_A, mapping).unsqueeze(-1)


class RayMask(Safeguard):
    """Ray-mask safeguard for an environment (module docstring).

    Options (keyword-only):
        mapping: ``'linear'`` (Eq 46, default) or ``'hyperbolic'`` (Eq 64).
        centre: ``'zonotopic'`` (Eq 52–53, default) or ``'orthogonal'`` (Eq 54).
        seed: seed of the ``torch.Generator`` drawing the zonotopic generator directions once
            per instance (default ``0``: reproducible; ``None``: non-deterministic).
        num_directions: number ``K`` of zonotopic directions (default ``2 d``).
        centre_gradient: differentiate the zonotopic centre w.r.t. the state (default
            ``True``; ``False`` detaches it, see :class:`~safegbpo.safeguards.centres.
            ZonotopicCentre`).
        backend, passthrough, margin, tol, solver_args, certification: see
            :class:`~safegbpo.safeguards.protocol.Safeguard` (backend ``'exact'``:
            :class:`~safegbpo.safeguards.centres.ExactZonotopicCentre` /
            :class:`~safegbpo.safeguards.centres.ExactOrthogonalCentre`).

    Gradients: autograd through the mapping, the boundary LP (w.r.t. the direction, hence
    the action, and the state) and the centre program (w.r.t. the state); nothing is detached
    unless ``centre_gradient=False``.
    """

    name = "rm"

    def __init__(
        self,
        env: Any,
        *,
        mapping: str = "linear",
        centre: str = "zonotopic",
        seed: int | None = 0,
        num_directions: int | None = None,
        centre_gradient: bool = True,
        **options: Any,
    ) -> None:
        self.mapping = _check_mapping(mapping)
        if centre not in CENTRES:
            raise ValueError(f"unknown ray-mask centre {centre!r}; expected one of {CENTRES}")
        if centre == "orthogonal" and (num_directions is not None or not centre_gradient):
            raise ValueError("num_directions and centre_gradient only apply to "
                             "centre='zonotopic'")
        super().__init__(env, **options)
        self.centre_name = centre
        self.centre: Any
        if self.exact is not None:
            if centre == "zonotopic":
                self.centre = ExactZonotopicCentre(self.exact, num_directions=num_directions,
                                                   seed=seed, centre_gradient=centre_gradient)
            else:
                self.centre = ExactOrthogonalCentre(self.exact)
        elif centre == "zonotopic":
            self.centre = ZonotopicCentre(
                self.structure, num_directions=num_directions, seed=seed,
                solver_args=self.solver_args, centre_gradient=centre_gradient)
        else:
            self.centre = OrthogonalCentre(self.structure, solver_args=self.solver_args)

    def _map(self, action: Tensor,
             data: ActionSetData) -> tuple[Tensor, Tensor, Certificate | None]:
        geometry = self.centre.geometry(action, data)
        mapped = ray_mask_map(action, geometry.centre, geometry.lam_S, geometry.lam_A,
                              self.mapping, geometry.distance)
        fixed = action if geometry.fixed is None else geometry.fixed
        mapped = torch.where(geometry.unchanged.unsqueeze(-1), fixed, mapped)
        if geometry.start_certificate is None or geometry.end_certificate is None:
            return mapped, geometry.solved, None
        # the output lies on the segment [start, end]: interpolate the certificates
        with torch.no_grad():
            segment = geometry.end - geometry.start
            length2 = (segment * segment).sum(-1)
            offset = ((mapped - geometry.start) * segment).sum(-1)
            theta = torch.where(length2 > 0, offset / torch.where(length2 > 0, length2, 1.0),
                                torch.zeros_like(length2)).clamp(0.0, 1.0)
            certificate = geometry.start_certificate.interpolate(geometry.end_certificate, theta)
        return mapped, geometry.solved, certificate

    def __repr__(self) -> str:
        return (f"RayMask(backend={self.backend!r}, mapping={self.mapping!r}, "
                f"centre={self.centre_name!r}, passthrough={self.passthrough})")


@lru_cache(maxsize=32)
def _zonotope_ray_problem(dim: int, num_generators: int) -> ZonotopeRayProblem:
    return ZonotopeRayProblem(dim, num_generators)


def ray_mask(action: Tensor, center: Tensor, generators: Tensor, mapping: str = "linear",
             low: float | Tensor = -1.0, high: float | Tensor = 1.0) -> Tensor:
    """Ray mask onto an explicit safe zonotope ``<c, G>`` within the box ``[low, high]^d``.

    ``c_s = c``, ``lam_S = min(1/gauge(v), lam_A)`` by the LP of Eq 47 (one per action,
    batched, differentiable), ``lam_A`` in closed form.

    Args:
        action: ``(B, d)``; center: ``(B, d)`` or ``(d,)`` strictly inside the box;
        generators: ``(B, d, m)`` or ``(d, m)``; mapping: ``'linear'`` / ``'hyperbolic'``.

    Raises:
        ValueError: bad shapes, NaN/inf, a centre not strictly inside the box, a failed LP.
    """
    _check_mapping(mapping)
    for name, x in (("action", action), ("center", center), ("generators", generators)):
        if not isinstance(x, Tensor) or not bool(torch.isfinite(x.detach()).all()):
            raise ValueError(f"{name} must be a finite tensor")
    if center.ndim == 1:
        center = center.unsqueeze(0)
    if generators.ndim == 2:
        generators = generators.unsqueeze(0)
    if action.ndim != 2 or center.ndim != 2 or generators.ndim != 3:
        raise ValueError(f"expected action (B, d), center (B, d), generators (B, d, m); got "
                         f"{tuple(action.shape)}, {tuple(center.shape)}, {tuple(generators.shape)}")
    batch, d = action.shape
    center = center.expand(batch, -1)
    generators = generators.expand(batch, -1, -1)
    low_t = torch.as_tensor(low, dtype=action.dtype).expand(d)
    high_t = torch.as_tensor(high, dtype=action.dtype).expand(d)
    if bool(((center <= low_t) | (center >= high_t)).any()):
        raise ValueError("the zonotope centre must lie strictly inside the box")
    direction, _ = unit_direction(action - center)
    lam_A = box_distance(center, direction, low_t, high_t)
    lam_S, _, ok = _zonotope_ray_problem(d, generators.shape[-1])(generators, direction, lam_A)
    if not bool(ok.all()):
        rows = torch.nonzero(~ok).flatten().tolist()
        raise ValueError(f"ray_mask: the boundary LP failed for rows {rows}")
    return ray_mask_map(action, center, lam_S, lam_A, mapping)
