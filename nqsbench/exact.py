"""Exact diagonalization in (N↑, N↓, K) sectors of the k-space Hamiltonian (no PySCF).

Determinants are pairs of bit strings (α string, β string); a sector vector is stored as one
dense block per α momentum Ka, of shape (#α strings with Ka, #β strings with K − Ka).
H is applied matrix-free, direct-CI style:

    H = A_α ⊗ 1 + 1 ⊗ A_β + Σ_{pq,rs} V_{pq,rs} E^α_pq E^β_rs

A_σ (one-body + same-spin two-body) is a small matrix on one spin's strings, block-diagonal in
momentum; the opposite-spin term is applied per momentum transfer Δ = k_p − k_q with sparse
string-excitation operators and one dense contraction with the momentum-allowed ERI block.
The lowest eigenpairs come from a block Davidson solver with the diagonal as preconditioner
(default), or Lanczos (scipy ``eigsh``, ARPACK); both are tested against each other.

Spin-orbital order (Jordan–Wigner) is α orbitals then β orbitals, flat orbital i = k·n + p.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from math import comb

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

from .errors import SectorTooLargeError
from .hamiltonian import Hamiltonian

log = logging.getLogger(__name__)

DEFAULT_MAX_DIM = 3_000_000
DAVIDSON_MAX_SPACE = 40      # Davidson subspace before a restart (basis and H·basis each)
KRYLOV_MAX_DIM = 400         # block-Lanczos vectors of a quasiparticle search (preallocated)


def vector_elements(dim_n: int, dim_pm: int, n_orb: int) -> tuple[int, int]:
    """Elements held at once by (Davidson on the largest N sector: basis and H·basis with the
    copies its concatenation makes; a quasiparticle search's preallocated Krylov block in the
    largest N±1 sector, ``dim_pm`` = 0 without bands, with its start vectors)."""
    return dim_n * (4 * DAVIDSON_MAX_SPACE + 8), dim_pm * (KRYLOV_MAX_DIM + 3 * n_orb + 8)


def peak_bytes(dim_n: int, dim_pm: int, n_orb: int, n_kept: int) -> int:
    """Upper bound on the vectors exact diagonalization holds at once (complex128): the larger of
    :func:`vector_elements`' two phases plus the ``n_kept`` ground-state vectors kept for the bands."""
    return 16 * (max(vector_elements(dim_n, dim_pm, n_orb)) + n_kept * dim_n)


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x.astype(np.uint64)).astype(np.int64)


class StringSpace:
    """All occupation bit strings of ``n_el`` electrons in ``M`` spatial orbitals, grouped by
    crystal momentum (strings of momentum K occupy ``slice(start[K], start[K+1])``)."""

    def __init__(self, ham: Hamiltonian, n_el: int):
        self.n_orb, self.n_el = ham.n_spatial, n_el
        m = self.n_orb
        combos = np.array(list(itertools.combinations(range(m), n_el)), dtype=np.int64).reshape(-1, max(n_el, 1))
        bits = (np.int64(1) << combos).sum(axis=1) if n_el else np.zeros(1, dtype=np.int64)  # n_el = 0: vacuum
        occ = ((bits[:, None] >> np.arange(m)) & 1).astype(np.int64)
        kvec = np.mod(occ @ ham.kvec[ham.orbital_k], ham.mesh)
        mom = np.array([ham.k_index(v) for v in kvec], dtype=int)
        order = np.lexsort((bits, mom))
        self.bits, self.mom, self.occ = bits[order], mom[order], occ[order]
        self.nk = ham.nk
        self.start = np.searchsorted(self.mom, np.arange(ham.nk + 1))
        self.count = np.diff(self.start)
        self.local = np.arange(len(self.bits)) - self.start[self.mom]  # position inside its block
        self._lookup = {int(b): i for i, b in enumerate(self.bits)}

    def __len__(self) -> int:
        return len(self.bits)

    def index(self, bits: np.ndarray) -> np.ndarray:
        return np.array([self._lookup[int(b)] for b in bits], dtype=np.int64)

    def excitation_links(self):
        """All (I, J, p, q, sign) with E_pq |I⟩ = sign |J⟩ (p = q included)."""
        m = self.n_orb
        src, dst, ps, qs, sg = [], [], [], [], []
        idx = np.arange(len(self))
        for q in range(m):
            has_q = (self.bits >> q) & 1 == 1
            for p in range(m):
                ok = has_q & (((self.bits >> p) & 1 == 0) | (p == q))
                i = idx[ok]
                b = self.bits[ok]
                if p == q:
                    j, sign = i, np.ones(len(i), dtype=np.int64)
                else:
                    without_q = b ^ (np.int64(1) << q)
                    lo, hi = min(p, q), max(p, q)
                    between = ((np.int64(1) << hi) - 1) ^ ((np.int64(1) << (lo + 1)) - 1)
                    sign = 1 - 2 * (_popcount(without_q & between) % 2)
                    j = self.index(without_q | (np.int64(1) << p))
                src.append(i), dst.append(j), ps.append(np.full(len(i), p)), qs.append(np.full(len(i), q))
                sg.append(sign)
        return tuple(np.concatenate(a) for a in (src, dst, ps, qs, sg))


