"""Fixed (N_up, N_down, K) sector of the spin-orbital Fock space (numpy only, no JAX, no PySCF).

Spin-orbital (Jordan–Wigner) order: index i (spin up) and M + i (spin down) for flat spatial
orbital i = k * n_orb + p. A configuration is a 0/1 vector of length 2M.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np


@dataclass(frozen=True, eq=False)
class Sector:
    """Particle numbers and total crystal momentum, plus the momentum tables the solver needs."""

    n_spatial: int
    n_orb: int
    nk: int
    n_up: int
    n_dn: int
    k_total: int
    orbital_k: np.ndarray      # (M,) k index of each spatial orbital
    kadd: np.ndarray           # (nk, nk) index of k1 + k2
    ksub: np.ndarray           # (nk, nk) index of k1 − k2
    hf_config: np.ndarray      # (2M,) int8, the HF determinant (if it lies in this sector)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_hamiltonian(cls, ham, n_up: int | None = None, n_dn: int | None = None,
                         k_total: int | None = None) -> "Sector":
        nk = ham.nk
        kadd = np.array([[ham.k_add(a, b) for b in range(nk)] for a in range(nk)], dtype=np.int32)
        ksub = np.array([[ham.k_sub(a, b) for b in range(nk)] for a in range(nk)], dtype=np.int32)
        n_up = ham.n_alpha if n_up is None else int(n_up)
        n_dn = ham.n_beta if n_dn is None else int(n_dn)
        k_total = ham.k0_sector() if k_total is None else int(k_total)
        occ = (np.asarray(ham.mo_occ).ravel() > 0).astype(np.int8)
        hf = np.concatenate([occ, occ])
        return cls(n_spatial=ham.n_spatial, n_orb=ham.n_orb, nk=nk, n_up=n_up, n_dn=n_dn,
                   k_total=k_total, orbital_k=np.asarray(ham.orbital_k, dtype=np.int32),
                   kadd=kadd, ksub=ksub, hf_config=hf)

    @classmethod
    def quasiparticle(cls, ham, k: int, create: bool) -> "Sector":
        """The (N↑ ± 1, N↓, K0 ± k) sector (K0: the HF determinant's momentum) of one added
        electron (``create``) or hole at crystal momentum k, spin up, with ``hf_config`` its
        Koopmans determinant: the HF determinant with the lowest virtual orbital at k filled (the
        highest occupied one emptied; orbitals are energy-ordered within each k)."""
        base = cls.from_hamiltonian(ham)
        occ = np.asarray(ham.mo_occ).reshape(ham.nk, ham.n_orb) > 0
        free = np.flatnonzero(~occ[k] if create else occ[k])
        if not len(free):
            raise ValueError(f"k = {k}: no {'virtual' if create else 'occupied'} orbital to "
                             f"{'fill' if create else 'empty'}")
        hf = base.hf_config.copy()
        hf[k * ham.n_orb + (free[0] if create else free[-1])] = 1 if create else 0
        kt = ham.k_add(base.k_total, k) if create else ham.k_sub(base.k_total, k)
        return replace(cls.from_hamiltonian(ham, base.n_up + (1 if create else -1), base.n_dn, kt),
                       hf_config=hf)

    # ------------------------------------------------------------------ labels
    @property
    def n_spin_orbitals(self) -> int:
        return 2 * self.n_spatial

    @property
    def n_electrons(self) -> int:
        return self.n_up + self.n_dn

    @property
    def so_k(self) -> np.ndarray:
        """(2M,) k index of each spin-orbital."""
        return np.concatenate([self.orbital_k, self.orbital_k])

    @property
    def so_spin(self) -> np.ndarray:
        """(2M,) 0 for spin up, 1 for spin down."""
        m = self.n_spatial
        return np.concatenate([np.zeros(m, np.int32), np.ones(m, np.int32)])

    @property
    def groups(self) -> np.ndarray:
        """(2 * nk, n_orb) spin-orbitals of each (spin, k) group; group index = spin * nk + k."""
        out = np.empty((2 * self.nk, self.n_orb), dtype=np.int32)
        for s in range(2):
            for k in range(self.nk):
                out[s * self.nk + k] = s * self.n_spatial + np.flatnonzero(self.orbital_k == k)
        return out

    def momentum(self, x: np.ndarray) -> np.ndarray:
        """Total crystal momentum index of configurations x (..., 2M)."""
        x = np.asarray(x)
        kk = np.zeros(x.shape[:-1], dtype=np.int32)
        so_k = self.so_k
        for i in range(self.n_spin_orbitals):
            kk = np.where(x[..., i] > 0, self.kadd[kk, so_k[i]], kk)
        return kk

    def contains(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        m = self.n_spatial
        return ((x[..., :m].sum(-1) == self.n_up) & (x[..., m:].sum(-1) == self.n_dn)
                & (self.momentum(x) == self.k_total))

    def start_config(self) -> np.ndarray:
        """(2M,) int32: the HF determinant if it lies in this sector, else its first configuration
        (where Markov chains start, and what an empty slot of a semistochastic set holds)."""
        x0 = np.asarray(self.hf_config, dtype=np.int32)
        return x0 if bool(self.contains(x0)) else self.enumerate()[0].astype(np.int32)

    # ------------------------------------------------------------------ enumeration
    def _spin_block(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.n_spatial
        combos = np.array(list(combinations(range(m), n)), dtype=np.int64).reshape(-1, n)
        x = np.zeros((len(combos), m), dtype=np.int8)
        np.put_along_axis(x, combos, 1, axis=1)
        kk = np.zeros(len(combos), dtype=np.int32)
        for i in range(m):
            kk = np.where(x[:, i] > 0, self.kadd[kk, self.orbital_k[i]], kk)
        return x, kk

    def enumerate(self) -> np.ndarray:
        """All configurations of the sector, (dim, 2M) int8, in a fixed deterministic order."""
        xu, ku = self._spin_block(self.n_up)
        xd, kd = self._spin_block(self.n_dn)
        blocks = []
        for i in range(len(xu)):
            need = self.ksub[self.k_total, ku[i]]
            sel = np.flatnonzero(kd == need)
            if len(sel):
                blocks.append(np.concatenate([np.broadcast_to(xu[i], (len(sel), xu.shape[1])), xd[sel]], 1))
        return np.concatenate(blocks, 0).astype(np.int8)

    def dim(self) -> int:
        return len(self.enumerate())
