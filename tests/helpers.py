"""Helpers shared by the test packages (importable as ``tests.helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safegbpo.reference import reference_dir, reference_path

__all__ = ["reference_file", "reference_file_or_none"]


def reference_file_or_none(*parts: str) -> Path | None:
    """``../shared/reference/<parts>`` (:func:`safegbpo.reference.reference_path`) or ``None``."""
    return reference_path(*parts)


def reference_file(*parts: str) -> Path:
    """``../shared/reference/<parts>``; skips the calling test with the reason when absent."""
    path = reference_path(*parts)
    if path is None:
        where = reference_dir() or "../shared/reference"
        pytest.skip(f"reference data not present: {'/'.join(parts)} (looked in {where})")
    return path