def ladder(space_from: StringSpace, space_to: StringSpace, p: int, create: bool):
    """(src, dst, sign) with c†_p |I⟩ = sign |J⟩ (create) or c_p |I⟩ = sign |J⟩ on one spin's strings."""
    has = (space_from.bits >> p) & 1 == 1
    ok = ~has if create else has
    src = np.flatnonzero(ok)
    b = space_from.bits[ok]
    sign = 1 - 2 * (_popcount(b & ((np.int64(1) << p) - 1)) % 2)
    dst = space_to.index(b ^ (np.int64(1) << p))
    return src, dst, sign


@dataclass
class SectorResult:
    n_alpha: int
    n_beta: int
    k: int
    dim: int
    energies: np.ndarray            # supercell eigenvalues of the raw (exxdiv=None) H
    vectors: list = field(repr=False, default_factory=list)  # block lists
    s2: np.ndarray = None
    matvecs: int = 0


class SectorBlock:
    """One exact-diagonalization block, the (N↑, N↓, K) sector of the determinant space.

    Holds the α and β string spaces, the determinant basis of the block (one dense
    (α strings with k_α) × (β strings with K − k_α) array per k_α, concatenated into a vector),
    H applied matrix-free (:meth:`matvec`) and the eigensolver (:meth:`solve`). Not to be
    confused with :class:`nqsbench.nqs.hilbert.Sector`, the occupation sector the NQS samples in.
    """

    def __init__(self, ham: Hamiltonian, n_alpha: int, n_beta: int, k: int,
                 spaces: dict | None = None, max_dim: int = DEFAULT_MAX_DIM):
        self.ham, self.n_alpha, self.n_beta, self.k = ham, n_alpha, n_beta, k
        self.spaces = spaces if spaces is not None else {}
        self.alpha = self._space(n_alpha)
        self.beta = self._space(n_beta)
        nk = ham.nk
        self.kb = [ham.k_sub(k, ka) for ka in range(nk)]
        self.shapes = [(self.alpha.count[ka], self.beta.count[self.kb[ka]]) for ka in range(nk)]
        self.offsets = np.concatenate([[0], np.cumsum([a * b for a, b in self.shapes])])
        self.dim = int(self.offsets[-1])
        if self.dim > max_dim:
            raise SectorTooLargeError(
                f"sector (N↑={n_alpha}, N↓={n_beta}, K={k}) has {self.dim:,} determinants, above the "
                f"exact-diagonalization limit {max_dim:,}; use the beyond-tier runners "
                "(`nqsbench reference ccsd|dmrg ...`) or a smaller --kmesh")
        self._ops = None

    def _space(self, n):
        if n not in self.spaces:
            self.spaces[n] = StringSpace(self.ham, n)
        return self.spaces[n]

    # ---------------------------------------------------------------- layout
    def blocks(self, vec: np.ndarray) -> list[np.ndarray]:
        return [vec[self.offsets[i]:self.offsets[i + 1]].reshape(self.shapes[i]) for i in range(self.ham.nk)]

    def to_full(self, vec: np.ndarray) -> np.ndarray:
        """Block vector → dense (all α strings) × (all β strings) array."""
        full = np.zeros((len(self.alpha), len(self.beta)), dtype=complex)
        for ka, blk in enumerate(self.blocks(vec)):
            kb = self.kb[ka]
            full[self.alpha.start[ka]:self.alpha.start[ka + 1], self.beta.start[kb]:self.beta.start[kb + 1]] = blk
        return full

    def from_full(self, full: np.ndarray) -> np.ndarray:
        out = np.empty(self.dim, dtype=complex)
        for ka in range(self.ham.nk):
            kb = self.kb[ka]
            out[self.offsets[ka]:self.offsets[ka + 1]] = full[
                self.alpha.start[ka]:self.alpha.start[ka + 1], self.beta.start[kb]:self.beta.start[kb + 1]].ravel()
        return out

    # ---------------------------------------------------------------- operators
    def _build(self):
        ham = self.ham
        h, eri = _dense_cached(ham)
        m = ham.n_spatial
        korb = ham.orbital_k
        kdiff = np.array([[ham.k_sub(a, b) for b in range(ham.nk)] for a in range(ham.nk)])
        delta = kdiff[korb[:, None], korb[None, :]]          # momentum transfer of E_pq
        pairs = [np.argwhere(delta == d) for d in range(ham.nk)]  # (p, q) pairs per transfer
        pair_pos = np.full((m, m), -1)
        for d in range(ham.nk):
            pair_pos[pairs[d][:, 0], pairs[d][:, 1]] = np.arange(len(pairs[d]))
        ops = {"V": {}, "same": {}, "X": {}, "Y": {}}
        for d in range(ham.nk):
            md = ham.k_sub(0, d)
            pq, rs = pairs[d], pairs[md]
            ops["V"][d] = eri[pq[:, 0], pq[:, 1]][:, rs[:, 0], rs[:, 1]]   # (n_pq, n_rs)
        for n in {self.n_alpha, self.n_beta}:
            space = self.spaces[n]
            links = space.excitation_links()
            ops["same"][n] = _same_spin_blocks(space, links, h, eri)
            ops["X"][n], ops["Y"][n] = _transfer_ops(space, links, delta, pair_pos, pairs, ham)
        ops["delta_kdiff"] = kdiff
        self._ops = ops
        # Diagonal, for a preconditioner and for the energy reference.
        vd = np.einsum("pprr->pr", eri).real
        self._vd = vd

    def matvec(self, vec: np.ndarray, shift: float = 0.0) -> np.ndarray:
        if self._ops is None:
            self._build()
        ham, ops = self.ham, self._ops
        nk = ham.nk
        A_a, A_b = ops["same"][self.n_alpha], ops["same"][self.n_beta]
        X_a, Y_b = ops["X"][self.n_alpha], ops["Y"][self.n_beta]
        cin = self.blocks(np.ascontiguousarray(vec, dtype=complex))  # strided views defeat BLAS
        out = [np.zeros(s, dtype=complex) for s in self.shapes]
        for ka in range(nk):
            c = cin[ka]
            if c.size == 0:
                continue
            kb = self.kb[ka]
            out[ka] += A_a[ka] @ c + c @ A_b[kb].T - shift * c
            for d in range(nk):
                x = X_a[ka][d]
                md = ham.k_sub(0, d)
                y = Y_b[kb][md]
                if x is None or y is None:
                    continue
                ka2 = ham.k_add(ka, d)
                n_pq = ops["V"][d].shape[0]
                dmat = (x @ c).reshape(n_pq, -1)                     # (n_pq, nA' * nB)
                w = (ops["V"][d].T @ dmat).reshape(-1, self.alpha.count[ka2], c.shape[1])
                wt = w.transpose(0, 2, 1).reshape(-1, self.alpha.count[ka2])
                out[ka2] += (y @ wt).T
        return np.concatenate([o.ravel() for o in out])

    def diagonal(self) -> np.ndarray:
        if self._ops is None:
            self._build()
        da = np.concatenate([np.diag(b).real for b in self._ops["same"][self.n_alpha]])
        db = np.concatenate([np.diag(b).real for b in self._ops["same"][self.n_beta]])
        full = da[:, None] + db[None, :] + self.alpha.occ @ self._vd @ self.beta.occ.T
        return self.from_full(full).real

    def dense_matrix(self) -> np.ndarray:
        """Explicit matrix (small sectors only: tests and debugging)."""
        eye = np.eye(self.dim, dtype=complex)
        return np.stack([self.matvec(eye[:, i]) for i in range(self.dim)], axis=1)

    # ---------------------------------------------------------------- spin
    def _spin_raise_maps(self):
        """S_+ = Σ_p c†_pα c_pβ as (P_p, Q_p) sparse maps: S_+ψ = Σ_p P_p ψ Q_pᵀ on full arrays."""
        up = self._space(self.n_alpha + 1) if self.n_beta > 0 else None
        dn = self._space(self.n_beta - 1) if self.n_beta > 0 else None
        maps = []
        if up is None:
            return up, dn, maps
        jw = (-1) ** self.n_alpha  # c_pβ passes the N↑ α creators
        for p in range(self.ham.n_spatial):
            s, d, g = ladder(self.alpha, up, p, create=True)
            pm = sp.csr_matrix((g.astype(float), (d, s)), shape=(len(up), len(self.alpha)))
            s, d, g = ladder(self.beta, dn, p, create=False)
            qm = sp.csr_matrix((jw * g.astype(float), (d, s)), shape=(len(dn), len(self.beta)))
            maps.append((pm, qm))
        return up, dn, maps

    def s_squared(self, vec: np.ndarray) -> float:
        """⟨S²⟩ = ⟨S_−S_+⟩ + S_z² + S_z (vec normalised)."""
        sz = 0.5 * (self.n_alpha - self.n_beta)
        _, _, maps = self._spin_raise_maps()
        full = self.to_full(vec)
        raised = sum((pm @ full) @ qm.T for pm, qm in maps) if maps else 0.0
        return float(np.vdot(raised, raised).real + sz * sz + sz) / float(np.vdot(vec, vec).real)

    # ---------------------------------------------------------------- eigensolver
    def solve(self, n_roots: int = 1, tol: float = 1e-6, solver: str = "davidson", seed: int = 0,
              compute_s2: bool = True) -> SectorResult:
        """Lowest ``n_roots`` eigenpairs of the raw H in this sector (any total spin; ⟨S²⟩ is
        reported). ``tol`` bounds the residual norm ‖Hv − Ev‖ (Ha): energies converge as ~tol²."""
        if self.dim == 0:
            return SectorResult(self.n_alpha, self.n_beta, self.k, 0, np.array([]), [], np.array([]))
        diag = self.diagonal()
        e_ref = float(diag.min())   # shift so relative tolerances act as absolute ones
        count = [0]

        def mv(x):
            count[0] += 1
            return self.matvec(x, shift=e_ref)

        n_roots = min(n_roots, self.dim)
        if self.dim <= 400:
            hm = np.stack([mv(col) for col in np.eye(self.dim, dtype=complex)], axis=1)
            w, v = np.linalg.eigh(0.5 * (hm + hm.conj().T))
            w, vecs = w[:n_roots], [v[:, i] for i in range(n_roots)]
        elif solver == "davidson":
            w, vecs = davidson(mv, diag - e_ref, n_roots, tol=tol, seed=seed)
        elif solver == "lanczos":
            op = LinearOperator((self.dim, self.dim), matvec=lambda x: mv(np.asarray(x).ravel()), dtype=complex)
            v0 = np.random.default_rng(seed).standard_normal(self.dim) * 1e-3 + 0j
            v0[np.argsort(diag)[: max(4, n_roots)]] += 1.0  # start near the lowest determinants
            ncv = min(self.dim, max(2 * n_roots + 16, 24))
            w, v = eigsh(op, k=n_roots, which="SA", tol=tol * 1e-6, v0=v0, ncv=ncv, maxiter=5000)
            order = np.argsort(w)
            w, vecs = w[order], [v[:, i] for i in order]
        else:
            raise ValueError(f"solver {solver!r}: use 'davidson' or 'lanczos'")
        vecs = [x / np.linalg.norm(x) for x in vecs]
        s2 = np.array([self.s_squared(x) for x in vecs]) if compute_s2 else None
        w = np.asarray(w) + e_ref
        return SectorResult(self.n_alpha, self.n_beta, self.k, self.dim, np.asarray(w), vecs, s2, count[0])


