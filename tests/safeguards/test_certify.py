"""Independent certification (stage 1: exact certificate check, stage 2: HiGHS LPs) and the
action-set structure, on a hand-made double integrator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safegbpo.safeguards.action_set import ActionSetData, ActionSetStructure
from safegbpo.safeguards.certify import Certificate, certify_actions, check_certificate
from safegbpo.safeguards.problems import ProjectionProblem, ZonotopicCentreProblem
from safegbpo.sets.containment import gauge_lp, induced_containment_margin

F64 = torch.float64


def structure(explicit: bool = True) -> ActionSetStructure:
    return ActionSetStructure(
        box_low=-np.ones(2), box_high=np.ones(2),
        explicit_center=np.array([0.1, 0.0]) if explicit else None,
        explicit_generators=np.array([[0.6, 0.2, 0.0], [0.0, 0.3, 0.7]]) if explicit else None,
        safe_center=np.zeros(2),
        safe_generators=np.array([[1.0, 0.0, 0.3], [0.0, 1.0, -0.2]]),
        noise_generators=np.array([[0.05]]),
    )


def data(batch: int = 4) -> ActionSetData:
    gen = torch.Generator().manual_seed(0)
    states = (torch.rand(batch, 2, generator=gen, dtype=F64) - 0.5) * 0.8
    f0 = states @ torch.tensor([[1.0, 0.0], [0.1, 1.0]], dtype=F64).T
    B = torch.tensor([[0.05, 0.0], [0.0, 0.1]], dtype=F64).expand(batch, 2, 2)
    E = torch.tensor([[0.0], [1.0]], dtype=F64).expand(batch, 2, 1)
    return ActionSetData.from_linearisation(structure(), f0, B, E)


def lp_safe(s: ActionSetStructure, d: ActionSetData, a: torch.Tensor) -> list[bool]:
    out = []
    for i, ai in enumerate(a.numpy()):
        ok = bool(np.all(np.abs(ai) <= 1 + 1e-7))
        if s.has_explicit:
            ok &= gauge_lp(s.explicit_generators, ai - s.explicit_center) <= 1 + 1e-7
        ok &= induced_containment_margin(
            d.f0[i].numpy(), d.B[i].numpy(), d.E[i].numpy(), s.noise_generators, ai,
            s.safe_center, s.safe_generators) <= 1 + 1e-7
        out.append(ok)
    return out


@pytest.fixture(scope="module")
def projected():
    s, d = structure(), data()
    actions = torch.tensor([[2.0, 2.0], [-3.0, 0.5], [0.1, 0.0], [0.5, -0.9]], dtype=F64)
    x, ok, cert = ProjectionProblem(s)(actions, d)
    assert bool(ok.all())
    return s, d, x, cert


def test_solver_certificates_prove_the_projections(projected):
    s, d, x, cert = projected
    assert check_certificate(x, s, d, cert).all()
    assert lp_safe(s, d, x) == [True] * 4
    assert certify_actions(x, s, d, certificate=cert).all()
    assert certify_actions(x, s, d, certificate=cert, method="lp").all()


def test_tampered_certificate_fails_stage_one_but_the_lp_certifies(projected):
    s, d, x, cert = projected
    # add null-space components (the residual correction cannot remove them): still solutions
    # of the equalities, but far outside the bounds
    null_u = torch.as_tensor(np.linalg.svd(s.explicit_generators)[2][-1], dtype=F64)
    null_s = torch.as_tensor(np.linalg.svd(s.safe_generators)[2][-1], dtype=F64)
    bad = Certificate(explicit=cert.explicit + 5.0 * null_u, gamma=cert.gamma,
                      beta=cert.beta + 5.0 * null_s)
    assert not check_certificate(x, s, d, bad).any()
    bad_u = Certificate(explicit=cert.explicit + 5.0 * null_u, gamma=cert.gamma, beta=cert.beta)
    assert not check_certificate(x, s, d, bad_u).any()
    assert certify_actions(x, s, d, certificate=bad).all()  # stage 2 (LPs) proves them


def test_unsafe_points_are_never_certified(projected):
    s, d, x, cert = projected
    outward = x + 0.05 * torch.sign(x - torch.tensor(s.explicit_center))
    far = torch.tensor([[1.5, 0.0], [0.0, -1.2], [0.9, 0.99], [float("nan"), 0.0]], dtype=F64)
    for points in (outward, far):
        expected = lp_safe(s, d, torch.nan_to_num(points, nan=5.0))
        got = certify_actions(points, s, d, certificate=cert)
        assert got.tolist() == expected
        assert not check_certificate(points, s, d, cert)[~torch.tensor(expected)].any()


def test_residual_correction_certifies_nearby_interior_points(projected):
    s, d, x, cert = projected
    # pull towards a strictly safe point: the equality residuals change, the certificate is
    # corrected exactly and still proves the new points
    centre = torch.tensor([[0.1, 0.0]], dtype=F64)
    assert lp_safe(s, d, centre.expand(4, 2)) == [True] * 4
    inner = x + 1e-3 * (centre - x)
    assert check_certificate(inner, s, d, cert).all()


def test_rows_mask_limits_the_checked_rows(projected):
    s, d, x, cert = projected
    rows = torch.tensor([True, False, True, False])
    assert certify_actions(x, s, d, rows=rows, certificate=cert).tolist() == [True, False,
                                                                              True, False]


def test_zonotope_certificate_proves_every_vertex():
    s, d = structure(), data()
    directions = np.array([[1.0, 0.0, 0.6, -0.8], [0.0, 1.0, 0.8, 0.6]])
    problem = ZonotopicCentreProblem(s, directions)
    c, lengths, ok, zcert = problem(d, d.f0)
    assert bool(ok.all()) and bool((lengths > 1e-3).all())
    for signs in np.array(np.meshgrid(*[[-1.0, 1.0]] * 4)).reshape(4, -1).T:
        b = torch.as_tensor(signs, dtype=F64).expand(4, 4)
        vertex = c + (b.unsqueeze(1) * torch.as_tensor(directions) * lengths.unsqueeze(1)).sum(-1)
        assert check_certificate(vertex, s, d, zcert.point(b)).all()
        assert lp_safe(s, d, vertex) == [True] * 4


def test_structure_validation():
    with pytest.raises(ValueError, match="low < high"):
        ActionSetStructure(box_low=np.ones(2), box_high=np.ones(2), explicit_center=np.zeros(2),
                           explicit_generators=np.eye(2))
    with pytest.raises(ValueError, match="explicit zonotope U_s, an induced"):
        ActionSetStructure(box_low=-np.ones(2), box_high=np.ones(2))
    with pytest.raises(ValueError, match="noise generators"):
        ActionSetStructure(box_low=-np.ones(2), box_high=np.ones(2), safe_center=np.zeros(2),
                           safe_generators=np.eye(2))
    with pytest.raises(ValueError, match="margin"):
        ActionSetStructure(box_low=-np.ones(2), box_high=np.ones(2), explicit_center=np.zeros(2),
                           explicit_generators=np.eye(2), margin=0.1)
    s = structure()
    with pytest.raises(ValueError, match="B must have shape"):
        ActionSetData.from_linearisation(s, torch.zeros(3, 2, dtype=F64),
                                         torch.zeros(3, 2, 1, dtype=F64),
                                         torch.zeros(3, 2, 1, dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        ActionSetData.from_linearisation(s, torch.full((1, 2), float("nan"), dtype=F64),
                                         torch.zeros(1, 2, 2, dtype=F64),
                                         torch.zeros(1, 2, 1, dtype=F64))
