"""The one membership test of realised states (:mod:`safegbpo.sets.membership`, used by the
safety monitor and PCRPO's cost): its exact H-representation gauge against the Eq 5 LP oracle
(:func:`safegbpo.sets.containment.gauge_lp`) on random states inside, on the boundary, just
outside, far outside and at huge magnitudes, on every task's safe set; the box ``S``; bad
input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safegbpo.safesets import get_safe_set
from safegbpo.sets import Zonotope, zonotope_hrep
from safegbpo.sets.containment import gauge_lp
from safegbpo.sets.membership import SAFETY_TOLERANCE, StateMembership, state_membership
from safegbpo.tasks import get_model


def _states(c: np.ndarray, G: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inside (random factors), on the boundary (gauge 1 by the LP), just outside (1 + 1e-5),
    outside (1.5), far outside (1e6) and inside-but-near-the-centre (1e-9) states."""
    n, m = G.shape
    inside = c + rng.uniform(-1.0, 1.0, (8, m)) @ G.T
    directions = rng.normal(size=(8, n))
    gauges = np.array([gauge_lp(G, d) for d in directions])
    boundary = c + directions / gauges[:, None]
    scales = np.array([1.0 + 1e-5, 1.5, 1e6, 1e-9])[:, None]
    others = c + scales * (boundary[:4] - c)
    return np.concatenate([inside, boundary, others])


@pytest.mark.parametrize("task", ["pendulum", "quadrotor", "energy"])
def test_gauge_equals_the_eq5_lp_on_every_task(task):
    safe_set = get_safe_set(task)
    c, G = (a[0] for a in safe_set.state.numpy())
    states = _states(c, G, np.random.default_rng(0))
    membership = state_membership(safe_set)  # S_s only (no box)
    got = membership.gauges(states)
    expected = np.array([gauge_lp(G, s - c) for s in states])
    # rtol: the LP's accuracy; atol: HiGHS rounds the 1e-9 gauge near the centre to 0
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-8)
    decided = np.abs(expected - 1.0) > 1e-6  # the boundary rows are 1 up to LP accuracy
    np.testing.assert_array_equal(membership.outside(states)[decided],
                                  expected[decided] > 1.0 + SAFETY_TOLERANCE)
    boundary = slice(8, 16)
    assert not membership.outside(states[boundary]).any()  # gauge 1 is safe
    assert membership.outside(states[16:19]).all()  # 1 + 1e-5, 1.5, 1e6
    # a bare zonotope computes its own H-representation: the same answers
    zonotope = Zonotope(torch.as_tensor(c)[None], torch.as_tensor(G)[None])
    np.testing.assert_allclose(state_membership(zonotope).gauges(states), got, rtol=1e-12)


@pytest.mark.parametrize("task", ["pendulum", "quadrotor"])
def test_box_and_non_finite_states_are_outside(task):
    safe_set = get_safe_set(task)
    low, high = (t.numpy() for t in get_model(task).state_bounds())
    membership = state_membership(safe_set, (low, high))
    c = safe_set.state.center[0].numpy()
    beyond = c.copy()
    beyond[0] = high[0] + 0.5 * (high[0] - low[0])  # outside S whatever S_s is
    states = np.stack([c, beyond, np.full_like(c, np.nan), c])
    states[3, -1] = np.inf
    gauges = membership.gauges(torch.as_tensor(states))
    assert gauges[0] < 1.0  # the centre of S_s lies in S (box gauge about the box centre)
    assert gauges[1] >= 2.0 - 1e-12
    assert np.isnan(gauges[2:]).all()
    assert membership.outside(states).tolist() == [False, True, True, True]


def test_bad_input_is_named():
    c, G = np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]])
    hrep = zonotope_hrep(c, G)
    membership = StateMembership(c, hrep)
    with pytest.raises(ValueError, match="dimension 3 for a set in R\\^2"):
        membership.gauges(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="both box bounds"):
        StateMembership(c, hrep, low=np.full(2, -1.0))
    with pytest.raises(ValueError, match="high > low"):
        StateMembership(c, hrep, low=np.ones(2), high=np.ones(2))
    with pytest.raises(ValueError, match="interior"):
        StateMembership(np.array([5.0, 0.0]), hrep)
    with pytest.raises(ValueError, match="NaN"):
        StateMembership(np.array([np.nan, 0.0]), hrep)
    assert membership.gauges(np.zeros((0, 2))).shape == (0,)
