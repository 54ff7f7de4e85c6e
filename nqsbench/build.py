"""Hamiltonian builder: Geometry → PySCF cell → KRHF (exxdiv=None, GDF) → :class:`Hamiltonian`.

The only module besides the reference runners that imports PySCF. Results are cached on disk,
keyed by a hash of every input, so a cache hit never starts PySCF.
"""
from __future__ import annotations

import logging
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .catalog import Geometry
from .config import cache_dir
from .hamiltonian import FORMAT_VERSION, Hamiltonian
from .io import inside

log = logging.getLogger(__name__)

SCF_SETTINGS = {"exxdiv": None, "df": "GDF", "conv_tol": 1e-11,
                # 1D: analytic infinite vacuum (vacuum-size independent to 1e-9 Ha). 2D: PySCF's
                # inf_vacuum ERIs are singular (Madelung constant ~1e5 Ha), so the plain 2D
                # treatment is used with a vacuum of >= 16 Å (converged to ~1e-5 Ha).
                "low_dim_ft_type": {"1": "inf_vacuum", "2": None}}


def pyscf_order(geom: Geometry) -> list[int]:
    """PySCF wants the periodic lattice vectors first; keep the rest in their order."""
    axes = list(geom.spec.axes)
    return axes + [i for i in range(3) if i not in axes]


def make_cell(geom: Geometry, verbose: int = 0):
    from pyscf.pbc import gto

    order = pyscf_order(geom)
    cell = gto.Cell()
    cell.a = geom.lattice[order]
    cell.atom = [[s, tuple(c)] for s, c in zip(geom.symbols, geom.coords)]
    cell.unit = "B"
    cell.basis = geom.spec.basis
    cell.dimension = geom.spec.dimension
    if geom.spec.dimension < 3:
        cell.low_dim_ft_type = SCF_SETTINGS["low_dim_ft_type"][str(geom.spec.dimension)]
    cell.verbose = verbose
    cell.build()
    return cell


def pyscf_kmesh(geom: Geometry) -> list[int]:
    return [geom.kmesh[i] for i in pyscf_order(geom)]


def active_space(geom: Geometry) -> tuple[int, int]:
    """(active orbitals per cell, spin-up electrons of the neutral supercell): the basis size less
    the frozen core, from the cell alone (no SCF), for sizing sectors before any run."""
    spec = geom.spec
    n_act = int(make_cell(geom).nao_nr()) - spec.frozen_core
    return n_act, (spec.n_electrons_cell - 2 * spec.frozen_core) * geom.nk // 2


def cache_key(geom: Geometry) -> str:
    import pyscf

    return geom.input_hash({"pyscf": pyscf.__version__, "format": FORMAT_VERSION, "scf": SCF_SETTINGS})


def cache_path(geom: Geometry) -> Path:
    root = cache_dir() / "hamiltonians"
    return inside(root / f"{geom.label()}-{cache_key(geom)}.npz", root, "Hamiltonian cache entry", depth=1)


def get_hamiltonian(geom: Geometry, use_cache: bool = True) -> Hamiltonian:
    """Load from the cache, or build with PySCF and store."""
    path = cache_path(geom)
    if use_cache and path.exists():
        try:
            ham = Hamiltonian.load(path)
            log.info("Hamiltonian cache hit %s", path)
            return ham
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError) as exc:
            # cut short or damaged on disk: a cache entry is rebuilt, never trusted
            log.warning("rebuilding unreadable Hamiltonian cache entry %s (%s: %s)", path,
                        type(exc).__name__, exc)
            path.unlink(missing_ok=True)
    ham = build_hamiltonian(geom)
    if use_cache:
        ham.save(path)
    return ham


def run_krhf(geom: Geometry, cell=None):
    """Converged KRHF whose energy expression is the exxdiv=None one.

    The SCF is converged in PySCF's default exxdiv='ewald' convention and then handed to an
    exxdiv=None object: the two Fock operators differ by m·SDS, a uniform shift of the occupied
    levels, so they share orbitals and stationarity. This matters in 2D, where PySCF's
    Madelung constant is huge (graphene Γ: m ≈ −7.5e4 Ha) and an exxdiv=None SCF cannot reach
    a 1e-11 energy tolerance on a −4.5e5 Ha total.
    """
    from pyscf.pbc import scf

    cell = cell or make_cell(geom)
    kpts = cell.make_kpts(pyscf_kmesh(geom))
    ewald = scf.KRHF(cell, kpts).density_fit()
    ewald.conv_tol = SCF_SETTINGS["conv_tol"]
    ewald.max_cycle = 200
    ewald.kernel()
    if not ewald.converged:
        ewald = ewald.newton()
        ewald.kernel(ewald.make_rdm1())
    if not ewald.converged:
        raise RuntimeError(f"KRHF did not converge for {geom.label()}")
    mf = scf.KRHF(cell, kpts, exxdiv=None).density_fit()
    mf.with_df = ewald.with_df
    mf.mo_coeff, mf.mo_occ, mf.converged = ewald.mo_coeff, ewald.mo_occ, True
    dm = mf.make_rdm1()
    fock = mf.get_fock(dm=dm)
    mf.mo_energy = [np.einsum("mp,mn,np->p", c.conj(), f, c).real for c, f in zip(mf.mo_coeff, fock)]
    mf.e_tot = float(mf.energy_tot(dm))
    mf.e_tot_ewald = float(ewald.e_tot)
    return mf


