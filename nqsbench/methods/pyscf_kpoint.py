"""PySCF k-point reference methods on the shared Hamiltonian: HF, MP2, CCSD, CCSD(T), EOM-CCSD.

The engines are :mod:`nqsbench.runners.kpoint`; :class:`RunnerMethod` turns a runner's result
(raw supercell energy, bands in ewald convention) into a record, the same way for every engine,
DMRG included. A runner that raises a numerical error gives a failed record, never a result.
"""
from __future__ import annotations

import importlib
import logging
from typing import ClassVar

import numpy as np

from ..records import (Band, CCSDSettings, CCSDTSettings, EOMCCSDSettings, HFSettings, MP2Settings,
                       ReferenceRecord)
from .base import Method, RunContext
from .registry import register

log = logging.getLogger(__name__)


class RunnerMethod(Method):
    """A reference method whose engine, ``engine`` in module ``engine_module``, maps (geometry,
    Hamiltonian, settings) to a :class:`~nqsbench.runners.kpoint.RunnerResult`."""
    record_model = ReferenceRecord
    engine_module: ClassVar[str] = "nqsbench.runners.kpoint"
    engine: ClassVar[str]

    def engine_options(self, ctx: RunContext) -> dict:
        """Keyword arguments for the engine from the run's options (how to compute, never what:
        not part of the settings hash), e.g. DMRG's MPI ranks."""
        return {}

    def run(self, geom, ham, settings, ctx: RunContext) -> ReferenceRecord:
        from ..runners.kpoint import failed

        engine = getattr(importlib.import_module(self.engine_module), self.engine)
        try:
            res = engine(geom, ham, settings=settings, **self.engine_options(ctx))
        except (RuntimeError, ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
            log.warning("%s failed on %s: %s", self.name, geom.label(), exc)
            res = failed(f"{type(exc).__name__}: {exc}")
        ok = res.converged
        e_raw = e_head = None
        if ok:
            e_raw = res.e_supercell_raw / ham.nk
            e_head = (res.e_supercell_raw + ham.ewald_shift(res.n_active)) / ham.nk
        return ReferenceRecord(
            method=self.name, **self.common_fields(geom, ham), settings=settings, details=res.details,
            converged=ok, failure=res.failure, energy_per_cell=e_head, energy_per_cell_raw=e_raw,
            e_hf_per_cell=ham.e_hf, bands=[Band(**b) for b in res.bands] if ok else [],
            gap=res.gap if ok else None, e_corr_per_cell=res.e_corr_per_cell if ok else None,
            energy_error=res.energy_error if ok else None)


@register
class HF(RunnerMethod):
    name, Settings, engine = "hf", HFSettings, "run_hf"
    summary = "KRHF energy and Koopmans bands (ewald convention)"


@register
class MP2(RunnerMethod):
    name, Settings, engine = "mp2", MP2Settings, "run_mp2"
    summary = "KMP2 on the shared KRHF orbitals (exxdiv=None Fock denominators)"


@register
class CCSD(RunnerMethod):
    name, Settings, engine = "ccsd", CCSDSettings, "run_ccsd"
    summary = "KRCCSD on the shared KRHF orbitals"


@register
class CCSDT(RunnerMethod):
    name, Settings, engine = "ccsd_t", CCSDTSettings, "run_ccsd_t"
    summary = "KRCCSD(T) (exxdiv=None Fock denominators)"


@register
class EOMCCSD(RunnerMethod):
    name, Settings, engine = "eom_ccsd", EOMCCSDSettings, "run_eom"
    summary = "EOM-IP/EA-KRCCSD quasiparticle bands at every k (roots by one-particle weight)"
