"""DMRG (block2, optional extra ``dmrg``) on the real Γ-supercell Hamiltonian as a method."""
from __future__ import annotations

from ..records import DMRGSettings
from .pyscf_kpoint import RunnerMethod
from .registry import register


@register
class DMRG(RunnerMethod):
    name, Settings = "dmrg", DMRGSettings
    engine_module, engine = "nqsbench.runners.dmrg", "run_dmrg"
    summary = "DMRG (block2, extra 'dmrg') on the real Γ-supercell Hamiltonian, extrapolated in discarded weight"
