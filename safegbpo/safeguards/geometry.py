"""Small differentiable geometry helpers of the ray mask (SPEC §5), NaN-free everywhere.

All functions are batched over the leading dimension and safe to differentiate at the
degenerate points (zero vectors, zero direction components): the branches that would divide
by zero are guarded *before* the division ("double where"), so no NaN appears in the forward
or the backward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["safe_norm", "unit_direction", "box_distance", "tanhc"]

#: Displacements shorter than this are treated as zero (the direction is then arbitrary).
TINY = 1e-12


def safe_norm(x: Tensor) -> Tensor:
    """Euclidean norm over the last dimension with a zero (not NaN) gradient at ``x = 0``."""
    squared = (x * x).sum(-1)
    positive = squared > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, squared,
                                                        torch.ones_like(squared))),
                       torch.zeros_like(squared))


def unit_direction(delta: Tensor) -> tuple[Tensor, Tensor]:
    """``(v, r)``: unit direction ``delta / ||delta||`` ``(N, d)`` and length ``r`` ``(N,)``.

    Rows with ``r <= TINY`` get the first unit vector ``e_1`` as their (arbitrary) direction.
    """
    r = safe_norm(delta)
    long = r > TINY
    r_safe = torch.where(long, r, torch.ones_like(r))
    e1 = torch.zeros_like(delta)
    e1[..., 0] = 1.0
    v = torch.where(long.unsqueeze(-1), delta / r_safe.unsqueeze(-1), e1)
    return v, r


def box_distance(origin: Tensor, direction: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Distance ``max { t >= 0 : origin + t v in [low, high] }`` along unit ``v`` (closed form).

    This is ``lam_A`` of the ray mask (SPEC §5) for ``origin = c_s``.  Componentwise,
    ``t_i = (high_i - o_i) / v_i`` for ``v_i > 0``, ``(low_i - o_i) / v_i`` for ``v_i < 0`` and
    ``+inf`` for ``v_i = 0``; the result is ``min_i t_i`` clamped at ``0`` (an origin outside
    the box gives ``0``).  Differentiable almost everywhere, never NaN.

    Args:
        origin: ``(N, d)``; direction: ``(N, d)`` unit rows; low, high: ``(d,)``.

    Returns:
        ``(N,)``.
    """
    positive = direction > 0
    moving = positive | (direction < 0)
    safe_dir = torch.where(moving, direction, torch.ones_like(direction))
    bound = torch.where(positive, high - origin, low - origin)
    steps = torch.where(moving, bound / safe_dir, torch.full_like(direction, float("inf")))
    return steps.amin(dim=-1).clamp_min(0.0)


def tanhc(x: Tensor) -> Tensor:
    """``tanh(x) / x`` with its limit ``1`` at ``0`` (Taylor series below ``1e-4``), smooth."""
    small = x.abs() < 1e-4
    x_safe = torch.where(small, torch.ones_like(x), x)
    x2 = x * x
    return torch.where(small, 1.0 - x2 / 3.0 + 2.0 * x2 * x2 / 15.0, torch.tanh(x_safe) / x_safe)
