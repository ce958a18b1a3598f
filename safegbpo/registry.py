"""The one implementation behind the project's registries (tasks, safeguard variants,
algorithms): named entries in registration order, added and removed explicitly.

Each registry module keeps its own lookup (:func:`safegbpo.tasks.get_task` also resolves import
paths, :func:`safegbpo.safeguards.variants.get_variant` also report and archive labels) and its
error messages; this class only owns the storage and its rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name (``kind`` names them in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under a new ``name``; returns it."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove a registered entry (tests, plugins)."""
        if name not in self._entries:
            raise ValueError(f"{self.kind} {name!r} is not registered")
        del self._entries[name]

    def get(self, name: str) -> T | None:
        """The entry ``name``, ``None`` if there is none."""
        return self._entries.get(name) if isinstance(name, str) else None

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._entries)

    def view(self) -> Mapping[str, T]:
        """Read-only view ``{name: entry}``."""
        return MappingProxyType(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._entries.values()))
