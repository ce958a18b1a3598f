"""SafeSet: validation, file format round trip, factors and backup actions."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from safegbpo.safesets import SAFE_SET_FORMAT, SafeSet
from safegbpo.sets import Zonotope
from tests.safesets import REFERENCE_SET_TASKS, reference_file

F64 = torch.float64


def pendulum_set(m: int = 3, seed: int = 0) -> SafeSet:
    """A valid pendulum set (not necessarily invariant) with m generators and paired actions."""
    rng = np.random.default_rng(seed)
    G = rng.uniform(-0.5, 0.5, size=(2, m)) + np.vstack([np.eye(2), np.zeros((m - 2, 2))]).T
    K = rng.uniform(-1.0, 1.0, size=(1, m)) / (2 * m)
    return SafeSet("pendulum", Zonotope(torch.tensor([0.1, -0.2]), torch.as_tensor(G)),
                   Zonotope(torch.tensor([0.05]), torch.as_tensor(K)), source="test",
                   metadata={"note": "unit test", "numbers": [1, 2.5]})


def valid_dict() -> dict:
    return pendulum_set().to_dict()


def write(tmp_path, data, name="set.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


# ------------------------------------------------------------------------------------------
# round trip
# ------------------------------------------------------------------------------------------
class TestRoundTrip:
    def test_save_load_is_exact(self, tmp_path):
        safe = pendulum_set()
        path = safe.save(tmp_path / "sub" / "p.json")
        loaded = SafeSet.load(path)
        assert loaded.task == "pendulum" and loaded.source == "test"
        assert loaded.metadata == {"note": "unit test", "numbers": [1, 2.5]}
        for a, b in ((loaded.state, safe.state), (loaded.action, safe.action)):
            assert torch.equal(a.center, b.center) and torch.equal(a.generators, b.generators)
        assert [p.name for p in path.parent.iterdir()] == ["p.json"]  # no temp file left

    def test_file_layout(self, tmp_path):
        data = json.loads(pendulum_set().save(tmp_path / "p.json").read_text())
        assert data["format"] == SAFE_SET_FORMAT
        assert np.shape(data["state_center"]) == (2,)
        assert np.shape(data["state_generators"]) == (2, 3)
        assert np.shape(data["action_center"]) == (1,)
        assert np.shape(data["action_generators"]) == (1, 3)

    def test_set_without_action_part(self, tmp_path):
        data = valid_dict()
        del data["action_center"], data["action_generators"]
        safe = SafeSet.load(write(tmp_path, data))
        assert safe.action is None
        with pytest.raises(ValueError, match="no paired action set"):
            safe.backup_action(torch.zeros(1, 2, dtype=F64))
        assert "action_center" not in safe.to_dict()

    def test_save_is_atomic(self, tmp_path, monkeypatch):
        path = tmp_path / "p.json"
        pendulum_set(seed=0).save(path)
        before = path.read_text()

        def broken_replace(src, dst):
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(OSError, match="disk full"):
            pendulum_set(seed=1).save(path)
        assert path.read_text() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]

    @pytest.mark.parametrize("task", REFERENCE_SET_TASKS)
    def test_reference_files_load(self, task):
        path = reference_file(task)
        safe = SafeSet.load(path)
        data = json.loads(path.read_text())
        G = np.asarray(data["state_generators"])
        assert safe.task == task and safe.num_generators == G.shape[1]
        assert safe.action is not None and safe.source
        # feasible excess = how far the interval hull sticks out of S, from the file itself
        high = np.asarray(data["state_center"]) + np.abs(G).sum(axis=1)
        s_high = safe.model.state_bounds()[1].numpy()
        expected = np.maximum(high - s_high, 0.0)
        np.testing.assert_allclose(safe.feasible_excess.numpy(), expected, atol=1e-12)

    def test_reference_pendulum_sticks_out_of_S_but_loads(self):
        safe = SafeSet.load(reference_file("pendulum"))
        excess = safe.feasible_excess
        assert excess[0] == 0 and excess[1] > 1.0  # |theta_dot| reaches ~11.6 > 8


# ------------------------------------------------------------------------------------------
# bad files: every problem gives a ValueError naming it
# ------------------------------------------------------------------------------------------
def _mutate(change):
    data = valid_dict()
    change(data)
    return data


BAD_FILES = {
    "missing key": (_mutate(lambda d: d.pop("state_generators")), "missing key.*state_generators"),
    "wrong format": (_mutate(lambda d: d.update(format="safe-set/0")), "wrong format"),
    "unknown task": (_mutate(lambda d: d.update(task="cartpole")), "unknown task"),
    "state centre shape": (_mutate(lambda d: d.update(state_center=[0.0, 0.0, 0.0])),
                           r"state_center.*shape \(3,\).*expected \(2\)"),
    "state generator rows": (_mutate(lambda d: d.update(state_generators=[[1.0, 0.0]] * 3)),
                             r"state_generators.*shape"),
    "action columns": (_mutate(lambda d: d.update(action_generators=[[0.1, 0.1]])),
                       r"action_generators.*shape \(1, 2\).*expected \(1, 3\)"),
    "action dimension": (_mutate(lambda d: d.update(action_center=[0.0, 0.0])),
                         r"action_center.*expected \(1\)"),
    "NaN": (_mutate(lambda d: d["state_generators"][0].__setitem__(0, float("nan"))),
            "state_generators.*NaN"),
    "inf": (_mutate(lambda d: d["action_center"].__setitem__(0, float("inf"))),
            "action_center.*NaN/inf"),
    "centre outside S": (_mutate(lambda d: d.update(state_center=[0.0, 9.0])),
                         "centre lies outside the feasible state box.*theta_dot"),
    "action set outside A": (_mutate(lambda d: d.update(action_generators=[[0.5, 0.4, -0.2]])),
                             "action set lies outside the feasible action box"),
    "half an action part": (_mutate(lambda d: d.pop("action_generators")),
                            "action_center.*action_generators.*together"),
    "no generators": (_mutate(lambda d: (d.update(state_generators=[[], []]),
                                         d.pop("action_center"), d.pop("action_generators"))),
                      "no columns"),
    "ragged": (_mutate(lambda d: d.update(state_generators=[[1.0, 0.0, 0.0], [1.0]])),
               "state_generators"),
    "not an object": ([1, 2, 3], "expected a JSON object"),
    "metadata type": (_mutate(lambda d: d.update(metadata=[1])), "metadata"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_rejected_with_a_clear_error(tmp_path, case):
    data, pattern = BAD_FILES[case]
    path = write(tmp_path, data)
    with pytest.raises(ValueError, match=pattern) as err:
        SafeSet.load(path)
    assert str(path) in str(err.value)  # the message names the file


def test_not_json(tmp_path):
    with pytest.raises(ValueError, match="not a JSON file"):
        SafeSet.load(write(tmp_path, "{ this is not json"))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        SafeSet.load(tmp_path / "nope.json")


def test_action_set_within_tolerance_is_accepted(tmp_path):
    data = valid_dict()
    data["action_center"] = [0.0]
    data["action_generators"] = [[0.5, 0.5 + 5e-7, 0.0]]  # hull 1 + 5e-7 <= 1 + 1e-6
    assert SafeSet.load(write(tmp_path, data)).action is not None
    data["action_generators"] = [[0.5, 0.5 + 5e-6, 0.0]]
    with pytest.raises(ValueError, match="outside the feasible action box"):
        SafeSet.load(write(tmp_path, data))


class TestConstructorValidation:
    def test_batched_state_rejected(self):
        Z = Zonotope(torch.zeros(2, 2, dtype=F64), torch.eye(2, dtype=F64).expand(2, 2, 2))
        with pytest.raises(ValueError, match="batch size 1"):
            SafeSet("pendulum", Z)

    def test_dimension_mismatch(self):
        with pytest.raises(ValueError, match="n = 6"):
            SafeSet("quadrotor", Zonotope(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)))

    def test_unknown_task(self):
        with pytest.raises(ValueError, match="unknown task"):
            SafeSet("acrobot", Zonotope(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)))


# ------------------------------------------------------------------------------------------
# factors, backup actions, membership, volume
# ------------------------------------------------------------------------------------------
class TestFactors:
    @pytest.mark.parametrize("m", [2, 5])
    def test_factors_reproduce_the_states_with_minimal_norm(self, m):
        safe = pendulum_set(m=m, seed=3)
        rng = np.random.default_rng(0)
        b_true = rng.uniform(-1, 1, size=(40, m))
        c, G = (a[0] for a in safe.state.numpy())
        states = torch.as_tensor(c + b_true @ G.T)
        b = safe.factors(states)
        assert b.shape == (40, m) and b.dtype == F64
        np.testing.assert_allclose((c + b.numpy() @ G.T), states.numpy(), atol=1e-7)
        norms = b.abs().amax(dim=1).numpy()
        assert np.all(norms <= np.abs(b_true).max(axis=1) + 1e-7)

    def test_backup_action_is_the_paired_action(self):
        safe = pendulum_set(m=4, seed=1)
        c, G = (a[0] for a in safe.state.numpy())
        cu, K = (a[0] for a in safe.action.numpy())
        states = torch.as_tensor(c + np.array([[0.3, -0.2, 0.1, 0.9]]) @ G.T)
        b = safe.factors(states).numpy()
        np.testing.assert_allclose(safe.backup_action(states).numpy(), cu + b @ K.T, atol=1e-12)

    def test_outside_state_raises_or_reports(self):
        safe = pendulum_set(m=3)
        c, G = (a[0] for a in safe.state.numpy())
        far = torch.as_tensor(c + 3.0 * G[:, 0])[None]
        with pytest.raises(ValueError, match="outside the safe state set"):
            safe.factors(far)
        with pytest.raises(ValueError, match="outside the safe state set"):
            safe.backup_action(far)
        loose = safe.factors(far, strict=False)
        assert float(loose.abs().max()) > 1.0

    def test_contains_and_gauge(self):
        safe = pendulum_set(m=3)
        c, G = (a[0] for a in safe.state.numpy())
        vertex = c + G @ np.ones(3)
        states = torch.as_tensor(np.stack([c, c + 0.99 * (vertex - c), c + 1.01 * (vertex - c)]))
        assert safe.contains(states).tolist() == [True, True, False]
        gauge = safe.gauge(states).numpy()
        assert gauge[0] == pytest.approx(0.0, abs=1e-9)
        assert gauge[2] == pytest.approx(1.01 * gauge[1] / 0.99, rel=1e-6)

    def test_bad_state_shapes(self):
        safe = pendulum_set()
        with pytest.raises(ValueError, match="expected shape"):
            safe.factors(torch.zeros(4, 3, dtype=F64))
        with pytest.raises(ValueError, match="NaN"):
            safe.factors(torch.tensor([[math.nan, 0.0]], dtype=F64))

    def test_volume_of_a_box(self):
        safe = SafeSet("pendulum", Zonotope.from_box(torch.tensor([-1.0, -2.0], dtype=F64),
                                                     torch.tensor([1.0, 3.0], dtype=F64)))
        assert safe.volume() == pytest.approx(2.0 * 5.0)

