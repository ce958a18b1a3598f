"""The RCI program (SPEC §7): enclosures, template, certificate, computed sets."""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

import safegbpo.safesets.cache as cache_module
from safegbpo.safesets import (
    CACHE_ENV_VAR,
    RCIConfig,
    RCIInfeasibleError,
    SafeSet,
    SafeSetNotInvariantError,
    cache_path,
    certificate_margins,
    compute_rci,
    get_safe_set,
    linear_enclosure,
)
from safegbpo.safesets.cache import cache_key
from safegbpo.safesets.rci import _volume_terms, linearise, template_directions
from safegbpo.sets import Zonotope
from safegbpo.tasks import get_model, get_task, registry
from tests.safesets import REFERENCE_SET_TASKS, TASKS, project_sets, reference_file

F64 = torch.float64


@pytest.fixture(scope="session")
def computed(tmp_path_factory) -> dict[str, SafeSet]:
    return project_sets(tmp_path_factory)


# ------------------------------------------------------------------------------------------
# linearisation and enclosures
# ------------------------------------------------------------------------------------------
def test_linearise_pendulum_matches_the_analytic_jacobians():
    model = get_model("pendulum")
    A, B, E = linearise(model, torch.zeros(2, dtype=F64), torch.zeros(1, dtype=F64),
                        torch.zeros(1, dtype=F64))
    dt, k, b = model.dt, 3 * model.gravity / 2, 3 * model.max_torque
    np.testing.assert_allclose(A, [[1 + dt * dt * k, dt], [dt * k, 1]], atol=1e-12)
    np.testing.assert_allclose(B, [[dt * dt * b], [dt * b]], atol=1e-12)
    np.testing.assert_allclose(E, [[dt * dt], [dt]], atol=1e-12)


