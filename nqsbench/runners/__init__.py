"""Engines of the classical reference methods (PySCF k-point methods, DMRG) on the shared Hamiltonian.

Each engine takes a :class:`~nqsbench.catalog.Geometry`, its :class:`~nqsbench.hamiltonian.Hamiltonian`
and the method's settings and returns a :class:`~nqsbench.runners.kpoint.RunnerResult`; the
registered methods (:mod:`nqsbench.methods`) turn that into a record.
"""
