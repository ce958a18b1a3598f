"""The safeguard contract (SPEC §3, §5): ``safe = g(action, state)``.

:class:`SafeguardProtocol` is the contract every safeguard follows (the built-in ones, a user's
``module:Class``, and whatever the spec audits): called with a batch of actions ``(N, d)`` and
the states ``(N, n)`` they are applied in -- passed explicitly by the caller (the algorithm, the
evaluation, :class:`~safegbpo.safeguards.SafeguardActionWrapper`, an audit), never read from
the environment behind its back -- it returns safe actions ``(N, d)`` and keeps the counters
below.  :class:`SafeguardEnv` is what a safeguard needs of the environment it is built for.

:class:`Safeguard` is the base class of the built-in safeguards.  For every call it

1. linearises the dynamics at **each** given state (``env.linearise(state)``, Eq 12) -- every
   state-dependent set and matrix is per row;
2. map the actions (:meth:`Safeguard._map`, implemented by boundary projection and ray mask),
   differentiably (autograd w.r.t. the action and, through the linearisation, the state);
3. certify every output independently against *all* rows of the safe action set (backend
   ``'exact'``: :meth:`~safegbpo.safeguards.polytope.ExactActionSet.certify`; backend
   ``'cvxpylayers'``: :func:`~safegbpo.safeguards.certify.certify_actions`);
4. fail-safe: rows whose solve failed / was infeasible / non-finite, or whose output fails the
   certification, get the certified backup action of the safe set
   (``env.safe_set.backup_action(state)``, SPEC §7); they are counted in :attr:`fallbacks` and
   the first such event of an instance is reported with :func:`warnings.warn` (with the states).

Environment protocol (:class:`SafeguardEnv`; :class:`~safegbpo.envs.SafeVectorEnv` satisfies
it): ``linearise(state) -> (f0 (N, n), B (N, n, d), E (N, n, n_w))``, ``action_box`` and
``noise_box`` (batch-1 :class:`~safegbpo.sets.Zonotope`), and ``safe_set`` with ``state``
(``S_s``), ``action`` (``U_s`` or ``None``) and ``backup_action(states)``.  Gymnasium wrappers
are unwrapped (``env.unwrapped``).

Backends (``backend=``):

* ``'exact'`` (default, SPEC §11) — the *exact* safe action set ``{x in A ∩ U_s : y(x) + W_s ⊆
  S_s}`` as a polytope per state from the H-representation of ``S_s``
  (:mod:`~safegbpo.safeguards.polytope`), batched closed-form / active-set solvers with
  autograd on the active rows (:mod:`~safegbpo.safeguards.exact`); default ``margin = 0``,
  ``tol = 1e-9`` (normalised violation of every row).
* ``'cvxpylayers'`` — the paper-faithful path: Eq 6 containment (only sufficient: its safe set
  is a subset of the exact one) in cvxpylayers/diffcp/Clarabel programs
  (:mod:`~safegbpo.safeguards.problems`); default ``margin = 1e-6``, ``tol = 1e-7``.

Inputs: NaN/inf actions raise :class:`ValueError` (never an unsafe output); actions outside
``A`` are valid input and are mapped into the safe set like any other.

Passthrough (``passthrough=True``, "RM Passthrough Gradient" of SPEC §5): the forward pass is
the safeguard, the backward pass w.r.t. the action is the identity (straight-through,
``g(a) + a - stopgrad(a)``); the gradient w.r.t. the state through ``g`` is kept.
"""

from __future__ import annotations

import abc
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from safegbpo.safeguards.action_set import DEFAULT_MARGIN, ActionSetData, ActionSetStructure
from safegbpo.safeguards.certify import (
    CERTIFICATION_METHODS,
    DEFAULT_TOL,
    Certificate,
    certify_actions,
)
from safegbpo.safeguards.polytope import EXACT_MARGIN, EXACT_TOL, ExactActionSet

if TYPE_CHECKING:
    from safegbpo.envs.base import Linearisation
    from safegbpo.safesets import SafeSet
    from safegbpo.sets import Zonotope

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "INTERVENTION_THRESHOLD", "PAPER_BACKEND", "Safeguard",
           "SafeguardEnv", "SafeguardProtocol", "validate_action"]

