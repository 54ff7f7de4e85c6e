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
    run_options = {"mpi": "run the sweeps on N MPI ranks (block2's MPI build, extra 'dmrg-mpi', under mpirun); "
                          "the same energy as serial, so not part of the record's settings"}

    def settings_from(self, **fields) -> DMRGSettings:
        # only the given fields: a lone max_bond_dim brings its own schedule and reverse sweeps
        return DMRGSettings.model_validate(fields)

    def engine_options(self, ctx):
        # MPI ranks are a run option (RunContext.options), not a setting: they change how the
        # record is computed, not what (same energy to 1e-8 Ha), and a record made on 64 ranks of
        # a cluster must stay fresh for a laptop that asks for the serial run.
        mpi = ctx.options.get("mpi")
        return {"mpi": int(mpi)} if mpi else {}
