"""Shared fixtures: Hamiltonians are built once per session into a throwaway cache."""
from __future__ import annotations

import os
import tempfile

import pytest

# A private cache, so tests exercise the build path and never read a user's stale cache.
os.environ.setdefault("NQSBENCH_CACHE", tempfile.mkdtemp(prefix="nqsbench-test-cache-"))

_HAMS: dict = {}


def get_ham(system: str, kmesh=None, **params):
    from nqsbench import catalog
    from nqsbench.build import get_hamiltonian

    key = (system, tuple(kmesh) if kmesh else None, tuple(sorted(params.items())))
    if key not in _HAMS:
        geom = catalog.load(system).geometry(params, kmesh)
        _HAMS[key] = get_hamiltonian(geom)
    return _HAMS[key]


@pytest.fixture(scope="session")
def ham_factory():
    return get_ham


def hchain(nk: int, d: float = 1.8):
    """The H-chain Hamiltonian at bond length d and k-mesh 1×1×nk (session-cached)."""
    return get_ham("h-chain", (1, 1, nk), d=d)


class Kill:
    """A driver callback that raises KeyboardInterrupt at step ``at`` (a killed run, for resume tests)."""

    def __init__(self, at: int):
        self.at = at

    def __call__(self, driver, step, log):
        if step == self.at:
            raise KeyboardInterrupt("simulated kill")
