"""make_safeguard: names, options, user classes, clear errors."""

from __future__ import annotations

import pytest

from safegbpo.safeguards import BoundaryProjection, RayMask, make_safeguard
from safegbpo.safeguards.registry import safeguard_options

from .conftest import make_env


@pytest.fixture(scope="module")
def env():
    return make_env("pendulum", num_envs=2, seed=0)


def test_builtin_names_and_options(env):
    bp = make_safeguard("bp", env)
    assert type(bp) is BoundaryProjection and not bp.passthrough
    rm = make_safeguard("rm", env, mapping="hyperbolic", centre="orthogonal", passthrough=True)
    assert type(rm) is RayMask
    assert (rm.mapping, rm.centre_name, rm.passthrough) == ("hyperbolic", "orthogonal", True)
    assert make_safeguard("rm", env, seed=5, num_directions=4).centre.directions.shape == (1, 4)


def test_options_are_listed():
    assert set(safeguard_options(BoundaryProjection)) == {
        "backend", "passthrough", "margin", "tol", "solver_args", "certification"}
    assert {"mapping", "centre", "seed", "num_directions", "centre_gradient",
            "passthrough"} <= set(
        safeguard_options(RayMask))


@pytest.mark.parametrize("name, options, match", [
    ("bp", {"centre": "zonotopic"}, "not valid for safeguard 'bp'"),
    ("bp", {"mapping": "linear"}, "not valid"),
    ("rm", {"centre": "spherical"}, "centre"),
    ("rm", {"mapping": "cubic"}, "mapping"),
    ("rm", {"seed": -1}, "seed"),
    ("rm", {"centre": "orthogonal", "num_directions": 3}, "num_directions"),
    ("rm", {"centre": "orthogonal", "centre_gradient": False}, "centre_gradient"),
    ("rm", {"centre_gradient": "no"}, "centre_gradient"),
    ("rm", {"passthrough": "yes"}, "passthrough"),
    ("bp", {"margin": 0.5}, "margin"),
    ("bp", {"certification": "trust-me"}, "certification"),
    ("bp", {"backend": "cvxpylayers", "certification": "trust-me"}, "certification"),
    ("bp", {"certification": "lp"}, "only applies to backend='cvxpylayers'"),
    ("bp", {"solver_args": {"solve_method": "SCS"}}, "solver_args"),
    ("bp", {"backend": "scs"}, "backend"),
    ("projection", {}, "unknown safeguard"),
    ("no_such_module_xyz:Safeguard", {}, "cannot import"),
    ("safegbpo.safeguards:NoSuchClass", {}, "no attribute"),
    ("safegbpo.safeguards:RayMask", {"colour": "red"}, "cannot build"),
])
def test_invalid_names_and_options_raise_value_error(env, name, options, match):
    with pytest.raises(ValueError, match=match):
        make_safeguard(name, env, **options)


@pytest.mark.parametrize("backend", ["exact", "cvxpylayers"])
def test_backends_and_their_defaults(env, backend):
    safeguard = make_safeguard("bp", env, backend=backend)
    assert safeguard.backend == backend
    assert (safeguard.exact is None) == (backend == "cvxpylayers")
    expected = {"exact": (0.0, 1e-9, "hrep"), "cvxpylayers": (1e-6, 1e-7, "certificate")}
    assert (safeguard.structure.margin, safeguard.tol, safeguard.certification) \
        == expected[backend]
    assert make_safeguard("bp", env).backend == "exact"


def test_user_class_by_import_path(env):
    safeguard = make_safeguard("safegbpo.safeguards.ray_mask:RayMask", env, mapping="hyperbolic")
    assert type(safeguard) is RayMask and safeguard.mapping == "hyperbolic"
