"""Safeguards on the paper's tasks: P1, per-env linearisation, gradients, fail-safe (SPEC §3–5),
for both backends (``exact``, the default, and ``cvxpylayers``).

Every output is checked with :func:`conftest.independent_violation` (HiGHS LPs on a per-state
linearisation of the task model), never with the safeguard's own solver result.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pytest
import torch

from safegbpo.safeguards import BoundaryProjection, RayMask, make_safeguard
from safegbpo.sets.containment import gauge_lp

from .conftest import (
    F64,
    TOL,
    independent_violation,
    make_env,
    random_actions,
    random_states,
)

VARIANTS = {
    "bp": ("bp", {}),
    "rm": ("rm", {}),
    "rm-hyperbolic": ("rm", {"mapping": "hyperbolic"}),
    "rm-orthogonal": ("rm", {"centre": "orthogonal"}),
    "rm-orthogonal-hyperbolic": ("rm", {"centre": "orthogonal", "mapping": "hyperbolic"}),
    "rm-passthrough": ("rm", {"passthrough": True}),
    "bp-passthrough": ("bp", {"passthrough": True}),
}


BACKENDS = ("exact", "cvxpylayers")


@pytest.fixture(scope="module")
def env(task):
    return make_env(task, num_envs=6, seed=11)


def build(name, env, backend, **options):
    return make_safeguard(name, env, backend=backend, **options)


# --------------------------------------------------------------------------------------------
# P1: every output is safe, for states across the safe set and actions in and outside A
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_p1_outputs_are_safe(env, variant, backend):
    name, options = VARIANTS[variant]
    safeguard = build(name, env, backend, **options)
    gen = torch.Generator().manual_seed(zlib.crc32(variant.encode()))
    for _ in range(2):
        states = random_states(env, 12, gen)
        actions = random_actions(12, env.model.action_dim, gen, spread=2.0)
        safe = safeguard(actions, state=states)
        assert safe.shape == actions.shape and bool(torch.isfinite(safe).all())
        violation = independent_violation(env, states, safe)
        assert violation.max() <= TOL, (variant, violation)
    assert safeguard.fallbacks == 0
    assert safeguard.steps == 24


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["bp", "rm", "rm-orthogonal"])
def test_p1_at_the_current_env_states(env, variant, backend):
    """The training path's call: the env's current states, passed explicitly."""
    name, options = VARIANTS[variant]
    safeguard = build(name, env, backend, **options)
    gen = torch.Generator().manual_seed(5)
    for _ in range(2):
        env.reset()
        actions = random_actions(env.num_envs, env.model.action_dim, gen, spread=3.0)
        safe = safeguard(actions, env.state)
        assert independent_violation(env, env.state, safe).max() <= TOL


# --------------------------------------------------------------------------------------------
# per-environment linearisation (the reference linearised at the first env for all)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["bp", "rm", "rm-orthogonal"])
def test_each_env_uses_its_own_state(env, variant, backend):
    name, options = VARIANTS[variant]
    safeguard = build(name, env, backend, **options)
    gen = torch.Generator().manual_seed(21)
    states = random_states(env, 6, gen)
    env.reset(options={"state": states})
    actions = random_actions(6, env.model.action_dim, gen, spread=3.0)
    safe = safeguard(actions, env.state)
    # each row equals the result for its state alone, and is safe for its own state ...
    for i in range(6):
        alone = safeguard(actions[i:i + 1], state=states[i:i + 1])
        np.testing.assert_allclose(safe[i].numpy(), alone[0].numpy(), atol=1e-5)
    assert independent_violation(env, states, safe).max() <= TOL
    # ... while one shared linearisation (the first row's) gives other actions: the checks
    # above can fail (many rows, so that some state's induced constraint is active)
    states = random_states(env, 24, gen)
    actions = random_actions(24, env.model.action_dim, gen, spread=3.0)
    safe = safeguard(actions, state=states)
    shared = safeguard(actions, state=states[:1].expand(24, -1))
    assert float((shared - safe).abs().max()) > 1e-3
    assert independent_violation(env, states, safe).max() <= TOL
    assert independent_violation(env, states, shared).max() > TOL


# --------------------------------------------------------------------------------------------
# interventions, fixed points
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_bp_does_not_intervene_on_safe_actions_and_is_idempotent(env, backend):
    safeguard = BoundaryProjection(env, backend=backend)
    gen = torch.Generator().manual_seed(3)
    states = random_states(env, 8, gen)
    safe = safeguard(random_actions(8, env.model.action_dim, gen), state=states)
    interior = 0.99 * safe + 0.01 * env.safe_set.backup_action(states)  # strictly safe
    safeguard.reset_counters()
    out = safeguard(interior, state=states)
    np.testing.assert_allclose(out.numpy(), interior.numpy(), atol=1e-6)
    assert safeguard.interventions == 0 and safeguard.steps == 8
    assert not bool(safeguard.last_intervened.any())
    # boundary points are (nearly) fixed too; the second-order cone form of the QP limits the
    # accuracy there to ~sqrt(solver gap) (see safegbpo.safeguards.problems); the exact
    # projection is exact up to rounding
    again = safeguard(safe, state=states)
    np.testing.assert_allclose(again.numpy(), safe.numpy(),
                               atol=1e-12 if backend == "exact" else 1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_orthogonal_ray_mask_returns_safe_actions_unchanged(env, backend):
    projection = BoundaryProjection(env, backend=backend)
    ray_mask = RayMask(env, centre="orthogonal", backend=backend)
    gen = torch.Generator().manual_seed(4)
    states = random_states(env, 8, gen)
    interior = projection(random_actions(8, env.model.action_dim, gen), state=states)
    # pull the projections slightly towards the backup actions: strictly safe
    interior = 0.9 * interior + 0.1 * env.safe_set.backup_action(states)
    out = ray_mask(interior, state=states)
    assert torch.equal(out, interior)
    assert ray_mask.interventions == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_zonotopic_ray_mask_fixes_the_centre_and_counts_interventions(env, backend):
    ray_mask = RayMask(env, backend=backend)
    gen = torch.Generator().manual_seed(6)
    states = random_states(env, 6, gen)
    data = ray_mask.action_set_data(states)
    centre, _, ok, _ = ray_mask.centre.zonotope(data, states)
    assert bool(ok.all())
    out = ray_mask(centre, state=states)
    np.testing.assert_allclose(out.numpy(), centre.numpy(), atol=1e-12)
    assert ray_mask.interventions == 0
    moved = centre + 0.01
    out = ray_mask(moved, state=states)
    intervened = (out - moved).norm(dim=-1) > 1e-6  # unless Z fills A along the ray
    assert torch.equal(ray_mask.last_intervened, intervened)
    assert ray_mask.interventions == int(intervened.sum()) and ray_mask.steps == 12


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mapping", ["linear", "hyperbolic"])
def test_zonotopic_ray_mask_maps_the_box_boundary_onto_the_boundary_of_z(env, mapping, backend):
    """lam_S is measured on the zonotope Z of Eq 52-53 (SPEC §5): the boundary of A is mapped
    onto the boundary of Z; Z itself lies in the safe set (checked at its vertices)."""
    ray_mask = RayMask(env, mapping=mapping, backend=backend)
    gen = torch.Generator().manual_seed(7)
    states = random_states(env, 4, gen)
    data = ray_mask.action_set_data(states)
    centre, generators, ok, _ = ray_mask.centre.zonotope(data, states)
    d = env.model.action_dim
    boundary = torch.rand(4, d, generator=gen, dtype=F64) * 2 - 1
    boundary = boundary / boundary.abs().amax(-1, keepdim=True)  # on the boundary of A
    out = ray_mask(boundary, state=states)
    for i in range(4):
        g = gauge_lp(generators[i].numpy(), (out[i] - centre[i]).numpy())
        assert g == pytest.approx(1.0, abs=1e-6)
        signs = torch.tensor(np.array(np.meshgrid(*[[-1.0, 1.0]] * generators.shape[-1]))
                             .reshape(generators.shape[-1], -1).T, dtype=F64)
        vertices = centre[i] + signs @ generators[i].T
        assert independent_violation(env, states[i].expand(len(vertices), -1),
                                     vertices).max() <= TOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_directions_are_reproducible_from_the_seed(env, backend):
    a, b, c = (RayMask(env, seed=seed, backend=backend) for seed in (3, 3, 4))
    d = env.model.action_dim
    assert a.centre.directions.shape == (d, 2 * d)
    assert torch.equal(a.centre.directions, b.centre.directions)
    assert not torch.equal(a.centre.directions, c.centre.directions)
    torch.testing.assert_close(a.centre.directions.norm(dim=0), torch.ones(2 * d, dtype=F64))
    gen = torch.Generator().manual_seed(8)
    states = random_states(env, 4, gen)
    actions = random_actions(4, d, gen)
    np.testing.assert_allclose(a(actions, state=states).numpy(),
                               b(actions, state=states).numpy(), atol=1e-10)


# --------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["bp", "rm", "rm-hyperbolic", "rm-orthogonal"])
def test_gradients_flow_to_action_and_state(env, variant, backend):
    name, options = VARIANTS[variant]
    safeguard = build(name, env, backend, **options)
    gen = torch.Generator().manual_seed(9)
    # many states: the exact safe set is larger than Eq 6's, so the state-dependent (induced)
    # rows bind less often
    states = random_states(env, 24, gen).requires_grad_()
    actions = random_actions(24, env.model.action_dim, gen, spread=1.5).requires_grad_()
    out = safeguard(actions, state=states)
    weights = torch.randn(out.shape, generator=gen, dtype=F64)
    (out * weights).sum().backward()
    assert bool(torch.isfinite(actions.grad).all()) and bool(torch.isfinite(states.grad).all())
    assert float(actions.grad.abs().sum()) > 0
    assert float(states.grad.abs().sum()) > 0  # the safe set depends on the state


@pytest.mark.parametrize("backend", BACKENDS)
def test_detached_centre_keeps_the_action_gradient(env, backend):
    gen = torch.Generator().manual_seed(16)
    states = random_states(env, 24, gen)
    actions = random_actions(24, env.model.action_dim, gen, spread=1.2)
    grads = []
    for centre_gradient in (True, False):
        safeguard = RayMask(env, centre_gradient=centre_gradient, backend=backend)
        x, s = actions.clone().requires_grad_(), states.clone().requires_grad_()
        out = safeguard(x, state=s)
        out.sum().backward()
        grads.append((out.detach(), x.grad, s.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-5)
    assert float(grads[0][2].abs().sum()) > 0
    assert grads[1][2] is None  # Z carries all the state dependence of the zonotopic ray mask


@pytest.mark.parametrize("backend", BACKENDS)
def test_passthrough_backward_is_the_identity(env, backend):
    plain = RayMask(env, backend=backend)
    passthrough = RayMask(env, passthrough=True, backend=backend)
    gen = torch.Generator().manual_seed(10)
    states = random_states(env, 6, gen)
    actions = random_actions(6, env.model.action_dim, gen).requires_grad_()
    out = passthrough(actions, state=states)
    np.testing.assert_allclose(out.detach().numpy(),
                               plain(actions.detach(), state=states).numpy(), atol=1e-10)
    upstream = torch.randn(out.shape, generator=gen, dtype=F64)
    out.backward(upstream)
    assert torch.equal(actions.grad, upstream)


@pytest.mark.gradcheck
@pytest.mark.parametrize("backend", BACKENDS)
def test_ray_mask_gradient_matches_finite_differences(env, backend):
    """Directional derivative of the zonotopic ray mask w.r.t. the action (smooth point)."""
    ray_mask = RayMask(env, backend=backend)
    gen = torch.Generator().manual_seed(12)
    states = random_states(env, 3, gen)
    # generic points: not on the rays through the box corners (lam_A has a kink there)
    actions = torch.rand(3, env.model.action_dim, generator=gen, dtype=F64) * 1.4 - 0.7
    direction = torch.randn(actions.shape, generator=gen, dtype=F64)
    x = actions.clone().requires_grad_()
    out = ray_mask(x, state=states)
    (out * direction).sum().backward()
    analytic = (x.grad * direction).sum()
    eps = 1e-5
    with torch.no_grad():
        plus = (ray_mask(actions + eps * direction, state=states) * direction).sum()
        minus = (ray_mask(actions - eps * direction, state=states) * direction).sum()
    numeric = (plus - minus) / (2 * eps)
    # the exact backend is a deterministic function of (action, state) accurate to rounding
    # (three calls, three warm starts: a history-dependent centre shows up here at ~1e-2);
    # the conic solver's centre is accurate to ~1e-8, i.e. ~1e-3 after dividing by eps
    rel, abs_ = (1e-6, 1e-7) if backend == "exact" else (1e-3, 1e-4)
    assert float(analytic) == pytest.approx(float(numeric), rel=rel, abs=abs_)


# --------------------------------------------------------------------------------------------
# input validation and the fail-safe
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_actions_raise(env, bad, backend):
    safeguard = BoundaryProjection(env, backend=backend)
    actions = torch.zeros(env.num_envs, env.model.action_dim, dtype=F64)
    actions[1, 0] = bad
    with pytest.raises(ValueError, match="NaN/inf"):
        safeguard(actions, env.state)
    with pytest.raises(ValueError, match="shape"):
        safeguard(torch.zeros(env.num_envs + 1, env.model.action_dim, dtype=F64), env.state)


def _raising(*args, **kwargs):
    raise RuntimeError("forced solver failure")


def _nan_solution(layer):
    original = layer._solve

    def solve(params, needs_grad):
        return tuple(torch.full_like(o, float("nan")) for o in original(params, needs_grad))

    return solve


def _unsafe_solution(layer):
    """A 'solved' but wrong answer: the raw action with the solver's own certificates."""
    original = layer._solve

    def solve(params, needs_grad):
        outputs = original(params, needs_grad)
        return (params[0] * 5.0 + 3.0, *outputs[1:])

    return solve


