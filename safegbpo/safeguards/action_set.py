"""The safe action set ``A ∩ A_s(s)`` a safeguard maps into (SPEC §2, §6).

A safeguard of this package works on

``A ∩ A_s(s) = { a in A ∩ U_s : <f0 + B (a - a0), E G_W> ⊆ S_s }``

with ``A = [low, high]`` the feasible action box (``a0`` its centre), ``U_s = <c_U, G_U>`` an
optional *explicit* safe action zonotope and ``S_s = <c_S, G_S>`` an optional safe state zonotope
that *induces* safe actions through the control/noise-affine dynamics of Eq 12 (next-state set of
Eq 13–14, containment by Eq 6).  At least one of ``U_s`` and ``S_s`` is present.

The set splits into two parts:

* :class:`ActionSetStructure` — everything fixed for a safeguard instance (box, ``U_s``, ``S_s``,
  ``G_W``, the tightening margin).  The cvxpy problems are built once from it
  (:mod:`safegbpo.safeguards.problems`); ``U_s`` and ``S_s`` are *constants* of those problems.
* :class:`ActionSetData` — the state-dependent part for a batch of ``N`` states: the
  linearisation ``f0 (N, n)``, ``B (N, n, d)``, ``E (N, n, n_w)`` of Eq 12, taken at *each*
  state separately (never one state's linearisation for the whole batch).  These tensors keep
  the autograd graph of the states, so the safeguard is differentiable w.r.t. the state too.

Constraint tightening (documented decision).  Interior-point solutions satisfy their constraints
only up to ``~1e-8``.  To keep such tiny violations from failing the independent certification
(:mod:`safegbpo.safeguards.certify`) and triggering fallbacks, the problems use a set shrunk by
``margin`` (default ``1e-6``): box ``[low + margin, high - margin]``, ``||b||_inf <= 1 - margin``
for ``U_s`` and row sums ``<= 1 - margin`` in Eq 6.  The outputs are therefore safe with a margin
for the *exact* set; the price is that actions within ``~1e-6`` of the boundary count as unsafe.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["DEFAULT_MARGIN", "ActionSetStructure", "ActionSetData"]

#: Default tightening of every constraint of the safeguards' problems (see module docstring).
DEFAULT_MARGIN = 1e-6


def _array(x: Any, name: str, ndim: int) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN/inf")
    return arr


def _unbatch(zonotope: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(center (n,), generators (n, m))`` of a batch-1 :class:`~safegbpo.sets.Zonotope`."""
    center, generators = zonotope.center, zonotope.generators
    if center.shape[0] != 1:
        raise ValueError(f"{name} must be a single zonotope (batch 1), got batch {center.shape[0]}")
    return _array(center[0], f"{name}.center", 1), _array(generators[0], f"{name}.generators", 2)


