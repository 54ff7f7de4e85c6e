"""Sector sizes from k-point bookkeeping alone (no integrals): how many determinants each
(N↑, N↓, K) sector holds, by counting strings per total momentum."""
from __future__ import annotations

import numpy as np


def kmesh_grid(mesh) -> np.ndarray:
    """All integer k-vectors of a Monkhorst–Pack mesh, in PySCF's make_kpts order."""
    return np.array(np.meshgrid(*[np.arange(n) for n in mesh], indexing="ij")).reshape(3, -1).T


def string_counts(kvecs: np.ndarray, mesh, n_orb: int, n_el: int) -> np.ndarray:
    """Number of n_el-electron strings over (k, p) orbitals, per total momentum index."""
    mesh = np.asarray(mesh)
    nk = len(kvecs)
    code = {tuple(np.mod(v, mesh)): i for i, v in enumerate(kvecs)}
    add = np.array([[code[tuple(np.mod(kvecs[a] + kvecs[b], mesh))] for b in range(nk)] for a in range(nk)])
    counts = np.zeros((n_el + 1, nk), dtype=object)   # counts[n][K], exact integers
    counts[0, code[(0, 0, 0)]] = 1
    for k in range(nk):
        for _ in range(n_orb):
            new = counts.copy()
            for n in range(1, n_el + 1):
                for kk in range(nk):
                    new[n, add[kk, k]] += counts[n - 1, kk]
            counts = new
    return counts[n_el]


def sector_dims(kvecs, mesh, n_orb: int, n_alpha: int, n_beta: int) -> list[int]:
    """Dimension of each (N↑, N↓, K) sector, K in the order of ``kvecs``."""
    mesh = np.asarray(mesh)
    nk = len(kvecs)
    a = string_counts(kvecs, mesh, n_orb, n_alpha)
    b = string_counts(kvecs, mesh, n_orb, n_beta)
    code = {tuple(np.mod(v, mesh)): i for i, v in enumerate(kvecs)}
    dims = [0] * nk
    for ka in range(nk):
        for kb in range(nk):
            dims[code[tuple(np.mod(kvecs[ka] + kvecs[kb], mesh))]] += int(a[ka] * b[kb])
    return dims
