"""Boundary projection onto explicit zonotopes (Eq 11 with Eq 5) and Lemma 1 (SPEC §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import lsq_linear

from safegbpo.safeguards import boundary_projection
from safegbpo.sets.containment import gauge_lp

F64 = torch.float64
SETTINGS = settings(max_examples=20, deadline=None)
# cvxpylayers solves the QP as a second-order cone program: projections are accurate to ~1e-6
# (see safegbpo.safeguards.problems.DEFAULT_SOLVER_ARGS), Jacobians likewise.
ATOL = 1e-4


def reference_projection(a: np.ndarray, c: np.ndarray, G: np.ndarray):
    """Independent projection: bounded least squares ``min ||G b - (a - c)||, |b| <= 1``."""
    res = lsq_linear(G, a - c, bounds=(-1.0, 1.0), method="bvls", tol=1e-14)
    return c + G @ res.x, res.x


def jacobian(a: np.ndarray, c: np.ndarray, G: np.ndarray) -> np.ndarray:
    c_t, G_t = torch.as_tensor(c, dtype=F64), torch.as_tensor(G, dtype=F64)
    return torch.autograd.functional.jacobian(
        lambda x: boundary_projection(x[None], c_t, G_t)[0], torch.as_tensor(a, dtype=F64)
    ).numpy()


@st.composite
def zonotope_and_seed(draw):
    d = draw(st.integers(2, 3))
    m = draw(st.integers(d, 2 * d))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    G = rng.normal(size=(d, m))
    assume(np.linalg.svd(G, compute_uv=False).min() > 0.3)  # non-empty interior, well posed
    cols = G / np.linalg.norm(G, axis=0)
    assume(np.abs(np.triu(cols.T @ cols, 1)).max() < 0.98)  # no (nearly) parallel generators
    return rng.normal(size=d), G, rng


@pytest.mark.property
@SETTINGS
@given(zonotope_and_seed())
def test_lemma1_interior_actions_are_fixed_with_identity_jacobian(case):
    c, G, rng = case
    b = rng.uniform(-0.8, 0.8, size=G.shape[1])
    a = c + G @ b  # gauge <= 0.8: interior
    x = boundary_projection(torch.as_tensor(a[None]), torch.as_tensor(c), torch.as_tensor(G))
    assert np.array_equal(x[0].numpy(), a)  # returned exactly
    np.testing.assert_allclose(jacobian(a, c, G), np.eye(len(a)), atol=1e-12)


@pytest.mark.property
@SETTINGS
@given(zonotope_and_seed())
def test_lemma1_unsafe_actions_have_the_projector_onto_the_inactive_generators(case):
    """J = G_I (G_I^T G_I)^+ G_I^T with I = {j : |b*_j| < 1}; rank J <= d - 1 (gradient loss
    along the normal, Eq 15-16)."""
    c, G, rng = case
    d = G.shape[0]
    a = c + rng.normal(size=d) * 3.0
    assume(gauge_lp(G, a - c) > 1.05)  # clearly unsafe
    p, b = reference_projection(a, c, G)
    margin = 1.0 - np.abs(b)
    assume(np.all((margin < 1e-9) | (margin > 1e-3)))  # unambiguous active set
    inactive = margin > 1e-3
    x = boundary_projection(torch.as_tensor(a[None]), torch.as_tensor(c), torch.as_tensor(G))
    np.testing.assert_allclose(x[0].numpy(), p, atol=ATOL)
    G_I = G[:, inactive]
    projector = G_I @ np.linalg.pinv(G_I.T @ G_I) @ G_I.T if inactive.any() else np.zeros((d, d))
    J = jacobian(a, c, G)
    np.testing.assert_allclose(J, projector, atol=ATOL)
    singular = np.linalg.svd(J, compute_uv=False)
    assert int((singular > 1e-2).sum()) <= d - 1
    # the outward normal is in the left null space: J^T n = 0
    n = (a - p) / np.linalg.norm(a - p)
    np.testing.assert_allclose(J.T @ n, 0.0, atol=ATOL)


def test_boundary_projection_is_batched_and_broadcasts():
    G = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]], dtype=F64)
    c = torch.tensor([0.2, -0.1], dtype=F64)
    a = torch.tensor([[0.2, -0.1], [5.0, 0.0], [-3.0, 4.0]], dtype=F64)
    x = boundary_projection(a, c, G)
    assert x.shape == (3, 2)
    for ai, xi in zip(a.numpy(), x.numpy(), strict=True):
        np.testing.assert_allclose(xi, reference_projection(ai, c.numpy(), G.numpy())[0],
                                   atol=ATOL)
    batched = boundary_projection(a, c.expand(3, 2), G.expand(3, 2, 3))
    np.testing.assert_allclose(batched.numpy(), x.numpy(), atol=1e-9)


def test_boundary_projection_rejects_bad_input():
    G = torch.eye(2, dtype=F64)
    with pytest.raises(ValueError, match="NaN"):
        boundary_projection(torch.tensor([[float("nan"), 0.0]]), torch.zeros(2), G)
    with pytest.raises(ValueError, match="dimension"):
        boundary_projection(torch.zeros(1, 3, dtype=F64), torch.zeros(2), G)
    with pytest.raises(ValueError, match="batch"):
        boundary_projection(torch.zeros(2, 2, dtype=F64), torch.zeros(3, 2), G)