def mo_eris(mf, mo_coeff) -> np.ndarray:
    """(p k1 q k2 | r k3 s k4) for every allowed (k1, k2, k3), in PySCF's GDF (no 1/N_k)."""
    from pyscf.pbc.lib.kpts_helper import get_kconserv

    kpts = mf.kpts
    nk = len(kpts)
    n = mo_coeff[0].shape[1]
    kconserv = get_kconserv(mf.cell, kpts)
    eri = np.empty((nk, nk, nk, n, n, n, n), dtype=complex)
    for k1 in range(nk):
        for k2 in range(nk):
            for k3 in range(nk):
                k4 = kconserv[k1, k2, k3]
                block = mf.with_df.ao2mo([mo_coeff[k] for k in (k1, k2, k3, k4)],
                                         [kpts[k] for k in (k1, k2, k3, k4)], compact=False)
                eri[k1, k2, k3] = block.reshape(n, n, n, n)
    return symmetrize_eris(eri, kconserv), kconserv


def symmetrize_eris(eri: np.ndarray, kconserv: np.ndarray) -> np.ndarray:
    """Average over (pq|rs) = (qp|sr)* = (rs|pq): GDF breaks these at ~1e-9 Ha (LiH 2×1×1),
    which would make H slightly non-Hermitian. The change is far below the DF error."""
    nk = eri.shape[0]
    herm = np.empty_like(eri)
    swap = np.empty_like(eri)
    for k1 in range(nk):
        for k2 in range(nk):
            for k3 in range(nk):
                k4 = kconserv[k1, k2, k3]
                herm[k1, k2, k3] = eri[k2, k1, k4].transpose(1, 0, 3, 2).conj()
                swap[k1, k2, k3] = eri[k3, k4, k1].transpose(2, 3, 0, 1)
    half = 0.5 * (eri + herm)
    out = np.empty_like(eri)
    for k1 in range(nk):
        for k2 in range(nk):
            for k3 in range(nk):
                k4 = kconserv[k1, k2, k3]
                out[k1, k2, k3] = 0.5 * (half[k1, k2, k3] + half[k3, k4, k1].transpose(2, 3, 0, 1))
    return out


def build_hamiltonian(geom: Geometry, mf=None) -> Hamiltonian:
    import pyscf
    from pyscf.pbc import tools

    cell = mf.cell if mf is not None else make_cell(geom)
    mf = mf or run_krhf(geom, cell)
    kpts = mf.kpts
    nk = len(kpts)
    mo_coeff = np.asarray(mf.mo_coeff)
    hcore = mf.get_hcore()
    h_full = np.einsum("kmp,kmn,knq->kpq", mo_coeff.conj(), hcore, mo_coeff).astype(complex)
    eri_full, kconserv = mo_eris(mf, mo_coeff)

    nc = geom.spec.frozen_core
    act = slice(nc, None)
    h1 = h_full[:, act, act].copy()
    e_core = 0.0
    if nc:
        core = slice(0, nc)
        for k in range(nk):
            e_core += 2 * np.trace(h_full[k, core, core]).real
            for kp in range(nk):
                jblk = eri_full[k, k, kp]    # (pk qk | ck' ck')
                xblk = eri_full[k, kp, kp]   # (pk ck' | ck' qk)
                h1[k] += (2 * np.einsum("pqcc->pq", jblk[act, act, core, core])
                          - np.einsum("pccq->pq", xblk[act, core, core, act])) / nk
                e_core += (2 * np.einsum("iicc->", jblk[core, core, core, core])
                           - np.einsum("icci->", xblk[core, core, core, core])).real / nk
        e_core /= nk
    eri = np.ascontiguousarray(eri_full[:, :, :, act, act, act, act])

    kvec = np.rint(cell.get_scaled_kpts(kpts) * pyscf_kmesh(geom)).astype(int) % np.array(pyscf_kmesh(geom))
    e_hf = float(mf.energy_tot(mf.make_rdm1()))
    meta = {"geometry": geom.as_dict(), "input_hash": cache_key(geom), "pyscf": pyscf.__version__,
            "scf": SCF_SETTINGS, "e_hf_ewald_pyscf": getattr(mf, "e_tot_ewald", None), "kmesh_pyscf_order": pyscf_kmesh(geom),
            "tier": geom.tier}
    return Hamiltonian(
        h1=h1, eri=eri, kconserv=np.asarray(kconserv), kvec=kvec, mesh=np.array(pyscf_kmesh(geom)),
        e_nuc=float(cell.energy_nuc()), e_core=float(e_core), e_hf=e_hf,
        madelung=float(tools.madelung(cell, kpts)), n_core=nc,
        n_elec_cell=int(cell.nelectron), mo_energy=np.asarray(mf.mo_energy)[:, act].copy(),
        mo_occ=np.asarray(mf.mo_occ)[:, act].copy(), mo_coeff=mo_coeff, ovlp=np.asarray(mf.get_ovlp()),
        meta=meta)
