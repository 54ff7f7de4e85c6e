"""Methods: one interface, one registry (:mod:`.registry`), one module per method family.

    from nqsbench import methods
    rec = methods.compute(methods.get("ccsd"), geom)            # in memory, never written
    methods.names("reference")                                  # exact, hf, mp2, ccsd, ...

Built-ins: ``exact`` (exact diagonalization), ``hf``, ``mp2``, ``ccsd``, ``ccsd_t``, ``eom_ccsd``
(PySCF k-point), ``dmrg`` (block2), ``nqs`` (NQS ground state), ``nqs_bands`` (its quasiparticle
bands).
"""
from .base import Dependency, Method, RunContext, compute
from .registry import UnknownMethodError, get, methods, names, register

__all__ = ["Dependency", "Method", "RunContext", "compute", "get", "methods", "names", "register",
           "UnknownMethodError"]
