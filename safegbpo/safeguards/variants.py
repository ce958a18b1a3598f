"""The registry of safeguard variants: the rows of SPEC §5's modification table, once.

A :class:`Variant` is a safeguard configuration the experiments compare: its key (``--variant``
of ``python -m spec``, grid files), its row label in the report (SPEC §5), its label in the
reference implementation's archive, the safeguard's registry name and options
(:func:`~safegbpo.safeguards.make_safeguard`) and the Eq 45 regularisation coefficient.  The
grid, the metrics, the spec (its audits and Table 1 expectations are keyed by variant key), the
figures and the benchmark all read it from here, so adding a variant is one
:func:`register_variant` call.

Variants with a safeguard and no regularisation are *maps* (:func:`map_variants`): the distinct
functions ``a -> g(a, s)`` that the spec audits and the benchmark times; regularisation only
changes the training loss.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from safegbpo.registry import Registry
from safegbpo.safeguards.registry import SAFEGUARDS, safeguard_options

__all__ = [
    "UNSAFE",
    "Variant",
    "get_variant",
    "map_variants",
    "register_variant",
    "unregister_variant",
    "variant_for",
    "variant_labels",
    "variant_names",
    "variants",
]

#: TrainConfig fields a variant may set (the safeguard's options are TrainConfig fields too).
#: The safeguard ``backend`` is deliberately not one: a variant is a row of the paper's tables
#: (the map it defines), and either backend computes it; the backend is a coordinate of a run
#: (``TrainConfig.backend``, ``RunSpec.backend``, a grid's ``backend``/``backends``).
TRAIN_FIELDS = frozenset({"safeguard", "mapping", "centre", "passthrough", "regularisation"})


@dataclass(frozen=True)
class Variant:
    """One row of SPEC §5's modification table (or unsafe training).

    Attributes:
        key: short name (``'rm-hyperbolic-reg'``): command lines, grid files, spec expectations.
        label: the report's row label (``'RM Hyperbolic and Regularisation'``).
        archive_label: the label of the reference implementation's archived curves
            (``'Hyperbolic Ray Mask Regularised'``).
        safeguard: registry name for :func:`~safegbpo.safeguards.make_safeguard` (``'bp'``,
            ``'rm'``, or ``'package.module:Class'``), ``None`` for unsafe training.
        options: the safeguard's options that define the variant (``mapping``, ``centre``,
            ``passthrough``); each is also a ``TrainConfig`` field.
        regularisation: Eq 45 coefficient ``lambda_reg`` (0: off).
    """

    key: str
    label: str
    archive_label: str
    safeguard: str | None
    options: Mapping[str, Any] = field(default_factory=dict)
    regularisation: float = 0.0

    def __post_init__(self) -> None:
        unknown = set(self.options) - TRAIN_FIELDS
        if unknown:
            raise ValueError(f"variant {self.key!r}: options {sorted(unknown)} are not "
                             f"TrainConfig fields ({sorted(TRAIN_FIELDS - {'safeguard'})})")
        if self.safeguard is None and (self.options or self.regularisation):
            raise ValueError(f"variant {self.key!r}: options and regularisation need a "
                             "safeguard")

    @property
    def train_fields(self) -> dict[str, Any]:
        """The ``TrainConfig`` fields of the variant (hashed into run ids)."""
        return {"safeguard": self.safeguard, **self.options,
                "regularisation": float(self.regularisation)}

    @property
    def is_map(self) -> bool:
        """A safeguard without regularisation: a distinct map ``a -> g(a, s)``."""
        return self.safeguard is not None and self.regularisation == 0


_VARIANTS: Registry[Variant] = Registry("variant")

_RM = {"mapping": "linear", "centre": "zonotopic", "passthrough": False}

#: Unsafe training (the first row of every table).
UNSAFE = Variant("none", "No Safeguard", "No Safeguard", None)


def register_variant(variant: Variant) -> Variant:
    """Add ``variant`` (new key and label); returns it."""
    if any(v.label == variant.label for v in _VARIANTS):
        raise ValueError(f"a variant labelled {variant.label!r} is already registered")
    return _VARIANTS.register(variant.key, variant)


def unregister_variant(key: str) -> None:
    """Remove a registered variant (tests, plugins)."""
    _VARIANTS.unregister(key)


def variants() -> tuple[Variant, ...]:
    """Every registered variant, in table order (SPEC §5; unsafe training first)."""
    return tuple(_VARIANTS)


def variant_names() -> tuple[str, ...]:
    """Keys of the registered variants, in table order."""
    return _VARIANTS.names()


def variant_labels() -> tuple[str, ...]:
    """Report labels of the registered variants, in table order."""
    return tuple(v.label for v in _VARIANTS)


def map_variants() -> tuple[Variant, ...]:
    """The variants that are distinct safeguard maps (module docstring)."""
    return tuple(v for v in _VARIANTS if v.is_map)


def get_variant(name: str) -> Variant:
    """The variant with key, report label or archive label ``name``.

    Raises:
        ValueError: unknown name (the message lists the keys).
    """
    found = _VARIANTS.get(name)
    if found is not None:
        return found
    for variant in _VARIANTS:
        if name in (variant.label, variant.archive_label):
            return variant
    raise ValueError(f"unknown safeguard variant {name!r}; expected one of "
                     f"{list(_VARIANTS.names())} (or their labels)")


def _defaults(name: str) -> dict[str, Any]:
    """Keyword defaults of the built-in safeguard ``name``'s constructors (through its MRO)."""
    out: dict[str, Any] = {}
    for klass in SAFEGUARDS[name].__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.default is not inspect.Parameter.empty:
                out.setdefault(p.name, p.default)
    return out