@pytest.mark.parametrize("failure", ["raise", "nan", "unsafe"])
def test_fallback_to_the_backup_action_on_solver_failure(env, monkeypatch, failure):
    safeguard = BoundaryProjection(env, backend="cvxpylayers")
    layer = safeguard.problem.layer
    patch = {"raise": lambda: _raising, "nan": lambda: _nan_solution(layer),
             "unsafe": lambda: _unsafe_solution(layer)}[failure]()
    monkeypatch.setattr(layer, "_solve", patch)
    gen = torch.Generator().manual_seed(13)
    states = random_states(env, 6, gen)
    actions = random_actions(6, env.model.action_dim, gen)
    with pytest.warns(RuntimeWarning, match="backup action"):
        safe = safeguard(actions, state=states)
    backup = env.safe_set.backup_action(states)
    np.testing.assert_allclose(safe.numpy(), backup.numpy(), atol=1e-12)
    assert safeguard.fallbacks == 6 and bool(safeguard.last_fallback.all())
    assert independent_violation(env, states, safe).max() <= TOL
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per instance only
        safeguard(actions, state=states)
    assert safeguard.fallbacks == 12


def test_fallback_of_a_single_row_keeps_the_others(env, monkeypatch):
    safeguard = RayMask(env, backend="cvxpylayers")
    layer = safeguard.centre.problem.layer
    original = layer._solve

    def solve(params, needs_grad):
        if params[0].shape[0] == 1 and float(params[0][0, 0]) == float(bad_q0):
            raise RuntimeError("forced failure of one problem")
        if params[0].shape[0] > 1 and bool((params[0][:, 0] == bad_q0).any()):
            raise RuntimeError("forced failure of the batch")
        return original(params, needs_grad)

    gen = torch.Generator().manual_seed(14)
    states = random_states(env, 5, gen)
    data = safeguard.action_set_data(states)
    bad_q0 = data.f0[2, 0]  # a0 = 0, so q0 = f0
    monkeypatch.setattr(layer, "_solve", solve)
    actions = random_actions(5, env.model.action_dim, gen).requires_grad_()
    with pytest.warns(RuntimeWarning):
        safe = safeguard(actions, state=states)
    assert safeguard.last_fallback.tolist() == [False, False, True, False, False]
    np.testing.assert_allclose(safe[2].detach().numpy(),
                               env.safe_set.backup_action(states[2:3])[0].numpy(), atol=1e-12)
    safe.sum().backward()
    assert bool(torch.isfinite(actions.grad).all())
    assert float(actions.grad[2].abs().sum()) == 0.0
    assert independent_violation(env, states, safe).max() <= TOL


