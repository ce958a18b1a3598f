"""A-posteriori verification on the nonlinear dynamics (SPEC §7)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from safegbpo.safesets import SafeSet, SafeSetNotInvariantError, verify_safe_set
from safegbpo.safesets.verify import _linearise, audit_states, next_state_margins
from safegbpo.sets import Zonotope, induced_containment_margin
from tests.safesets import REFERENCE_SET_TASKS, TASKS, project_sets, reference_file

F64 = torch.float64
SAMPLES = 150


@pytest.fixture(scope="session")
def computed(tmp_path_factory) -> dict[str, SafeSet]:
    return project_sets(tmp_path_factory)


@pytest.mark.parametrize("task", TASKS)
def test_computed_sets_verify(computed, task):
    report = verify_safe_set(computed[task], num_samples=SAMPLES, seed=1, reference=None)
    assert report.verdict, report.violations
    assert report.num_violations == 0 and report.num_backup_failures == 0
    assert report.num_simulation_violations == 0
    assert report.num_states >= SAMPLES
    assert report.worst_margin <= 1.0 + report.tolerance
    assert report.volume_ratio is None and report.reference is None
    report.raise_if_violated()  # no exception
    json.dumps(report.to_dict())


@pytest.mark.parametrize("task", REFERENCE_SET_TASKS)
def test_reference_sets_verify(task):
    path = reference_file(task)
    report = verify_safe_set(SafeSet.load(path), num_samples=SAMPLES, seed=0, reference=path,
                             max_vertices=32)
    assert report.verdict, report.violations
    assert report.volume_ratio == pytest.approx(1.0)


@pytest.mark.parametrize("task", REFERENCE_SET_TASKS)
def test_report_states_the_volume_ratio_ours_over_reference(computed, task):
    path = reference_file(task)
    ours = computed[task]
    report = verify_safe_set(ours, num_samples=20, reference=path, max_vertices=4)
    ref_volume = SafeSet.load(path).volume()
    assert report.reference == str(path)
    assert report.reference_volume == pytest.approx(ref_volume)
    assert report.volume_ratio == pytest.approx(ours.volume() / ref_volume)
    assert report.volume_ratio >= 1.0
    # "auto" finds the same reference next to the repository
    auto = verify_safe_set(ours, num_samples=5, reference="auto", max_vertices=4)
    assert auto.volume_ratio == pytest.approx(report.volume_ratio)


def test_reference_for_another_task_is_rejected(computed):
    with pytest.raises(ValueError, match="is for task 'quadrotor'"):
        verify_safe_set(computed["pendulum"], num_samples=5, reference=computed["quadrotor"])


def test_huge_set_fails_verification():
    """The whole feasible box is not invariant (at theta = pi, theta_dot = 8 nothing can stop
    the pendulum from leaving S)."""
    box = SafeSet("pendulum", Zonotope.from_box(torch.tensor([-3.1, -8.0], dtype=F64),
                                                torch.tensor([3.1, 8.0], dtype=F64)),
                  source="box S")
    report = verify_safe_set(box, num_samples=60, reference=None)
    assert not report.verdict
    assert report.num_violations > 0 and report.violations
    assert report.worst_margin > 1.0
    assert "no action" in report.violations[0]["reason"] or "margin" in \
        report.violations[0]["reason"]
    with pytest.raises(SafeSetNotInvariantError, match="NOT robust control invariant"):
        report.raise_if_violated()
    data = report.to_dict()
    json.dumps(data)
    assert data["verdict"] is False


def test_bad_action_generators_fail_verification(computed):
    """Same state set, wrong paired actions: the backup actions fail (although the state set
    itself admits other safe actions, which the report says)."""
    safe = computed["pendulum"]
    bad = dataclasses.replace(safe, action=Zonotope(safe.action.center,
                                                    -safe.action.generators))
    report = verify_safe_set(bad, num_samples=60, reference=None)
    assert not report.verdict
    assert report.num_backup_failures > 0
    assert 0 < report.num_lp_rescued <= report.num_backup_failures
    with pytest.raises(SafeSetNotInvariantError, match="backup action fails"):
        report.raise_if_violated()


def test_state_set_without_actions_is_verified_with_lp_actions(computed):
    safe = dataclasses.replace(computed["pendulum"], action=None)
    report = verify_safe_set(safe, num_samples=40, reference=None)
    assert report.verdict and not report.has_action_set


def test_audit_states_lie_in_the_set_and_in_S():
    safe = SafeSet.load(reference_file("pendulum"))  # sticks out of S: exercises the clipping
    states = audit_states(safe, 200, np.random.default_rng(0))
    low, high = (t.numpy() for t in safe.model.state_bounds())
    assert np.all((states >= low) & (states <= high))
    assert bool(safe.contains(torch.as_tensor(states), tol=1e-8).all())
    assert np.isclose(np.abs(states[:, 1]), 8.0).any()  # states on the face of S are audited
    again = audit_states(safe, 200, np.random.default_rng(0))
    np.testing.assert_array_equal(states, again)


@pytest.mark.parametrize("task", TASKS)
def test_batched_margins_match_the_independent_lp(computed, task):
    safe = computed[task]
    model = safe.model
    states = audit_states(safe, 6, np.random.default_rng(2), max_vertices=2)
    f0, B, E = _linearise(model, states)
    W_G = np.diag(model.noise_bounds()[1].numpy())
    actions = safe.backup_action(torch.as_tensor(states)).numpy()
    c, G = (a[0] for a in safe.state.numpy())
    ours, _ = next_state_margins(f0, B, E @ W_G, c, G, actions)
    theirs = induced_containment_margin(f0, B, E, W_G, actions, c, G)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    # free actions can only do better than the backup actions
    low, high = (t.numpy() for t in model.state_bounds())
    best, best_actions = next_state_margins(f0, B, E @ W_G, c, G, None, (low, high))
    assert np.all(best <= ours + 1e-7) and np.all(np.abs(best_actions) <= 1 + 1e-9)


def test_bad_arguments():
    safe = SafeSet("pendulum", Zonotope.from_box(torch.tensor([-1.0, -1.0], dtype=F64),
                                                 torch.tensor([1.0, 1.0], dtype=F64)))
    with pytest.raises(ValueError, match="num_samples"):
        verify_safe_set(safe, num_samples=-1)
    with pytest.raises(ValueError, match="SafeSet"):
        verify_safe_set("pendulum.json")  # type: ignore[arg-type]
