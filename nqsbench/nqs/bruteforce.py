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


def _terms(ham, tol: float = 0.0):
    """Every term of H = Σ h_pq c†_p c_q + ½ Σ (pq|rs) c†_p c†_r c_s c_q over spin-orbitals with
    |coefficient| > tol, as (coefficient, [(op, index), ...] in the order they act on a ket)."""
    h, eri = ham.dense()
    m = ham.n_spatial
    n = 2 * m
    for p in range(n):
        for q in range(n):
            if p // m == q // m and abs(h[p % m, q % m]) > tol:
                yield h[p % m, q % m], [("a", q), ("c", p)]
    for p in range(n):
        for q in range(n):
            if p // m != q // m:
                continue
            for r in range(n):
                for s_ in range(n):
                    c = 0.5 * eri[p % m, q % m, r % m, s_ % m]
                    if r // m == s_ // m and abs(c) > tol:
                        yield c, [("a", q), ("a", s_), ("c", r), ("c", p)]


def _act(states: np.ndarray, coefficient, ops):
    """(states, amplitudes) of one term applied to a batch of configurations."""
    amp = np.full(len(states), coefficient, dtype=complex)
    for op, j in ops:
        states, amp = _apply(states, amp, op, j)
    return states, amp


def sector_matrix(ham, basis: np.ndarray, tol: float = 0.0) -> sp.csr_matrix:
    """Sparse ⟨x'|H|x⟩ over ``basis`` (rows/cols in basis order), supercell, constant included."""
    n = ham.n_spin_orbitals
    dim = len(basis)
    pw = (1 << np.arange(n, dtype=np.int64))
    codes = basis.astype(np.int64) @ pw
    order = np.argsort(codes)
    sorted_codes = codes[order]
    col_idx = np.arange(dim)
    rows, cols, vals = [], [], []

    for c, ops in _terms(ham, tol):
        states, amp = _act(basis, c, ops)
        nz = np.flatnonzero(amp != 0)
        if len(nz) == 0:
            continue
        code = states[nz].astype(np.int64) @ pw
        pos = np.minimum(np.searchsorted(sorted_codes, code), dim - 1)
        if not np.all(sorted_codes[pos] == code):
            raise AssertionError("H leaves the sector: momentum or particle number broken")
        rows.append(order[pos]); cols.append(col_idx[nz]); vals.append(amp[nz])
    rows, cols, vals = (np.concatenate(z) for z in (rows, cols, vals))
    mat = sp.coo_matrix((vals, (rows, cols)), shape=(dim, dim)).tocsr()
    mat = mat + float(ham.constant) * sp.identity(dim, format="csr")
    return mat


def ground_energy(mat) -> float:
    """Lowest eigenvalue (supercell) by dense diagonalization."""
    return float(np.linalg.eigvalsh(mat.toarray())[0])


def local_energy(ham, log_psi, xs: np.ndarray) -> np.ndarray:
    """E_loc(x) = ⟨x|H|ψ⟩/ψ(x) = Σ_x' ⟨x'|H|x⟩* ψ(x')/ψ(x) for a few configurations ``xs``
    (B, 2M), by applying every term of H to |x⟩ one operator at a time (no sector basis: usable
    where the sector is too large to enumerate). ``log_psi(xs)`` → (B,) complex."""
    xs = np.asarray(xs, dtype=np.int8)
    idx = np.arange(len(xs))
    states, amps, owner = [], [], []
    for c, ops in _terms(ham):
        st, a = _act(xs, c, ops)
        nz = np.flatnonzero(a != 0)
        states.append(st[nz]); amps.append(a[nz]); owner.append(idx[nz])
    states, amps, owner = (np.concatenate(z) for z in (states, amps, owner))
    ratio = np.exp(np.asarray(log_psi(states)) - np.asarray(log_psi(xs))[owner])
    out = np.zeros(len(xs), dtype=complex)
    np.add.at(out, owner, np.conj(amps) * ratio)
    return out + float(ham.constant)
