"""The registry of safeguard variants (SPEC §5's modification table, once)."""

from __future__ import annotations

import pytest

from safegbpo.safeguards import make_safeguard
from safegbpo.safeguards.variants import (
    Variant,
    get_variant,
    map_variants,
    register_variant,
    unregister_variant,
    variant_for,
    variant_labels,
    variant_names,
    variants,
)

SPEC_ROWS = ["No Safeguard", "BP", "BP Regularisation", "RM", "RM Regularisation",
             "RM Passthrough Gradient", "RM Hyperbolic", "RM Hyperbolic and Regularisation",
             "RM Orthogonal"]


def test_variants_are_the_spec_rows():
    assert list(variant_labels()) == SPEC_ROWS
    fields = {v.label: v.train_fields for v in variants()}
    assert fields["No Safeguard"]["safeguard"] is None
    assert fields["BP Regularisation"] == {"safeguard": "bp", "regularisation": 0.1}
    assert fields["RM Passthrough Gradient"]["passthrough"] is True
    assert fields["RM Hyperbolic and Regularisation"]["mapping"] == "hyperbolic"
    assert fields["RM Hyperbolic and Regularisation"]["regularisation"] == 0.1
    assert fields["RM Orthogonal"]["centre"] == "orthogonal"
    for name in SPEC_ROWS[3:]:
        assert fields[name]["safeguard"] == "rm"
    assert [v.key for v in map_variants()] == ["bp", "rm", "rm-passthrough", "rm-hyperbolic",
                                               "rm-orthogonal"]


def test_lookup_by_key_label_or_archive_label():
    assert get_variant("rm-hyperbolic-reg") is get_variant("RM Hyperbolic and Regularisation")
    assert get_variant("Hyperbolic Ray Mask Regularised").key == "rm-hyperbolic-reg"
    assert get_variant("none").label == "No Safeguard"
    with pytest.raises(ValueError, match="unknown safeguard variant 'nope'"):
        get_variant("nope")


def test_variant_lookup_from_safeguard_options():
    assert variant_for("bp").key == "bp"
    assert variant_for("bp", {"centre": "orthogonal"}) is None
    assert variant_for("rm", {"mapping": "hyperbolic"}).key == "rm-hyperbolic"
    assert variant_for("rm", {"passthrough": True}).key == "rm-passthrough"
    assert variant_for("rm", {"mapping": "hyperbolic", "passthrough": True}) is None
    assert variant_for("rm", {"seed": 3}).key == "rm"  # options no variant sets do not matter
    assert variant_for("x:Y") is None


def test_every_map_variant_builds():
    from .conftest import make_env

    env = make_env("pendulum", num_envs=2, seed=0)
    for variant in map_variants():
        guard = make_safeguard(variant.safeguard, env, **variant.options)
        assert variant_for(variant.safeguard, variant.options) is variant
        assert guard.passthrough == variant.options.get("passthrough", False)


def test_registering_checks_keys_labels_and_fields():
    with pytest.raises(ValueError, match="already registered"):
        register_variant(Variant("bp", "BP twice", "x", "bp"))
    with pytest.raises(ValueError, match="labelled 'BP'"):
        register_variant(Variant("bp2", "BP", "x", "bp"))
    with pytest.raises(ValueError, match="not TrainConfig fields"):
        Variant("rm-x", "RM X", "x", "rm", {"colour": "red"})
    with pytest.raises(ValueError, match="need a safeguard"):
        Variant("none2", "Unsafe 2", "x", None, regularisation=0.1)
    extra = register_variant(Variant("rm-hyperbolic-passthrough", "RM Hyperbolic Passthrough",
                                     "Hyperbolic Ray Mask Passthrough", "rm",
                                     {"mapping": "hyperbolic", "passthrough": True}))
    try:
        assert variant_names()[-1] == "rm-hyperbolic-passthrough"
        assert variant_for("rm", {"mapping": "hyperbolic", "passthrough": True}) is extra
        assert extra in map_variants()
    finally:
        unregister_variant("rm-hyperbolic-passthrough")
    assert "rm-hyperbolic-passthrough" not in variant_names()
