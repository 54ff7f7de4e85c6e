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


def run_dmrg(geom: Geometry, ham: Hamiltonian, settings: DMRGSettings | dict | None = None) -> RunnerResult:
    """Settings: :class:`nqsbench.records.DMRGSettings` (schedule rows: bond dimension, sweeps,
    noise; an extrapolation error above ``max_error_per_cell`` is a failed record)."""
    DMRGDriver, SymmetryTypes = _import_block2()
    if not isinstance(settings, DMRGSettings):    # None, or a dict of fields to change
        settings = DMRGSettings(**(settings or {}))
    cfg = settings.model_dump()
    h, eri = ham.real_supercell()
    n = h.shape[0]
    n_elec = ham.n_alpha + ham.n_beta
    scratch = tempfile.mkdtemp(prefix="nqsbench-dmrg-")
    try:
        driver = DMRGDriver(scratch=scratch, symm_type=SymmetryTypes.SU2, n_threads=cfg["n_threads"],
                            stack_mem=int(2e9))
        idx = driver.orbital_reordering(h, eri)
        h_o, eri_o = h[idx][:, idx], eri[idx][:, idx][:, :, idx][:, :, :, idx]
        driver.initialize_system(n_sites=n, n_elec=n_elec, spin=0, orb_sym=[0] * n)
        mpo = driver.get_qc_mpo(h1e=h_o, g2e=eri_o, ecore=ham.constant, iprint=0)
        ket = driver.get_random_mps(tag="KET", bond_dim=cfg["schedule"][0][0], nroots=1)
        bond_dims, noises = [], []
        for m, sweeps, noise in cfg["schedule"]:
            bond_dims += [m] * sweeps
            noises += [noise] * sweeps
        e_var = float(driver.dmrg(mpo, ket, n_sweeps=len(bond_dims), bond_dims=bond_dims, noises=noises,
                                  thrds=[1e-10] * len(bond_dims), tol=cfg["sweep_tol"], iprint=0))
        _, dws, _ = driver.get_dmrg_results()
        dw_max = float(np.max(dws[-1:])) if len(dws) else 0.0
        # Reverse schedule: two noiseless sweeps per M, last-sweep energy and discarded weight.
        points = [(dw_max, e_var)]
        for m in cfg["reverse_bond_dims"]:
            e_m = float(driver.dmrg(mpo, ket, n_sweeps=2, bond_dims=[m, m], noises=[0.0, 0.0],
                                    thrds=[1e-10, 1e-10], tol=0.0, iprint=0))
            _, dws_m, _ = driver.get_dmrg_results()
            points.append((float(np.max(dws_m[-1:])), e_m))
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
                                         extrapolation=[list(p) for p in points], n_orbitals=n),
                            e_corr_per_cell=(e_ext / ham.nk - ham.e_hf) if ok else None,
                            energy_error=err / ham.nk)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
