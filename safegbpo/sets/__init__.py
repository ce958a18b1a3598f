"""Zonotopes and containment (SPEC §1).

* :class:`Zonotope` — batched ``<c, G>`` with Minkowski sum (Eq 2), linear map (Eq 3), support
  function (Eq 4), interval hull, sampling, 2-D vertices, exact point containment (Eq 5), gauge,
  containment margin (Eq 6) and exact volume.
* :mod:`safegbpo.sets.hrep` — exact H-representations of zonotopes (facets from generator
  subsets) and Pontryagin differences (SPEC §11), for the exact safeguards and point tests.
* :mod:`safegbpo.sets.containment` — cvxpy constraint builders for Eq 5/6 (used by the safeguards
  and the RCI program) and independent scipy/HiGHS LPs (used by audits and tests).
"""

from safegbpo.sets.containment import (
    containment_margin_lp,
    gauge_factors_lp,
    gauge_lp,
    induced_containment_margin,
    point_containment_constraints,
    point_in_intersection,
    point_in_zonotope,
    zonotope_containment_constraints,
)
from safegbpo.sets.hrep import HRep, box_hrep, zonotope_hrep
from safegbpo.sets.volume import exact_volume, monte_carlo_volume
from safegbpo.sets.zonotope import Zonotope

__all__ = [
    "HRep",
    "Zonotope",
    "box_hrep",
    "containment_margin_lp",
    "exact_volume",
    "gauge_factors_lp",
    "gauge_lp",
    "induced_containment_margin",
    "monte_carlo_volume",
    "point_containment_constraints",
    "point_in_intersection",
    "point_in_zonotope",
    "zonotope_containment_constraints",
    "zonotope_hrep",
]