#: Names of the safeguard backends (module docstring).
BACKENDS = ("exact", "cvxpylayers")
#: The default backend.
DEFAULT_BACKEND = "exact"
#: The backend that implements the paper's own programs (Eq 6 through cvxpylayers): what the
#: paper's wall-clock figures (Table 6) are compared with.
PAPER_BACKEND = "cvxpylayers"

#: An env-step is an intervention when ``||g(a) - a|| > INTERVENTION_THRESHOLD`` (SPEC §5).
INTERVENTION_THRESHOLD = 1e-6


class SafeguardEnv(Protocol):
    """What a safeguard reads from the environment it is built for (never its states: those
    are passed to every call)."""

    @property
    def safe_set(self) -> SafeSet: ...

    @property
    def action_box(self) -> Zonotope: ...

    @property
    def noise_box(self) -> Zonotope: ...

    def linearise(self, state: Tensor | None = None) -> Linearisation: ...


@runtime_checkable
class SafeguardProtocol(Protocol):
    """The safeguard contract (module docstring): ``safe (N, d) = g(action (N, d), state
    (N, n))``, differentiable, never unsafe (NaN/inf actions raise ``ValueError``), with the
    counters of SPEC §5.

    Attributes:
        interventions: env-steps with ``||g(a) - a|| > 1e-6`` so far.
        fallbacks: env-steps that returned the safe set's backup action.
        last_safe_action: ``(N, d)`` output of the last call (detached), ``None`` before.
        last_intervened, last_fallback: ``(N,)`` bool masks of the last call.
    """

    interventions: int
    fallbacks: int
    last_safe_action: Tensor | None
    last_intervened: Tensor | None
    last_fallback: Tensor | None

    def __call__(self, action: Tensor, state: Tensor) -> Tensor: ...


def _base_env(env: Any) -> Any:
    """The innermost environment (gymnasium wrappers expose it as ``unwrapped``)."""
    return getattr(env, "unwrapped", env)


