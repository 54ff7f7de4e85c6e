"""The one registry of methods: the CLI, suites, gates, table and report all read it.

Built-in methods are the modules listed in :data:`BUILTIN` (adding one is one file plus one line
there); installed packages add theirs through the ``nqsbench.methods`` entry-point group (each
entry point names a :class:`~nqsbench.methods.base.Method` subclass); tests and scripts call
:func:`register`.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..errors import NqsbenchError
from ..records import register_settings
from .base import Method

BUILTIN = ("exact", "pyscf_kpoint", "dmrg", "nqs", "nqs_bands", "external")

_METHODS: dict[str, Method] = {}
_loaded = False


class UnknownMethodError(NqsbenchError):
    pass


def register(cls: type[Method]) -> type[Method]:
    """Add a method (usable as a class decorator); its settings model is registered with it so
    its records parse back into typed settings."""
    register_settings(cls.Settings)
    _METHODS[cls.name] = cls()
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in BUILTIN:
        importlib.import_module(f"{__package__}.{mod}")
    for ep in entry_points(group="nqsbench.methods"):
        register(ep.load())


def get(name: str) -> Method:
    _load()
    try:
        return _METHODS[name]
    except KeyError:
        raise UnknownMethodError(f"unknown method {name!r}; available: {', '.join(names())}") from None


def names(kind: str | None = None) -> list[str]:
    """Registered method names (``kind``: only those whose records are of that kind)."""
    _load()
    return [n for n, m in _METHODS.items() if kind is None or m.kind == kind]


def methods() -> dict[str, Method]:
    _load()
    return dict(_METHODS)
