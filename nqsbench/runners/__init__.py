"""Classical reference runners (PySCF k-point methods, DMRG) on the shared Hamiltonian.

Each runner takes a :class:`~nqsbench.catalog.Geometry` and its :class:`~nqsbench.hamiltonian.Hamiltonian`
and returns a :class:`RunnerResult`; :mod:`nqsbench.references` turns that into a record.
"""
from __future__ import annotations

METHODS = ("hf", "mp2", "ccsd", "ccsd_t", "eom_ccsd", "dmrg")