def davidson(matvec, diag: np.ndarray, n_roots: int, tol: float = 1e-6, max_space: int = DAVIDSON_MAX_SPACE,
             max_iter: int = 500, seed: int = 0):
    """Block Davidson for the lowest eigenpairs of a Hermitian operator (diagonal preconditioner)."""
    dim = len(diag)
    n_guess = min(dim, n_roots + 2)
    rng = np.random.default_rng(seed)
    guess = np.zeros((dim, n_guess), dtype=complex)
    lowest = np.argsort(diag, kind="stable")[:n_guess]
    guess[lowest, np.arange(n_guess)] = 1.0
    guess += 1e-4 * rng.standard_normal((dim, n_guess))  # break exact symmetry of unit vectors
    basis, _ = np.linalg.qr(guess)
    hbasis = np.stack([matvec(basis[:, i]) for i in range(basis.shape[1])], axis=1)
    for _ in range(max_iter):
        hsub = basis.conj().T @ hbasis
        theta, y = np.linalg.eigh(0.5 * (hsub + hsub.conj().T))
        theta, y = theta[:n_roots], y[:, :n_roots]
        ritz = basis @ y
        resid = hbasis @ y - ritz * theta
        norms = np.linalg.norm(resid, axis=0)
        if np.all(norms < tol):
            return theta, [ritz[:, i] for i in range(n_roots)]
        new = []
        for i in np.flatnonzero(norms >= tol):
            denom = theta[i] - diag
            denom[np.abs(denom) < 1e-8] = 1e-8
            new.append(resid[:, i] / denom)
        new = np.stack(new, axis=1)
        if basis.shape[1] + new.shape[1] > max_space:   # restart from the Ritz vectors
            basis, hbasis = ritz, hbasis @ y
            q, r = np.linalg.qr(basis)
            basis, hbasis = q, hbasis @ np.linalg.inv(r)
        for _ in range(2):                                # twice is enough (Kahan)
            new -= basis @ (basis.conj().T @ new)
        q, r = np.linalg.qr(new)
        keep = np.abs(np.diag(r)) > 1e-10
        if not keep.any():
            return theta, [ritz[:, i] for i in range(n_roots)]
        q = q[:, keep]
        q -= basis @ (basis.conj().T @ q)
        q /= np.linalg.norm(q, axis=0)
        basis = np.concatenate([basis, q], axis=1)
        hbasis = np.concatenate([hbasis, np.stack([matvec(q[:, i]) for i in range(q.shape[1])], axis=1)], axis=1)
    raise RuntimeError(f"Davidson did not converge in {max_iter} iterations (residuals {norms})")


