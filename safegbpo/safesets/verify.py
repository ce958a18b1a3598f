"""A-posteriori verification of a safe set on the nonlinear dynamics (SPEC §7, last step).

:func:`verify_safe_set` samples states ``s`` in ``S_s ∩ S`` and checks, for each, that some
action keeps the whole successor set inside ``S_s`` and inside ``S``:

* with an action part: the paired backup action ``u = c_U + G_U b(s)`` — the set file claims
  these actions as certified backups (SPEC §7 recursive feasibility), so each state where it
  fails is a violation; an LP over ``a in A`` then diagnoses whether another action would have
  worked (``num_lp_rescued``: the state set is invariant there, the action set is wrong);
* without an action part: an action found by an LP over ``a in A`` (minimal margin).

The check of an action ``a`` is exact under Eq 12 (which holds for every task: the dynamics are
affine in ``a`` and ``w``): the successor set is ``S'(a) = <f(s, a0, w0) + B(s)(a - a0), E(s) G_W>``
(Eq 13–14) with ``f``, ``B = df/da``, ``E = df/dw`` of the *nonlinear* model
(``torch.func.jacrev``), and

* ``S'(a) ⊆ S_s`` is certified by the Eq 6 containment margin ``<= 1``;
* ``S'(a) ⊆ S`` by its interval hull (so the environment's clamp to ``S`` is the identity).

A state is a *violation* if the action checked (the backup action, or the LP's action for a set
without action part) fails either test.  As an independent cross-check of Eq 12 the model's
dynamics are also simulated at every vertex of ``W`` with that action and the successor states
tested for membership in ``S_s`` (Eq 5) and ``S``; a failure there is a violation too.

Sampled states: uniform factors, factors on random faces of the unit cube, and all sign vertices
``{-1, 1}^m`` when ``2^m <= max_vertices`` (else as many random ones); states outside ``S`` are
clipped to ``S`` and kept if the clipped state still lies in ``S_s`` (this samples ``S_s ∩ ∂S``).

The LPs of many states are solved together as one block-diagonal HiGHS LP (separable objective,
so every block attains its own optimum); if such a batch is infeasible (some state has no
action keeping it inside ``S``) its states are re-solved one by one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linprog
from torch.func import jacrev, vmap

from safegbpo.reference import reference_path
from safegbpo.safesets.safe_set import SafeSet
from safegbpo.sets.containment import min_inf_norm_factors
from safegbpo.tasks import TaskModel

__all__ = [
    "DEFAULT_TOLERANCE",
    "SafeSetNotInvariantError",
    "VerificationReport",
    "audit_states",
    "default_reference_path",
    "next_state_margins",
    "verify_safe_set",
]

#: Tolerance on the Eq 6 margin (``<= 1 + tol``) and on the box checks (HiGHS accuracy).
DEFAULT_TOLERANCE = 1e-6
_LP_CHUNK = 128
_MAX_REPORTED_VIOLATIONS = 10


class SafeSetNotInvariantError(RuntimeError):
    """A safe set failed the a-posteriori verification (some audited state has no safe action)."""


def default_reference_path(task: str) -> Path | None:
    """The reference implementation's set of ``task`` (``safe_sets/<task>.json`` of
    :func:`safegbpo.reference.reference_path`) if it exists, else ``None``."""
    return reference_path("safe_sets", f"{task}.json")


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------
@dataclass
class VerificationReport:
    """Outcome of :func:`verify_safe_set`.

    Attributes:
        task, source: of the verified set.
        verdict: ``True`` iff every audited state has a certified safe action.
        num_states: audited states; num_violations: states without a safe action.
        worst_margin: largest Eq 6 margin over the audited states of the action used
            (``<= 1`` certifies; ``inf`` if some state has no action keeping it in ``S``).
        num_backup_failures: states where the paired backup action did not certify (each is a
            violation: the set claims these actions as certified backups, SPEC §7).
        num_lp_rescued: of those, states where an LP still finds a safe action (the state set
            is invariant there but the paired action set is wrong).
        num_simulation_violations: successor states (simulated at the vertices of ``W``) outside
            ``S_s`` or ``S`` — an independent cross-check of Eq 12 (must be 0).
        volume: of ``S_s``; feasible_excess: per-dimension excess of ``S_s`` over ``S``.
        reference, reference_volume, volume_ratio: the reference set compared with (ours /
            reference), ``None`` if not available.
        violations: up to 10 examples ``{"state", "margin", "reason"}``.
        state_box_fraction: volume of ``S_s`` divided by the volume of the state box ``S``.
        certification: the set's :attr:`~safegbpo.safesets.SafeSet.certification`: a
            ``verdict`` on a set "verified by sampling, not certified" is evidence, not a proof.
    """

    task: str
    source: str
    verdict: bool
    num_states: int
    num_violations: int
    worst_margin: float
    num_backup_failures: int
    num_lp_rescued: int
    num_simulation_violations: int
    volume: float
    feasible_excess: list[float]
    reference: str | None
    reference_volume: float | None
    volume_ratio: float | None
    num_samples: int
    seed: int
    tolerance: float
    has_action_set: bool
    violations: list[dict[str, Any]] = field(default_factory=list)
    state_box_fraction: float | None = None
    certification: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (``inf`` margins become the string ``"inf"``)."""
        data = asdict(self)
        for key in ("worst_margin",):
            if not math.isfinite(data[key]):
                data[key] = str(data[key])
        for v in data["violations"]:
            if not math.isfinite(v["margin"]):
                v["margin"] = str(v["margin"])
        return data

    def raise_if_violated(self) -> None:
        """Raise :class:`SafeSetNotInvariantError` describing the violations, if any."""
        if self.verdict:
            return
        example = self.violations[0] if self.violations else {}
        if self.has_action_set:
            what = (f"{self.num_violations} of {self.num_states} audited states violate: the "
                    f"paired backup action fails at {self.num_backup_failures} (another action "
                    f"would work at {self.num_lp_rescued} of them, i.e. the action set is wrong "
                    f"there)")
        else:
            what = (f"{self.num_violations} of {self.num_states} audited states have no action "
                    f"keeping the successor set inside S_s and S")
        raise SafeSetNotInvariantError(
            f"{self.task} safe set ({self.source or 'no source'}) is NOT robust control "
            f"invariant: {what}; worst Eq 6 margin {self.worst_margin:.6g}, "
            f"{self.num_simulation_violations} states with simulated successors outside; e.g. "
            f"state {example.get('state')}: {example.get('reason')}")