def test_lp_certification_agrees(env):
    safeguard = make_safeguard("rm", env, certification="lp", centre="orthogonal",
                               backend="cvxpylayers")
    gen = torch.Generator().manual_seed(15)
    states = random_states(env, 4, gen)
    safe = safeguard(random_actions(4, env.model.action_dim, gen), state=states)
    assert safeguard.fallbacks == 0
    assert independent_violation(env, states, safe).max() <= TOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_outside_the_safe_set_falls_back_with_a_warning(env, backend):
    """No certified safe action may exist there: the solvers fail or their outputs are not
    certified, and the (uncertified) backup is returned with a warning — never a crash."""
    safeguard = BoundaryProjection(env, backend=backend)
    high = env.model.state_bounds()[1]
    far = (0.999 * high).expand(2, -1).clone()
    far[1] = -far[1]
    actions = torch.zeros(2, env.model.action_dim, dtype=F64)
    with pytest.warns(RuntimeWarning, match="backup"):
        out = safeguard(actions, state=far)
    assert bool(torch.isfinite(out).all()) and bool((out.abs() <= 1.0).all())
    assert safeguard.fallbacks == 2


# --------------------------------------------------------------------------------------------
# the exact backend's own fail-safe
# --------------------------------------------------------------------------------------------
def _exact_failure(failure):
    from safegbpo.safeguards import exact

    original = exact.project

    def project(action, poly):
        if failure == "raise":
            raise np.linalg.LinAlgError("forced solver failure")
        x, solved, active = original(action, poly)
        if failure == "unsafe":  # claims success, returns garbage
            return action * 5.0 + 3.0, solved, active
        return x, torch.zeros_like(solved), active  # reports failure

    return project


