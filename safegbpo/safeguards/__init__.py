"""Differentiable safeguards (SPEC §3–§5): boundary projection and ray mask.

* :class:`SafeguardProtocol` — the contract: ``safe = g(action, state)`` with the states passed
  explicitly, differentiable, counting ``interventions`` and ``fallbacks``;
  :class:`SafeguardEnv` — what a safeguard reads from its environment;
* :class:`Safeguard` — base class of the built-in safeguards: built for a vector env, fail-safe
  (independent certification + backup action).
* backends: ``'exact'`` (default; exact H-representation, :mod:`~safegbpo.safeguards.polytope`,
  :mod:`~safegbpo.safeguards.exact`) and ``'cvxpylayers'`` (the paper's Eq 6 programs);
  :func:`compare_safe_action_sets` measures how much larger the exact safe set is.
* :class:`BoundaryProjection` (Eq 11), :class:`RayMask` (Eq 46/64 with the zonotopic Eq 52–53
  or orthogonal Eq 54 centre), :func:`make_safeguard` (``'bp'``, ``'rm'``, user classes).
* :func:`boundary_projection`, :func:`ray_mask` — standalone maps onto explicit zonotopes;
  :func:`ray_mask_map` — the radial map itself (Lemma 3).
* :func:`regularisation_loss` (Eq 45), :class:`SafeguardActionWrapper` (Gymnasium).
* :mod:`safegbpo.safeguards.variants` — the registry of the variants the experiments compare
  (SPEC §5's modification table): :class:`Variant`, :func:`get_variant`, :func:`variants`.
"""

from safegbpo.safeguards.action_set import DEFAULT_MARGIN, ActionSetData, ActionSetStructure
from safegbpo.safeguards.boundary_projection import BoundaryProjection, boundary_projection
from safegbpo.safeguards.centres import CENTRES, OrthogonalCentre, ZonotopicCentre
from safegbpo.safeguards.certify import DEFAULT_TOL, certify_actions
from safegbpo.safeguards.compare import compare_safe_action_sets
from safegbpo.safeguards.polytope import EXACT_MARGIN, EXACT_TOL, ExactActionSet
from safegbpo.safeguards.protocol import (
    BACKENDS,
    DEFAULT_BACKEND,
    INTERVENTION_THRESHOLD,
    PAPER_BACKEND,
    Safeguard,
    SafeguardEnv,
    SafeguardProtocol,
)
from safegbpo.safeguards.ray_mask import MAPPINGS, RayMask, radial_scale, ray_mask, ray_mask_map
from safegbpo.safeguards.registry import SAFEGUARDS, make_safeguard
from safegbpo.safeguards.regularisation import DEFAULT_REGULARISATION, regularisation_loss
from safegbpo.safeguards.variants import (
    Variant,
    get_variant,
    map_variants,
    register_variant,
    unregister_variant,
    variant_for,
    variants,
)
from safegbpo.safeguards.wrapper import SafeguardActionWrapper

__all__ = [
    "BACKENDS",
    "CENTRES",
    "DEFAULT_BACKEND",
    "DEFAULT_MARGIN",
    "DEFAULT_REGULARISATION",
    "DEFAULT_TOL",
    "EXACT_MARGIN",
    "EXACT_TOL",
    "INTERVENTION_THRESHOLD",
    "MAPPINGS",
    "PAPER_BACKEND",
    "SAFEGUARDS",
    "ActionSetData",
    "ActionSetStructure",
    "BoundaryProjection",
    "ExactActionSet",
    "OrthogonalCentre",
    "RayMask",
    "Safeguard",
    "SafeguardEnv",
    "SafeguardProtocol",
    "SafeguardActionWrapper",
    "Variant",
    "ZonotopicCentre",
    "boundary_projection",
    "certify_actions",
    "compare_safe_action_sets",
    "get_variant",
    "make_safeguard",
    "map_variants",
    "radial_scale",
    "ray_mask",
    "ray_mask_map",
    "regularisation_loss",
    "register_variant",
    "unregister_variant",
    "variant_for",
    "variants",
]
