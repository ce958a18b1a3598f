"""The exact backend against cvxpy/cvxpylayers programs on the *same* H-representation
(:mod:`hrep_oracle`), and the exact safe set against Eq 6 (SPEC §11).

Outputs and Jacobians (w.r.t. the action and the state) are compared at random states of the
safe set (uniform and near its vertices) for actions inside the safe set, outside ``A``, near
the safe boundary (on both sides) and near the set's edges (vertices).  Accuracy of the oracle:
the projection's values come from Clarabel's QP (``~1e-10``: compared at ``1e-8``), its
Jacobians from the cvxpylayers layer (``1e-6``); the ray LP is accurate; Clarabel's
geometric-mean cone and the layer's second-order-cone projection reach only ``~1e-7``, so the
ray masks' outputs are compared at ``2e-7`` (Jacobians ``1e-6``, w.r.t. the state ``2e-6``)
and the centre at ``1e-6`` — where the exact centre's objective is the *better* one — and
certified by its own KKT
conditions at ``1e-9``.  States whose optimal centre is not unique (a segment: the backend
returns its midpoint, the layer some other point; frequent on the energy task, whose action
polytopes are often squeezed between two parallel rows) are compared on ``l``, the centre
against the midpoint of the optimal segment (LPs), and the ray mask against the oracle's
ray LP and map *at the backend's zonotope* (values and action Jacobians).  The centre must
be a function of the state alone: the same states give the same centre (``<= 1e-12``)
whatever the previous calls (warm starts) and the batch.

The cvxpylayers Jacobians lose accuracy where a second row is nearly active (slack
``~1e-5``: the interior-point multipliers of that row are not quite zero); there the exact
backend is compared with central finite differences of its own map instead (it matches them
everywhere, the oracle does not).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safegbpo.safeguards import make_safeguard, ray_mask, ray_mask_map
from safegbpo.safeguards.geometry import box_distance, unit_direction

from .conftest import F64, independent_violation, make_env, random_states
from .hrep_oracle import (
    centre_is_unique,
    centre_layer,
    kkt_residual,
    optimal_centre_segment,
    oracle_rows,
    project_layer,
    project_qp,
    ray_layer,
)

CATEGORIES = ("inside", "outside", "near-boundary", "near-edge")
NUM_STATES = 6


@pytest.fixture(scope="module")
def env(task):
    return make_env(task, num_envs=NUM_STATES, seed=5)


def _states(env, seed):
    return random_states(env, NUM_STATES, torch.Generator().manual_seed(seed))


def _actions(env, states, category, gen):
    """Actions of a category for each state (see the module docstring)."""
    N, d = states.shape[0], env.model.action_dim
    H, h = (x.detach() for x in oracle_rows(env, states))
    far = torch.randn(N, d, generator=gen, dtype=F64)
    far = 3.0 * far / far.norm(dim=-1, keepdim=True)
    if category == "outside":
        x = (torch.rand(N, d, generator=gen, dtype=F64) * 2 - 1) * 2.0
        return torch.where(x.abs().amax(-1, keepdim=True) > 1.0, x, x * 1.5 / x.abs().amax(-1,
                           keepdim=True))
    boundary = torch.as_tensor(project_qp(H, h, far))
    if category == "inside":
        backup = env.safe_set.backup_action(states)
        return 0.7 * boundary + 0.3 * backup
    normal = torch.nn.functional.normalize(far - boundary, dim=-1)
    if category == "near-boundary":
        side = torch.where(torch.rand(N, 1, generator=gen, dtype=F64) < 0.5, 1.0, -1.0)
        return boundary + side * 1e-3 * normal
    # near an edge: the vertex reached from a corner direction, nudged
    corner = 3.0 * torch.sign(torch.randn(N, d, generator=gen, dtype=F64))
    vertex = torch.as_tensor(project_qp(H, h, corner))
    return vertex + 1e-3 * torch.randn(N, d, generator=gen, dtype=F64)


def _jacobians(fn, action, states):
    """Per-row Jacobians ``(N, d, d)``, ``(N, d, n)`` of a batched, row-independent map."""
    a = action.clone().requires_grad_()
    s = states.clone().requires_grad_()
    out = fn(a, s)
    J_a, J_s = [], []
    for j in range(out.shape[1]):
        ga, gs = torch.autograd.grad(out[:, j].sum(), (a, s), retain_graph=True,
                                     allow_unused=True)
        J_a.append(torch.zeros_like(a) if ga is None else ga)
        J_s.append(torch.zeros_like(s) if gs is None else gs)
    return out.detach(), torch.stack(J_a, 1), torch.stack(J_s, 1)


# --------------------------------------------------------------------------------------------
# boundary projection
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("category", CATEGORIES)
def test_projection_matches_the_oracle(env, category):
    bp = make_safeguard("bp", env)
    states = _states(env, 1 + CATEGORIES.index(category))
    action = _actions(env, states, category, torch.Generator().manual_seed(7))
    out, J_a, J_s = _jacobians(lambda a, s: bp(a, state=s), action, states)
    assert bp.fallbacks == 0
    H, h = oracle_rows(env, states)
    np.testing.assert_allclose(out.numpy(), project_qp(H, h, action), atol=1e-8)
    ref, R_a, R_s = _jacobians(lambda a, s: project_layer(*oracle_rows(env, s), a),
                               action, states)
    np.testing.assert_allclose(J_a.numpy(), R_a.numpy(), atol=1e-6)
    np.testing.assert_allclose(J_s.numpy(), R_s.numpy(), atol=2e-6)
    assert independent_violation(env, states, out).max() <= 1e-7


# --------------------------------------------------------------------------------------------
# zonotopic centre and the zonotopic ray mask
# --------------------------------------------------------------------------------------------
def _lengths(G, D):
    return G.abs().amax(-2) if D.shape[0] == 1 else (G / D).mean(-2)


def test_zonotopic_centre_matches_the_oracle_and_is_certified(env):
    rm = make_safeguard("rm", env)
    D = rm.centre.directions
    for seed in (11, 12, 13):
        states = _states(env, seed)
        c, G, ok, _ = rm.centre.zonotope(rm.action_set_data(states), states)
        assert bool(ok.all())
        l = _lengths(G, D)
        H, h = oracle_rows(env, states)
        c_ref, l_ref = centre_layer(H, h, D)
        np.testing.assert_allclose(l.numpy(), l_ref.numpy(), atol=1e-6)
        for i in range(NUM_STATES):
            Hi, hi = H[i].detach().numpy(), h[i].detach().numpy()
            violation, stationarity = kkt_residual(Hi, hi, D.numpy(), c[i].numpy(), l[i].numpy())
            assert violation <= 1e-12 and stationarity <= 1e-9, (i, violation, stationarity)
            if centre_is_unique(Hi, hi, D.numpy(), c[i].numpy(), l[i].numpy()):
                np.testing.assert_allclose(c[i].numpy(), c_ref[i].numpy(), atol=1e-6)
            else:  # the tie-break: the midpoint of the optimal segment
                t_plus, t_minus = optimal_centre_segment(Hi, hi, D.numpy(), c[i].numpy(),
                                                         l[i].numpy())
                assert abs(t_plus - t_minus) <= 1e-7 * (1.0 + t_plus + t_minus), (i, t_plus,
                                                                                  t_minus)


def test_zonotopic_centre_is_a_function_of_the_state_alone(env):
    """Warm starts change the speed, never the answer: the same states give the same centre
    (``<= 1e-12``) after other calls, in another batch, and from a fresh instance."""
    rm = make_safeguard("rm", env)
    states = _states(env, 14)
    others = _states(env, 15)

    def centre(guard, s):
        with torch.no_grad():
            c, G, ok, _ = guard.centre.zonotope(guard.action_set_data(s), s)
        assert bool(ok.all())
        return torch.cat([c, G.flatten(1)], dim=1)

    first = centre(rm, states)
    again = centre(rm, states)  # warm start: its own previous answer
    centre(rm, others)
    after = centre(rm, states)  # warm start: other states
    order = torch.randperm(2 * NUM_STATES, generator=torch.Generator().manual_seed(0))
    mixed = centre(rm, torch.cat([states, others])[order])[torch.argsort(order)][:NUM_STATES]
    fresh = centre(make_safeguard("rm", env), states)
    for other in (again, after, mixed, fresh):
        assert float((other - first).abs().max()) <= 1e-12


def _zonotopic_reference(env, D, mapping):
    def fn(a, s):
        c, l = centre_layer(*oracle_rows(env, s), D)
        return ray_mask(a, c, D * l.unsqueeze(-2), mapping)

    return fn


@pytest.mark.parametrize("mapping", ["linear", "hyperbolic"])
@pytest.mark.parametrize("category", CATEGORIES)
def test_zonotopic_ray_mask_matches_the_oracle(env, category, mapping):
    rm = make_safeguard("rm", env, mapping=mapping)
    D = rm.centre.directions
    states = _states(env, 21 + CATEGORIES.index(category))
    action = _actions(env, states, category, torch.Generator().manual_seed(8))
    out, J_a, J_s = _jacobians(lambda a, s: rm(a, state=s), action, states)
    assert rm.fallbacks == 0
    ref, R_a, R_s = _jacobians(_zonotopic_reference(env, D, mapping), action, states)
    with torch.no_grad():
        c, G, _, _ = rm.centre.zonotope(rm.action_set_data(states), states)
    H, h = (x.detach().numpy() for x in oracle_rows(env, states))
    unique = np.array([centre_is_unique(H[i], h[i], D.numpy(), c[i].numpy(),
                                        _lengths(G[i], D).numpy())
                       for i in range(NUM_STATES)])
    # the centre limits the oracle's accuracy to ~1e-7 (module docstring)
    np.testing.assert_allclose(out.numpy()[unique], ref.numpy()[unique], atol=2e-7)
    np.testing.assert_allclose(J_a.numpy()[unique], R_a.numpy()[unique], atol=1e-6)
    np.testing.assert_allclose(J_s.numpy()[unique], R_s.numpy()[unique], atol=2e-6)
    if not unique.all():
        # a segment of optimal centres: the oracle's ray LP and map at the backend's Z
        def at_backend_zonotope(a, s):
            return ray_mask(a, c, G, mapping)

        ref_z, R_z, _ = _jacobians(at_backend_zonotope, action, states)
        np.testing.assert_allclose(out.numpy()[~unique], ref_z.numpy()[~unique], atol=1e-9)
        np.testing.assert_allclose(J_a.numpy()[~unique], R_z.numpy()[~unique], atol=1e-6)
    assert independent_violation(env, states, out).max() <= 1e-7


@pytest.mark.gradcheck
def test_zonotopic_ray_mask_state_jacobian_matches_finite_differences(env):
    """The implicit (KKT) derivative of the centre w.r.t. the state, against central finite
    differences of the exact map (accurate to rounding, so a tight comparison)."""
    rm = make_safeguard("rm", env)
    states = _states(env, 31)
    action = _actions(env, states, "inside", torch.Generator().manual_seed(9))
    _, _, J_s = _jacobians(lambda a, s: rm(a, state=s), action, states)
    eps = 1e-6
    for k in range(states.shape[1]):
        step = torch.zeros_like(states)
        step[:, k] = eps
        with torch.no_grad():
            fd = (rm(action, state=states + step) - rm(action, state=states - step)) / (2 * eps)
        np.testing.assert_allclose(J_s[:, :, k].numpy(), fd.numpy(), atol=2e-6)


# --------------------------------------------------------------------------------------------
# orthogonal ray mask (projection + ray LP)
# --------------------------------------------------------------------------------------------
def _orthogonal_reference(env):
    low, high = (t.to(F64) for t in env.model.action_bounds())

    def fn(a, s):
        H, h = oracle_rows(env, s)
        boundary = project_layer(H, h, a)
        offset = boundary - a
        normal, dist = unit_direction(offset)
        t = ray_layer(H, h, boundary, normal)
        centre = boundary + 0.5 * t.unsqueeze(-1) * normal
        lam_A = box_distance(centre, -normal, low, high)
        mapped = ray_mask_map(a, centre, 0.5 * t, lam_A)
        return torch.where((dist > 1e-7).unsqueeze(-1), mapped, boundary)

    return fn


@pytest.mark.parametrize("category", ["outside", "near-boundary", "near-edge"])
def test_orthogonal_ray_mask_matches_the_oracle(env, category):
    rm = make_safeguard("rm", env, centre="orthogonal")
    states = _states(env, 41 + CATEGORIES.index(category))
    action = _actions(env, states, category, torch.Generator().manual_seed(10))
    out, J_a, J_s = _jacobians(lambda a, s: rm(a, state=s), action, states)
    assert rm.fallbacks == 0
    ref, R_a, R_s = _jacobians(_orthogonal_reference(env), action, states)
    # the layer's Jacobians (and values) where no second row is nearly active at the projection
    H, h = (x.detach().numpy() for x in oracle_rows(env, states))
    slack = np.sort(h - np.einsum("nrd,nd->nr", H, project_qp(*oracle_rows(env, states),
                                                                action)), axis=1)
    # the active rows (d at most) and then a gap: the first slack above 1e-7
    gap = np.where(slack > 1e-7, slack, np.inf).min(1)
    separated = gap >= 1e-4
    # values: the projection is accurate to ~1e-8 (second-order cone) and the map amplifies
    # it by its Lipschitz constant ||J_a||; ~1e-5 where a second row is nearly active
    scale = np.maximum(1.0, np.linalg.norm(J_a.numpy(), ord=2, axis=(1, 2)))
    tol = np.where(separated, 2e-7 * scale, 1e-5 * scale)
    assert (np.abs(out.numpy() - ref.numpy()).max(1) <= tol).all(), (out - ref, tol)
    np.testing.assert_allclose(J_a.numpy()[separated], R_a.numpy()[separated], atol=1e-6)
    np.testing.assert_allclose(J_s.numpy()[separated], R_s.numpy()[separated], atol=2e-6)
    # everywhere: central finite differences of the exact map (w.r.t. action and state)
    eps = 1e-7
    with torch.no_grad():
        for J, x, shift in ((J_a, action, lambda x: rm(x, state=states)),
                            (J_s, states, lambda x: rm(action, state=x))):
            for k in range(x.shape[1]):
                step = torch.zeros_like(x)
                step[:, k] = eps
                fd = (shift(x + step) - shift(x - step)) / (2 * eps)
                np.testing.assert_allclose(J[:, :, k].numpy(), fd.numpy(), rtol=1e-6,
                                           atol=1e-6)
    assert independent_violation(env, states, out).max() <= 1e-7


# --------------------------------------------------------------------------------------------
# exact vs Eq 6
# --------------------------------------------------------------------------------------------
def test_exact_set_contains_the_eq6_set_and_is_larger(env):
    from safegbpo.safeguards import compare_safe_action_sets

    result = compare_safe_action_sets(env, num_states=12, seed=3)
    assert result["containment_violations"] == 0
    assert result["states"] == 12
    assert result["mean_ratio"] >= 1.0 - 1e-9
    assert result["min_ratio"] >= 1.0 - 1e-6