@pytest.mark.parametrize("failure", ["raise", "unsolved", "unsafe"])
def test_exact_backend_falls_back_on_solver_failure(env, monkeypatch, failure):
    import safegbpo.safeguards.exact as exact_module

    safeguard = BoundaryProjection(env)
    monkeypatch.setattr(exact_module, "project", _exact_failure(failure))
    gen = torch.Generator().manual_seed(13)
    states = random_states(env, 6, gen)
    actions = random_actions(6, env.model.action_dim, gen, spread=3.0)
    with pytest.warns(RuntimeWarning, match="backup action"):
        safe = safeguard(actions, state=states)
    backup = env.safe_set.backup_action(states)
    np.testing.assert_allclose(safe.numpy(), backup.numpy(), atol=1e-12)
    assert safeguard.fallbacks == 6 and bool(safeguard.last_fallback.all())
    assert independent_violation(env, states, safe).max() <= TOL


def test_exact_certification_checks_every_row(env):
    """The certification rejects points violating a single row of S_s ⊖ W_s, of U_s or of A,
    and accepts the projections."""
    safeguard = BoundaryProjection(env)
    gen = torch.Generator().manual_seed(17)
    states = random_states(env, 12, gen)
    data = safeguard.action_set_data(states)
    actions = random_actions(12, env.model.action_dim, gen, spread=3.0)
    safe = safeguard(actions, state=states)
    assert bool(safeguard.certify(safe, data).all())
    unsafe_rows = torch.as_tensor(independent_violation(env, states, actions) > 1e-6)
    certified = safeguard.certify(actions, data)
    assert not bool((certified & unsafe_rows).any())
    # a point moved slightly outside along the projection's normal is rejected
    moved = safe + 1e-6 * torch.nn.functional.normalize(actions - safe, dim=-1)
    outside = (safe - actions).norm(dim=-1) > 1e-9
    assert not bool((safeguard.certify(moved, data) & outside).any())
