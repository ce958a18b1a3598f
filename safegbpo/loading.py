"""The one ``'package.module:attr'`` loader of the project.

Everything that can be named by import path goes through :func:`load_attr`: user safeguards
(``make_safeguard('pkg.mod:Class', env)``), trainers and monitors of the experiment executors
(``'module:function'``, importable in worker processes) and user-defined tasks
(:func:`safegbpo.tasks.get_task`).  Errors are ``ValueError`` s that name the path and the
problem.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["is_import_path", "load_attr"]


def is_import_path(name: str) -> bool:
    """``True`` for names of the form ``'package.module:attr'`` (a ``:`` separates both parts)."""
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr)


def load_attr(path: str, *, what: str = "attr") -> Any:
    """The object named by ``'package.module:attr'`` (``attr`` may be dotted: ``Class.method``).

    Args:
        path: the import path.
        what: what the caller expects (``'function'``, ``'Class'``, ...), used in messages.

    Raises:
        ValueError: not of the form ``'module:attr'``, the module cannot be imported (the
            import error is named), or it has no such attribute.
    """
    if not isinstance(path, str) or not is_import_path(path):
        raise ValueError(f"expected 'module:{what}', got {path!r}")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} of {path!r}: {err}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj
