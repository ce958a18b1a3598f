"""Deliberately broken safeguards (and one broken wrapper) that the spec must reject.

Importable as ``broken_safeguards:Class`` (``tests/spec`` is on ``sys.path`` under pytest) for
``make_safeguard`` / ``safegbpo audit --safeguard``.  Each follows the safeguard protocol
(``Class(env, **options)``, ``__call__(action (N, d), state (N, n))``, counters
``interventions``/``fallbacks``, ``last_safe_action``) and carries one realistic bug:

* :class:`BoxClip` — clips to the feasible box ``A`` only (ignores ``A_s(s)``): **P1**;
* :class:`RawAction` — returns the raw action: **P1**;
* :class:`InvertedRayMask` — ray mask with the mapping ``c + v lam_a / lam_S`` (ratio inverted,
  ``lam_A`` dropped) and no certification: **P1**;
* :class:`FirstEnvLinearisation` — boundary projection that linearises every env at the first
  env's state (its own certification is fooled the same way): **P1**;
* :class:`NaNGradientProjection` — correct boundary projection whose backward pass returns NaN:
  **P2**;
* :class:`RawActionWrapper` — a ``SafeguardActionWrapper`` that computes the safe action but
  steps the env with the raw one: **P1** on the training path only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from safegbpo.safeguards import BoundaryProjection, RayMask, SafeguardActionWrapper
from safegbpo.safeguards.protocol import INTERVENTION_THRESHOLD, validate_action


class _Minimal:
    """Protocol plumbing shared by the hand-written broken safeguards."""

    def __init__(self, env: Any, **options: Any) -> None:
        if options:
            raise TypeError(f"unexpected options {sorted(options)}")
        self.env = getattr(env, "unwrapped", env)
        self.interventions = 0
        self.fallbacks = 0
        self.last_safe_action: Tensor | None = None
        self.last_intervened: Tensor | None = None
        self.last_fallback: Tensor | None = None

    def _validate(self, action: Any, state: Tensor) -> Tensor:
        return validate_action(action, state.shape[0], self.env.model.action_dim,
                               dtype=state.dtype, device=state.device)

    def _record(self, action: Tensor, safe: Tensor) -> Tensor:
        moved = (safe.detach() - action.detach()).norm(dim=-1) > INTERVENTION_THRESHOLD
        self.interventions += int(moved.sum())
        self.last_safe_action = safe.detach()
        self.last_intervened = moved
        self.last_fallback = torch.zeros_like(moved)
        return safe


class BoxClip(_Minimal):
    """Bug: clips to ``A = [-1, 1]^d`` and nothing else."""

    def __call__(self, action: Any, state: Tensor) -> Tensor:
        action = self._validate(action, state)
        return self._record(action, action.clamp(-1.0, 1.0))


class RawAction(_Minimal):
    """Bug: the identity (a 'safeguard' that forgot to safeguard)."""

    def __call__(self, action: Any, state: Tensor) -> Tensor:
        action = self._validate(action, state)
        return self._record(action, action)


class InvertedRayMask(RayMask):
    """Bug: ``g(a) = c_s + v lam_a / lam_S`` (instead of ``c_s + v lam_a lam_S / lam_A``),
    returned without the independent certification of the built-in ray mask."""

    def __call__(self, action: Any, state: Tensor) -> Tensor:
        action = validate_action(action, state.shape[0], self.structure.action_dim,
                                 dtype=state.dtype, device=state.device)
        data = self.action_set_data(state)
        geometry = self.centre.geometry(action, data)
        delta = action - geometry.centre  # = v * lam_a
        safe = geometry.centre + delta / geometry.lam_S.clamp_min(1e-9).unsqueeze(-1)
        none = torch.zeros(action.shape[0], dtype=torch.bool)
        self._record(action, safe, none, none)
        return safe


class FirstEnvLinearisation(BoundaryProjection):
    """Bug: every env's safe set is built from the linearisation at env 0's state."""

    def action_set_data(self, state: Tensor):
        return super().action_set_data(state[:1].expand_as(state))


class _NaNBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        return torch.full_like(grad, float("nan"))


class NaNGradientProjection(BoundaryProjection):
    """Bug: the forward pass is the correct projection, the backward pass is NaN."""

    def __call__(self, action: Any, state: Tensor) -> Tensor:
        return _NaNBackward.apply(super().__call__(action, state))


class RawActionWrapper(SafeguardActionWrapper):
    """Bug in the training path: the safe action is computed (and logged), the raw one applied."""

    def step(self, actions: Any):
        self.safeguard(actions, self.env.unwrapped.state)
        return self.env.step(actions)
