"""Regularisation of the safeguard's mapping distance (SPEC §4, paper Eq 45).

``L_reg = lambda_reg * mean ||a - g(a, s)||^2`` is added to the policy loss.  Its gradient
``2 lambda_reg (a - g(a)) (I - J_g)`` restores a component along the mapping direction that the
boundary projection's rank-deficient Jacobian loses (Eq 15–16, Lemma 1) and pushes the policy
towards safe actions (P4).  The paper uses ``lambda_reg = 0.1``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["DEFAULT_REGULARISATION", "regularisation_loss"]

#: Coefficient of the paper's regularised runs (SPEC §4).
DEFAULT_REGULARISATION = 0.1


def regularisation_loss(action: Tensor, safe_action: Tensor, coef: float) -> Tensor:
    """``coef * mean ||action - safe_action||^2`` (Eq 45).

    Args:
        action: ``(..., d)`` unsafe (policy) actions, e.g. ``(N, d)`` or ``(T, N, d)``.
        safe_action: same shape, the safeguard's outputs ``g(a, s)``.
        coef: ``lambda_reg >= 0``.

    Returns:
        A scalar tensor: the squared Euclidean norm over the last dimension, averaged over all
        leading dimensions (the collected batch), times ``coef``.  Differentiable in both inputs.

    Raises:
        ValueError: shape mismatch, empty input, NaN/inf, or an invalid coefficient.
    """
    if isinstance(coef, bool) or not isinstance(coef, int | float) or not math.isfinite(coef) \
            or coef < 0:
        raise ValueError(f"coef must be a finite number >= 0, got {coef!r}")
    if not isinstance(action, Tensor) or not isinstance(safe_action, Tensor):
        raise ValueError("action and safe_action must be tensors")
    if action.shape != safe_action.shape:
        raise ValueError(f"action {tuple(action.shape)} and safe_action "
                         f"{tuple(safe_action.shape)} must have the same shape")
    if action.ndim < 1 or action.numel() == 0:
        raise ValueError(f"expected non-empty actions (..., d), got shape {tuple(action.shape)}")
    for name, x in (("action", action), ("safe_action", safe_action)):
        if not bool(torch.isfinite(x.detach()).all()):
            raise ValueError(f"{name} contains NaN/inf")
    squared = ((action - safe_action) ** 2).sum(-1)
    return coef * squared.mean()
