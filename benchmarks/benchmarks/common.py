"""Shared pieces of the asv suite: the systems, a Hamiltonian warm-up shared by every class, and
per-process memos.

Nothing heavy happens at import (asv imports every module to discover benchmarks). asv runs
``setup`` again before every timed sample, so what ``setup`` builds (workloads, jitted
functions) is memoised per process in ``_MEMO`` and compiled there, never inside the timing.

``NQSBENCH_BENCH_SYSTEMS`` (comma-separated labels of :data:`SYSTEMS`) restricts the ``system``
parameter, e.g. for the quick pass in the tests: ``NQSBENCH_BENCH_SYSTEMS=lih-G``.
"""
from __future__ import annotations

import os
from pathlib import Path

# label → (catalog id, geometry parameters, k-mesh); None = the catalog default
SYSTEMS = {
    "h-chain-k4": ("h-chain", {"d": 1.8}, (1, 1, 4)),
    "h-chain-k6": ("h-chain", {"d": 1.8}, (1, 1, 6)),
    "graphene-G": ("graphene", {}, (1, 1, 1)),
    "lih-G": ("lih", {}, (1, 1, 1)),
    # the beyond tier (past exact diagonalization): local energies and Markov chains only
    "h-chain-k8": ("h-chain", {"d": 1.8}, (1, 1, 8)),
    "graphene-2x2x1": ("graphene", {}, (2, 2, 1)),
    "lih-2x2x2": ("lih", {}, (2, 2, 2)),
}
SMALLEST = "lih-G"          # 12 spin-orbitals, 225 determinants: the quick pass uses it
BEYOND = ("h-chain-k8", "graphene-2x2x1", "lih-2x2x2")

BATCH = 512                 # samples per local-energy batch (as benchmarks/nqs_throughput.py)
SR_SAMPLES = 1024           # samples of one SR step (the mcmc default of `nqsbench run`)
# a local energy costs ~0.1 s on graphene 2x2x1 and ~0.2 s on LiH 2x2x2 (one core): fewer samples
BATCHES = {"graphene-2x2x1": 64, "lih-2x2x2": 32}


def batch_of(label: str) -> int:
    return BATCHES.get(label, BATCH)


def exact_tier_only(label: str) -> None:
    """asv skips a benchmark whose setup raises NotImplementedError: SR steps of 1024 samples
    (minutes each past the H chain N_k = 8) and exact energies stay on the exact tier."""
    if label in BEYOND:
        raise NotImplementedError(f"{label}: beyond the exact tier")


def selected_systems() -> list[str]:
    env = os.environ.get("NQSBENCH_BENCH_SYSTEMS", "").strip()
    if not env:
        return list(SYSTEMS)
    names = [s.strip() for s in env.split(",") if s.strip()]
    bad = [s for s in names if s not in SYSTEMS]
    if bad:
        raise ValueError(f"NQSBENCH_BENCH_SYSTEMS: unknown {bad}; choose from {list(SYSTEMS)}")
    return names


PARAMS = selected_systems()
_MEMO: dict = {}


def memo(key, make):
    if key not in _MEMO:
        _MEMO[key] = make()
    return _MEMO[key]


def geometry(label: str):
    from nqsbench import catalog

    if "NQSBENCH_SYSTEMS" not in os.environ and not catalog.systems_dir().is_dir():
        # a wheel install (asv continuous) ships no systems/ folder: use this checkout's catalog
        os.environ["NQSBENCH_SYSTEMS"] = str(Path(__file__).resolve().parents[2] / "systems")
    system, params, kmesh = SYSTEMS[label]
    return catalog.load(system).geometry(params, kmesh)


def hamiltonian(label: str, path: str | None = None):
    """The Hamiltonian of ``label``: from ``path`` (written by the shared setup_cache) or the
    Hamiltonian cache (built on a miss)."""
    def make():
        if path is not None:
            from nqsbench.hamiltonian import Hamiltonian
            return Hamiltonian.load(path)
        from nqsbench.build import get_hamiltonian
        return get_hamiltonian(geometry(label))
    return memo(("ham", label), make)


def workload(label: str, path: str | None = None, batch: int | None = None):
    from nqsbench.nqs.workloads import make_workload

    batch = batch or batch_of(label)
    return memo(("workload", label, batch), lambda: make_workload(hamiltonian(label, path), batch=batch))


def warm_hamiltonians() -> dict:
    """Every selected system's Hamiltonian in the cache (built on a miss); label → file."""
    from nqsbench.build import cache_path, get_hamiltonian

    out = {}
    for label in PARAMS:
        geom = geometry(label)
        get_hamiltonian(geom)
        out[label] = str(cache_path(geom))
    return out


class SystemBenchmark:
    """Base: ``system`` parameter, Hamiltonians warmed once per ``asv run`` by a setup_cache that
    every subclass shares (asv keys setup_cache by its source line), passed on as ``paths``."""

    params = [PARAMS]
    param_names = ["system"]
    timeout = 600.0

    def setup_cache(self):
        return warm_hamiltonians()

    setup_cache.timeout = 1800.0       # first run: graphene's KRHF alone takes ~30 s unloaded


def block(x):
    import jax

    return jax.block_until_ready(x)
