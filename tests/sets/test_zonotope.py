"""Unit tests of :class:`safegbpo.sets.Zonotope` (SPEC §1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import ConvexHull

from safegbpo.sets import Zonotope
from safegbpo.sets.containment import gauge_lp

F64 = torch.float64


def random_zonotope(seed: int, batch: int = 3, n: int = 2, m: int = 4) -> Zonotope:
    g = torch.Generator().manual_seed(seed)
    return Zonotope(torch.randn(batch, n, generator=g, dtype=F64),
                    torch.randn(batch, n, m, generator=g, dtype=F64))


def shoelace(vertices: torch.Tensor) -> float:
    x, y = vertices[:, 0], vertices[:, 1]
    return float(0.5 * (x * torch.roll(y, -1) - torch.roll(x, -1) * y).sum())


# ------------------------------------------------------------------------------------------
# construction and validation
# ------------------------------------------------------------------------------------------
class TestConstruction:
    def test_unbatched_inputs_are_promoted_to_batch_one(self):
        Z = Zonotope([1.0, 2.0], [[1.0, 0.0, 0.5], [0.0, 2.0, 0.5]])
        assert Z.center.shape == (1, 2)
        assert Z.generators.shape == (1, 2, 3)
        assert (Z.batch_size, Z.dim, Z.num_generators) == (1, 2, 3)
        assert Z.dtype == F64 and len(Z) == 1

    def test_numpy_and_list_inputs_give_the_same_zonotope(self):
        c, G = np.array([0.5, -1.0]), np.array([[1.0, 2.0], [3.0, 4.0]])
        Z1, Z2 = Zonotope(c, G), Zonotope(c.tolist(), G.tolist())
        torch.testing.assert_close(Z1.center, Z2.center)
        torch.testing.assert_close(Z1.generators, torch.as_tensor(G, dtype=F64)[None])

    def test_unbatched_generators_are_broadcast_to_the_centre_batch(self):
        Z = Zonotope(torch.zeros(4, 2, dtype=F64), torch.eye(2, dtype=F64))
        assert Z.generators.shape == (4, 2, 2)
        Z = Zonotope(torch.zeros(2, dtype=F64), torch.ones(5, 2, 3, dtype=F64))
        assert Z.center.shape == (5, 2)

    def test_dtype_and_gradients_are_kept(self):
        c = torch.zeros(2, dtype=F64, requires_grad=True)
        Z = Zonotope(c, torch.eye(2), dtype=torch.float32)
        assert Z.center.dtype == torch.float32 and Z.generators.dtype == torch.float32
        Z.support([1.0, 1.0]).sum().backward()
        torch.testing.assert_close(c.grad, torch.ones(2, dtype=F64))

    def test_zero_generators_allowed(self):
        Z = Zonotope([1.0, 2.0, 3.0], np.zeros((3, 0)))
        assert Z.num_generators == 0
        assert bool(Z.contains([1.0, 2.0, 3.0]))
        assert not bool(Z.contains([1.0, 2.0, 3.1]))

    @pytest.mark.parametrize(
        ("center", "generators", "message"),
        [
            ([0.0, float("nan")], np.eye(2), "center contains NaN/inf"),
            ([0.0, 0.0], [[1.0, float("inf")], [0.0, 1.0]], "generators contains NaN/inf"),
            ([0.0, 0.0, 0.0], np.eye(2), r"generators: expected shape \(batch, 3, m\)"),
            (np.zeros((2, 2, 2)), np.eye(2), r"center: expected shape \(batch, n\)"),
            ([0.0, 0.0], np.zeros(2), r"generators: expected shape \(batch, n, m\)"),
            (np.zeros((2, 2)), np.zeros((3, 2, 2)), "batch size mismatch"),
            (np.zeros(0), np.zeros((0, 1)), "dimension n must be >= 1"),
        ],
    )
    def test_invalid_input_raises_a_clear_error(self, center, generators, message):
        with pytest.raises(ValueError, match=message):
            Zonotope(center, generators)

    def test_non_float_dtype_rejected(self):
        with pytest.raises(ValueError, match="floating dtype"):
            Zonotope([0.0], [[1.0]], dtype=torch.int64)


class TestBox:
    def test_from_box_centre_and_generators(self):
        Z = Zonotope.from_box([-1.0, 0.0, 2.0], [3.0, 1.0, 2.0])
        torch.testing.assert_close(Z.center, torch.tensor([[1.0, 0.5, 2.0]], dtype=F64))
        torch.testing.assert_close(Z.generators[0], torch.diag(torch.tensor([2.0, 0.5, 0.0],
                                                                            dtype=F64)))
        assert bool(Z.is_box().all())
        low, high = Z.interval_hull()
        torch.testing.assert_close(low, torch.tensor([[-1.0, 0.0, 2.0]], dtype=F64))
        torch.testing.assert_close(high, torch.tensor([[3.0, 1.0, 2.0]], dtype=F64))

    def test_from_box_batched_and_broadcast(self):
        low = torch.tensor([[-1.0, -1.0], [0.0, 0.0]], dtype=F64)
        Z = Zonotope.from_box(low, torch.tensor([1.0, 2.0], dtype=F64))
        assert Z.batch_size == 2
        torch.testing.assert_close(Z.interval_hull()[1],
                                   torch.tensor([[1.0, 2.0], [1.0, 2.0]], dtype=F64))

    def test_from_box_rejects_empty_and_non_finite_boxes(self):
        with pytest.raises(ValueError, match=r"empty box, low > high at index \[1\]"):
            Zonotope.from_box([0.0, 1.0], [1.0, 0.5])
        with pytest.raises(ValueError, match="NaN/inf"):
            Zonotope.from_box([0.0, float("nan")], [1.0, 1.0])
        with pytest.raises(ValueError, match="same n"):
            Zonotope.from_box([0.0, 0.0], [1.0, 1.0, 1.0])

    def test_general_zonotope_is_not_a_box(self):
        assert not bool(Zonotope([0.0, 0.0], [[1.0, 1.0], [0.0, 1.0]]).is_box().any())


# ------------------------------------------------------------------------------------------
# set operations
# ------------------------------------------------------------------------------------------
class TestOperations:
    def test_minkowski_sum_eq2(self):
        Z1, Z2 = random_zonotope(0, m=2), random_zonotope(1, m=3)
        Z = Z1 + Z2
        torch.testing.assert_close(Z.center, Z1.center + Z2.center)
        torch.testing.assert_close(Z.generators, torch.cat([Z1.generators, Z2.generators], -1))
        assert Z1.minkowski_sum(Z2).num_generators == 5

    def test_minkowski_sum_broadcasts_batch_one(self):
        Z = random_zonotope(0, batch=4) + Zonotope.from_box([-1.0, -1.0], [1.0, 1.0])
        assert (Z.batch_size, Z.num_generators) == (4, 6)
        with pytest.raises(ValueError, match="cannot be broadcast"):
            random_zonotope(0, batch=2) + random_zonotope(1, batch=3)
        with pytest.raises(ValueError, match="dimension"):
            random_zonotope(0, n=2) + random_zonotope(1, n=3)

    def test_translation(self):
        Z = random_zonotope(2)
        t = torch.tensor([1.0, -2.0], dtype=F64)
        for shifted in (Z + t, t + Z, Z.translate(t.expand(3, 2)), np.array([1.0, -2.0]) + Z):
            torch.testing.assert_close(shifted.center, Z.center + t)
            torch.testing.assert_close(shifted.generators, Z.generators)
        torch.testing.assert_close((Z - t).center, Z.center - t)
        with pytest.raises(ValueError, match="translation"):
            Z + torch.ones(3, dtype=F64)

    def test_linear_map_eq3(self):
        Z = random_zonotope(3, n=2, m=3)
        M = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]], dtype=F64)
        for W in (Z.linear_map(M), M @ Z):
            assert (W.dim, W.num_generators) == (3, 3)
            torch.testing.assert_close(W.center, Z.center @ M.T)
            torch.testing.assert_close(W.generators, M @ Z.generators)
        Mb = torch.randn(3, 1, 2, dtype=F64)
        torch.testing.assert_close(Z.linear_map(Mb).center[:, 0],
                                   (Mb[:, 0, :] * Z.center).sum(-1))
        with pytest.raises(ValueError, match="columns"):
            Z.linear_map(torch.eye(3, dtype=F64))

    def test_support_eq4_hand_example(self):
        Z = Zonotope([1.0, 0.0], [[1.0, 1.0], [0.0, 2.0]])
        # l = (1, 1): l^T c = 1, G^T l = (1, 3) -> 1 + 4 = 5
        torch.testing.assert_close(Z.support([1.0, 1.0]), torch.tensor([5.0], dtype=F64))
        torch.testing.assert_close(Z.support_point([1.0, 1.0]),
                                   torch.tensor([[3.0, 2.0]], dtype=F64))

    def test_support_shapes_and_support_point(self):
        Z = random_zonotope(4, batch=3)
        L = torch.randn(3, 7, 2, dtype=F64)
        values = Z.support(L)
        assert values.shape == (3, 7)
        points = Z.support_point(L)
        torch.testing.assert_close((points * L).sum(-1), values)
        assert Z.support(L[:, 0]).shape == (3,)
        assert Z.support([1.0, 0.0]).shape == (3,)
        with pytest.raises(ValueError, match="l: expected"):
            Z.support(torch.ones(3, dtype=F64))

    def test_interval_hull_is_tight(self):
        Z = random_zonotope(5, n=3, m=5)
        low, high = Z.interval_hull()
        eye = torch.eye(3, dtype=F64)
        for i in range(3):
            torch.testing.assert_close(Z.support(eye[i]), high[:, i])
            torch.testing.assert_close(-Z.support(-eye[i]), low[:, i])
        pts = Z.sample(200, torch.Generator().manual_seed(0))
        assert bool((pts >= low[:, None] - 1e-12).all() and (pts <= high[:, None] + 1e-12).all())


class TestSampling:
    def test_shapes_reproducibility_and_containment(self):
        Z = random_zonotope(6, batch=2, n=3, m=5)
        p1 = Z.sample(40, torch.Generator().manual_seed(7))
        p2 = Z.sample(40, torch.Generator().manual_seed(7))
        p3 = Z.sample(40, torch.Generator().manual_seed(8))
        assert p1.shape == (2, 40, 3)
        torch.testing.assert_close(p1, p2)
        assert not torch.allclose(p1, p3)
        assert bool(Z.contains(p1).all())

    def test_factors_and_methods(self):
        Z = random_zonotope(7, m=6)
        g = torch.Generator().manual_seed(1)
        pts, b = Z.sample(30, g, return_factors=True)
        assert b.shape == (3, 30, 6) and float(b.abs().max()) <= 1.0
        torch.testing.assert_close(pts, Z.points_from_factors(b))
        pts, b = Z.sample(30, g, method="sign-factors", return_factors=True)
        assert set(b.unique().tolist()) == {-1.0, 1.0}
        with pytest.raises(ValueError, match="unknown sampling method"):
            Z.sample(3, method="uniform-on-set")
        with pytest.raises(ValueError, match="factors"):
            Z.points_from_factors(torch.zeros(3, 2, 5, dtype=F64))


# ------------------------------------------------------------------------------------------
# vertices and volume
# ------------------------------------------------------------------------------------------
class TestVertices:
    def test_box_vertices_counter_clockwise(self):
        V = Zonotope.from_box([0.0, 0.0], [2.0, 1.0]).vertices_2d()[0]
        expected = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0]], dtype=F64)
        torch.testing.assert_close(V, expected)

    def test_parallel_generators_are_merged_and_degenerate_cases(self):
        Z = Zonotope([0.0, 0.0], [[1.0, -2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
        V = Z.vertices_2d()[0]
        assert V.shape == (4, 2)  # directions (1,0) [merged: 1 + 2] and (1,1)
        assert shoelace(V) == pytest.approx(float(Z.volume()))
        segment = Zonotope([1.0, 1.0], [[1.0, 2.0], [1.0, 2.0]]).vertices_2d()[0]
        torch.testing.assert_close(segment, torch.tensor([[-2.0, -2.0], [4.0, 4.0]], dtype=F64))
        point = Zonotope([1.0, 1.0], np.zeros((2, 3))).vertices_2d()[0]
        torch.testing.assert_close(point, torch.tensor([[1.0, 1.0]], dtype=F64))

    def test_vertices_are_the_convex_hull_of_the_zonotope(self):
        Z = random_zonotope(8, batch=4, m=5)
        L = torch.randn(4, 50, 2, dtype=F64)
        for i, V in enumerate(Z.vertices_2d()):
            assert V.shape == (10, 2)
            assert shoelace(V) > 0  # counter-clockwise
            # the support function of the polygon equals that of the zonotope
            torch.testing.assert_close((L[i] @ V.T).max(dim=1).values, Z[i].support(L[i:i + 1])[0])
            hull = ConvexHull(V.numpy())
            assert len(hull.vertices) == 10  # every returned point is a genuine vertex

    def test_wrong_dimension(self):
        with pytest.raises(ValueError, match="2-D"):
            random_zonotope(0, n=3).vertices_2d()


class TestVolume:
    def test_box_volume(self):
        Z = Zonotope.from_box([[-1.0, 0.0, 2.0], [0.0, 0.0, 0.0]],
                              [[1.0, 3.0, 2.5], [1.0, 1.0, 1.0]])
        torch.testing.assert_close(Z.volume(), torch.tensor([2 * 3 * 0.5, 1.0], dtype=F64))

    def test_parallelotope_and_degenerate(self):
        G = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 3.0]], dtype=F64)
        torch.testing.assert_close(Zonotope(torch.zeros(3), G).volume()[0],
                                   8 * torch.linalg.det(G).abs())
        assert float(Zonotope(torch.zeros(3), G[:, :2]).volume()) == 0.0

    def test_2d_volume_equals_polygon_area(self):
        Z = random_zonotope(9, batch=3, m=6)
        for vol, V in zip(Z.volume(), Z.vertices_2d(), strict=True):
            assert float(vol) == pytest.approx(shoelace(V), rel=1e-10)

    def test_volume_scales_with_linear_maps(self):
        Z = random_zonotope(10, batch=2, n=3, m=5)
        M = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]], dtype=F64)
        torch.testing.assert_close(Z.linear_map(M).volume(),
                                   Z.volume() * torch.linalg.det(M).abs())

    def test_too_many_subsets_raises(self):
        Z = random_zonotope(0, n=3, m=30)
        with pytest.raises(ValueError, match=r"C\(30, 3\) = 4060 .*monte_carlo_volume"):
            Z.volume(max_subsets=1000)

    def test_monte_carlo_estimate_close_to_exact(self):
        from safegbpo.sets import monte_carlo_volume

        Z = random_zonotope(11, batch=1, m=4)
        est = monte_carlo_volume(Z, 400, torch.Generator().manual_seed(0))
        low, high = Z.interval_hull()
        hull_vol = float((high - low).prod())
        p = float(Z.volume()) / hull_vol
        assert abs(float(est) - float(Z.volume())) <= 5 * hull_vol * math.sqrt(p * (1 - p) / 400)


# ------------------------------------------------------------------------------------------
# LP-based queries
# ------------------------------------------------------------------------------------------
class TestContainment:
    def test_box_point_containment(self):
        Z = Zonotope.from_box([-1.0, -2.0], [1.0, 2.0])
        pts = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [1.0 + 1e-6, 0.0], [0.5, -2.5]]], dtype=F64)
        assert Z.contains(pts).tolist() == [[True, True, False, False]]
        torch.testing.assert_close(Z.gauge(pts), torch.tensor([[0.0, 1.0, 1.0 + 1e-6, 1.25]],
                                                              dtype=F64))

    def test_batch_one_zonotope_broadcasts_over_points(self):
        Z = Zonotope.from_box([-1.0, -1.0], [1.0, 1.0])
        assert Z.contains(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.9, -0.9]])).tolist() == [
            True, False, True]

    def test_closed_form_and_lp_gauge_agree(self):
        Z = random_zonotope(12, batch=2, n=3, m=3)  # square: closed form
        Zlp = Zonotope(Z.center, torch.cat([Z.generators, torch.zeros(2, 3, 1, dtype=F64)], -1))
        V = torch.randn(2, 5, 3, dtype=F64)
        torch.testing.assert_close(Z.gauge(V), Zlp.gauge(V), atol=1e-7, rtol=1e-7)

    def test_gauge_is_infinite_outside_the_range(self):
        Z = Zonotope([0.0, 0.0, 0.0], [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
        g = Z.gauge(torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 1e-3]], dtype=F64)[None])
        assert float(g[0, 0]) == pytest.approx(0.5)
        assert math.isinf(float(g[0, 1]))
        with pytest.raises(ValueError, match="NaN/inf"):
            Z.gauge([0.0, float("nan"), 0.0])

    def test_factors_reproduce_the_points(self):
        Z = random_zonotope(17, batch=2, n=2, m=5)
        points = Z.sample(6, torch.Generator().manual_seed(3))
        b, gauge = Z.factors(points)
        assert b.shape == (2, 6, 5) and gauge.shape == (2, 6)
        torch.testing.assert_close(Z.points_from_factors(b), points, atol=1e-8, rtol=0)
        torch.testing.assert_close(b.abs().amax(dim=-1), gauge, atol=1e-9, rtol=0)
        assert bool((gauge <= 1 + 1e-9).all())
        square = random_zonotope(18, batch=1, n=2, m=2)  # closed-form path
        b, gauge = square.factors(torch.tensor([0.3, 0.1], dtype=F64))
        torch.testing.assert_close(square.points_from_factors(b[:, None])[:, 0],
                                   torch.tensor([[0.3, 0.1]], dtype=F64))
        flat = Zonotope([0.0, 0.0], [[1.0], [0.0]])
        b, gauge = flat.factors(torch.tensor([[0.5, 0.0], [0.5, 1.0]], dtype=F64)[None])
        torch.testing.assert_close(b[0, 0], torch.tensor([0.5], dtype=F64))
        assert bool(torch.isnan(b[0, 1]).all()) and math.isinf(float(gauge[0, 1]))

    def test_containment_margin_eq6(self):
        Z = random_zonotope(13, batch=2, n=3, m=6)
        inner = Zonotope(Z.center, 0.9 * Z.generators)
        margins = inner.containment_margin(Z)
        torch.testing.assert_close(margins, torch.full((2,), 0.9, dtype=F64), atol=1e-7, rtol=0)
        assert bool(inner.is_subset_of(Z).all())
        torch.testing.assert_close(Z.containment_margin(Z), torch.ones(2, dtype=F64),
                                   atol=1e-7, rtol=0)

    def test_sticking_out_is_rejected_and_a_witness_exists(self):
        Z = random_zonotope(14, batch=2, n=3, m=6)
        bigger = Zonotope(Z.center, 1.1 * Z.generators)
        shifted = Z + torch.tensor([0.3, 0.0, 0.0], dtype=F64)
        assert bool((bigger.containment_margin(Z) > 1.0 + 1e-6).all())
        assert bool((shifted.containment_margin(Z) > 1.0 + 1e-6).all())
        assert not bool(bigger.is_subset_of(Z).any())
        # witnesses: extreme points of the inner set that lie outside the outer set
        direction = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
        assert not bool(Z.contains(bigger.support_point(direction)).any())
        assert not bool(Z.contains(shifted.support_point(direction)).any())

    def test_margin_infinite_when_generators_leave_the_range(self):
        flat = Zonotope.from_box([-1.0, -1.0, 0.0], [1.0, 1.0, 0.0])
        cube = Zonotope.from_box([-0.1] * 3, [0.1] * 3)
        assert math.isinf(float(cube.containment_margin(flat)))
        with pytest.raises(TypeError, match="Zonotope"):
            cube.containment_margin(torch.zeros(3))


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
class TestHelpers:
    def test_getitem_to_detach_numpy_repr(self):
        Z = random_zonotope(15, batch=4)
        assert Z[1].batch_size == 1 and Z[-1].batch_size == 1 and Z[1:3].batch_size == 2
        torch.testing.assert_close(Z[-1].center, Z.center[3:])
        torch.testing.assert_close(Z[torch.tensor([0, 2])].generators, Z.generators[[0, 2]])
        with pytest.raises(IndexError):
            Z[4]
        Z32 = Z.to(dtype=torch.float32)
        assert Z32.dtype == torch.float32 and Z32.device == torch.device("cpu")
        c, G = Z.numpy()
        assert c.shape == (4, 2) and G.shape == (4, 2, 4) and c.dtype == np.float64
        Zg = Zonotope(Z.center.clone().requires_grad_(), Z.generators)
        assert not Zg.detach().center.requires_grad
        assert "batch_size=4" in repr(Z) and "num_generators=4" in repr(Z)

    def test_gauge_matches_independent_lp(self):
        Z = random_zonotope(16, batch=1, n=2, m=5)
        v = torch.tensor([0.3, -0.7], dtype=F64)
        assert float(Z.gauge(v)) == pytest.approx(
            gauge_lp(Z.generators[0].numpy(), v.numpy()), abs=1e-9)


@pytest.mark.gradcheck
class TestGradients:
    def test_support_linear_map_and_sampling_gradcheck(self):
        g = torch.Generator().manual_seed(0)
        c = torch.randn(2, 3, generator=g, dtype=F64, requires_grad=True)
        G = torch.randn(2, 3, 4, generator=g, dtype=F64, requires_grad=True)
        l = torch.randn(2, 3, generator=g, dtype=F64)
        M = torch.randn(2, 3, generator=g, dtype=F64)
        b = 2 * torch.rand(2, 5, 4, generator=g, dtype=F64) - 1
        assert torch.autograd.gradcheck(lambda c, G: Zonotope(c, G).support(l), (c, G))
        assert torch.autograd.gradcheck(
            lambda c, G: Zonotope(c, G).linear_map(M).support(torch.ones(2, dtype=F64)), (c, G))
        assert torch.autograd.gradcheck(lambda c, G: Zonotope(c, G).points_from_factors(b),
                                        (c, G))

    def test_volume_and_vertices_gradcheck(self):
        g = torch.Generator().manual_seed(1)
        G = torch.randn(1, 2, 3, generator=g, dtype=F64, requires_grad=True)
        c = torch.randn(1, 2, generator=g, dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda G: Zonotope(torch.zeros(2), G).volume(), (G,))
        assert torch.autograd.gradcheck(lambda c, G: Zonotope(c, G).vertices_2d()[0], (c, G))
        h = torch.tensor([0.5, 2.0, 1.5], dtype=F64, requires_grad=True)
        Zonotope(torch.zeros(3), torch.diag(h)).volume().sum().backward()
        torch.testing.assert_close(h.grad, 8 * torch.tensor([3.0, 0.75, 1.0], dtype=F64))
