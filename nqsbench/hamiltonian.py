"""The periodic ab initio Hamiltonian in the Bloch-orbital basis (numpy only, no PySCF).

    H = Σ_k Σ_pq h_pq(k) c†_{pkσ} c_{qkσ}
      + 1/(2 N_k) Σ (p k1 q k2 | r k3 s k4) c†_{pk1σ} c†_{rk3τ} c_{sk4τ} c_{qk2σ} + N_k (E_nuc + E_core)

with k4 = kconserv[k1, k2, k3] (k1 − k2 + k3 − k4 ≡ 0). Only momentum-allowed ERI blocks are
stored. Orbitals are the active KRHF Bloch orbitals (frozen core folded into h and E_core).

Flat orbital index used everywhere downstream (ED, NQS, bands): i = k * n_orb + p.
Spin-orbital (Jordan–Wigner) index: i for spin up, n_spatial + i for spin down.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import atomic_write

FORMAT_VERSION = 2


@dataclass(frozen=True, eq=False)
class Hamiltonian:
    h1: np.ndarray          # (Nk, n, n) complex, frozen core folded in
    eri: np.ndarray         # (Nk, Nk, Nk, n, n, n, n) complex, (p k1 q k2 | r k3 s k4), no 1/Nk
    kconserv: np.ndarray    # (Nk, Nk, Nk) int
    kvec: np.ndarray        # (Nk, 3) int, k = kvec / mesh in reciprocal-lattice units (PySCF axis order)
    mesh: np.ndarray        # (3,) int, PySCF axis order
    e_nuc: float            # nuclear repulsion per cell
    e_core: float           # frozen-core energy per cell (0 without frozen core)
    e_hf: float             # KRHF energy per cell (exxdiv=None), PySCF's own number
    madelung: float         # pyscf.pbc.tools.madelung(cell, kpts)
    n_core: int             # frozen spatial orbitals per cell
    n_elec_cell: int        # all electrons per cell (core included)
    mo_energy: np.ndarray   # (Nk, n) active orbital energies (exxdiv=None)
    mo_occ: np.ndarray      # (Nk, n) active occupations (0 or 2)
    mo_coeff: np.ndarray    # (Nk, nao, nmo) all MOs (core included) in the Bloch AO basis
    ovlp: np.ndarray        # (Nk, nao, nao) Bloch AO overlap
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ sizes
    @property
    def nk(self) -> int:
        return self.h1.shape[0]

    @property
    def n_orb(self) -> int:
        """Active spatial orbitals per k-point."""
        return self.h1.shape[1]

    @property
    def n_spatial(self) -> int:
        return self.nk * self.n_orb

    @property
    def n_spin_orbitals(self) -> int:
        return 2 * self.n_spatial

    @property
    def n_alpha(self) -> int:
        """Active spin-up electrons in the N_k-cell supercell (closed shell: = n_beta)."""
        return int(round(self.mo_occ.sum())) // 2

    @property
    def n_beta(self) -> int:
        return self.n_alpha

    @property
    def n_elec_total(self) -> int:
        """All electrons of the neutral supercell, frozen core included (for the Madelung term)."""
        return self.n_elec_cell * self.nk

    @property
    def constant(self) -> float:
        """Scalar part of H for the whole supercell."""
        return self.nk * (self.e_nuc + self.e_core)

    def with_spin_penalty(self, lam: float, n_up: int, n_dn: int) -> "Hamiltonian":
        """H + λ S² on the (``n_up``, ``n_dn``) sectors, in the same form: with
        S² = S₋S₊ + S_z(S_z + 1) and S₋S₊ = N↓ − Σ_pq c†_q↑ c†_p↓ c_q↓ c_p↑,

            S² = −½ Σ_pq Σ_στ c†_qσ c†_pτ c_qτ c_pσ + N↓ − ½ Σ_σ (N_σ² − N_σ) + S_z(S_z + 1)

        (the same-spin terms of the spin-free sum are −(N_σ² − N_σ), a constant in the sector).
        The two-body part is spin-free and momentum-conserving: (q k2 p k1 | p k1 q k2) += −λ N_k
        in the stored layout (eri[k1, k2, k2][p, q, q, p]); the constant goes into ``e_core`` per
        cell. [H, S²] = 0, so the spectrum is E_i + λ s_i(s_i + 1): a sector's lowest doublet
        comes below its quartets once λ·3 exceeds their gap."""
        from dataclasses import replace

        nk, n = self.nk, self.n_orb
        eri = self.eri.copy()
        p, q = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        for k1 in range(nk):
            for k2 in range(nk):
                assert self.kconserv[k1, k2, k2] == k1
                eri[k1, k2, k2, p, q, q, p] += -lam * nk
        sz = 0.5 * (n_up - n_dn)
        const = n_dn - 0.5 * (n_up * n_up - n_up + n_dn * n_dn - n_dn) + sz * (sz + 1)
        meta = {**self.meta, "spin_penalty": {"lambda": lam, "n_up": n_up, "n_dn": n_dn}}
        return replace(self, eri=eri, e_core=self.e_core + lam * const / nk, meta=meta)

    # ------------------------------------------------------------------ momentum arithmetic
    def k_index(self, vec) -> int:
        v = np.mod(np.asarray(vec), self.mesh)
        return int(np.flatnonzero((self.kvec == v).all(axis=1))[0])

    def k_add(self, k1: int, k2: int) -> int:
        return self.k_index(self.kvec[k1] + self.kvec[k2])

    def k_sub(self, k1: int, k2: int) -> int:
        return self.k_index(self.kvec[k1] - self.kvec[k2])

    @property
    def orbital_k(self) -> np.ndarray:
        """k index of each flat spatial orbital."""
        return np.repeat(np.arange(self.nk), self.n_orb)

    def k0_sector(self) -> int:
        """Total crystal momentum of the HF determinant (Γ for a closed shell)."""
        occ = np.flatnonzero(self.mo_occ.ravel() > 0)
        return self.k_index(2 * self.kvec[self.orbital_k[occ]].sum(axis=0))

    # ------------------------------------------------------------------ views
    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """(h, eri) over flat orbitals, eri carrying the 1/N_k; forbidden blocks are exact zeros."""
        nk, n = self.nk, self.n_orb
        h = np.zeros((nk, n, nk, n), dtype=complex)
        for k in range(nk):
            h[k, :, k, :] = self.h1[k]
        eri = np.zeros((nk, n, nk, n, nk, n, nk, n), dtype=complex)
        for k1 in range(nk):
            for k2 in range(nk):
                for k3 in range(nk):
                    k4 = self.kconserv[k1, k2, k3]
                    eri[k1, :, k2, :, k3, :, k4, :] = self.eri[k1, k2, k3] / nk
        m = nk * n
        return h.reshape(m, m), eri.reshape(m, m, m, m)

    def hf_energy(self) -> float:
        """⟨HF|H|HF⟩ per cell, rebuilt from the stored integrals."""
        nk = self.nk
        e = 0.0
        occ = [np.flatnonzero(self.mo_occ[k] > 0) for k in range(nk)]
        for k in range(nk):
            e += 2 * np.trace(self.h1[k][np.ix_(occ[k], occ[k])]).real
            for kp in range(nk):
                j = np.einsum("iijj->", self.eri[k, k, kp][np.ix_(occ[k], occ[k], occ[kp], occ[kp])])
                x = np.einsum("ijji->", self.eri[k, kp, kp][np.ix_(occ[k], occ[kp], occ[kp], occ[k])])
                e += (2 * j - x).real / nk
        return e / nk + self.e_nuc + self.e_core

    def ewald_shift(self, n_active: int) -> float:
        """Supercell energy to add to an eigenvalue of this (exxdiv=None) H with ``n_active``
        active electrons so it matches PySCF's default exxdiv='ewald' convention (design.md):
        −(m/2)·N + (m/2)·(N − N0)², N counting the frozen core too."""
        n_total = n_active + 2 * self.n_core * self.nk
        n0 = self.n_elec_total
        m = self.madelung
        return -0.5 * m * n_total + 0.5 * m * (n_total - n0) ** 2

    def fingerprint(self) -> dict:
        """Gauge-invariant numbers (orbital phases are arbitrary; these are not)."""
        return {"e_hf": round(self.e_hf, 9), "mo_energy": np.round(np.sort(self.mo_energy.ravel()), 7).tolist()}

    @property
    def hash(self) -> str:
        """Hash of the integrals as stored (gauge included): identifies exactly what was solved."""
        h = hashlib.sha256()
        for a in (self.h1, self.eri, self.kconserv):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(json.dumps([self.e_nuc, self.e_core]).encode())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ real Γ supercell
    def real_supercell(self, tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
        """The same H rotated to a real orthonormal basis of the same active space.

        Bloch MOs are written in the real supercell AO basis, C_sc[(R,μ),(k,p)] = e^{ik·R} C_k/√N_k.
        The real basis Y is the Löwdin AOs when the active space is the whole AO space, else the
        orthonormal set in the active space closest to the most-projected Löwdin AOs; both are
        atom-local (what DMRG needs). U = C_sc† S_sc Y.
        Returns real (h, eri) (eri with the 1/N_k folded, chemist order) over N_k·n orbitals.
        """
        nk, n = self.nk, self.n_orb
        nao = self.ovlp.shape[1]
        cells = self.kvec  # the Born–von Karman supercell's cell offsets = the same integer grid
        phase = np.exp(2j * np.pi * (cells[:, None, :] / self.mesh * self.kvec[None, :, :]).sum(-1))  # (R, k)
        # S_sc[(R,μ),(R',ν)] = 1/N_k Σ_k e^{ik(R-R')} S_k[μ,ν]  (PySCF: S_k = Σ_T e^{ikT} <μ0|νT>)
        s_sc = np.einsum("ak,bk,kmn->ambn", phase, phase.conj(), self.ovlp).reshape(nk * nao, nk * nao) / nk
        if np.abs(s_sc.imag).max() > tol:
            raise RuntimeError("supercell overlap is not real: inconsistent k-point phases")
        s_sc = s_sc.real
        c_act = self.mo_coeff[:, :, self.n_core:]
        c_sc = (np.einsum("rk,kmp->rmkp", phase, c_act) / np.sqrt(nk)).reshape(nk * nao, nk * n)
        ortho = c_sc.conj().T @ s_sc @ c_sc
        if np.abs(ortho - np.eye(nk * n)).max() > 1e-6:
            raise RuntimeError("Bloch MOs are not orthonormal in the supercell AO basis")
        w, v = np.linalg.eigh(s_sc)
        x = (v / np.sqrt(w)) @ v.T                      # real Löwdin orbitals (atom-local)
        m = nk * n
        if m == x.shape[1]:
            y = x                                        # full space: keep the local Löwdin AOs
        else:
            proj = c_sc @ (c_sc.conj().T @ s_sc)        # projector on the active space
            px = proj @ x
            if np.abs(px.imag).max() > 1e-6:
                raise RuntimeError("active space is not closed under complex conjugation")
            px = px.real
            lam, q = np.linalg.eigh(px.T @ s_sc @ px)
            keep = np.argsort(lam)[::-1][:m]
            basis = px @ (q[:, keep] / np.sqrt(lam[keep]))   # orthonormal, arbitrary rotation
            # Rotate to the orthonormal set closest to the m most-projected AOs (polar factor),
            # so the orbitals stay local (DMRG needs that; any real basis serves FCI).
            sel = np.argsort(np.einsum("ij,ik,kj->j", px, s_sc, px))[::-1][:m]
            uu, _, vt = np.linalg.svd(basis.T @ s_sc @ x[:, sel])
            y = basis @ (uu @ vt)
        u = c_sc.conj().T @ s_sc @ y                    # (k-orbitals) × (real orbitals), unitary
        h, eri = self.dense()
        h_r = u.conj().T @ h @ u
        eri_r = np.einsum("ijkl,ia,jb,kc,ld->abcd", eri, u.conj(), u, u.conj(), u, optimize=True)
        for name, a in (("h", h_r), ("eri", eri_r)):
            if np.abs(a.imag).max() > 1e-7:
                raise RuntimeError(f"rotated {name} is not real (max imag {np.abs(a.imag).max():.2e})")
        return h_r.real, eri_r.real

    # ------------------------------------------------------------------ storage
    _ARRAYS = ("h1", "eri", "kconserv", "kvec", "mesh", "mo_energy", "mo_occ", "mo_coeff", "ovlp")
    _SCALARS = ("e_nuc", "e_core", "e_hf", "madelung", "n_core", "n_elec_cell")

    def save(self, path: str | Path) -> Path:
        payload = {a: getattr(self, a) for a in self._ARRAYS}
        header = {s: getattr(self, s) for s in self._SCALARS}
        header["format_version"] = FORMAT_VERSION
        header["meta"] = self.meta
        payload["header"] = np.array(json.dumps(header))

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **payload)
        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> "Hamiltonian":
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            if header.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"{path}: Hamiltonian format {header.get('format_version')} != {FORMAT_VERSION}")
            arrays = {a: z[a] for a in cls._ARRAYS}
        return cls(**arrays, **{s: header[s] for s in cls._SCALARS}, meta=header["meta"])
