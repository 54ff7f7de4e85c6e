"""The model registry: one module per variational model plus one line in ``BUILTIN``.

A model module defines

- ``Settings``: a :class:`nqsbench.records.ModelSettings` subclass with ``kind: Literal["name"]``
  (recorded in every NQS record and hashed for freshness), and
- ``build(settings, sector) -> model``: the model for a :class:`~nqsbench.nqs.hilbert.Sector`
  (it knows the number of spin-orbitals, the electrons and the HF configuration),
- optionally ``resolve_auto(settings, n_spin_orbitals, sector_dim) -> settings``: the settings
  with each ``"auto"`` option replaced by what ``build`` makes of it on a system of that size (so
  that freshness compares what runs; a record's ``details.model`` holds what it ran),

and the model object follows :mod:`.base` (``init``, ``log_psi``, optional fast paths).
Third-party models register with :func:`register` or through the entry-point group
``nqsbench.models`` (``name = "package.module"``: a module with ``Settings`` and ``build``).

    from nqsbench.nqs import models
    spec = models.get("nnbf")
    model = spec.build(spec.Settings(hidden=32), sector)
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from ...errors import CatalogError
from ...records import ModelSettings, register_model_settings
from .base import LogRatio, Model, ProductRatio, Rephase
from .rbm import RBM, count_parameters, log_cosh

BUILTIN = ("rbm", "nnbf")           # modules of this package, in the order they are listed
ENTRY_POINT_GROUP = "nqsbench.models"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    Settings: type[ModelSettings]
    build: Callable[[ModelSettings, Any], Any]
    summary: str = ""
    # per-sampler optimizer defaults that differ from nqs.defaults.DEFAULTS (e.g. {"exact": {"lr": 0.1}})
    optimizer_defaults: dict = None
    # (settings, n_spin_orbitals, sector_dim) -> settings with its "auto" options resolved; None: it has none
    resolve_auto: Callable[[ModelSettings, int, int], ModelSettings] | None = None


_MODELS: dict[str, ModelSpec] = {}
_loaded = False


def register(settings: type[ModelSettings], build: Callable[[ModelSettings, Any], Any],
             summary: str = "", optimizer_defaults: dict | None = None,
             resolve_auto: Callable[[ModelSettings, int, int], ModelSettings] | None = None) -> ModelSpec:
    """Register a model: its settings class (``kind`` default = its name), its builder and,
    optionally, per-sampler optimizer defaults of its own ({"exact": {"lr": 0.1}, ...}) and the
    resolver of its ``"auto"`` options (see the module docstring)."""
    spec = ModelSpec(settings.model_fields["kind"].default, settings, build, summary, optimizer_defaults or {},
                     resolve_auto)
    register_model_settings(settings)
    _MODELS[spec.name] = spec
    return spec


def register_module(module: ModuleType) -> ModelSpec:
    doc = (module.__doc__ or "").strip().splitlines()
    summary = doc[0].split(": ", 1)[-1] if doc else ""   # "name: what it is" → "what it is"
    return register(module.Settings, module.build, summary,
                    getattr(module, "OPTIMIZER_DEFAULTS", None), getattr(module, "resolve_auto", None))


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN:
        register_module(importlib.import_module(f"{__name__}.{name}"))
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        register_module(ep.load())


def names() -> list[str]:
    _load()
    return list(_MODELS)


def get(name: str) -> ModelSpec:
    _load()
    if name not in _MODELS:
        raise CatalogError(f"model {name!r}: unknown; available: {', '.join(_MODELS)}")
    return _MODELS[name]


def settings(data: dict | str | ModelSettings) -> ModelSettings:
    """Typed settings of a model from ``{"kind": ..., ...}`` or a name (defaults);
    pydantic's ValidationError on bad values, CatalogError for an unknown kind."""
    if isinstance(data, str):
        data = {"kind": data}
    if isinstance(data, ModelSettings):
        data = data.model_dump()
    spec = get(data.get("kind", "rbm"))
    return spec.Settings.model_validate(data)


def build(model_settings: ModelSettings | dict, sector) -> Any:
    """The model of these settings for ``sector``."""
    s = settings(model_settings)
    return get(s.kind).build(s, sector)


_load()

__all__ = ["RBM", "Model", "ProductRatio", "LogRatio", "Rephase", "ModelSpec", "register", "register_module", "get",
           "names", "settings", "build", "count_parameters", "log_cosh", "BUILTIN"]
