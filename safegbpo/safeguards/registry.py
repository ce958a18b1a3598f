"""``make_safeguard(name, env, **options)``: build a safeguard by name (SPEC §5 table rows).

Built-in names:

* ``'bp'`` — :class:`~safegbpo.safeguards.boundary_projection.BoundaryProjection`
  (options ``passthrough``, ``margin``, ``tol``, ``solver_args``, ``certification``);
* ``'rm'`` — :class:`~safegbpo.safeguards.ray_mask.RayMask` (additionally ``mapping``
  ``'linear'|'hyperbolic'``, ``centre`` ``'zonotopic'|'orthogonal'``, ``seed``,
  ``num_directions``, ``centre_gradient``).

Any other name of the form ``'package.module:Class'`` imports ``Class`` and instantiates it as
``Class(env, **options)`` (a user's safeguard; it should follow
:class:`~safegbpo.safeguards.protocol.Safeguard`).  Unknown names and options that the chosen
safeguard does not accept (e.g. ``centre`` with ``'bp'``) raise a ``ValueError`` naming the valid
choices.
"""

from __future__ import annotations

import inspect
from typing import Any

from safegbpo.loading import load_attr
from safegbpo.safeguards.boundary_projection import BoundaryProjection
from safegbpo.safeguards.protocol import Safeguard
from safegbpo.safeguards.ray_mask import RayMask

__all__ = ["SAFEGUARDS", "make_safeguard", "safeguard_options"]

#: Built-in safeguards by registry name.
SAFEGUARDS: dict[str, type[Safeguard]] = {"bp": BoundaryProjection, "rm": RayMask}


def safeguard_options(cls: type) -> tuple[str, ...]:
    """Keyword options accepted by ``cls(env, **options)`` (through its class hierarchy)."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[2:]  # skip self, env
        accepts_more = False
        for p in params:
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                accepts_more = True
            elif p.kind in (inspect.Parameter.KEYWORD_ONLY,
                            inspect.Parameter.POSITIONAL_OR_KEYWORD) and p.name not in names:
                names.append(p.name)
        if not accepts_more:
            break
    return tuple(names)


def _import_class(path: str) -> type:
    obj = load_attr(path, what="Class")
    if not callable(obj):
        raise ValueError(f"{path!r} is not callable")
    return obj


def make_safeguard(name: str, env: Any, **options: Any) -> Safeguard:
    """Build the safeguard ``name`` for ``env`` (module docstring).

    Raises:
        ValueError: unknown name, an option the safeguard does not accept, or an invalid
            option value.
    """
    if not isinstance(name, str):
        raise ValueError(f"safeguard name must be a string, got {name!r}")
    if name in SAFEGUARDS:
        cls: type = SAFEGUARDS[name]
        valid = safeguard_options(cls)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"option(s) {unknown} not valid for safeguard {name!r}; valid "
                             f"options: {list(valid)}")
        return cls(env, **options)
    if ":" in name:
        cls = _import_class(name)
        try:
            return cls(env, **options)
        except TypeError as err:
            raise ValueError(f"cannot build safeguard {name!r} with options "
                             f"{sorted(options)}: {err}") from None
    raise ValueError(f"unknown safeguard {name!r}; expected one of {sorted(SAFEGUARDS)} or a "
                     "user class as 'package.module:Class'")