# ------------------------------------------------------------------------------------------
# states
# ------------------------------------------------------------------------------------------
def audit_states(safe_set: SafeSet, num_samples: int, rng: np.random.Generator,
                 max_vertices: int = 256) -> np.ndarray:
    """States ``(N, n)`` in ``S_s ∩ S`` to audit (module docstring); ``N <= num_samples +
    min(2^m, max_vertices) + 1``."""
    c, G = (a[0] for a in safe_set.state.numpy())
    m = G.shape[1]
    low, high = (t.numpy() for t in safe_set.model.state_bounds())
    half = num_samples // 2
    uniform = rng.uniform(-1.0, 1.0, size=(half, m))
    faces = rng.uniform(-1.0, 1.0, size=(num_samples - half, m))
    on_face = rng.random(faces.shape) < rng.random((faces.shape[0], 1))
    faces[on_face] = np.sign(faces[on_face])
    if 2**m <= max_vertices:
        vertices = np.array(np.meshgrid(*[[-1.0, 1.0]] * m, indexing="ij")).reshape(m, -1).T
    else:
        vertices = rng.choice([-1.0, 1.0], size=(max_vertices, m))
    factors = np.vstack([np.zeros((1, m)), vertices, faces, uniform])
    states = c[None] + factors @ G.T
    inside = np.all((states >= low) & (states <= high), axis=1)
    if not inside.all():
        clipped = np.clip(states[~inside], low, high)
        gauges = np.abs(min_inf_norm_factors(G, clipped - c[None])).max(axis=1)
        states = np.vstack([states[inside], clipped[gauges <= 1.0 + 1e-9]])
    return states


# ------------------------------------------------------------------------------------------
# linearisation (Eq 12) and the margin LPs
# ------------------------------------------------------------------------------------------
def _linearise(model: TaskModel, states: np.ndarray):
    """``f(s, a0, w0)`` ``(N, n)``, ``B`` ``(N, n, d)``, ``E`` ``(N, n, n_w)`` (jacrev)."""
    x = torch.as_tensor(states, dtype=torch.float64)
    a0 = torch.zeros(model.action_dim, dtype=torch.float64)
    w0 = torch.zeros(model.noise_dim, dtype=torch.float64)

    def f(s, a, w):
        return model.dynamics(s[None], a[None], w[None])[0]

    f0 = model.dynamics(x, a0.expand(len(x), -1), w0.expand(len(x), -1))
    B, E = vmap(jacrev(f, argnums=(1, 2)), in_dims=(0, None, None))(x, a0, w0)
    return f0.numpy(), B.numpy(), E.numpy()


def next_state_margins(
    f0: np.ndarray, B: np.ndarray, EG: np.ndarray, S_c: np.ndarray, S_G: np.ndarray,
    actions: np.ndarray | None, box: tuple[np.ndarray, np.ndarray] | None = None,
    a0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Eq 6 margins of ``<f0 + B (a - a0), EG>`` in ``<S_c, S_G>`` for many states.

    Args:
        f0 ``(N, n)``, B ``(N, n, d)``, EG ``(N, n, p)`` (noise generators ``E G_W``).
        actions: ``(N, d)`` fixed actions, or ``None`` to minimise the margin over
            ``a in [-1, 1]^d`` (subject to the successor set's interval hull lying in ``box``).
        box: ``(low, high)`` of ``S``; only used when the actions are free.
        a0: centre of ``A`` (default 0).

    Returns:
        ``(margins (N,), actions (N, d))``; margin ``inf`` if no admissible action exists.
    """
    N, n, d = B.shape
    a0 = np.zeros(d) if a0 is None else a0
    margins = np.full(N, np.inf)
    acts = np.zeros((N, d)) if actions is None else np.array(actions, dtype=float)
    for start in range(0, N, _LP_CHUNK):
        idx = np.arange(start, min(N, start + _LP_CHUNK))
        res = _margin_lp(f0[idx], B[idx], EG[idx], S_c, S_G,
                         None if actions is None else acts[idx], box, a0)
        if res is None and len(idx) > 1:  # some block infeasible: solve one by one
            for i in idx:
                one = _margin_lp(f0[[i]], B[[i]], EG[[i]], S_c, S_G,
                                 None if actions is None else acts[[i]], box, a0)
                if one is not None:
                    margins[i], acts[i] = one[0][0], one[1][0]
        elif res is not None:
            margins[idx], acts[idx] = res
    return margins, acts


def _margin_lp(f0, B, EG, S_c, S_G, actions, box, a0):
    """One block-diagonal LP (see :func:`next_state_margins`); ``None`` if infeasible.

    Per state the variables are ``[X+, X-, t, a]`` with ``X = [Gamma, beta] = X+ - X-``
    (``m x (p + 1)``, column-major), the Eq 6 constraints ``G_S Gamma = E G_W``,
    ``G_S beta + B a = c_S - f0 + B a0``, row sums of ``X+ + X-`` at most ``t``, and (free
    actions only) ``a in [-1, 1]^d`` with the successor set's interval hull in ``box``.
    """
    k, n, d = B.shape
    m = S_G.shape[1]
    p = EG.shape[2]
    q = p + 1
    free = actions is None
    nx = m * q
    nv = 2 * nx + 1 + (d if free else 0)
    Gk = sp.kron(sp.identity(q, format="csr"), sp.csr_matrix(S_G), format="csr")  # (n q, nx)
    rows_sum = sp.kron(sp.csr_matrix(np.ones((1, q))), sp.identity(m), format="csr")  # (m, nx)
    eq_blocks, ub_blocks, b_eq, b_ub = [], [], [], []
    for i in range(k):
        eq = [Gk, -Gk, sp.csr_matrix((n * q, 1))]
        rhs_beta = S_c - f0[i] + B[i] @ a0
        if free:
            a_cols = np.zeros((n * q, d))
            a_cols[n * p:, :] = B[i]
            eq.append(sp.csr_matrix(a_cols))
        else:
            rhs_beta = rhs_beta - B[i] @ actions[i]
        eq_blocks.append(sp.hstack(eq, format="csr"))
        b_eq.append(np.concatenate([EG[i].reshape(-1, order="F"), rhs_beta]))
        ub = [rows_sum, rows_sum, -sp.csr_matrix(np.ones((m, 1)))]
        if free:
            ub.append(sp.csr_matrix((m, d)))
        rows = [sp.hstack(ub, format="csr")]
        rhs = [np.zeros(m)]
        if free and box is not None:
            low, high = box
            radius = np.abs(EG[i]).sum(axis=1)
            centre0 = f0[i] - B[i] @ a0
            zero = sp.csr_matrix((n, 2 * nx + 1))
            rows += [sp.hstack([zero, sp.csr_matrix(B[i])], format="csr"),
                     sp.hstack([zero, sp.csr_matrix(-B[i])], format="csr")]
            rhs += [high - radius - centre0, -(low + radius - centre0)]
        ub_blocks.append(sp.vstack(rows, format="csr"))
        b_ub.append(np.concatenate(rhs))
    a_eq = sp.block_diag(eq_blocks, format="csr")
    a_ub = sp.block_diag(ub_blocks, format="csr")
    cost = np.tile(np.concatenate([np.zeros(2 * nx), [1.0], np.zeros(d if free else 0)]), k)
    bounds = ([(0.0, None)] * (2 * nx + 1) + ([(-1.0, 1.0)] * d if free else [])) * k
    res = linprog(cost, A_ub=a_ub, b_ub=np.concatenate(b_ub), A_eq=a_eq,
                  b_eq=np.concatenate(b_eq), bounds=bounds, method="highs")
    if res.status == 2:
        return None
    if res.status != 0:
        raise RuntimeError(f"verification LP failed (HiGHS status {res.status}: {res.message})")
    x = res.x.reshape(k, nv)
    margins = np.maximum(x[:, 2 * nx], 0.0)
    acts = x[:, 2 * nx + 1:] if free else np.asarray(actions, dtype=float)
    return margins, acts


def _in_box(centres: np.ndarray, radius: np.ndarray, low: np.ndarray, high: np.ndarray,
            tol: float) -> np.ndarray:
    return np.all((centres + radius <= high + tol) & (centres - radius >= low - tol), axis=1)


# ------------------------------------------------------------------------------------------
# verification
# ------------------------------------------------------------------------------------------
def _resolve_reference(task: str, reference: Any) -> tuple[str | None, float | None]:
    if reference is None:
        return None, None
    if isinstance(reference, str) and reference == "auto":
        path = default_reference_path(task)
        if path is None:
            return None, None
        reference = path
    if isinstance(reference, SafeSet):
        ref = reference
        name = reference.source or "given reference set"
    else:
        ref = SafeSet.load(reference)
        name = str(reference)
    if ref.task != task:
        raise ValueError(f"reference set {name} is for task {ref.task!r}, not {task!r}")
    return name, ref.volume()


def verify_safe_set(
    safe_set: SafeSet,
    *,
    num_samples: int = 1000,
    seed: int = 0,
    reference: Any = "auto",
    tol: float = DEFAULT_TOLERANCE,
    max_vertices: int = 256,
) -> VerificationReport:
    """Verify ``safe_set`` on sampled states of ``S_s ∩ S`` (module docstring).

    Args:
        safe_set: the set to verify.
        num_samples: random states (plus the centre and up to ``max_vertices`` sign vertices).
        seed: seed of the ``numpy.random.Generator`` drawing the states.
        reference: a :class:`SafeSet`, a path, ``"auto"`` (the ``../shared`` reference of the
            task when present) or ``None``; used for ``volume_ratio = ours / reference``.
        tol: tolerance on margins and box checks.

    Returns:
        A :class:`VerificationReport`; call :meth:`~VerificationReport.raise_if_violated` to turn
        a failed verification into an exception.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if not isinstance(safe_set, SafeSet):
        raise ValueError(f"expected a SafeSet, got {type(safe_set).__name__}")
    model = safe_set.model
    rng = np.random.default_rng(seed)
    states = audit_states(safe_set, num_samples, rng, max_vertices)
    S_c, S_G = (a[0] for a in safe_set.state.numpy())
    low, high = (t.numpy() for t in model.state_bounds())
    w_low, w_high = (t.numpy() for t in model.noise_bounds())
    W_G = np.diag((w_high - w_low) / 2.0)
    w_c = (w_high + w_low) / 2.0
    f0, B, E = _linearise(model, states)
    if np.any(w_c != 0):
        f0 = f0 + np.einsum("knw,w->kn", E, w_c)
    EG = E @ W_G
    radius = np.abs(EG).sum(axis=2)
    N = len(states)

    if safe_set.action is not None:
        # the paired backup action is what the set certifies: it must work everywhere
        actions = safe_set.backup_action(torch.as_tensor(states), strict=False).numpy()
        actions = np.clip(actions, -1.0, 1.0)  # removes LP dust only (U_s ⊆ A is validated)
        margins, _ = next_state_margins(f0, B, EG, S_c, S_G, actions)
        centres = f0 + np.einsum("knd,kd->kn", B, actions)
        ok = (margins <= 1.0 + tol) & _in_box(centres, radius, low, high, tol)
        failed = np.flatnonzero(~ok)
        rescued = 0
        if failed.size:  # diagnose: does the state set admit another safe action there?
            lp_margins, lp_actions = next_state_margins(f0[failed], B[failed], EG[failed], S_c,
                                                        S_G, None, (low, high))
            lp_centres = f0[failed] + np.einsum("knd,kd->kn", B[failed], lp_actions)
            rescued = int(((lp_margins <= 1.0 + tol)
                           & _in_box(lp_centres, radius[failed], low, high, tol)).sum())
        backup_failures = int(failed.size)
    else:
        margins, actions = next_state_margins(f0, B, EG, S_c, S_G, None, (low, high))
        centres = f0 + np.einsum("knd,kd->kn", B, actions)
        ok = (margins <= 1.0 + tol) & _in_box(centres, radius, low, high, tol)
        backup_failures, rescued = 0, 0

    sim_bad = _simulate(model, states, actions, S_c, S_G, w_low, w_high, low, high, tol)
    violations = []
    for i in np.flatnonzero(~ok | sim_bad)[:_MAX_REPORTED_VIOLATIONS]:
        if not ok[i]:
            what = "backup action" if safe_set.action is not None else "best LP action"
            reason = ("no action in A keeps the successor set inside S"
                      + _out_of_box_detail(model, f0[i], B[i], radius[i], low, high)
                      if not math.isfinite(margins[i]) else
                      f"{what} {actions[i].round(6).tolist()}: successor set has Eq 6 margin "
                      f"{margins[i]:.6g} (> 1 means not inside S_s) or leaves S")
        else:
            reason = "a simulated successor state (noise vertex) leaves S_s or S"
        violations.append({"state": states[i].tolist(), "margin": float(margins[i]),
                           "reason": reason})
    ref_name, ref_volume = _resolve_reference(safe_set.task, reference)
    volume = safe_set.volume()
    num_violations = int((~ok | sim_bad).sum())
    return VerificationReport(
        task=safe_set.task,
        source=safe_set.source,
        verdict=num_violations == 0,
        num_states=N,
        num_violations=num_violations,
        worst_margin=float(margins.max()) if N else 0.0,
        num_backup_failures=backup_failures,
        num_lp_rescued=rescued,
        num_simulation_violations=int(sim_bad.sum()),
        volume=volume,
        feasible_excess=safe_set.feasible_excess.tolist(),
        reference=ref_name,
        reference_volume=ref_volume,
        volume_ratio=None if not ref_volume else volume / ref_volume,
        num_samples=num_samples,
        seed=seed,
        tolerance=tol,
        has_action_set=safe_set.action is not None,
        violations=violations,
        state_box_fraction=volume / float(np.prod(high - low)),
        certification=safe_set.certification,
    )


def _out_of_box_detail(model: TaskModel, f0: np.ndarray, B: np.ndarray, radius: np.ndarray,
                       low: np.ndarray, high: np.ndarray) -> str:
    """Names the coordinates that no action in ``A = [-1, 1]^d`` can keep inside ``S``, e.g.
    ``": t_in' spans [24.64, 24.85] over W whatever the action; S allows [18, 24]"`` (empty if
    only the combination of coordinates fails).

    Over ``a in A`` the successor centre's coordinate ``k`` spans ``f0_k +- |B_k| 1``
    (``a0 = 0``) and the noise adds ``+- radius_k``: coordinate ``k`` alone is infeasible iff no
    centre in that span keeps ``centre +- radius_k`` inside ``[low_k, high_k]``.
    """
    reach = np.abs(B).sum(axis=1)
    parts = []
    for k, name in enumerate(model.state_names):
        lo_c, hi_c = f0[k] - reach[k], f0[k] + reach[k]
        if hi_c < low[k] + radius[k] or lo_c > high[k] - radius[k] \
                or 2.0 * radius[k] > high[k] - low[k]:
            how = ("over W whatever the action" if reach[k] == 0 else
                   "over A and W, and no action keeps it inside")
            parts.append(f"{name}' spans [{lo_c - radius[k]:.6g}, {hi_c + radius[k]:.6g}] {how}; "
                         f"S allows [{low[k]:.6g}, {high[k]:.6g}]")
    return (": " + "; ".join(parts)) if parts else ""


def _simulate(model, states, actions, S_c, S_G, w_low, w_high, low, high, tol) -> np.ndarray:
    """``(N,)`` bool: some successor ``f(s, a, w)``, ``w`` a vertex of ``W``, leaves S_s or S."""
    n_w = len(w_low)
    corners = np.array(np.meshgrid(*[[0, 1]] * n_w, indexing="ij")).reshape(n_w, -1).T
    noise = w_low + corners * (w_high - w_low)  # (2^n_w, n_w)
    N, V = len(states), len(noise)
    x = torch.as_tensor(np.repeat(states, V, axis=0))
    a = torch.as_tensor(np.repeat(actions, V, axis=0))
    w = torch.as_tensor(np.tile(noise, (N, 1)))
    nxt = model.dynamics(x, a, w).numpy()
    gauge = np.abs(min_inf_norm_factors(S_G, nxt - S_c[None])).max(axis=1)
    bad = (gauge > 1.0 + tol) | np.any((nxt > high + tol) | (nxt < low - tol), axis=1)
    return bad.reshape(N, V).any(axis=1)
