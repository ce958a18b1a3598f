"""Ray mask onto an explicit safe zonotope (c_s = c, lam_S = min(1/gauge(v), lam_A))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safegbpo.safeguards import ray_mask
from safegbpo.sets.containment import gauge_lp

F64 = torch.float64
CENTER = torch.tensor([0.2, -0.1], dtype=F64)
GENERATORS = torch.tensor([[0.5, 0.2, 0.0], [0.1, 0.3, 0.4]], dtype=F64)


@pytest.mark.parametrize("mapping", ["linear", "hyperbolic"])
def test_outputs_lie_in_the_zonotope_and_the_box(mapping):
    gen = torch.Generator().manual_seed(0)
    actions = (torch.rand(20, 2, generator=gen, dtype=F64) * 2 - 1) * 2.5
    actions[0] = CENTER
    out = ray_mask(actions, CENTER, GENERATORS, mapping)
    assert torch.equal(out[0], CENTER)  # g(c_s) = c_s
    for o in out.numpy():
        assert gauge_lp(GENERATORS.numpy(), o - CENTER.numpy()) <= 1.0 + 1e-9
        assert np.all(np.abs(o) <= 1.0)


@pytest.mark.parametrize("mapping", ["linear", "hyperbolic"])
def test_box_boundary_maps_onto_the_zonotope_boundary(mapping):
    angles = torch.linspace(0.1, 6.2, 9, dtype=F64)
    v = torch.stack([torch.cos(angles), torch.sin(angles)], -1)
    # the point where the ray from the centre leaves A = [-1, 1]^2
    t = torch.min(torch.where(v > 0, (1 - CENTER) / v, (-1 - CENTER) / v), dim=-1).values
    boundary = CENTER + t.unsqueeze(-1) * v
    out = ray_mask(boundary, CENTER, GENERATORS, mapping)
    for o in out.numpy():
        assert gauge_lp(GENERATORS.numpy(), o - CENTER.numpy()) == pytest.approx(1.0, abs=1e-7)


@pytest.mark.gradcheck
@pytest.mark.parametrize("mapping", ["linear", "hyperbolic"])
def test_gradcheck_through_the_boundary_lp(mapping):
    """torch.autograd.gradcheck of the full map (LP layer included) at smooth points."""
    actions = torch.tensor([[0.5, 0.3], [-0.4, -0.6], [0.3, -0.5]], dtype=F64,
                           requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: ray_mask(a, CENTER, GENERATORS, mapping),
                                    (actions,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_jacobian_has_full_rank_lemma3():
    J = torch.autograd.functional.jacobian(
        lambda a: ray_mask(a[None], CENTER, GENERATORS)[0], torch.tensor([0.6, 0.45],
                                                                         dtype=F64))
    assert torch.linalg.matrix_rank(J) == 2


def test_bad_input():
    with pytest.raises(ValueError, match="strictly inside"):
        ray_mask(torch.zeros(1, 2, dtype=F64), torch.tensor([1.0, 0.0], dtype=F64), GENERATORS)
    with pytest.raises(ValueError, match="finite"):
        ray_mask(torch.tensor([[float("nan"), 0.0]], dtype=F64), CENTER, GENERATORS)
    with pytest.raises(ValueError, match="mapping"):
        ray_mask(torch.zeros(1, 2, dtype=F64), CENTER, GENERATORS, "cubic")