@dataclass(frozen=True, eq=False)
class ActionSetStructure:
    """The instance-constant part of ``A ∩ A_s(s)`` (see the module docstring).

    Attributes:
        box_low, box_high: feasible action box ``A`` ``(d,)`` (``low < high``).
        explicit_center, explicit_generators: ``U_s = <c_U (d,), G_U (d, m_U)>`` or ``None``.
        safe_center, safe_generators: ``S_s = <c_S (n,), G_S (n, m_S)>`` or ``None``.
        noise_generators: ``G_W (n_w, p)`` of the noise box ``W`` (required with ``S_s``).
        margin: constraint tightening of the problems, ``0 <= margin < 1e-2``.
    """

    box_low: np.ndarray
    box_high: np.ndarray
    explicit_center: np.ndarray | None = None
    explicit_generators: np.ndarray | None = None
    safe_center: np.ndarray | None = None
    safe_generators: np.ndarray | None = None
    noise_generators: np.ndarray | None = None
    margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        low = _array(self.box_low, "box_low", 1)
        high = _array(self.box_high, "box_high", 1)
        if low.shape != high.shape or low.size == 0 or not np.all(low < high):
            raise ValueError(f"the action box needs low < high of equal shape (d,), got {low}, "
                             f"{high}")
        object.__setattr__(self, "box_low", low)
        object.__setattr__(self, "box_high", high)
        d = low.size
        if (self.explicit_center is None) != (self.explicit_generators is None):
            raise ValueError("give both explicit_center and explicit_generators, or neither")
        if self.explicit_center is not None:
            c = _array(self.explicit_center, "explicit_center", 1)
            G = _array(self.explicit_generators, "explicit_generators", 2)
            if c.shape != (d,) or G.shape[0] != d or G.shape[1] == 0:
                raise ValueError(f"U_s must be <c (d,), G (d, m)> with d = {d}, m >= 1; got "
                                 f"{c.shape}, {G.shape}")
            object.__setattr__(self, "explicit_center", c)
            object.__setattr__(self, "explicit_generators", G)
        if (self.safe_center is None) != (self.safe_generators is None):
            raise ValueError("give both safe_center and safe_generators, or neither")
        if self.safe_center is not None:
            c = _array(self.safe_center, "safe_center", 1)
            G = _array(self.safe_generators, "safe_generators", 2)
            if G.shape[0] != c.size or G.shape[1] == 0:
                raise ValueError(f"S_s must be <c (n,), G (n, m)> with m >= 1; got {c.shape}, "
                                 f"{G.shape}")
            if self.noise_generators is None:
                raise ValueError("an induced safe set S_s needs the noise generators G_W")
            W = _array(self.noise_generators, "noise_generators", 2)
            object.__setattr__(self, "safe_center", c)
            object.__setattr__(self, "safe_generators", G)
            object.__setattr__(self, "noise_generators", W)
        if self.explicit_center is None and self.safe_center is None:
            raise ValueError("the safe action set needs an explicit zonotope U_s, an induced safe "
                             "state zonotope S_s, or both")
        margin = float(self.margin)
        if not 0.0 <= margin < 1e-2:
            raise ValueError(f"margin must lie in [0, 1e-2), got {self.margin!r}")
        object.__setattr__(self, "margin", margin)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Any, margin: float = DEFAULT_MARGIN) -> ActionSetStructure:
        """Structure of a :class:`~safegbpo.envs.SafeVectorEnv` (duck-typed, see
        :class:`~safegbpo.safeguards.protocol.Safeguard`): ``A`` from ``env.action_box``,
        ``S_s`` from ``env.safe_set.state``, ``U_s`` from ``env.safe_set.action`` (if any),
        ``G_W`` from ``env.noise_box``."""
        low, high = env.action_box.interval_hull()
        safe_set = env.safe_set
        c_S, G_S = _unbatch(safe_set.state, "safe_set.state")
        explicit = getattr(safe_set, "action", None)
        c_U, G_U = _unbatch(explicit, "safe_set.action") if explicit is not None else (None, None)
        _, G_W = _unbatch(env.noise_box, "noise_box")
        return cls(
            box_low=_array(low[0], "action_box low", 1),
            box_high=_array(high[0], "action_box high", 1),
            explicit_center=c_U,
            explicit_generators=G_U,
            safe_center=c_S,
            safe_generators=G_S,
            noise_generators=G_W,
            margin=margin,
        )

    # -- properties ---------------------------------------------------------------------------
    @property
    def action_dim(self) -> int:
        return int(self.box_low.size)

    @property
    def state_dim(self) -> int | None:
        return None if self.safe_center is None else int(self.safe_center.size)

    @property
    def has_explicit(self) -> bool:
        return self.explicit_center is not None

    @property
    def has_induced(self) -> bool:
        return self.safe_center is not None

    @property
    def explicit_set(self) -> tuple[np.ndarray, np.ndarray]:
        """``(c_U (d,), G_U (d, m_U))``; ``ValueError`` when there is no explicit ``U_s``."""
        if self.explicit_center is None or self.explicit_generators is None:
            raise ValueError("the safe action set has no explicit zonotope U_s")
        return self.explicit_center, self.explicit_generators

    @property
    def induced_set(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(c_S (n,), G_S (n, m_S), G_W (n_w, p))``; ``ValueError`` when there is no
        induced ``S_s``."""
        if self.safe_center is None or self.safe_generators is None \
                or self.noise_generators is None:
            raise ValueError("the safe action set has no induced safe state zonotope S_s")
        return self.safe_center, self.safe_generators, self.noise_generators

    @property
    def box_center(self) -> np.ndarray:
        """``a0``, the centre of ``A`` (Eq 12)."""
        return 0.5 * (self.box_low + self.box_high)

    @cached_property
    def explicit_pinv(self) -> np.ndarray:
        """``G_U^+`` ``(m_U, d)`` (certificate correction, :mod:`~safegbpo.safeguards.certify`)."""
        return np.linalg.pinv(self.explicit_set[1])

    @cached_property
    def safe_pinv(self) -> np.ndarray:
        """``G_S^+`` ``(m_S, n)``."""
        return np.linalg.pinv(self.induced_set[1])

    def tensor(self, name: str, like: Tensor) -> Tensor:
        """Attribute ``name`` as a tensor with ``like``'s dtype and device."""
        return torch.as_tensor(getattr(self, name), dtype=like.dtype, device=like.device)

    def cached_tensor(self, name: str, like: Tensor) -> Tensor:
        """:meth:`tensor`, memoised per (name, dtype, device) (the structure is immutable)."""
        cache: dict[tuple[str, torch.dtype, torch.device], Tensor] = \
            self.__dict__.setdefault("_tensor_cache", {})
        key = (name, like.dtype, like.device)
        if key not in cache:
            cache[key] = self.tensor(name, like)
        return cache[key]


@dataclass(frozen=True)
class ActionSetData:
    """State-dependent part of ``A_s(s)`` for a batch of ``N`` states (Eq 12–14).

    Attributes:
        f0: ``f(s, a0, w0)`` ``(N, n)`` or ``None`` (explicit-only sets).
        B: ``df/da`` ``(N, n, d)`` or ``None``.
        E: ``df/dw`` ``(N, n, n_w)`` or ``None``.
        noise_generators: ``E G_W`` ``(N, n, p)`` or ``None``.
        batch: ``N``.
    """

    f0: Tensor | None
    B: Tensor | None
    E: Tensor | None
    noise_generators: Tensor | None
    batch: int

    @classmethod
    def from_linearisation(
        cls, structure: ActionSetStructure, f0: Tensor, B: Tensor, E: Tensor
    ) -> ActionSetData:
        """Validate shapes/finiteness against ``structure`` and precompute ``E G_W``."""
        _, G_S, noise = structure.induced_set  # (ValueError without an induced safe set)
        n, d = G_S.shape[0], structure.action_dim
        n_w = noise.shape[0]
        if f0.ndim != 2 or f0.shape[1] != n:
            raise ValueError(f"f0 must have shape (N, {n}), got {tuple(f0.shape)}")
        N = f0.shape[0]
        if tuple(B.shape) != (N, n, d):
            raise ValueError(f"B must have shape ({N}, {n}, {d}), got {tuple(B.shape)}")
        if tuple(E.shape) != (N, n, n_w):
            raise ValueError(f"E must have shape ({N}, {n}, {n_w}), got {tuple(E.shape)}")
        finite = torch.stack([torch.isfinite(x.detach()).all() for x in (f0, B, E)])
        if not bool(finite.all()):
            name = ("f0", "B", "E")[int((~finite).nonzero()[0])]
            raise ValueError(f"the linearisation {name} contains NaN/inf")
        G_W = structure.cached_tensor("noise_generators", E)
        return cls(f0=f0, B=B, E=E, noise_generators=E @ G_W, batch=N)

    @classmethod
    def explicit_only(cls, batch: int) -> ActionSetData:
        return cls(f0=None, B=None, E=None, noise_generators=None, batch=batch)

    @property
    def linearisation(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(f0, B, E, E G_W)``; ``ValueError`` for the data of an explicit-only set."""
        if self.f0 is None or self.B is None or self.E is None or self.noise_generators is None:
            raise ValueError("no linearisation: the safe action set has no induced part")
        return self.f0, self.B, self.E, self.noise_generators

    def next_state_center(self, structure: ActionSetStructure, action: Tensor) -> Tensor:
        """``f0 + B (a - a0)`` ``(N, n)``: centre of the next-state set of Eq 13–14."""
        f0, B, _, _ = self.linearisation
        a0 = structure.tensor("box_center", action)
        return f0 + (B @ (action - a0).unsqueeze(-1)).squeeze(-1)

    def subset(self, rows: Tensor) -> ActionSetData:
        """The data of the rows ``rows`` (index tensor or boolean mask)."""
        def pick(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[rows]

        f0 = pick(self.f0)
        batch = int(rows.sum()) if rows.dtype == torch.bool else int(rows.numel())
        return ActionSetData(f0=f0, B=pick(self.B), E=pick(self.E),
                             noise_generators=pick(self.noise_generators), batch=batch)
