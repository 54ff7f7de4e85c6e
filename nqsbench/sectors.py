"""Sector sizes from k-point bookkeeping alone (no integrals): how many determinants each
(N↑, N↓, K) sector holds, by counting strings per total momentum."""
from __future__ import annotations

import numpy as np

from .errors import SectorTooLargeError

# Sector sizes are counted for meshes up to this many k-points (a table column each); beyond
# it the numbers (hundreds of digits) and the table are of no use, and are refused at once.
MAX_COUNTED_KPOINTS = 64


def kmesh_grid(mesh) -> np.ndarray:
    """All integer k-vectors of a Monkhorst–Pack mesh, in PySCF's make_kpts order."""
    return np.array(np.meshgrid(*[np.arange(n) for n in mesh], indexing="ij")).reshape(3, -1).T


def check_countable(mesh) -> None:
    nk = int(np.prod(mesh))
    if nk > MAX_COUNTED_KPOINTS:
        raise SectorTooLargeError(f"--kmesh {'x'.join(map(str, mesh))}: {nk} k-points; sector sizes are "
                                  f"counted up to {MAX_COUNTED_KPOINTS} k-points; use a smaller mesh")


def _addition_table(kvecs: np.ndarray, mesh) -> tuple[np.ndarray, int]:
    """add[a, b] = index of k_a + k_b (mod the mesh) in ``kvecs``, and the index of k = 0."""
    mesh = np.asarray(mesh)
    flat = lambda v: np.ravel_multi_index(tuple(np.mod(v, mesh).T), tuple(mesh))
    lookup = np.full(int(np.prod(mesh)), -1)
    lookup[flat(np.asarray(kvecs))] = np.arange(len(kvecs))
    add = lookup[flat(np.asarray(kvecs)[:, None, :] + np.asarray(kvecs)[None, :, :])]
    return add, int(lookup[flat(np.zeros((1, 3), dtype=int))[0]])


def string_counts(kvecs: np.ndarray, mesh, n_orb: int, n_el: int) -> np.ndarray:
    """Number of n_el-electron strings over (k, p) orbitals, per total momentum index."""
    check_countable(mesh)
    nk = len(kvecs)
    add, zero = _addition_table(kvecs, mesh)
    counts = np.zeros((n_el + 1, nk), dtype=object)   # counts[n][K], exact integers
    counts[:] = 0
    counts[0, zero] = 1
    for k in range(nk):
        shift = add[:, k]          # a permutation of the momenta: K → K + k
        for _ in range(n_orb):     # occupy one more orbital at k, or not
            new = counts.copy()
            new[1:, shift] += counts[:-1, :]
            counts = new
    return counts[n_el]


def sector_dims(kvecs, mesh, n_orb: int, n_alpha: int, n_beta: int) -> list[int]:
    """Dimension of each (N↑, N↓, K) sector, K in the order of ``kvecs``."""
    nk = len(kvecs)
    a = string_counts(kvecs, mesh, n_orb, n_alpha)
    b = string_counts(kvecs, mesh, n_orb, n_beta)
    add, _ = _addition_table(kvecs, mesh)
    dims = [0] * nk
    for ka in range(nk):
        for kb in range(nk):
            dims[add[ka, kb]] += int(a[ka] * b[kb])
    return dims