def _in_enclosure(enc, x, u, w, nxt) -> bool:
    """LP: nxt - x_e - E w  in  conv_k {A_k dx + B_k du} + E <r_c, diag(r_rad)>."""
    K = enc.num_vertices
    dx, du = x - enc.x_e, u - enc.u_e
    V = np.stack([enc.A[k] @ dx + enc.B[k] @ du for k in range(K)], axis=1)  # (n, K)
    n_w = enc.E.shape[1]
    a_eq = np.block([[V, enc.E], [np.ones((1, K)), np.zeros((1, n_w))]])
    b_eq = np.concatenate([nxt - enc.x_e - enc.E @ w, [1.0]])
    bounds = [(0, None)] * K + [(c - r, c + r) for c, r in
                                zip(enc.remainder_center, enc.remainder_radius, strict=True)]
    res = linprog(np.zeros(K + n_w), A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    return res.status == 0


def _samples(task, bound, num, rng, beyond=False):
    model = get_model(task)
    low, high = (t.numpy() for t in model.state_bounds())
    x = rng.uniform(low, high, size=(num, model.state_dim))
    j = 0 if task == "pendulum" else 2
    if beyond:  # violate the enclosure's assumption on purpose
        x[:, j] = rng.choice([-1, 1], size=num) * rng.uniform(bound * 1.5, high[j], size=num)
    else:
        x[:, j] = rng.uniform(-bound, bound, size=num)
    u = rng.uniform(-1, 1, size=(num, model.action_dim))
    w_low, w_high = (t.numpy() for t in model.noise_bounds())
    w = rng.uniform(w_low, w_high, size=(num, model.noise_dim))
    nxt = model.dynamics(torch.as_tensor(x), torch.as_tensor(u), torch.as_tensor(w)).numpy()
    return x, u, w, nxt


@pytest.mark.parametrize(("task", "bound"), [("pendulum", math.pi), ("pendulum", 1.0),
                                             ("quadrotor", math.pi / 12),
                                             ("quadrotor", 0.1)])
def test_enclosure_contains_the_nonlinear_dynamics(task, bound):
    enc = linear_enclosure(task, bound)
    rng = np.random.default_rng(0)
    x, u, w, nxt = _samples(task, bound, 60, rng)
    # include the extreme corner |x_j| = bound with extreme actions
    assert all(_in_enclosure(enc, *args) for args in zip(x, u, w, nxt, strict=True))


@pytest.mark.parametrize(("task", "bound"), [("pendulum", 1.0), ("quadrotor", 0.05)])
def test_enclosure_check_detects_states_beyond_the_bound(task, bound):
    """Negative control: outside its bound the enclosure does not hold (the test can fail)."""
    enc = linear_enclosure(task, bound)
    rng = np.random.default_rng(1)
    x, u, w, nxt = _samples(task, bound, 60, rng, beyond=True)
    assert not all(_in_enclosure(enc, *args) for args in zip(x, u, w, nxt, strict=True))


def test_enclosure_bounds_are_validated():
    with pytest.raises(ValueError, match="bound"):
        linear_enclosure("pendulum", 4.0)
    with pytest.raises(ValueError, match="bound"):
        linear_enclosure("quadrotor", 0.5)
    with pytest.raises(ValueError, match="unknown task"):
        linear_enclosure("cartpole", 0.1)


# ------------------------------------------------------------------------------------------
# template and volume weights
# ------------------------------------------------------------------------------------------
def test_template_starts_with_identity_and_has_unit_columns():
    enc = linear_enclosure("quadrotor", 0.1)
    T = template_directions(enc.A[0], enc.B[0], 14, 3, 0.1)
    assert T.shape == (6, 14)
    np.testing.assert_allclose(T[:, :6], np.eye(6))
    np.testing.assert_allclose(np.linalg.norm(T, axis=0), 1.0)
    cos = np.abs(T.T @ T) - np.eye(14)
    assert cos.max() <= 0.999 + 1e-12
    with pytest.raises(ValueError, match="num_directions"):
        template_directions(enc.A[0], enc.B[0], 4, 1, 0.1)


def test_volume_terms_match_the_zonotope_volume_and_weights_sum_to_n():
    rng = np.random.default_rng(0)
    T, s = rng.normal(size=(3, 6)), rng.uniform(0.1, 2.0, size=6)
    volume, omega = _volume_terms(T, s)
    expected = float(Zonotope(torch.zeros(3, dtype=F64), torch.as_tensor(T * s)).volume()[0])
    assert volume == pytest.approx(expected, rel=1e-10)
    assert omega.sum() == pytest.approx(3.0) and np.all(omega >= 0)


# ------------------------------------------------------------------------------------------
# computed sets
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_computed_set_is_certified(computed, task):
    safe = computed[task]
    meta = safe.metadata
    enc = linear_enclosure(task, meta["bound"])
    c, G = (a[0] for a in safe.state.numpy())
    cu, K = (a[0] for a in safe.action.numpy())
    margins = certificate_margins(enc, c, G, cu, K)  # recomputed independently here
    assert margins.shape == (enc.num_vertices,)
    assert np.all(margins <= 1.0), margins
    # feasibility: S_s in S, U_s in A, the enclosure's coordinate within its bound
    assert float(safe.feasible_excess.max()) <= 1e-7
    lo, hi = (t[0].numpy() for t in safe.action.interval_hull())
    assert lo.min() >= -1 - 1e-7 and hi.max() <= 1 + 1e-7
    j = enc.bounded_index
    assert abs(c[j] - enc.x_e[j]) + np.abs(G[j]).sum() <= enc.bound + 1e-7


@pytest.mark.parametrize("task", REFERENCE_SET_TASKS)
def test_computed_set_is_at_least_as_large_as_the_reference(computed, task):
    reference = SafeSet.load(reference_file(task))
    assert computed[task].volume() / reference.volume() >= 1.0


def test_backup_actions_keep_the_vertices_inside(computed):
    """Simulate the nonlinear pendulum from every vertex of S_s with its backup action at every
    vertex of W: the successors stay in S_s (independent of the LP certificate)."""
    safe = computed["pendulum"]
    model = safe.model
    c, G = (a[0] for a in safe.state.numpy())
    m = G.shape[1]
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=m)))
    states = torch.as_tensor(c + signs @ G.T)
    actions = safe.backup_action(states)
    for w in (-0.1, 0.1):
        nxt = model.dynamics(states, actions, torch.full((len(states), 1), w, dtype=F64))
        assert bool(safe.contains(nxt, tol=1e-7).all())


def test_compute_rci_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown task"):
        compute_rci("cartpole")
    with pytest.raises(ValueError, match="not installed"):
        compute_rci("pendulum", solver="NO_SUCH_SOLVER")
    with pytest.raises(ValueError, match="num_directions"):
        RCIConfig(num_directions=0)
    with pytest.raises(ValueError, match="bound_fraction_range"):
        RCIConfig(num_directions=4, bound_fraction_range=(0.5, 1.5))


