"""Independent certification of safeguard outputs (fail-safe of SPEC §3, P1).

The safeguards never trust their own solvers (cvxpylayers reports no solver status).  Every
output ``a`` must be *proven* to lie in ``A ∩ A_s(s)``:

* ``a in A``: ``low - tol <= a <= high + tol`` (numpy);
* ``a in U_s``: a factor ``b`` with ``a = c_U + G_U b``, ``||b||_inf <= 1 + tol`` (Eq 5);
* ``a in A_s(s)`` (induced): ``Gamma``, ``beta`` with ``G_S Gamma = E G_W``,
  ``G_S beta = c_S - f0 - B (a - a0)`` and row sums of ``|[Gamma, beta]|`` ``<= 1 + tol``
  (Eq 6 for the next-state set of Eq 13–14), with the linearisation of the row's *own* state.

Two stages (``method='certificate'``, the default):

1. **Certificate check** (numpy, microseconds).  The safeguards' programs also return their
   Eq 5/6 variables; they are only *candidates*.  Their equality residuals (solver inaccuracy,
   or a point that moved along a segment) are removed exactly by the minimum-norm correction
   ``b' = b + G^+ (rhs - G b)`` (``G`` has full row rank), and the corrected certificate is
   checked against the inequalities above.  A passing row is proven safe — whatever the solver
   claimed — because the check verifies the constraints themselves.
2. **LP check** for the rows stage 1 did not prove (no certificate, or it failed): the HiGHS
   LPs of :mod:`safegbpo.sets.containment` (:func:`~safegbpo.sets.containment.gauge_lp`,
   :func:`~safegbpo.sets.containment.induced_containment_margin`), which share nothing with the
   safeguards' problems.  ``method='lp'`` sends every row here (slow: two LPs per row).

``tol`` (default ``1e-7``) is the accuracy of the checking LPs; the safeguards solve a set
tightened by ``1e-6`` (:mod:`safegbpo.safeguards.action_set`), so correct outputs pass with room
to spare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from safegbpo.safeguards.action_set import ActionSetData, ActionSetStructure
from safegbpo.sets.containment import gauge_lp, induced_containment_margin

__all__ = [
    "CERTIFICATION_METHODS",
    "DEFAULT_TOL",
    "Certificate",
    "ZonotopeCertificate",
    "certify_actions",
    "check_certificate",
]

#: Tolerance of the independent check (accuracy of the HiGHS LPs).
DEFAULT_TOL = 1e-7
#: Names of the certification methods (module docstring).
CERTIFICATION_METHODS = ("certificate", "lp")
# An equality residual after the minimum-norm correction above this (relative) fails stage 1.
_RESIDUAL_TOL = 1e-9


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().to(device="cpu", dtype=torch.float64).numpy()


@dataclass(frozen=True)
class Certificate:
    """Candidate Eq 5 / Eq 6 certificates of ``N`` points (detached tensors, ``None`` = absent).

    Attributes:
        explicit: ``b`` ``(N, m_U)`` with ``point = c_U + G_U b``.
        gamma: ``Gamma`` ``(N, m_S, p)`` with ``G_S Gamma = E G_W``.
        beta: ``beta`` ``(N, m_S)`` with ``G_S beta = c_S - f0 - B (point - a0)``.
    """

    explicit: Tensor | None = None
    gamma: Tensor | None = None
    beta: Tensor | None = None

    def _combine(self, other: Certificate,
                 fn: Callable[[Tensor, Tensor], Tensor]) -> Certificate:
        def pair(x: Tensor | None, y: Tensor | None) -> Tensor | None:
            return None if x is None or y is None else fn(x, y)

        return Certificate(pair(self.explicit, other.explicit), pair(self.gamma, other.gamma),
                           pair(self.beta, other.beta))

    def interpolate(self, other: Certificate, theta: Tensor) -> Certificate:
        """Certificate of ``(1 - theta) p + theta q`` from those of ``p`` (self) and ``q``
        (all constraints are affine in the point and the certificate, the bounds convex)."""
        theta = theta.detach()

        def lerp(x: Tensor, y: Tensor) -> Tensor:
            w = theta.reshape(-1, *([1] * (x.ndim - 1)))
            return x + w * (y - x)

        return self._combine(other, lerp)

    def index_put(self, rows: Tensor, values: Certificate) -> Certificate:
        """A copy with the rows ``rows`` replaced by ``values``."""
        return self._combine(values, lambda x, y: x.index_put((rows,), y.to(x.dtype)))

    def select(self, rows: Tensor) -> Certificate:
        return self._combine(self, lambda x, _: x[rows])


@dataclass(frozen=True)
class ZonotopeCertificate:
    """Eq 6 certificates of ``Z = <c, G_Z> ⊆ A ∩ A_s`` (zonotopic centre, Eq 52–53).

    Attributes (``None`` when the part is absent):
        gamma_u, beta_u: ``(N, m_U, K)``, ``(N, m_U)``: ``G_U Gamma_U = G_Z``,
            ``G_U beta_U = c_U - c``.
        gamma_s, beta_s: ``(N, m_S, K + p)``, ``(N, m_S)``: ``G_S Gamma_S = [B G_Z, E G_W]``,
            ``G_S beta_S = c_S - f0 - B (c - a0)``.
    """

    num_generators: int
    gamma_u: Tensor | None = None
    beta_u: Tensor | None = None
    gamma_s: Tensor | None = None
    beta_s: Tensor | None = None

    @classmethod
    def from_outputs(cls, structure: ActionSetStructure, num_generators: int,
                     outputs: list[Tensor]) -> ZonotopeCertificate:
        outputs = list(outputs)
        gamma_u = beta_u = gamma_s = beta_s = None
        if structure.has_explicit:
            gamma_u, beta_u = outputs.pop(0), outputs.pop(0)
        if structure.has_induced:
            gamma_s, beta_s = outputs.pop(0), outputs.pop(0)
        return cls(num_generators, gamma_u, beta_u, gamma_s, beta_s)

    def point(self, factors: Tensor) -> Certificate:
        """Certificate of the point ``c + G_Z b`` of ``Z`` for factors ``b`` ``(N, K)``:
        ``b_U = Gamma_U b - beta_U``, ``Gamma = Gamma_S[:, :, K:]``,
        ``beta = beta_S - Gamma_S[:, :, :K] b``."""
        b = factors.detach().unsqueeze(-1)
        K = self.num_generators
        explicit = gamma = beta = None
        if self.gamma_u is not None and self.beta_u is not None:
            explicit = (self.gamma_u @ b).squeeze(-1) - self.beta_u
        if self.gamma_s is not None and self.beta_s is not None:
            gamma = self.gamma_s[:, :, K:]
            beta = self.beta_s - (self.gamma_s[:, :, :K] @ b).squeeze(-1)
        return Certificate(explicit=explicit, gamma=gamma, beta=beta)


def _corrected(factors: np.ndarray, rhs: np.ndarray, G: np.ndarray,
               G_pinv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-norm correction of ``G X = rhs`` for a batch ``X`` ``(N, m, k)``,
    ``rhs`` ``(N, n, k)``; returns the corrected ``X`` and the relative residual ``(N,)`` left
    (zero up to rounding when ``G`` has full row rank)."""
    residual = rhs - G @ factors
    factors = factors + G_pinv @ residual
    remaining = np.abs(rhs - G @ factors).reshape(factors.shape[0], -1).max(axis=-1)
    scale = 1.0 + np.abs(rhs).reshape(rhs.shape[0], -1).max(axis=-1)
    return factors, remaining / scale


