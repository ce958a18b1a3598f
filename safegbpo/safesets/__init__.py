"""Certified robust control invariant safe sets (SPEC §6 "Safe sets", §7)."""

from safegbpo.safesets.safe_set import SAFE_SET_FORMAT, SafeSet

__all__ = ["SAFE_SET_FORMAT", "SafeSet"]
