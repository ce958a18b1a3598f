"""P1 on the energy task under every built-in safeguard variant (SPEC §3, §5, §10), checked
independently of the safeguards' solvers: the dynamics are linear and the disturbance is one
interval, so an action is safe iff it lies in ``A ∩ U_s`` and both successors at the ends of
``W`` (``t_out = -10`` and ``40``) lie in ``S_s`` and ``S`` (membership by the Eq 5 LP)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safegbpo.envs import make_vec
from safegbpo.safeguards import SafeguardActionWrapper, make_safeguard
from safegbpo.safeguards.variants import map_variants
from safegbpo.sets.containment import point_in_zonotope
from safegbpo.tasks import get_model
from tests.safesets import project_set

F64 = torch.float64
TOL = 1e-7
VARIANTS = {v.key: v for v in map_variants()}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = make_vec("energy", 8, seed=0, safe_set=project_set(tmp_path_factory, "energy"))
    env.reset(seed=0)
    return env


def states_and_actions(env, seed: int):
    """8 states of S_s (half near its vertices, where the safe action sets are smallest) and
    actions in ``[-2, 2]^2`` (inside and outside A)."""
    gen = torch.Generator().manual_seed(seed)
    c, G = env.safe_set.state.center[0], env.safe_set.state.generators[0]
    b = 2 * torch.rand(8, G.shape[1], generator=gen, dtype=F64) - 1
    b[::2] = 0.98 * torch.sign(b[::2])
    actions = 4 * torch.rand(8, 2, generator=gen, dtype=F64) - 2
    actions[0] = 0.0
    actions[1] = torch.tensor([1.0, -1.0])
    return c + b @ G.T, actions


def violations(env, states: torch.Tensor, safe: torch.Tensor) -> list[str]:
    model = get_model("energy")
    safe_set = env.safe_set
    low, high = model.state_bounds()
    c_u, g_u = (a[0] for a in safe_set.action.numpy())
    problems = []
    for i, (s, a) in enumerate(zip(states, safe.detach(), strict=True)):
        if not bool(torch.isfinite(a).all()) or float(a.abs().max()) > 1.0 + TOL:
            problems.append(f"row {i}: action {a.tolist()} outside A")
            continue
        if not point_in_zonotope(a.numpy(), c_u, g_u, tol=TOL):
            problems.append(f"row {i}: action {a.tolist()} outside U_s")
        ends = torch.tensor([[-10.0], [40.0]], dtype=F64)
        nxt = model.dynamics(s.expand(2, -1), a.expand(2, -1), ends)
        if not bool(safe_set.contains(nxt, tol=TOL).all()):
            problems.append(f"row {i}: a successor of {a.tolist()} leaves S_s")
        if not bool(((nxt >= low - TOL) & (nxt <= high + TOL)).all()):
            problems.append(f"row {i}: a successor leaves S")
    return problems


@pytest.mark.parametrize("key", sorted(VARIANTS))
def test_p1_every_variant(env, key):
    """Every safeguard map (the regularised rows of SPEC §5 use the same maps)."""
    variant = VARIANTS[key]
    guard = make_safeguard(str(variant.safeguard), env, **dict(variant.options))
    for seed in range(3):
        states, actions = states_and_actions(env, seed)
        safe = guard(actions, states)
        assert safe.shape == (8, 2)
        assert violations(env, states, safe) == []
    assert guard.fallbacks == 0


@pytest.mark.parametrize("key", ["bp", "rm", "rm-hyperbolic"])
def test_training_path_keeps_every_realised_state_safe(env, key):
    """Through the wrapper training uses, random (also unsafe) actions for 48 hours of recorded
    outside temperatures: every realised state stays in S_s."""
    variant = VARIANTS[key]
    guard = make_safeguard(str(variant.safeguard), env, **dict(variant.options))
    wrapped = SafeguardActionWrapper(env, guard)
    wrapped.reset(seed=4)
    gen = torch.Generator().manual_seed(4)
    gauges = []
    for _ in range(48):
        action = 4 * torch.rand(8, 2, generator=gen, dtype=F64) - 2
        wrapped.step(action)
        gauges.append(env.safe_set.gauge(env.state).max().item())
    assert max(gauges) <= 1.0 + 1e-7
    assert np.isfinite(gauges).all()