# -------------------------------------------------------------------- operator construction
_DENSE_CACHE: dict = {}


def _dense_cached(ham: Hamiltonian):
    key = id(ham)
    if key not in _DENSE_CACHE or _DENSE_CACHE[key][0] is not ham:
        _DENSE_CACHE.clear()
        _DENSE_CACHE[key] = (ham, ham.dense())
    return _DENSE_CACHE[key][1]


def _same_spin_blocks(space: StringSpace, links, h, eri):
    """Dense momentum blocks of A = Σ k_pq E_pq + ½ Σ V_pqrs E_pq E_rs on one spin's strings,
    with k_ps = h_ps − ½ Σ_q V_pqqs (the E_pq E_rs product double-counts q = r)."""
    src, dst, p, q, sign = links
    n = len(space)
    kmat = h - 0.5 * np.einsum("pqqs->ps", eri)
    one = sp.csr_matrix((kmat[p, q] * sign, (dst, src)), shape=(n, n))
    # Two-body: compose E_rs (first) with E_pq (second) through the intermediate string.
    order = np.argsort(src, kind="stable")
    src, dst, p, q, sign = (a[order] for a in (src, dst, p, q, sign))
    per = np.bincount(src, minlength=n)
    first = np.concatenate([[0], np.cumsum(per)])
    rows, cols, vals = [], [], []
    chunk = max(1, 2_000_000 // max(1, per.max() ** 2))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        l1 = np.arange(first[lo], first[hi])                  # links E_rs from I in [lo, hi)
        mid = dst[l1]
        cnt = per[mid]
        l2 = np.repeat(first[mid], cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        l1r = np.repeat(l1, cnt)
        v = 0.5 * eri[p[l2], q[l2], p[l1r], q[l1r]] * sign[l1r] * sign[l2]
        keep = v != 0
        rows.append(dst[l2][keep]), cols.append(src[l1r][keep]), vals.append(v[keep])
    two = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    full = (one + two).toarray()
    blocks = []
    for k in range(space.nk):
        s = slice(space.start[k], space.start[k + 1])
        blocks.append(full[s, s].copy())
    return blocks


def _transfer_ops(space: StringSpace, links, delta, pair_pos, pairs, ham):
    """Per source momentum K and transfer Δ: X[K][Δ] maps a block (strings of K) × cols to the
    stacked (pq, strings of K+Δ) rows; Y[K][Δ] maps stacked (rs, strings of K) columns to
    strings of K+Δ (its transpose acts from the right)."""
    src, dst, p, q, sign = links
    nk = ham.nk
    X = [[None] * nk for _ in range(nk)]
    Y = [[None] * nk for _ in range(nk)]
    d_of = delta[p, q]
    k_src = space.mom[src]
    for ks in range(nk):
        for d in range(nk):
            sel = (k_src == ks) & (d_of == d)
            kt = ham.k_add(ks, d)
            n_pair = len(pairs[d])
            n_src, n_dst = space.count[ks], space.count[kt]
            if n_src == 0 or n_dst == 0:
                continue
            pos = pair_pos[p[sel], q[sel]]
            ls, ld, g = space.local[src[sel]], space.local[dst[sel]], sign[sel].astype(float)
            X[ks][d] = sp.csr_matrix((g, (pos * n_dst + ld, ls)), shape=(n_pair * n_dst, n_src))
            Y[ks][d] = sp.csr_matrix((g, (ld, pos * n_src + ls)), shape=(n_dst, n_pair * n_src))
    return X, Y


def sector_dim(ham: Hamiltonian, n_alpha: int, n_beta: int) -> int:
    """Size of the (N↑, N↓) space summed over K (≈ N_k × the size of one K sector)."""
    m = ham.n_spatial
    return comb(m, n_alpha) * comb(m, n_beta)


# -------------------------------------------------------------------- one-particle operators
def apply_ladder(src: SectorBlock, vec: np.ndarray, orbital: int, spin: int, create: bool,
                 dst: SectorBlock) -> np.ndarray:
    """c†_{orbital,spin} (create) or c_{orbital,spin} applied to a vector of ``src`` → ``dst``."""
    full = src.to_full(vec)
    if spin == 0:
        s, d, g = ladder(src.alpha, dst.alpha, orbital, create)
        out = np.zeros((len(dst.alpha), len(dst.beta)), dtype=complex)
        out[d] = g[:, None] * full[s]
    else:
        s, d, g = ladder(src.beta, dst.beta, orbital, create)
        out = np.zeros((len(dst.alpha), len(dst.beta)), dtype=complex)
        out[:, d] = ((-1) ** src.n_alpha) * g[None, :] * full[:, s]  # passes the N↑ α operators
    return dst.from_full(out)


def krylov_roots(matvec, starts: np.ndarray, n_wanted: int, tol: float = 1e-5, max_dim: int = KRYLOV_MAX_DIM,
                 check: int = 4, min_weight: float = 0.1, max_blocks: int | None = None):
    """Block Lanczos (full reorthogonalisation) from ``starts`` (dim × b); ``max_blocks``: stop
    after that many blocks, converged or not (the Ritz pairs of a fixed Krylov space).

    Used for quasiparticles: the start vectors c†_{pk}|Ψ0⟩ have pure spin, H conserves it, so the
    Krylov space holds only states that one-particle addition can reach, and the Ritz states
    with large overlap on the start vectors (large spectral weight) converge first.
    With H V = V T + Q R Eᵀ, a Ritz pair's residual is ‖R y_last‖ and its overlaps with the
    start vectors are y_firstᴴ R0, so no long vectors are formed for either.
    Returns (energies, weights (n, b) = |⟨n|s_p⟩|², residual norms) of the Ritz pairs.
    """
    dim = starts.shape[0]
    keep0 = np.linalg.norm(starts, axis=0) > 1e-12
    q, r0 = np.linalg.qr(starts[:, keep0])
    r0_full = np.zeros((q.shape[1], starts.shape[1]), dtype=complex)
    r0_full[:, keep0] = r0
    max_dim = min(max_dim, dim)
    v = np.empty((dim, max_dim), dtype=complex, order="F")   # preallocated: no O(n²) copies
    tmat = np.zeros((max_dim, max_dim), dtype=complex)
    n, blocks, b0 = 0, 0, q.shape[1]

    def ritz(n, r_next, b):
        theta, y = np.linalg.eigh(0.5 * (tmat[:n, :n] + tmat[:n, :n].conj().T))
        resid = np.linalg.norm(r_next @ y[n - b:n, :], axis=0) if r_next is not None else np.zeros(n)
        weights = np.abs(y[:b0, :].conj().T @ r0_full) ** 2
        return theta, weights, resid

    while True:
        b = min(q.shape[1], max_dim - n)
        v[:, n:n + b] = q[:, :b]
        hq = np.stack([matvec(np.ascontiguousarray(q[:, i])) for i in range(b)], axis=1)
        n += b
        blocks += 1
        coef = v[:, :n].conj().T @ hq
        tmat[:n, n - b:n] = coef
        tmat[n - b:n, :n] = coef.conj().T
        w = hq - v[:, :n] @ coef
        w -= v[:, :n] @ (v[:, :n].conj().T @ w)                  # reorthogonalise twice (Kahan)
        q, rr = np.linalg.qr(w)
        if max_blocks is not None and blocks >= max_blocks:
            return ritz(n, rr, b)
        if blocks % check == 0 or n >= max_dim:
            theta, weights, resid = ritz(n, rr, b)
            z = weights.sum(axis=1) / max(1e-300, np.abs(r0_full).__pow__(2).sum())
            # Converged when the n_wanted Ritz states of largest spectral weight have converged
            # residuals and weight ≥ min_weight (quasiparticles carry Z ~ 0.3–0.9). A converged
            # residual makes each a true eigenpair; satellites with small Z are not needed.
            top = np.argsort(z)[::-1][:n_wanted]
            if (np.all(resid[top] < tol) and np.all(z[top] >= min_weight)) or n >= max_dim:
                return theta, weights, resid
        keep = np.abs(np.diag(rr)) > 1e-10 * max(1.0, np.abs(rr).max())
        if not keep.any():                                        # invariant subspace: exact
            return ritz(n, None, b)
        q = q[:, keep]


# -------------------------------------------------------------------- the method object
@dataclass
class QuasiparticleBranch:
    k: int                      # crystal momentum index of the added electron / hole
    energies: np.ndarray        # total supercell energies of the selected N±1 states (raw H)
    weights: np.ndarray         # spectral weight Z of each selected state
    residuals: np.ndarray


def quasiparticle_partner(ham, k0: int, k: int) -> int | None:
    """The k whose quasiparticle sectors stand for K0 ± k: −k when Ψ0's momentum K0 is its own
    time-reversed partner and −k < k (the K0+k and K0−k sectors are then complex-conjugate
    blocks with one spectrum), else None (solve this k)."""
    mk = ham.k_sub(0, k)
    return mk if ham.k_sub(0, k0) == k0 and mk < k else None


class ExactDiagonalization:
    """Exact ground state and quasiparticle bands of a :class:`Hamiltonian`.

    ``ExactDiagonalization(ham).run()`` fills ``e_ground`` (supercell, raw H), ``k_ground``,
    ``sectors`` (lowest energies of every (N↑, N↓, K) sector for N and N±1) and ``electron`` /
    ``hole`` quasiparticle branches per k. Energies in the headline (ewald) convention and per
    cell come from :meth:`summary`.
    """

    def __init__(self, ham: Hamiltonian, n_roots: int = 2, tol: float = 1e-6, bands: bool = True,
                 max_dim: int = DEFAULT_MAX_DIM, solver: str = "davidson", threads: int | None = 1,
                 time_reversal: bool = True):
        self.ham, self.n_roots, self.tol, self.do_bands = ham, n_roots, tol, bands
        # Without magnetic fields the K and −K sectors are complex-conjugate blocks with equal
        # spectra (tested); solving one of each pair halves the work.
        self.time_reversal = time_reversal
        self.max_dim, self.solver, self.threads = max_dim, solver, threads
        self.spaces: dict = {}
        self.sectors: list[SectorResult] = []
        self.electron: list[QuasiparticleBranch] = []
        self.hole: list[QuasiparticleBranch] = []

    def check_size(self) -> None:
        """Raise before any work if a needed sector is too large."""
        ham = self.ham
        na, nb = ham.n_alpha, ham.n_beta
        pairs = [(na, nb)] + ([(na + 1, nb), (na - 1, nb)] if self.do_bands else [])
        for a, b in pairs:
            if a < 0 or a > ham.n_spatial:
                continue
            est = sector_dim(ham, a, b) // ham.nk
            if est > self.max_dim:
                raise SectorTooLargeError(
                    f"{ham.meta.get('geometry', {}).get('system', 'system')} k-mesh "
                    f"{ham.meta.get('geometry', {}).get('kmesh')}: the (N↑={a}, N↓={b}) sectors have "
                    f"~{est:,} determinants each, above the exact-diagonalization limit {self.max_dim:,}; "
                    "use the beyond-tier runners (`nqsbench reference ccsd|dmrg ...`) or a smaller --kmesh")

    def sector(self, n_alpha: int, n_beta: int, k: int) -> SectorBlock:
        return SectorBlock(self.ham, n_alpha, n_beta, k, spaces=self.spaces, max_dim=self.max_dim)

    def run(self) -> "ExactDiagonalization":
        from threadpoolctl import threadpool_limits

        self.check_size()
        # Small BLAS calls dominate; one thread avoids OpenBLAS spin-wait stalls under load.
        with threadpool_limits(limits=self.threads):
            return self._run()

    def _run(self) -> "ExactDiagonalization":
        import time

        ham = self.ham
        na, nb = ham.n_alpha, ham.n_beta
        self.timings = {}
        t0 = time.perf_counter()
        gs = self._solve_sectors(na, nb, keep_vectors=True)
        self.timings["n_sectors_s"] = time.perf_counter() - t0
        self.sectors.extend(gs)
        best = min(gs, key=lambda r: r.energies[0])
        self.e_ground, self.k_ground, self.s2_ground = float(best.energies[0]), best.k, float(best.s2[0])
        self.psi_ground = best.vectors[0]
        # Quasiparticles are defined on the lowest singlet: (N↑, N↓) fixes S_z, not S, and on
        # small meshes the lowest state can be a triplet (H chain N_k = 2, d = 1.8).
        singlets = [(float(e), r.k, v) for r in gs for e, s2, v in zip(r.energies, r.s2, r.vectors) if s2 < 1e-6]
        if singlets:
            self.e_singlet, self.k_singlet, self.psi_singlet = min(singlets, key=lambda x: x[0])
        else:
            self.e_singlet, self.k_singlet, self.psi_singlet = None, None, None
        for r in gs:
            r.vectors = []
        if not self.do_bands:
            return self
        t0 = time.perf_counter()
        for da in (+1, -1):
            if 0 <= na + da <= ham.n_spatial:
                self.sectors.extend(self._solve_sectors(na + da, nb, keep_vectors=False))
        self.timings["n_pm1_sectors_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._bands()
        self.timings["quasiparticles_s"] = time.perf_counter() - t0
        return self

    def _partner(self, k: int) -> int:
        """The sector whose results stand for K (−K when time reversal is used and −K < K)."""
        mk = self.ham.k_sub(0, k)
        return mk if self.time_reversal and mk < k else k

    def _solve_sectors(self, na: int, nb: int, keep_vectors: bool) -> list[SectorResult]:
        out: dict[int, SectorResult] = {}
        for k in range(self.ham.nk):
            p = self._partner(k)
            if p != k:
                src = out[p]
                out[k] = SectorResult(na, nb, k, src.dim, src.energies, [], src.s2, 0)
                continue
            res = self.sector(na, nb, k).solve(self.n_roots, tol=self.tol, solver=self.solver)
            if not keep_vectors:
                res.vectors = []
            out[k] = res
        return [out[k] for k in range(self.ham.nk)]

    def _bands(self) -> None:
        """Quasiparticles: block Lanczos from c†_{pk↑}|Ψ0⟩ (electron) and c_{pk↑}|Ψ0⟩ (hole)."""
        ham = self.ham
        if self.psi_singlet is not None:
            self.band_reference = ("singlet", self.e_singlet, self.k_singlet, self.psi_singlet)
        else:  # no singlet among the computed roots: fall back to the lowest state
            self.band_reference = ("lowest", self.e_ground, self.k_ground, self.psi_ground)
        _, e_ref, k0, psi0 = self.band_reference
        na, nb = ham.n_alpha, ham.n_beta
        src = self.sector(na, nb, k0)
        occ = ham.mo_occ > 0
        for create, store in ((True, self.electron), (False, self.hole)):
            for k in range(ham.nk):
                mk = quasiparticle_partner(ham, k0, k) if self.time_reversal else None
                if mk is not None:
                    src_qp = store[mk]
                    store.append(QuasiparticleBranch(k=k, energies=src_qp.energies, weights=src_qp.weights,
                                                     residuals=src_qp.residuals))
                    continue
                kt = ham.k_add(k0, k) if create else ham.k_sub(k0, k)
                dst = self.sector(na + (1 if create else -1), nb, kt)
                orbs = [k * ham.n_orb + p for p in range(ham.n_orb)]
                starts = np.stack([apply_ladder(src, psi0, i, 0, create, dst) for i in orbs], axis=1)
                n_bands = int((~occ[k]).sum() if create else occ[k].sum())
                theta, weights, resid = krylov_roots(lambda x: dst.matvec(x, shift=e_ref), starts, n_bands,
                                                     tol=self.tol)
                z = weights.sum(axis=1)
                ok = resid < 10 * self.tol
                cand = np.flatnonzero(ok)
                chosen = cand[np.argsort(z[cand])[::-1][:n_bands]]
                chosen = chosen[np.argsort(theta[chosen])]
                store.append(QuasiparticleBranch(k=k, energies=theta[chosen] + e_ref, weights=z[chosen],
                                                 residuals=resid[chosen]))

    # ---------------------------------------------------------------- reporting
    def per_cell_ewald(self, e_supercell: float, n_active: int) -> float:
        return (e_supercell + self.ham.constant + self.ham.ewald_shift(n_active)) / self.ham.nk

    def summary(self) -> dict:
        """Energies per cell (ewald headline and raw), sector table, bands (Ha, ewald)."""
        ham = self.ham
        n0 = ham.n_alpha + ham.n_beta
        e_raw = (self.e_ground + ham.constant) / ham.nk
        out = {"energy_per_cell": self.per_cell_ewald(self.e_ground, n0), "energy_per_cell_raw": e_raw,
               "k_ground": self.k_ground, "s2_ground": self.s2_ground, "sectors": [],
               "timings": {k: round(v, 3) for k, v in self.timings.items()},
               "energy_per_cell_singlet": (None if self.e_singlet is None
                                           else self.per_cell_ewald(self.e_singlet, n0))}
        for r in self.sectors:
            n = r.n_alpha + r.n_beta
            out["sectors"].append({
                "n_alpha": r.n_alpha, "n_beta": r.n_beta, "k": int(r.k), "kvec": ham.kvec[r.k].tolist(),
                "dim": r.dim, "energies_raw": [float(e) for e in r.energies],
                "energies_per_cell": [self.per_cell_ewald(e, n) for e in r.energies],
                "s2": [round(float(s), 6) for s in r.s2], "matvecs": r.matvecs})
        if self.electron:
            kind, e_band_ref, k_ref, _ = self.band_reference
            out["band_reference"] = {"state": kind, "k": int(k_ref),
                                     "energy_per_cell": self.per_cell_ewald(e_band_ref, n0)}
            e0 = e_band_ref + ham.ewald_shift(n0)
            bands = []
            for el, ho in zip(self.electron, self.hole):
                eps_e = [float(e + ham.ewald_shift(n0 + 1) - e0) for e in el.energies]
                eps_h = [float(e0 - (e + ham.ewald_shift(n0 - 1))) for e in ho.energies]
                bands.append({"k": el.k, "kvec": ham.kvec[el.k].tolist(), "electron": eps_e, "hole": eps_h,
                              "electron_weight": [float(z) for z in el.weights],
                              "hole_weight": [float(z) for z in ho.weights]})
            out["bands"] = bands
            cb = min(min(b["electron"]) for b in bands if b["electron"])
            vb = max(max(b["hole"]) for b in bands if b["hole"])
            out["gap"] = cb - vb
        return out
