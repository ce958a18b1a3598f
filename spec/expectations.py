"""What the paper's Table 1 (SPEC §3) and SPEC §5 lead us to expect of each built-in safeguard.

An audit compares every measured verdict with these expectations, so an *expected* failure
(boundary projection is not a local diffeomorphism: P3 fails by Lemma 1) is reported as
"as expected" while a surprising one is reported as "UNEXPECTED".

Verdict semantics used by :mod:`spec.properties` (the expectations below are stated in them):

* **P1** holds iff every sampled output is finite and certified in ``A ∩ A_s(s)``, NaN/inf
  inputs raise, and the training path (the safeguard inside ``SafeguardActionWrapper``) applies
  safe actions and keeps the realised next states in ``S_s``.
* **P2** holds iff every Jacobian is finite and the local Lipschitz estimates (finite
  differences, including pairs straddling the safe boundary) stay bounded.
* **P3** holds iff the autograd Jacobians have full numerical rank at generic samples and
  agree with central finite differences (gradcheck) there.
* **P4** holds iff the safeguard intervenes *only* on unsafe actions (``g(a) = a`` for every
  safe ``a``): the fewest interventions P1 allows.
* **P5** holds iff the median time per safeguarded action stays within the budget.

Expectations beyond Table 1 (the modifications of SPEC §5 and the orthogonal centre) are
derived in the comments next to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Expectation", "Variant", "BUILTIN_VARIANTS", "PROPERTIES", "get_variant",
           "variant_for", "expectations_for"]

PROPERTIES: tuple[str, ...] = ("P1", "P2", "P3", "P4", "P5")


@dataclass(frozen=True)
class Expectation:
    """Expected verdict (``None``: no statement) and the reason in words."""

    holds: bool | None
    text: str


@dataclass(frozen=True)
class Variant:
    """A built-in safeguard variant as it is audited.

    Attributes:
        key: short id used on the command line (``--variant``) and in JSON.
        label: the row label of SPEC §5 / the paper's tables.
        safeguard: name for :func:`safegbpo.safeguards.make_safeguard`.
        options: keyword options for ``make_safeguard``.
        expectations: per property id (``"P1"`` ... ``"P5"``).
    """

    key: str
    label: str
    safeguard: str
    options: Mapping[str, Any]
    expectations: Mapping[str, Expectation] = field(default_factory=dict)


_REQUIRED = {
    "P1": Expectation(True, "maps every action (also outside A) to A ∩ A_s(s); raises on NaN/inf"),
    "P2": Expectation(True, "continuous and locally Lipschitz; finite (Clarke) derivatives"),
}

_P5_BP = Expectation(True, "1 QP per action (explicit and induced sets)")
_P5_RM = Expectation(True, "0-1 conic (centre) + 1 LP per action (induced set)")

BUILTIN_VARIANTS: tuple[Variant, ...] = (
    Variant(
        key="bp", label="BP", safeguard="bp", options={},
        expectations={
            **_REQUIRED,
            "P3": Expectation(False, "not a local diffeomorphism: rank J <= d-1 for unsafe "
                                     "actions (Lemma 1, Eq 15-16)"),
            "P4": Expectation(True, "intervenes only on unsafe actions"),
            "P5": _P5_BP,
        },
    ),
    Variant(
        key="rm", label="RM", safeguard="rm",
        options={"mapping": "linear", "centre": "zonotopic", "passthrough": False},
        expectations={
            **_REQUIRED,
            "P3": Expectation(True, "full-rank Jacobian (Lemma 3); C1 except on set edges"),
            "P4": Expectation(False, "intervenes on all actions except the centre"),
            "P5": _P5_RM,
        },
    ),
    Variant(
        key="rm-passthrough", label="RM Passthrough Gradient", safeguard="rm",
        options={"mapping": "linear", "centre": "zonotopic", "passthrough": True},
        expectations={
            **_REQUIRED,
            # The forward map is the ray mask (full rank), but the backward pass is the
            # identity by design (straight-through), so autograd disagrees with the map's
            # finite differences wherever the mask is not the identity: gradcheck must fail.
            "P3": Expectation(False, "straight-through gradient: backward = identity, which "
                                     "deliberately differs from the ray mask's derivative"),
            "P4": Expectation(False, "intervenes on all actions except the centre"),
            "P5": _P5_RM,
        },
    ),
    Variant(
        key="rm-hyperbolic", label="RM Hyperbolic", safeguard="rm",
        options={"mapping": "hyperbolic", "centre": "zonotopic", "passthrough": False},
        expectations={
            **_REQUIRED,
            # Lemma 3 applies (the radial map is strictly increasing), but the radial
            # eigenvalue dh/dr = (1 - tanh^2(lam_a/lam_S)) / tanh(lam_A/lam_S) underflows for
            # actions far outside a small safe set, so numerical full rank is not guaranteed.
            "P3": Expectation(None, "full rank in exact arithmetic (Lemma 3); the radial "
                                    "eigenvalue (1 - tanh^2(lam_a/lam_S)) / tanh(lam_A/lam_S) can "
                                    "fall below the rank tolerance far outside small safe sets"),
            "P4": Expectation(False, "intervenes on all actions except the centre "
                                     "(tanh moves safe actions too, if only slightly)"),
            "P5": _P5_RM,
        },
    ),
    Variant(
        key="rm-orthogonal", label="RM Orthogonal", safeguard="rm",
        options={"mapping": "linear", "centre": "orthogonal", "passthrough": False},
        expectations={
            "P1": _REQUIRED["P1"],
            # SPEC §5 (Eq 54): safe actions are returned unchanged while an unsafe action just
            # outside the boundary point a_b is mapped to c_s - n (t*/2)^2 / lam_A with
            # c_s = a_b + (t*/2) n; this equals a_b only where the safe boundary touches A
            # (lam_A = t*/2).  The map therefore jumps across the safe boundary inside A: it is
            # not continuous, and P2 is expected to fail (the paper calls the zonotopic variant
            # "the smoother map" for this reason).
            "P2": Expectation(False, "discontinuous across the safe boundary inside A: safe "
                                     "actions are kept, unsafe ones just outside jump to "
                                     "c_s - n (t*/2)^2/lam_A (Eq 54)"),
            "P3": Expectation(True, "full rank where differentiable (BP direction + radial "
                                    "scaling); not C1 at the safe boundary"),
            "P4": Expectation(True, "intervenes only on unsafe actions (safe ones returned "
                                    "unchanged)"),
            "P5": Expectation(True, "1 QP (+ 1 LP + 1 LP for unsafe actions) per action"),
        },
    ),
)

_BY_KEY = {v.key: v for v in BUILTIN_VARIANTS}


def get_variant(key: str) -> Variant:
    """The built-in variant ``key`` (``bp``, ``rm``, ``rm-passthrough``, ``rm-hyperbolic``,
    ``rm-orthogonal``)."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise ValueError(f"unknown safeguard variant {key!r}; expected one of "
                         f"{sorted(_BY_KEY)}") from None