def variant_for(safeguard: str, options: Mapping[str, Any] | None = None) -> Variant | None:
    """The registered map variant that ``make_safeguard(safeguard, env, **options)`` builds,
    or ``None`` (a ``module:Class`` safeguard, an option the safeguard does not take, or a
    combination no variant names).  Options left out take the safeguard's defaults; options
    that no variant sets (``seed``, ``margin``, ...) do not matter."""
    options = dict(options or {})
    if safeguard not in SAFEGUARDS:
        return None
    if set(options) - set(safeguard_options(SAFEGUARDS[safeguard])):
        return None
    defaults = _defaults(safeguard)
    candidates = [v for v in map_variants() if v.safeguard == safeguard]
    defining = {"passthrough"}.union(*(v.options for v in candidates)) & set(defaults)
    wanted = {k: options.get(k, defaults[k]) for k in defining}
    for variant in candidates:
        if {k: variant.options.get(k, defaults[k]) for k in defining} == wanted:
            return variant
    return None


# SPEC §5, modification table (row order of the paper's Tables 4 and 5)
for _variant in (
    UNSAFE,
    Variant("bp", "BP", "Boundary Projection Base", "bp"),
    Variant("bp-reg", "BP Regularisation", "Boundary Projection Regularised", "bp",
            regularisation=0.1),
    Variant("rm", "RM", "Ray Mask Base", "rm", _RM),
    Variant("rm-reg", "RM Regularisation", "Ray Mask Regularised", "rm", _RM,
            regularisation=0.1),
    Variant("rm-passthrough", "RM Passthrough Gradient", "Ray Mask Passthrough", "rm",
            {**_RM, "passthrough": True}),
    Variant("rm-hyperbolic", "RM Hyperbolic", "Hyperbolic Ray Mask Base", "rm",
            {**_RM, "mapping": "hyperbolic"}),
    Variant("rm-hyperbolic-reg", "RM Hyperbolic and Regularisation",
            "Hyperbolic Ray Mask Regularised", "rm", {**_RM, "mapping": "hyperbolic"},
            regularisation=0.1),
    Variant("rm-orthogonal", "RM Orthogonal", "Ray Mask Orthogonal", "rm",
            {**_RM, "centre": "orthogonal"}),
):
    register_variant(_variant)