def test_infeasible_template_raises_a_clear_error():
    """An identity-only template (a box) cannot be invariant for the quadrotor's integrator
    chain x <- x_dot <- phi <- phi_dot: the program must say so, not return a set."""
    cfg = RCIConfig(num_directions=6, template_powers=(1,), bound_evaluations=1,
                    volume_iterations=0)
    with pytest.raises(RCIInfeasibleError, match="infeasible"):
        compute_rci("quadrotor", config=cfg, solver="CLARABEL")


def test_small_pendulum_program_is_deterministic_and_certified():
    cfg = RCIConfig(num_directions=3, template_powers=(1,), bound_evaluations=2,
                    volume_iterations=1)
    a = compute_rci("pendulum", config=cfg)
    b = compute_rci("pendulum", config=cfg)
    assert torch.allclose(a.state.generators, b.state.generators, atol=1e-9)
    assert all(m <= 1.0 for m in a.metadata["certificate_margins"])
    assert a.metadata["config"]["num_directions"] == 3


# ------------------------------------------------------------------------------------------
# cache (get_safe_set)
# ------------------------------------------------------------------------------------------
class TestCache:
    @pytest.fixture()
    def empty_cache(self, tmp_path, monkeypatch):
        monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path))
        return tmp_path

    @pytest.fixture()
    def counting_compute(self, computed, monkeypatch):
        """Replace the (slow) computation by the session's pendulum set, counting calls."""
        calls = []

        def fake_compute(task, verbose=False):
            calls.append(task)
            time.sleep(0.05)  # widen the window in which concurrent callers could race
            return computed[task]

        monkeypatch.setattr(cache_module, "compute_rci", fake_compute)
        return calls

    def test_path_uses_the_env_var_and_a_stable_key(self, empty_cache):
        path = cache_path("pendulum")
        assert path.parent == empty_cache / "safe_sets"
        assert path.name == f"pendulum-{cache_key('pendulum')}.json"
        assert cache_key("pendulum") == cache_key("pendulum") != cache_key("quadrotor")

    def test_key_depends_on_the_configuration(self, monkeypatch):
        before = cache_key("pendulum")
        spec = get_task("pendulum")
        changed = dataclasses.replace(spec, rci={**spec.rci, "num_directions": 7})
        monkeypatch.setitem(registry._TASKS._entries, "pendulum", changed)  # order kept
        assert cache_key("pendulum") != before

    def test_first_use_computes_verifies_and_saves_then_loads(self, empty_cache,
                                                              counting_compute):
        first = get_safe_set("pendulum")
        assert counting_compute == ["pendulum"]
        path = cache_path("pendulum")
        assert path.is_file()
        assert first.metadata["verification"]["num_states"] > 0
        assert first.metadata["cache_key"] == cache_key("pendulum")
        second = get_safe_set("pendulum")
        assert counting_compute == ["pendulum"]  # loaded, not recomputed
        assert torch.equal(second.state.generators, first.state.generators)
        cache_module._MEMO.clear()  # a fresh process: loads from the file
        third = get_safe_set("pendulum")
        assert counting_compute == ["pendulum"]
        assert torch.equal(third.state.generators, first.state.generators)
        get_safe_set("pendulum", refresh=True)
        assert counting_compute == ["pendulum", "pendulum"]

    def test_concurrent_first_uses_compute_once(self, empty_cache, counting_compute):
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda _: get_safe_set("pendulum"), range(4)))
        assert counting_compute == ["pendulum"]
        assert all(torch.equal(r.state.generators, results[0].state.generators)
                   for r in results)
        leftovers = [p.name for p in (empty_cache / "safe_sets").iterdir()
                     if not p.name.endswith((".json", ".lock"))]
        assert leftovers == []

    def test_corrupt_cache_file_is_recomputed(self, empty_cache, counting_compute):
        path = cache_path("pendulum")
        path.parent.mkdir(parents=True)
        path.write_text("{ truncated")
        cache_module._MEMO.clear()
        with pytest.warns(UserWarning, match="ignoring unreadable cached safe set"):
            safe = get_safe_set("pendulum")
        assert counting_compute == ["pendulum"]
        assert SafeSet.load(path).volume() == pytest.approx(safe.volume())

    def test_non_invariant_result_is_not_cached(self, empty_cache, monkeypatch):
        box = SafeSet("pendulum", Zonotope.from_box(torch.tensor([-3.1, -8.0], dtype=F64),
                                                    torch.tensor([3.1, 8.0], dtype=F64)))
        monkeypatch.setattr(cache_module, "compute_rci", lambda task, verbose=False: box)
        with pytest.raises(SafeSetNotInvariantError):
            get_safe_set("pendulum")
        assert not cache_path("pendulum").exists()
