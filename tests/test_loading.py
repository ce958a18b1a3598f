"""The ``module:attr`` loader and the reference-data path helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from safegbpo import reference
from safegbpo.loading import is_import_path, load_attr


def test_load_attr_resolves_dotted_attributes():
    assert load_attr("pathlib:Path") is Path
    assert load_attr("pathlib:Path.cwd") == Path.cwd
    assert is_import_path("a.b:c") and not is_import_path("pendulum")
    assert not is_import_path(":c") and not is_import_path("a:")


@pytest.mark.parametrize("path, match", [
    ("no_colon", "expected 'module:function'"),
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("pathlib:missing", "has no attribute 'missing'"),
])
def test_load_attr_names_the_problem(path, match):
    with pytest.raises(ValueError, match=match):
        load_attr(path, what="function")


def test_reference_dir_override(tmp_path, monkeypatch):
    (tmp_path / "safe_sets").mkdir()
    (tmp_path / "safe_sets" / "pendulum.json").write_text("{}")
    monkeypatch.setenv(reference.REFERENCE_ENV_VAR, str(tmp_path))
    assert reference.reference_dir() == tmp_path.resolve()
    assert reference.reference_path("safe_sets", "pendulum.json") == \
        tmp_path.resolve() / "safe_sets" / "pendulum.json"
    assert reference.reference_path("safe_sets", "energy.json") is None
    monkeypatch.setenv(reference.REFERENCE_ENV_VAR, str(tmp_path / "absent"))
    assert reference.reference_dir() is None and reference.reference_path("x") is None


def test_default_reference_dir_is_next_to_the_repository(monkeypatch):
    monkeypatch.delenv(reference.REFERENCE_ENV_VAR, raising=False)
    expected = (reference.repository_root() / ".." / "shared" / "reference").resolve()
    assert reference.reference_dir() in (None, expected)