def variant_for(safeguard: str, options: Mapping[str, Any] | None = None) -> Variant | None:
    """The built-in variant that ``make_safeguard(safeguard, env, **options)`` builds, or
    ``None`` for anything else (a ``module:Class`` safeguard, unknown options).  Options left
    out take the variant's defaults."""
    options = dict(options or {})
    defaults = {"mapping": "linear", "centre": "zonotopic", "passthrough": False}
    for variant in BUILTIN_VARIANTS:
        if variant.safeguard != safeguard:
            continue
        if safeguard == "bp":
            rm_only = set(options) & set(defaults)
            if not rm_only or all(options[k] == defaults[k] for k in rm_only):
                return variant
            return None
        merged = {**defaults, **options}
        if all(merged.get(k) == v for k, v in variant.options.items()):
            return variant
    return None


def expectations_for(safeguard: str, options: Mapping[str, Any] | None = None
                     ) -> dict[str, Expectation]:
    """Expectations of every property: the built-in variant's, or for any other safeguard only
    the required ones (P1, P2 must hold; no statement on P3-P5)."""
    variant = variant_for(safeguard, options)
    if variant is not None:
        return dict(variant.expectations)
    none = Expectation(None, "no expectation for a user-supplied safeguard")
    return {**_REQUIRED, "P3": none, "P4": none, "P5": none}