def validate_action(action: Any, batch: int, dim: int, *, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> Tensor:
    """``action`` as a finite ``(batch, dim)`` tensor (graph kept); clear ``ValueError`` else."""
    if not isinstance(action, Tensor):
        try:
            action = torch.as_tensor(np.asarray(action, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"action must be a tensor or an array of numbers: {err}") from None
    if action.is_complex() or action.dtype == torch.bool:
        raise ValueError(f"action must be real-valued, got dtype {action.dtype}")
    action = action.to(dtype=dtype, device=device)
    if tuple(action.shape) != (batch, dim):
        raise ValueError(f"action must have shape ({batch}, {dim}) (num_envs, action_dim), got "
                         f"{tuple(action.shape)}")
    finite = torch.isfinite(action.detach()).all(-1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        raise ValueError(f"action contains NaN/inf (rows {bad}); a safeguard never maps a "
                         "non-finite action")
    return action


class Safeguard(abc.ABC):
    """Base class of the differentiable safeguards (module docstring).

    Args:
        env: the vector environment (see the environment protocol above).
        backend: ``'exact'`` (default) or ``'cvxpylayers'`` (module docstring).
        passthrough: straight-through gradient w.r.t. the action (module docstring).
        margin: tightening of the safeguard's set (default per backend: ``0`` exact, ``1e-6``
            cvxpylayers; :mod:`~safegbpo.safeguards.polytope`,
            :mod:`~safegbpo.safeguards.action_set`).
        tol: tolerance of the independent certification (default per backend: ``1e-9``
            exact, ``1e-7`` cvxpylayers).
        solver_args: diffcp options overriding
            :data:`~safegbpo.safeguards.problems.DEFAULT_SOLVER_ARGS` (cvxpylayers only).
        certification: cvxpylayers only: ``'certificate'`` (default; check the programs'
            Eq 5/6 certificates exactly, LPs for the rest) or ``'lp'`` (HiGHS LPs for every
            row); see :mod:`~safegbpo.safeguards.certify`.  The exact backend always checks
            all rows of the H-representation (``None`` or ``'hrep'``).

    Attributes:
        interventions: number of env-steps with ``||g(a) - a|| > 1e-6`` since the last
            :meth:`reset_counters` (SPEC §5).
        fallbacks: number of env-steps that returned the safe set's backup action.
        steps: number of env-steps processed (``calls x N``).
        last_safe_action: ``(N, d)`` output of the last call (detached), ``None`` before.
        last_intervened, last_fallback: ``(N,)`` bool masks of the last call.
    """

    #: registry name (``make_safeguard``).
    name: ClassVar[str] = ""

    def __init__(
        self,
        env: Any,
        *,
        backend: str = DEFAULT_BACKEND,
        passthrough: bool = False,
        margin: float | None = None,
        tol: float | None = None,
        solver_args: dict[str, Any] | None = None,
        certification: str | None = None,
    ) -> None:
        self.env = _base_env(env)
        safe_set = getattr(self.env, "safe_set", None)
        if safe_set is None or not callable(getattr(safe_set, "backup_action", None)):
            raise ValueError(f"{type(self).__name__} needs an env with a safe_set providing "
                             "backup_action(states) (the fail-safe of SPEC §3)")
        if not isinstance(passthrough, bool):
            raise ValueError(f"passthrough must be a bool, got {passthrough!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        exact = backend == "exact"
        if exact:
            if certification not in (None, "hrep"):
                raise ValueError(f"certification {certification!r} only applies to "
                                 "backend='cvxpylayers'; the exact backend always checks every "
                                 "row of the H-representation ('hrep')")
            if solver_args:
                raise ValueError("solver_args only apply to backend='cvxpylayers'")
            certification = "hrep"
        elif certification is None:
            certification = "certificate"
        elif certification not in CERTIFICATION_METHODS:
            raise ValueError(f"certification must be one of {CERTIFICATION_METHODS}, got "
                             f"{certification!r}")
        if margin is None:
            margin = EXACT_MARGIN if exact else DEFAULT_MARGIN
        tol = (EXACT_TOL if exact else DEFAULT_TOL) if tol is None else float(tol)
        if not 0.0 <= tol < 1e-3:
            raise ValueError(f"tol must lie in [0, 1e-3), got {tol!r}")
        self.backend = backend
        self.structure = ActionSetStructure.from_env(self.env, margin)
        self.exact: ExactActionSet | None = (
            ExactActionSet.from_env(self.env, self.structure) if exact else None)
        self.passthrough = passthrough
        self.tol = tol
        self.certification = certification
        self.solver_args = dict(solver_args or {})
        self._warned = False
        self._failure: str | None = None
        self.reset_counters()

    # -- counters ----------------------------------------------------------------------------
    def reset_counters(self) -> None:
        """Zero :attr:`interventions`, :attr:`fallbacks`, :attr:`steps`; forget the last call."""
        self.interventions = 0
        self.fallbacks = 0
        self.steps = 0
        self.last_safe_action: Tensor | None = None
        self.last_intervened: Tensor | None = None
        self.last_fallback: Tensor | None = None

    # -- the map -----------------------------------------------------------------------------
    @abc.abstractmethod
    def _map(self, action: Tensor,
             data: ActionSetData) -> tuple[Tensor, Tensor, Certificate | None]:
        """Map ``action (N, d)`` for the set ``data``.

        Returns ``(candidate (N, d), solved (N,), certificate)``: ``candidate`` must be finite
        in every row (put a placeholder in unsolved rows; those are replaced by the backup
        action); ``certificate`` holds candidate Eq 5/6 certificates of the candidates
        (:class:`~safegbpo.safeguards.certify.Certificate`, ``None`` if unavailable).
        """

    def action_set_data(self, state: Tensor) -> ActionSetData:
        """Linearisation of every row of ``state`` (Eq 12) as :class:`ActionSetData`."""
        if not self.structure.has_induced:
            return ActionSetData.explicit_only(state.shape[0])
        f0, B, E = self.env.linearise(state)
        return ActionSetData.from_linearisation(self.structure, f0, B, E)

    def __call__(self, action: Any, state: Tensor) -> Tensor:
        """Safe actions ``(N, d)`` for ``action (N, d)`` in the states ``state (N, n)``.

        Args:
            action: ``(N, d)`` tensor (numpy accepted); NaN/inf raise ``ValueError``.
            state: the ``(N, n)`` states the actions are applied in (e.g. ``env.state``);
                differentiable through the linearisation.
        """
        if not isinstance(state, Tensor) or state.ndim != 2:
            shape = getattr(state, "shape", state)
            raise ValueError(f"state must be an (N, n) tensor, got {shape}")
        action = validate_action(action, state.shape[0], self.structure.action_dim,
                                 dtype=state.dtype, device=state.device)
        data = self.action_set_data(state)
        mapped_input = action.detach() if self.passthrough else action
        try:
            candidate, solved, certificate = self._map(mapped_input, data)
        except (ArithmeticError, RuntimeError, np.linalg.LinAlgError) as err:
            # a solver failure never escapes as an unsafe action: every row falls back
            self._failure = f"{type(err).__name__}: {err}"
            candidate = action.detach().clone()
            solved = torch.zeros(action.shape[0], dtype=torch.bool, device=action.device)
            certificate = None
        certified = self.certify(candidate, data, rows=solved, certificate=certificate)
        fallback = ~certified
        if bool(fallback.any()):
            safe = self._fall_back(candidate, fallback, state, data)
        else:
            safe = candidate
        if self.passthrough:
            safe = safe + (action - action.detach())
        self._record(action, safe, fallback)
        return safe

    def certify(self, actions: Tensor, data: ActionSetData, rows: Tensor | None = None,
                certificate: Certificate | None = None) -> Tensor:
        """``(N,)`` bool: which rows of ``actions`` provably lie in ``A ∩ A_s(s)`` (the
        backend's independent check against all rows; see the module docstring)."""
        if self.exact is not None:
            return self.exact.certify(actions, data, self.tol, rows=rows)
        return certify_actions(actions, self.structure, data, self.tol, rows=rows,
                               certificate=certificate, method=self.certification)

    # -- internals ---------------------------------------------------------------------------
    def _fall_back(self, candidate: Tensor, fallback: Tensor, state: Tensor,
                   data: ActionSetData) -> Tensor:
        backup, exact = self._backup_action(state)
        backup = backup.to(dtype=candidate.dtype, device=candidate.device)
        if tuple(backup.shape) != tuple(candidate.shape):
            raise ValueError(f"safe_set.backup_action returned shape {tuple(backup.shape)}, "
                             f"expected {tuple(candidate.shape)}")
        rows = torch.nonzero(fallback).flatten()
        if not self._warned:
            self._warned = True
            backup_ok = self.certify(backup, data, rows=fallback)
            uncertified = [int(i) for i in rows if not bool(backup_ok[i])]
            note = ("" if not uncertified and exact else
                    f" WARNING: the backup action itself is not certified for rows {uncertified}"
                    " (state outside the safe state set?).")
            failure = "" if self._failure is None else f" ({self._failure})"
            warnings.warn(
                f"{type(self).__name__}: solver failure{failure} or uncertified output for env "
                f"rows {rows.tolist()} at states {state.detach()[rows].cpu().tolist()}; returning "
                f"the safe set's backup action (counted in .fallbacks; further fallbacks of this "
                f"instance are counted silently).{note}",
                RuntimeWarning,
                stacklevel=3,
            )
        return torch.where(fallback.unsqueeze(-1), backup, candidate)

    def _backup_action(self, state: Tensor) -> tuple[Tensor, bool]:
        """``(backup (N, d), exact)``: the safe set's backup actions.  For states outside the
        safe state set (no certified backup exists) the non-strict factor is used and the
        result is clipped to ``A``; ``exact`` is then ``False``."""
        safe_set = self.env.safe_set
        try:
            return safe_set.backup_action(state.detach()), True
        except ValueError:
            backup = safe_set.backup_action(state.detach(), strict=False)
            low = self.structure.tensor("box_low", backup)
            high = self.structure.tensor("box_high", backup)
            backup = torch.nan_to_num(backup, nan=0.0, posinf=0.0, neginf=0.0)
            return torch.clamp(backup, low, high), False

    def _record(self, action: Tensor, safe: Tensor, fallback: Tensor) -> None:
        with torch.no_grad():
            distance = torch.linalg.vector_norm(safe.detach() - action.detach(), dim=-1)
            intervened = distance > INTERVENTION_THRESHOLD
        self.interventions += int(intervened.sum())
        self.fallbacks += int(fallback.sum())
        self.steps += int(action.shape[0])
        self.last_safe_action = safe.detach()
        self.last_intervened = intervened
        self.last_fallback = fallback

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(backend={self.backend!r}, "
                f"passthrough={self.passthrough}, margin={self.structure.margin}, "
                f"tol={self.tol})")