def check_certificate(actions: Tensor, structure: ActionSetStructure, data: ActionSetData,
                      certificate: Certificate, tol: float = DEFAULT_TOL) -> np.ndarray:
    """Stage 1 of the module docstring: ``(N,)`` bool, ``True`` = proven safe."""
    a = _numpy(actions)
    ok = np.all(np.isfinite(a), axis=-1)
    ok &= np.all(a >= structure.box_low - tol, axis=-1)
    ok &= np.all(a <= structure.box_high + tol, axis=-1)
    with np.errstate(all="ignore"):
        if structure.has_explicit:
            if certificate.explicit is None:
                return np.zeros_like(ok)
            c_U, G = structure.explicit_set
            b = _numpy(certificate.explicit)[:, :, None]
            rhs = (a - c_U)[:, :, None]
            b, residual = _corrected(b, rhs, G, structure.explicit_pinv)
            ok &= np.all(np.isfinite(b), axis=(1, 2)) & (residual <= _RESIDUAL_TOL)
            ok &= np.abs(b).max(axis=(1, 2)) <= 1.0 + tol
        if structure.has_induced:
            if certificate.gamma is None or certificate.beta is None:
                return np.zeros_like(ok)
            c_S, G, _ = structure.induced_set
            f0, B, _, EG_W = data.linearisation
            q = _numpy(f0) + np.einsum("nij,nj->ni", _numpy(B), a - structure.box_center)
            rhs = np.concatenate([_numpy(EG_W), (c_S - q)[:, :, None]], axis=2)
            X = np.concatenate([_numpy(certificate.gamma), _numpy(certificate.beta)[:, :, None]],
                               axis=2)
            X, residual = _corrected(X, rhs, G, structure.safe_pinv)
            ok &= np.all(np.isfinite(X), axis=(1, 2)) & (residual <= _RESIDUAL_TOL)
            ok &= np.abs(X).sum(axis=2).max(axis=1) <= 1.0 + tol
    return ok


