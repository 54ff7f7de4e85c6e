"""DMRG (block2) on the real Γ-supercell form of the shared Hamiltonian.

- Hamiltonian: :meth:`Hamiltonian.real_supercell` (the k-space H rotated to real, orthonormal,
  atom-localised projected orbitals; 1/N_k folded in), spin-adapted SU(2) MPO, ``ecore`` =
  ``ham.constant``; N↑ = N↓ (singlet).
- Orbital ordering: Fiedler ordering of the exchange matrix K_ij = (ij|ji) (block2's
  ``orbital_reordering``): the localised orbitals come out in chain order for 1D systems, which
  keeps the entanglement across each bond small.
- Schedule: bond dimensions grow with noise to ``max_bond_dim``, then a reverse schedule of
  noiseless sweeps at decreasing M; E is extrapolated linearly in the discarded weight over the
  reverse sweeps. Energy reported: the extrapolated E; error estimate: |E_extrap − E_var(M_max)|/5
  plus the fit's residual (0 when the largest M is exact, e.g. the H chain N_k = 4 with 8 orbitals).
"""
from __future__ import annotations

import shutil
import tempfile

import numpy as np

from ..catalog import Geometry
from ..errors import NqsbenchError
from ..hamiltonian import Hamiltonian
from ..records import DMRGSettings
from .dmrg_core import sweeps
from .kpoint import RunnerResult



class MissingExtraError(NqsbenchError):
    pass


def _import_block2():
    try:
        from pyblock2.driver.core import DMRGDriver, SymmetryTypes
    except ImportError:
        raise MissingExtraError("DMRG needs block2: install the optional extra with "
                                "`pip install -e '.[dmrg]'` (or `pip install block2`)") from None
    return DMRGDriver, SymmetryTypes


def _sweeps_mpi(h, eri, n_elec: int, ecore: float, cfg: dict, scratch: str, ranks: int) -> dict:
    """:func:`~nqsbench.runners.dmrg_core.sweeps` on ``ranks`` MPI ranks: the Hamiltonian goes
    to the ranks in a file, rank 0's result comes back in one."""
    import json
    import os
    import shlex
    import subprocess
    from pathlib import Path

    from .. import config
    from . import dmrg_core

    launcher = shlex.split(config.mpirun())
    if shutil.which(launcher[0]) is None:
        raise MissingExtraError(f"--mpi {ranks}: no {launcher[0]!r} on PATH; install an MPI (Debian/Ubuntu: "
                                "`apt-get install openmpi-bin libopenmpi-dev`) or set NQSBENCH_MPIRUN")
    inp, out = Path(scratch) / "ham.npz", Path(scratch) / "result.json"
    np.savez(inp, h=h, eri=eri, n_elec=n_elec, ecore=ecore, cfg=json.dumps(cfg), scratch=str(Path(scratch) / "ranks"))
    # OpenMPI refuses to start as root without these (containers); other MPIs ignore them
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    cmd = [*launcher, "-n", str(ranks), config.mpi_python(), dmrg_core.__file__, str(inp), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        if proc.returncode == 3 or any("NQSBENCH-MPI" in ln for ln in tail):
            raise MissingExtraError(f"--mpi {ranks}: {config.mpi_python()} has no MPI build of block2; install the "
                                    "extra `pip install -e '.[dmrg-mpi]'` there (or set NQSBENCH_MPI_PYTHON)")
        raise MissingExtraError(f"--mpi {ranks}: {' '.join(cmd[:3])} ... failed (exit {proc.returncode}): "
                                + " | ".join(tail))
    return json.loads(out.read_text())


def run_dmrg(geom: Geometry, ham: Hamiltonian, settings: DMRGSettings | dict | None = None,
             mpi: int | None = None) -> RunnerResult:
    """Settings: :class:`nqsbench.records.DMRGSettings` (schedule rows: bond dimension, sweeps,
    noise; an extrapolation error above ``max_error_per_cell`` is a failed record).

    ``mpi``: run the sweeps on this many MPI ranks (block2's MPI build under
    ``$NQSBENCH_MPIRUN -n N $NQSBENCH_MPI_PYTHON``, see :func:`_sweeps_mpi`); how the record is
    computed, not what: the same energy as the serial run, so not part of the settings."""
    if not isinstance(settings, DMRGSettings):    # None, or a dict of fields to change
        settings = DMRGSettings(**(settings or {}))
    cfg = settings.model_dump()
    serial = not (mpi and mpi > 1)
    if serial:                       # the missing extra is named before any work
        DMRGDriver, SymmetryTypes = _import_block2()
    h, eri = ham.real_supercell()
    n = h.shape[0]
    n_elec = ham.n_alpha + ham.n_beta
    scratch = tempfile.mkdtemp(prefix="nqsbench-dmrg-")
    try:
        if not serial:
            res = _sweeps_mpi(h, eri, n_elec, ham.constant, cfg, scratch, mpi)
        else:
            driver = DMRGDriver(scratch=scratch, symm_type=SymmetryTypes.SU2, n_threads=cfg["n_threads"],
                                stack_mem=int(2e9))
            res = sweeps(driver, h, eri, n_elec, ham.constant, cfg)
            res["mpi_ranks"] = 1
        idx, e_var, dw_max = res["ordering"], res["e_var"], res["dw_max"]
        points = [tuple(p) for p in res["points"]]
        dw = np.array([p[0] for p in points])
        en = np.array([p[1] for p in points])
        if dw.max() < 1e-14:
            e_ext, err = e_var, 0.0
        else:
            a, b = np.polyfit(dw, en, 1)
            resid = float(np.abs(en - (a * dw + b)).max())
            e_ext = float(b)
            err = abs(e_ext - e_var) / 5 + resid
        ok = bool(np.isfinite(e_ext)) and err / ham.nk <= cfg["max_error_per_cell"]
        failure = None
        if not np.isfinite(e_ext):
            failure = "DMRG energy is not finite"
        elif not ok:
            failure = (f"DMRG not converged: extrapolation error {err / ham.nk:.2e} Ha/cell > "
                       f"{cfg['max_error_per_cell']:.0e} (discarded weight {dw_max:.1e} at M = {cfg['max_bond_dim']}); "
                       "raise the bond dimension or improve the orbital ordering")
        return RunnerResult(converged=ok, e_supercell_raw=e_ext if ok else None, n_active=n_elec,
                            failure=failure,
                            details=dict(ordering="fiedler (exchange matrix)",
                                         ordering_indices=[int(i) for i in idx], e_variational_raw=e_var,
                                         extrapolation=[list(p) for p in points], n_orbitals=n,
                                         mpi_ranks=res["mpi_ranks"]),
                            e_corr_per_cell=(e_ext / ham.nk - ham.e_hf) if ok else None,
                            energy_error=err / ham.nk)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
