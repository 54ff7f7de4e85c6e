"""nqsbench: neural-network quantum states on periodic solids, validated against references.

The public API, PySCF style (objects in, results as attributes)::

    import nqsbench
    geom = nqsbench.load_system("h-chain").geometry({"d": 1.8}, (1, 1, 4))
    ham = nqsbench.build_hamiltonian(geom)                    # KRHF(exxdiv=None) k-space H, cached
    exact = nqsbench.run("exact", geom, ham=ham)               # any registered method → its record
    nqs = nqsbench.NQS(ham, sampler="exact").run(200)          # the driver: nqs.energy_ewald, nqs.trace
    print(nqs.energy_ewald - exact.energy_per_cell)            # Ha per cell

``run`` computes in memory; ``nqsbench.Store.default().run(...)`` also writes and reuses records.
Names are imported on first use, so ``import nqsbench`` stays light.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_system", "build_hamiltonian", "run", "methods", "NQS", "Store", "__version__"]


def load_system(name_or_path: str):
    """A catalog system (``h-chain``, ``lih``, ...) or a system TOML file → its SystemSpec; call
    ``.geometry(params, kmesh)`` on it for a Geometry."""
    from .catalog import load

    return load(name_or_path)


def build_hamiltonian(geom, use_cache: bool = True):
    """The k-space Hamiltonian of a Geometry (PySCF KRHF with exxdiv=None; disk-cached)."""
    from .build import get_hamiltonian

    return get_hamiltonian(geom, use_cache=use_cache)


def run(method: str, geom, settings=None, ham=None, **settings_fields):
    """Run a registered method (``nqsbench.methods.names()``) on ``geom`` → its record, in memory.
    ``settings``: the method's Settings model, or give its fields as keywords."""
    from . import methods as _methods

    m = _methods.get(method)
    if settings is None and settings_fields:
        settings = m.settings_from(**settings_fields)
    return _methods.compute(m, geom, settings, ham=ham)


def __getattr__(name: str):
    if name == "NQS":
        from .nqs import NQS

        return NQS
    if name == "Store":
        from .store import Store

        return Store
    if name == "methods":   # import_module: `from . import methods` would call this function again
        import importlib

        return importlib.import_module(f"{__name__}.methods")
    raise AttributeError(f"module 'nqsbench' has no attribute {name!r}")