def _check_lp(a: np.ndarray, structure: ActionSetStructure, data: ActionSetData,
              rows: np.ndarray, tol: float) -> np.ndarray:
    """Stage 2: HiGHS LPs for the rows ``rows``; returns a bool per row of ``rows``."""
    ok = np.all(np.isfinite(a[rows]), axis=-1)
    ok &= np.all(a[rows] >= structure.box_low - tol, axis=-1)
    ok &= np.all(a[rows] <= structure.box_high + tol, axis=-1)
    if structure.has_explicit:
        c, G = structure.explicit_set
        for k in np.flatnonzero(ok):
            try:
                ok[k] = gauge_lp(G, a[rows[k]] - c) <= 1.0 + tol
            except (RuntimeError, ValueError):
                ok[k] = False
    if structure.has_induced:
        c_S, G_S, G_W = structure.induced_set
        f0, B, E = (_numpy(x) for x in data.linearisation[:3])
        for k in np.flatnonzero(ok):
            i = rows[k]
            try:
                margin = induced_containment_margin(
                    f0[i], B[i], E[i], G_W, a[i], c_S, G_S, structure.box_center)
            except (RuntimeError, ValueError):
                margin = np.inf
            ok[k] = margin <= 1.0 + tol
    return ok


def certify_actions(
    actions: Tensor,
    structure: ActionSetStructure,
    data: ActionSetData,
    tol: float = DEFAULT_TOL,
    rows: Tensor | None = None,
    certificate: Certificate | None = None,
    method: str = "certificate",
) -> Tensor:
    """Which rows of ``actions (N, d)`` provably lie in ``A ∩ A_s(s_i)`` (module docstring).

    Args:
        actions: ``(N, d)`` candidate safe actions (detached internally).
        structure, data: the safe action set and the linearisation at the ``N`` states.
        tol: tolerance of the check.
        rows: optional ``(N,)`` bool mask of the rows to check (the others are reported
            ``False`` without any computation).
        certificate: candidate certificates for stage 1 (``None``: LPs only).
        method: ``'certificate'`` (stage 1, then LPs for unproven rows) or ``'lp'``.

    Returns:
        ``(N,)`` bool tensor on ``actions.device``; non-finite rows and rows whose checking LP
        fails are ``False``.
    """
    if method not in CERTIFICATION_METHODS:
        raise ValueError(f"unknown certification method {method!r}; expected one of "
                         f"{CERTIFICATION_METHODS}")
    a = _numpy(actions)
    N = a.shape[0]
    wanted = np.ones(N, dtype=bool) if rows is None else rows.detach().cpu().numpy().astype(bool)
    ok = np.zeros(N, dtype=bool)
    if method == "certificate" and certificate is not None:
        ok = check_certificate(actions, structure, data, certificate, tol) & wanted
    todo = np.flatnonzero(wanted & ~ok)
    if todo.size:
        ok[todo] = _check_lp(a, structure, data, todo, tol)
    return torch.as_tensor(ok, device=actions.device)
