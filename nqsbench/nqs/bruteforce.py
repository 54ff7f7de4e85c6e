"""Brute-force reference for the solver core (tests, small benchmarks): the sector matrix of H
built by applying every second-quantized term c†_p c_q, c†_p c†_r c_s c_q to bit strings, with
nothing shared with :mod:`nqsbench.nqs.operator` but ``ham.dense()``.

Sector basis: every 0/1 string of length 2M with the right N_up, N_down and total momentum,
found by filtering all C(M, N_up)·C(M, N_down) strings (small systems only).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import scipy.sparse as sp


def sector_basis(ham, n_up=None, n_dn=None, k_total=None) -> np.ndarray:
    m = ham.n_spatial
    n_up = ham.n_alpha if n_up is None else n_up
    n_dn = ham.n_beta if n_dn is None else n_dn
    k_total = ham.k0_sector() if k_total is None else k_total
    ok = ham.orbital_k
    rows = []
    for up in combinations(range(m), n_up):
        for dn in combinations(range(m), n_dn):
            k = 0
            for i in up + dn:
                k = ham.k_add(k, int(ok[i]))
            if k == k_total:
                x = np.zeros(2 * m, dtype=np.int8)
                x[list(up)] = 1
                x[[m + j for j in dn]] = 1
                rows.append(x)
    return np.array(rows, dtype=np.int8)


def _apply(states: np.ndarray, amp: np.ndarray, op: str, j: int):
    """Apply c_j ('a') or c†_j ('c') to a batch of 0/1 states with amplitudes; JW sign."""
    sign = 1 - 2 * (states[:, :j].sum(1) % 2)
    if op == "a":
        alive = states[:, j] == 1
    else:
        alive = states[:, j] == 0
    states = states.copy()
    states[:, j] ^= 1
    return states, amp * sign * alive


def sector_matrix(ham, basis: np.ndarray, tol: float = 0.0) -> sp.csr_matrix:
    """Sparse ⟨x'|H|x⟩ over ``basis`` (rows/cols in basis order), supercell, constant included."""
    h, eri = ham.dense()
    m = ham.n_spatial
    n = 2 * m
    dim = len(basis)
    pw = (1 << np.arange(n, dtype=np.int64))
    codes = basis.astype(np.int64) @ pw
    order = np.argsort(codes)
    sorted_codes = codes[order]
    col_idx = np.arange(dim)
    rows, cols, vals = [], [], []

    def accumulate(states, amp):
        nz = np.flatnonzero(amp != 0)
        if len(nz) == 0:
            return
        c = states[nz].astype(np.int64) @ pw
        pos = np.searchsorted(sorted_codes, c)
        pos = np.minimum(pos, dim - 1)
        if not np.all(sorted_codes[pos] == c):
            raise AssertionError("H leaves the sector: momentum or particle number broken")
        rows.append(order[pos]); cols.append(col_idx[nz]); vals.append(amp[nz])

    one = np.ones(dim, dtype=complex)
    for p in range(n):
        for q in range(n):
            if p // m != q // m:
                continue
            c = h[p % m, q % m]
            if abs(c) <= tol:
                continue
            s, a = _apply(basis, one * c, "a", q)
            s, a = _apply(s, a, "c", p)
            accumulate(s, a)
    for p in range(n):
        for q in range(n):
            if p // m != q // m:
                continue
            for r in range(n):
                for s_ in range(n):
                    if r // m != s_ // m:
                        continue
                    c = 0.5 * eri[p % m, q % m, r % m, s_ % m]
                    if abs(c) <= tol:
                        continue
                    st, a = _apply(basis, one * c, "a", q)
                    st, a = _apply(st, a, "a", s_)
                    st, a = _apply(st, a, "c", r)
                    st, a = _apply(st, a, "c", p)
                    accumulate(st, a)
    rows, cols, vals = (np.concatenate(z) for z in (rows, cols, vals))
    mat = sp.coo_matrix((vals, (rows, cols)), shape=(dim, dim)).tocsr()
    mat = mat + float(ham.constant) * sp.identity(dim, format="csr")
    return mat


def ground_energy(mat) -> float:
    """Lowest eigenvalue (supercell) by dense diagonalization."""
    return float(np.linalg.eigvalsh(mat.toarray())[0])
