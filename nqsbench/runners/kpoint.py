"""PySCF k-point engines: KRHF (Koopmans bands), KMP2, KRCCSD, KRCCSD(T), EOM-IP/EA-KRCCSD.

Pure computations (geometry, Hamiltonian, settings) → :class:`RunnerResult`; the registered
methods of :mod:`nqsbench.methods.pyscf_kpoint` turn results into records.

All of them run on the *same* orbitals as the cached :class:`Hamiltonian` (its ``mo_coeff``,
frozen core passed to PySCF as ``frozen=``) with the exxdiv=None energy expression, so their
correlation energies are those of the Hamiltonian that exact diagonalization and the NQS solve.

Conventions (design.md):
- PySCF's KRCCSD shifts occupied orbital energies by the Madelung constant in its *amplitude
  denominators* only; the converged CCSD energy does not depend on the preconditioner. The
  perturbative methods (MP2, (T)) do depend on their denominators: here both use the Fock
  operator of our Hamiltonian (exxdiv=None), so they equal MP2 / CCSD(T) of the same H on the
  real Γ supercell (tested).
- Energies: raw supercell energy E (constant included); headline per cell
  (E + ham.ewald_shift(N))/N_k. Bands: ε_e(k) = E(N+1) − E(N), ε_h(k) = E(N) − E(N−1) with the
  sector constants of the exact record (so ε_h = −IP_raw − m, ε_e = EA_raw).
- EOM roots are selected by their one-particle weight |r1|²/|r|² among ≥ 3 roots per k.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..catalog import Geometry
from ..hamiltonian import Hamiltonian
from ..records import CCSDSettings, EOMCCSDSettings, EOMRoots, HFSettings, MP2Settings

log = logging.getLogger(__name__)

# Settings are the typed models of nqsbench.records (CCSDSettings, EOMCCSDSettings: defaults and
# meaning there). EOM notes: high-lying quasiparticles among satellites (graphene 2x2x1, LiH
# 2x2x2 conduction bands) need a larger Davidson space (the retry); a band still unconverged is
# left out of the record (listed in details) unless it is the frontier band at its k; like the
# exact bands' Krylov search, a root with one-particle weight below min_weight is a satellite,
# never a band (so a k may list fewer bands than HF has); degenerate roots are kept with their
# multiplicity.
EOM_SELECTION = ("largest one-particle weight |r1|^2/|r|^2 among the lowest and the Koopmans-targeted "
                 "roots, then sorted by energy")


@dataclass
class RunnerResult:
    """What a runner found, in raw (exxdiv=None) supercell energies; bands already in ewald."""
    converged: bool
    e_supercell_raw: float | None = None      # supercell total, ham.constant included
    n_active: int = 0                          # active electrons of that state
    failure: str | None = None
    details: dict[str, Any] = field(default_factory=dict)   # diagnostics for the record
    bands: list[dict] = field(default_factory=list)
    gap: float | None = None
    e_corr_per_cell: float | None = None
    energy_error: float | None = None


def failed(reason: str, **details) -> RunnerResult:
    return RunnerResult(converged=False, failure=reason, details=details)


# --------------------------------------------------------------------------- SCF on cached orbitals
def pyscf_max_memory_mb() -> float:
    """PySCF's ``max_memory`` (MB) for the k-point engines: nqsbench's memory budget
    (``config.memory_gb``) on top of what this process already holds. PySCF checks its budget
    against the process's resident size, so its default 4000 MB refused KMP2 ("Insufficient
    memory! … currently available −825 MB") in a test session that had grown past 4.8 GB while
    the machine had 21 GB free; KMP2, KRCCSD and EOM take it from the SCF object."""
    from pyscf import lib

    from .. import config

    return float(lib.current_memory()[0]) + 1000.0 * config.memory_gb()


def scf_from_hamiltonian(geom: Geometry, ham: Hamiltonian, tol: float = 1e-7):
    """A KRHF(exxdiv=None, GDF) object carrying the Hamiltonian's own orbitals (no SCF).

    The orbital energies are the diagonal of the exxdiv=None Fock matrix; the HF energy is checked
    against the stored one (gauge invariant) so a stale cache cannot slip through.
    """
    from pyscf.pbc import scf

    from ..build import make_cell, pyscf_kmesh

    cell = make_cell(geom)
    kpts = cell.make_kpts(pyscf_kmesh(geom))
    mf = scf.KRHF(cell, kpts, exxdiv=None).density_fit()
    mf.verbose = 0
    mf.max_memory = pyscf_max_memory_mb()
    mo_coeff = [np.asarray(c) for c in ham.mo_coeff]
    nc = ham.n_core
    mo_occ = []
    for k in range(ham.nk):
        occ = np.zeros(mo_coeff[k].shape[1])
        occ[:nc] = 2.0
        occ[nc:] = ham.mo_occ[k]
        mo_occ.append(occ)
    mf.mo_coeff, mf.mo_occ = mo_coeff, mo_occ
    dm = mf.make_rdm1()
    fock = mf.get_fock(dm=dm)
    mf.mo_energy = [np.einsum("mp,mn,np->p", c.conj(), f, c).real for c, f in zip(mo_coeff, fock)]
    mf.e_tot = float(mf.energy_tot(dm))
    mf.converged = True
    if abs(mf.e_tot - ham.e_hf) > tol:   # both per cell
        raise RuntimeError(f"HF energy from the cached orbitals {mf.e_tot:.10f} differs from the "
                           f"Hamiltonian's {ham.e_hf:.10f} Ha/cell: stale cache?")
    return mf


# --------------------------------------------------------------------------- helpers
def _n0(ham: Hamiltonian) -> int:
    return ham.n_alpha + ham.n_beta


def _gap(bands: list[dict]) -> float | None:
    el = [e for b in bands for e in b["electron"]]
    ho = [e for b in bands for e in b["hole"]]
    return float(min(el) - max(ho)) if el and ho else None


def _per_cell_raw_to_supercell(ham: Hamiltonian, e_per_cell: float) -> float:
    return float(e_per_cell) * ham.nk


# --------------------------------------------------------------------------- HF
def run_hf(geom: Geometry, ham: Hamiltonian, settings: HFSettings | None = None) -> RunnerResult:
    """KRHF energy (stored HF of the Hamiltonian) and Koopmans bands (ε_h = ε_i − m, ε_e = ε_a)."""
    n0 = _n0(ham)
    d_hole = ham.ewald_shift(n0) - ham.ewald_shift(n0 - 1)
    d_elec = ham.ewald_shift(n0 + 1) - ham.ewald_shift(n0)
    bands = []
    for k in range(ham.nk):
        occ = ham.mo_occ[k] > 0
        eps = np.asarray(ham.mo_energy[k])
        bands.append({"k": k, "kvec": ham.kvec[k].tolist(),
                      "hole": sorted(float(e + d_hole) for e in eps[occ]),
                      "electron": sorted(float(e + d_elec) for e in eps[~occ]),
                      "hole_weight": [1.0] * int(occ.sum()), "electron_weight": [1.0] * int((~occ).sum())})
    return RunnerResult(converged=True, e_supercell_raw=ham.e_hf * ham.nk, n_active=n0,
                        details={"bands": "Koopmans (exxdiv=None orbital energies + sector constants)"},
                        bands=bands, gap=_gap(bands), e_corr_per_cell=0.0)


# --------------------------------------------------------------------------- MP2
def mp2_corr_per_cell(ham: Hamiltonian) -> float:
    """Closed-shell MP2 correlation energy per cell from the stored integrals:
    E = 1/N_k³ Σ_{ki,kj,ka} Σ_{ijab} (ia|jb)* [2 (ia|jb) − (ib|ja)] / (e_i + e_j − e_a − e_b)."""
    nk = ham.nk
    occ = ham.mo_occ > 0
    e = ham.mo_energy
    total = 0.0
    for ki in range(nk):
        for kj in range(nk):
            for ka in range(nk):
                kb = ham.kconserv[ki, ka, kj]
                oi, oj, va, vb = occ[ki], occ[kj], ~occ[ka], ~occ[kb]
                iajb = ham.eri[ki, ka, kj][np.ix_(oi, va, oj, vb)]
                ibja = ham.eri[ki, kb, kj][np.ix_(oi, vb, oj, va)].transpose(0, 3, 2, 1)
                denom = (e[ki][oi][:, None, None, None] - e[ka][va][None, :, None, None]
                         + e[kj][oj][None, None, :, None] - e[kb][vb][None, None, None, :])
                total += np.sum(iajb.conj() * (2 * iajb - ibja) / denom).real
    return float(total) / nk ** 3   # 1/N_k² from the two ERIs, 1/N_k for per cell


def run_mp2(geom: Geometry, ham: Hamiltonian, mf=None, settings: MP2Settings | None = None) -> RunnerResult:
    """KMP2. PySCF's density-fitted KMP2 refuses 2D cells (its 2D DF tensors are indefinite), so
    2D systems use the same formula on the stored integrals (checked equal to PySCF in 1D/3D)."""
    if geom.spec.dimension == 2:
        e_corr, engine = mp2_corr_per_cell(ham), "nqsbench integrals (PySCF KMP2 has no 2D DF)"
    else:
        from pyscf.pbc import mp

        mf = mf or scf_from_hamiltonian(geom, ham)
        pt = mp.KMP2(mf, frozen=ham.n_core or None)
        pt.verbose = 0
        e_corr, _ = pt.kernel(with_t2=False)
        e_corr, engine = float(np.real(e_corr)), "pyscf KMP2"
    return RunnerResult(converged=True, e_supercell_raw=(ham.e_hf + e_corr) * ham.nk, n_active=_n0(ham),
                        details={"denominators": "exxdiv=None Fock (the Hamiltonian's own)",
                                 "engine": engine},
                        e_corr_per_cell=e_corr)


# --------------------------------------------------------------------------- CCSD and friends
_CC_MEMO: dict[str, Any] = {}


def _cc(settings) -> CCSDSettings:
    return settings if settings is not None else CCSDSettings()


def get_ccsd(geom: Geometry, ham: Hamiltonian, mf=None, settings: CCSDSettings | None = None):
    """Converged KRCCSD object (memoised per Hamiltonian and convergence settings, so (T) and EOM
    reuse the amplitudes)."""
    cfg = {k: getattr(_cc(settings), k) for k in ("conv_tol", "conv_tol_normt", "max_cycle", "diis_space")}
    key = (ham.hash, tuple(sorted(cfg.items())))
    if key in _CC_MEMO:
        return _CC_MEMO[key]
    from pyscf.pbc import cc

    mf = mf or scf_from_hamiltonian(geom, ham)
    mycc = cc.KRCCSD(mf, frozen=ham.n_core or None)
    mycc.verbose = 0
    for k, v in cfg.items():
        setattr(mycc, k, v)
    eris = mycc.ao2mo()
    mycc.kernel(eris=eris)
    mycc._nqs_eris = eris
    _CC_MEMO.clear()
    _CC_MEMO[key] = mycc
    return mycc


def run_ccsd(geom: Geometry, ham: Hamiltonian, mf=None, settings: CCSDSettings | None = None) -> RunnerResult:
    mycc = get_ccsd(geom, ham, mf, settings)
    if not mycc.converged:
        return failed(f"KRCCSD did not converge in {_cc(settings).max_cycle} iterations "
                      f"(last E_corr {float(np.real(mycc.e_corr)):.8f} Ha/cell)")
    e_corr = float(np.real(mycc.e_corr))
    return RunnerResult(converged=True, e_supercell_raw=(ham.e_hf + e_corr) * ham.nk, n_active=_n0(ham),
                        e_corr_per_cell=e_corr)


def run_ccsd_t(geom: Geometry, ham: Hamiltonian, mf=None, settings: CCSDSettings | None = None) -> RunnerResult:
    from pyscf.pbc.cc import kccsd_t_rhf

    mycc = get_ccsd(geom, ham, mf, settings)
    details = {"denominators": "exxdiv=None Fock (the Hamiltonian's own)"}
    if not mycc.converged:
        return failed("KRCCSD did not converge; no (T) on unconverged amplitudes", **details)
    eris = mycc._nqs_eris
    # (T) uses eris.mo_energy, whose occupied levels KRCCSD shifted by the Madelung constant;
    # use the unshifted Fock diagonal so (T) is that of our Hamiltonian.
    shifted = eris.mo_energy
    eris.mo_energy = [f.diagonal().real for f in eris.fock]
    # PySCF's KRCCSD(T) writes a fixed-name 'tmp_t3_eris.h5' into the working directory, so two
    # runs in one folder corrupt each other's file: run it inside a private temporary folder.
    cwd = os.getcwd()
    tmp = tempfile.mkdtemp(prefix="nqsbench-t3-")
    try:
        os.chdir(tmp)
        e_t = float(np.real(kccsd_t_rhf.kernel(mycc, eris, mycc.t1, mycc.t2, verbose=0)))
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)
        eris.mo_energy = shifted
    e_corr = float(np.real(mycc.e_corr)) + e_t
    return RunnerResult(converged=True, e_supercell_raw=(ham.e_hf + e_corr) * ham.nk, n_active=_n0(ham),
                        details=dict(details, e_t_per_cell=e_t), e_corr_per_cell=e_corr)


def run_eom(geom: Geometry, ham: Hamiltonian, mf=None, settings: EOMCCSDSettings | None = None) -> RunnerResult:
    """EOM-IP/EA-KRCCSD at every k → CCSD quasiparticle bands (ewald convention, like exact)."""
    from pyscf.pbc.cc import eom_kccsd_rhf

    settings = settings if settings is not None else EOMCCSDSettings()
    mycc = get_ccsd(geom, ham, mf, settings)
    details: dict[str, Any] = {"selection": EOM_SELECTION}
    if not mycc.converged:
        return failed("KRCCSD did not converge; no EOM on unconverged amplitudes", **details)
    n0 = _n0(ham)
    d_hole = ham.ewald_shift(n0) - ham.ewald_shift(n0 - 1)
    d_elec = ham.ewald_shift(n0 + 1) - ham.ewald_shift(n0)
    ip, ea = eom_kccsd_rhf.EOMIP(mycc), eom_kccsd_rhf.EOMEA(mycc)
    ip.verbose = ea.verbose = 0
    imds_ip, imds_ea = ip.make_imds(eris=mycc._nqs_eris), ea.make_imds(eris=mycc._nqs_eris)
    bands, roots, ok = [], [], True
    for k in range(ham.nk):
        occ = ham.mo_occ[k] > 0
        n_h, n_e = int(occ.sum()), int((~occ).sum())
        band = {"k": k, "kvec": ham.kvec[k].tolist(), "hole": [], "electron": [], "hole_weight": [],
                "electron_weight": []}
        if n_h:
            e, w, c, info = _eom_branch_imds(ip, imds_ip, "ip", k, n_h, settings.eom)
            band["hole"] = [float(-x + d_hole) for x in e][::-1]
            band["hole_weight"] = [float(x) for x in w][::-1]
            ok &= c
            roots.append(info)
        if n_e:
            e, w, c, info = _eom_branch_imds(ea, imds_ea, "ea", k, n_e, settings.eom)
            band["electron"] = [float(x + d_elec) for x in e]
            band["electron_weight"] = [float(x) for x in w]
            ok &= c
            roots.append(info)
        order_h = np.argsort(band["hole"])
        band["hole"] = [band["hole"][i] for i in order_h]
        band["hole_weight"] = [band["hole_weight"][i] for i in order_h]
        bands.append(band)
    details["eom_roots"] = roots
    details["weights"] = "one-particle weight |r1|^2/|r|^2 (not the exact spectral weight Z)"
    e_corr = float(np.real(mycc.e_corr))
    if not ok:
        return RunnerResult(converged=False, failure="EOM-CCSD Davidson did not converge for a selected root",
                            details=details)
    return RunnerResult(converged=True, e_supercell_raw=(ham.e_hf + e_corr) * ham.nk, n_active=n0,
                        details=details, bands=bands, gap=_gap(bands), e_corr_per_cell=e_corr)


def _eom_branch_imds(eom, imds, kind, k, n_bands, cfg: EOMRoots):
    """Roots of one EOM branch at one k: the lowest ``max(3, n_bands + 2)`` roots and the
    ``n_bands`` roots that follow the Koopmans (1h / 1p) guesses (a high-lying quasiparticle, e.g.
    the top of an antibonding band, sits above many satellites); keep the ``n_bands`` with the
    largest one-particle weight."""
    size = eom.vector_size()
    nroots = int(min(size, max(cfg.min_roots, n_bands + cfg.extra_roots)))
    eom.conv_tol, eom.max_cycle, eom.max_space = cfg.conv_tol, cfg.max_cycle, cfg.max_space
    energies, weights, convs = [], [], []

    def collect(n, koopmans):
        n_before = len(energies)
        e, v = eom.kernel(nroots=n, kptlist=[k], imds=imds, koopmans=koopmans)
        e = np.atleast_1d(np.asarray(e)[0]).real
        v = np.asarray(v)[0].reshape(n, -1)
        conv = np.atleast_1d(np.asarray(eom.converged)[0]).astype(bool)
        matched = set()
        for en, vec, c in zip(e, v, conv):
            # a root found again by a later pass matches one earlier root of the same energy that
            # this pass has not matched yet, so true degeneracies (graphene Γ, LiH Γ) keep their
            # multiplicity; converged if either pass converged it
            near = [i for i, x in enumerate(energies) if abs(en - x) < 1e-6 and i not in matched
                    and i < n_before]
            if near:
                matched.add(near[0])
                convs[near[0]] = convs[near[0]] or bool(c)
                continue
            r1, _ = eom.vector_to_amplitudes(vec, kshift=k)
            energies.append(float(en))
            weights.append(float(np.linalg.norm(r1) ** 2 / np.linalg.norm(vec) ** 2))
            convs.append(bool(c))

    def select(w):
        """The n_bands roots of largest one-particle weight, satellites (weight < min) excluded."""
        order = [i for i in np.argsort(-np.asarray(w)) if w[i] >= cfg.min_weight]
        return np.array(order[:n_bands], dtype=int)

    for n, koopmans in ((nroots, False), (min(size, n_bands), True)):
        if koopmans and not cfg.koopmans_roots:
            continue
        collect(n, koopmans)
    if not all(convs[i] for i in select(weights)):
        eom.max_cycle, eom.max_space = cfg.retry_max_cycle, cfg.retry_max_space
        collect(min(size, n_bands), True)
    e, w, conv = np.array(energies), np.array(weights), np.array(convs)
    chosen = select(w)
    chosen = chosen[np.argsort(e[chosen])]
    # frontier band at this k: the lowest electron / the highest hole (e is the IP or EA root energy,
    # so the lowest root is the frontier for both branches)
    frontier_ok = bool(conv[chosen[0]]) if len(chosen) else True
    dropped = [float(e[i]) for i in chosen if not conv[i]]
    if cfg.drop_unconverged_nonfrontier and frontier_ok:
        chosen = np.array([i for i in chosen if conv[i]], dtype=int)
    return e[chosen], w[chosen], bool(conv[chosen].all()) if len(chosen) else False, {
        "k": k, "kind": kind, "roots": e.tolist(), "weights": w.tolist(), "converged": conv.tolist(),
        "dropped_unconverged": dropped if frontier_ok else []}

