"""Quasiparticle bands from a variational state: the excitation subspace (Yoshioka et al. 2021).

For each crystal momentum k of the mesh the electron basis is {|φ_p⟩ = c†_{pk↑}|Ψ⟩} and the hole
basis {|φ_p⟩ = c_{pk↑}|Ψ⟩}, p over the n_orb bands at k (spin up: for a singlet Ψ the spin-down
branch is identical). With S_pq = ⟨φ_p|φ_q⟩/⟨Ψ|Ψ⟩ and H_pq = ⟨φ_p|H|φ_q⟩/⟨Ψ|Ψ⟩ the generalized
eigenproblem H c = E S c, with S restricted to its eigenvectors above ``s_threshold`` (the kept
rank is recorded), gives E(N±1, K0±k). Quasiparticle energies ε_e = E(N+1) − E(N) and
ε_h = E(N) − E(N−1) (design.md), with E(N) = ⟨Ψ|H|Ψ⟩/⟨Ψ|Ψ⟩ of the same state; the Madelung
sector constants are added when the bands are reported (:meth:`SubspaceBands.bands`).

Two estimators of S, H and E(N):

* :func:`subspace_exact` — sums over the sectors: Ψ as a vector of the exact-diagonalization
  layout (:func:`nqs_vector` converts an NQS), c†/c applied with :func:`nqsbench.exact.apply_ladder`
  and H with the matrix-free :meth:`nqsbench.exact.SectorBlock.matvec`. The same function with the
  exact ground state is the *control* that splits the band error into ansatz and subspace parts.
* :func:`subspace_monte_carlo` — samples x ~ |Ψ|² of the N sector. With L_p = c†_p (or c_p),
  y = L_p x, s_p its Jordan–Wigner sign and φ_q(y') = ⟨y'|L_q|Ψ⟩:

      S_pq = E_x[ s_p 1[L_p x ≠ 0] φ_q(y) / Ψ(x) ],
      H_pq = E_x[ s_p 1[L_p x ≠ 0] Σ_{y'} ⟨y|H|y'⟩ φ_q(y') / Ψ(x) ],

  the y' running over y and its single and double excitations in the N±1 sector (the local-
  energy connections of :mod:`nqsbench.nqs.operator`). A different code path from the exact
  estimator (JAX connections vs. string-space σ); both are tested against each other.
  Error bars: delete-one-block jackknife over the Markov chains (independent blocks, so
  autocorrelation inside a chain is accounted for), carried through the eigenproblem, so E(N)
  and E(N±1) fluctuations that cancel in ε are treated as correlated.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .. import config
from . import memory
from .hilbert import Sector
from .operator import FermionHamiltonian, make_amplitude_ratio, make_connections

jax.config.update("jax_enable_x64", True)

DEFAULT_S_THRESHOLD = 1e-3


# ----------------------------------------------------------------------------- linear algebra
def solve_subspace(s_mat: np.ndarray, h_mat: np.ndarray, s_threshold: float = DEFAULT_S_THRESHOLD):
    """Generalized eigenproblem H c = E S c on the span of S's eigenvectors with eigenvalue
    > ``s_threshold`` (canonical orthogonalization; S and H are Hermitized first, which is exact
    for the exact estimator and removes the anti-Hermitian noise of the Monte Carlo one).

    Returns (E (r,), Z (r,), s (n,), r): energies, spectral weights Z_j = Σ_p |⟨φ_p|χ_j⟩|² of the
    normalized roots χ_j, all eigenvalues of S, and the kept rank r."""
    s_mat = 0.5 * (s_mat + s_mat.conj().T)
    h_mat = 0.5 * (h_mat + h_mat.conj().T)
    s, u = np.linalg.eigh(s_mat)
    keep = s > s_threshold
    x = u[:, keep] / np.sqrt(s[keep])
    e, c = np.linalg.eigh(x.conj().T @ h_mat @ x)
    coef = x @ c
    z = np.sum(np.abs(s_mat @ coef) ** 2, axis=0)
    return e, z, s, int(keep.sum())


# ----------------------------------------------------------------------------- results
@dataclass
class SubspaceBranch:
    """One (k, electron|hole) block: every root of the kept subspace."""
    k: int
    create: bool
    e_total: np.ndarray            # E(N±1) of each root, supercell, raw H, constant excluded
    eps: np.ndarray                # raw quasiparticle energies (no Madelung constant), Ha
    weights: np.ndarray            # spectral weight Z of each root
    s_eigenvalues: np.ndarray      # all eigenvalues of S (kept: > threshold)
    rank: int
    eps_error: np.ndarray | None = None   # jackknife standard errors (Monte Carlo)


@dataclass
class SubspaceBands:
    """Excitation-subspace quasiparticles of one state. ``e_ground`` is E(N) (supercell, raw H,
    constant excluded; krylov: from the Krylov space of the state, with ⟨Ψ|H|Ψ⟩ in
    ``meta["e_state"]``) and ``n_bands`` the number of (electron, hole) bands per k (the HF
    virtual/occupied counts, as for the exact and EOM-CCSD bands)."""
    estimator: str
    s_threshold: float
    e_ground: float
    electron: list[SubspaceBranch]
    hole: list[SubspaceBranch]
    e_ground_error: float = 0.0
    n_samples: int | None = None
    n_blocks: int | None = None
    meta: dict = field(default_factory=dict)

    def bands(self, ham) -> list[dict]:
        """Band-record dicts per k (Hartree, ewald convention like every other method): for each
        branch the ``n_bands`` roots of largest spectral weight, sorted by energy."""
        n0 = ham.n_alpha + ham.n_beta
        d_elec = ham.ewald_shift(n0 + 1) - ham.ewald_shift(n0)
        d_hole = ham.ewald_shift(n0) - ham.ewald_shift(n0 - 1)
        occ = np.asarray(ham.mo_occ) > 0
        out = []
        for el, ho in zip(self.electron, self.hole):
            k = el.k
            row = {"k": k, "kvec": ham.kvec[k].tolist()}
            for br, name, shift, n_b in ((el, "electron", d_elec, int((~occ[k]).sum())),
                                         (ho, "hole", d_hole, int(occ[k].sum()))):
                sel = np.argsort(br.weights)[::-1][:n_b]
                sel = sel[np.argsort(br.eps[sel])]
                row[name] = [float(e + shift) for e in br.eps[sel]]
                row[f"{name}_weight"] = [float(z) for z in br.weights[sel]]
                if br.eps_error is not None:
                    row[f"{name}_error"] = [float(v) for v in br.eps_error[sel]]
            out.append(row)
        return out

    def ranks(self) -> dict:
        return {"electron": [b.rank for b in self.electron], "hole": [b.rank for b in self.hole]}


def krylov_subspace(matvec, vecs: np.ndarray, norm2: float, order: int,
                    s_threshold: float = DEFAULT_S_THRESHOLD, rel_tol: float = 1e-10):
    """Rayleigh–Ritz in span{V, HV, …, H^order V} of the start vectors ``vecs`` = V (dim × n,
    the unnormalized c†_p|Ψ⟩ or c_p|Ψ⟩ of a state of norm² ``norm2``): block Lanczos with full
    reorthogonalization, i.e. order + 1 blocks.

    The start block is orthonormalized canonically with the subspace's S threshold (eigenvalues
    of S = V†V/norm2 at or below ``s_threshold`` dropped), so order 0 is exactly the paper's
    excitation subspace; a later block keeps the directions of the new residual whose norm is
    above ``rel_tol`` × ‖H‖ (an exhausted direction is an exact eigenvector: nothing is lost).
    Returns (E (r,), Z (r,), eigenvalues of S, r): Ritz energies, their spectral weights
    Z_j = Σ_p |⟨φ_p|χ_j⟩|² with φ_p = V_p/√norm2, and the basis size r.

    Not :func:`nqsbench.exact.krylov_roots` (which iterates to converged eigenpairs from QR'd
    starts): this space has a fixed order, the subspace's S threshold and weights on the
    unnormalized φ_p; the tests check one against the other at equal order."""
    s_mat = vecs.conj().T @ vecs / norm2
    s_mat = 0.5 * (s_mat + s_mat.conj().T)
    s, u = np.linalg.eigh(s_mat)
    keep = s > s_threshold
    q = vecs @ (u[:, keep] / np.sqrt(s[keep] * norm2))
    blocks, h_blocks = [], []
    scale = 0.0
    for m in range(order + 1):
        if q.shape[1] == 0:
            break
        hq = np.stack([matvec(np.ascontiguousarray(q[:, j])) for j in range(q.shape[1])], axis=1)
        blocks.append(q)
        h_blocks.append(hq)
        scale = max(scale, float(np.linalg.norm(hq, 2)))
        if m == order:
            break
        basis = np.concatenate(blocks, axis=1)
        w = hq - basis @ (basis.conj().T @ hq)
        w -= basis @ (basis.conj().T @ w)                # twice is enough (Kahan–Parlett)
        g, uw = np.linalg.eigh(w.conj().T @ w)
        kept = g > (rel_tol * max(scale, 1.0)) ** 2
        q = w @ (uw[:, kept] / np.sqrt(g[kept]))
        q -= basis @ (basis.conj().T @ q)                # the division can amplify what is left
    if not blocks:           # every start vector at or below the threshold (c† on filled orbitals)
        return np.zeros(0), np.zeros(0), s, 0
    basis, h_basis = np.concatenate(blocks, axis=1), np.concatenate(h_blocks, axis=1)
    t = basis.conj().T @ h_basis
    e, c = np.linalg.eigh(0.5 * (t + t.conj().T))
    z = np.sum(np.abs(vecs.conj().T @ (basis @ c)) ** 2, axis=0) / norm2
    return e, z, s, basis.shape[1]


def _branch(k, create, e_n, s_mat, h_mat, s_threshold) -> SubspaceBranch:
    e, z, s, r = solve_subspace(s_mat, h_mat, s_threshold)
    eps = e - e_n if create else e_n - e
    return SubspaceBranch(k=k, create=create, e_total=e, eps=eps, weights=z, s_eigenvalues=s, rank=r)


# ----------------------------------------------------------------------------- exact estimator
def nqs_vector(ham, model, params, sector: Sector | None = None, ed_sector=None):
    """The NQS amplitudes over its whole (N↑, N↓, K) sector as a normalized vector of the
    exact-diagonalization layout. Returns (psi, ed_sector)."""
    from ..exact import SectorBlock

    sector = sector or Sector.from_hamiltonian(ham)
    if ed_sector is None:
        ed_sector = SectorBlock(ham, sector.n_up, sector.n_dn, sector.k_total)
    configs = sector.enumerate()
    lp = np.asarray(model.log_psi(params, jnp.asarray(configs, dtype=jnp.int32)))
    amp = np.exp(lp - lp.real.max())
    m = ham.n_spatial
    pw = np.int64(1) << np.arange(m, dtype=np.int64)
    ia = ed_sector.alpha.index(configs[:, :m].astype(np.int64) @ pw)
    ib = ed_sector.beta.index(configs[:, m:].astype(np.int64) @ pw)
    full = np.zeros((len(ed_sector.alpha), len(ed_sector.beta)), dtype=complex)
    full[ia, ib] = amp
    psi = ed_sector.from_full(full)
    return psi / np.linalg.norm(psi), ed_sector


def sector_branch(ham, psi0: np.ndarray, src, psi1: np.ndarray, dst, k: int, create: bool,
                  e_n: float) -> SubspaceBranch:
    """The lowest state ``psi1`` of the (N±1, K0±k) sector ``dst`` (a SectorBlock) as a one-root
    branch: its energy ⟨ψ1|H|ψ1⟩ and its quasiparticle weight Z = Σ_p |⟨ψ1|c†_pk↑|Ψ0⟩|² (c_pk↑
    for a hole) with Ψ0 = ``psi0`` of ``src``; both vectors normalized here. Z near the exact
    quasiparticle's says the lowest state is the quasiparticle, a small Z a satellite (or a
    state of higher spin: c†|Ψ0⟩ of a singlet is a doublet)."""
    from ..exact import apply_ladder

    psi0 = np.asarray(psi0, dtype=complex) / np.linalg.norm(psi0)
    psi1 = np.asarray(psi1, dtype=complex) / np.linalg.norm(psi1)
    e1 = float(np.vdot(psi1, dst.matvec(psi1)).real)
    z = sum(abs(np.vdot(psi1, apply_ladder(src, psi0, k * ham.n_orb + p, 0, create, dst))) ** 2
            for p in range(ham.n_orb))
    return SubspaceBranch(k=k, create=create, e_total=np.array([e1]),
                          eps=np.array([e1 - e_n if create else e_n - e1]), weights=np.array([float(z)]),
                          s_eigenvalues=np.array([1.0]), rank=1)


def subspace_exact(ham, psi: np.ndarray, k0: int | None = None, n_alpha: int | None = None,
                   n_beta: int | None = None, s_threshold: float = DEFAULT_S_THRESHOLD,
                   spaces: dict | None = None, order: int = 0) -> SubspaceBands:
    """Excitation-subspace bands of the state ``psi`` (exact-diagonalization layout of the
    (n_alpha, n_beta, k0) sector; default: HF electron counts and momentum), by exact sums.
    ``order`` > 0: the Krylov-extended subspace span{V, HV, …, H^order V}
    (:func:`krylov_subspace`); 0 is the paper's subspace."""
    from ..exact import SectorBlock, apply_ladder

    na = ham.n_alpha if n_alpha is None else n_alpha
    nb = ham.n_beta if n_beta is None else n_beta
    k0 = ham.k0_sector() if k0 is None else k0
    spaces = {} if spaces is None else spaces
    src = SectorBlock(ham, na, nb, k0, spaces=spaces)
    psi = np.asarray(psi, dtype=complex)
    norm2 = float(np.vdot(psi, psi).real)
    e_n = e_state = float(np.vdot(psi, src.matvec(psi)).real) / norm2
    if order > 0:
        # E(N) at the level of E(N±1): the lowest Ritz value of span{Ψ, HΨ, …, H^order Ψ} (a
        # Lanczos-improved ground state; Ψ itself for an eigenstate), so that ε = E(N+1) − E(N)
        # does not carry the state's variational error on one side only (measured, H chain N_k = 4,
        # d = 2.6, RBM at +1.41 mHa/cell, order 6: gap error −305 meV with ⟨Ψ|H|Ψ⟩, −3 meV with this)
        e_n = float(krylov_subspace(src.matvec, psi[:, None], norm2, order, s_threshold)[0][0])
    electron, hole = [], []
    for create, store in ((True, electron), (False, hole)):
        n_target = na + (1 if create else -1)
        for k in range(ham.nk):
            if not 0 <= n_target <= ham.n_spatial:
                continue
            kt = ham.k_add(k0, k) if create else ham.k_sub(k0, k)
            dst = SectorBlock(ham, n_target, nb, kt, spaces=spaces)
            vecs = np.stack([apply_ladder(src, psi, k * ham.n_orb + p, 0, create, dst)
                             for p in range(ham.n_orb)], axis=1)
            if order > 0:
                e, z, s_eig, r = krylov_subspace(dst.matvec, vecs, norm2, order, s_threshold)
                store.append(SubspaceBranch(k=k, create=create, e_total=e, eps=e - e_n if create else e_n - e,
                                            weights=z, s_eigenvalues=s_eig, rank=r))
                continue
            hv = np.stack([dst.matvec(vecs[:, j]) for j in range(vecs.shape[1])], axis=1)
            s_mat = vecs.conj().T @ vecs / norm2
            h_mat = vecs.conj().T @ hv / norm2
            store.append(_branch(k, create, e_n, s_mat, h_mat, s_threshold))
    return SubspaceBands(estimator="exact", s_threshold=s_threshold, e_ground=e_n, electron=electron,
                         hole=hole, meta={"order": order, "e_state": e_state} if order else {})


# ----------------------------------------------------------------------------- Monte Carlo
def make_subspace_local(ham, sector: Sector, model, k: int, create: bool):
    """``local(tables, x)`` → (S_loc, H_loc), each (n_orb, n_orb) complex, with
    ``tables = local.prepare(params)`` (computed once per parameter set): the
    per-sample estimators of S_pq and H_pq (module docstring) for the spin-up ladder operators
    of the n_orb orbitals at k. H_loc includes the constant of H (as E_loc does)."""
    d = 1 if create else -1
    kt = ham.k_add(sector.k_total, k) if create else ham.k_sub(sector.k_total, k)
    target = Sector.from_hamiltonian(ham, n_up=sector.n_up + d, n_dn=sector.n_dn, k_total=kt)
    conn = make_connections(FermionHamiltonian(ham, target))
    orbs = jnp.asarray(sector.groups[k])                         # spin-up spin-orbitals at k
    n_orb = len(sector.groups[k])
    set_p, need_q = (1, 1) if create else (0, 0)

    prepare, ratio_of_flips = make_amplitude_ratio(model)

    def ratios(tables, x, p, rem_y, add_y, ok):
        """ψ(z)/ψ(x) for z = L_q† y' (C, n_orb), 0 where not ``ok``, with z written as flips of
        x — create: z = x + p − rem_y + add_y − q; hole: z = x − p − rem_y + add_y + q — so the
        RBM is not re-evaluated on every z (flips that cancel, e.g. q = p, add up correctly)."""
        c, r = rem_y.shape
        qq = jnp.broadcast_to(orbs[None, :, None], (c, n_orb, 1))
        pp = jnp.full((c, n_orb, 1), p)
        ry = jnp.broadcast_to(rem_y[:, None, :], (c, n_orb, r))
        ay = jnp.broadcast_to(add_y[:, None, :], (c, n_orb, r))
        rem, add = ((jnp.concatenate([ry, qq], -1), jnp.concatenate([pp, ay], -1)) if create else
                    (jnp.concatenate([pp, ry], -1), jnp.concatenate([ay, qq], -1)))
        return ratio_of_flips(tables, x, rem.reshape(c * n_orb, r + 1), add.reshape(c * n_orb, r + 1),
                              ok.reshape(-1)).reshape(c, n_orb)

    def per_p(params, x, p):
        pref_x = jnp.cumsum(x) - x
        valid_p = x[p] == (1 - set_p)
        sign_p = jnp.where(valid_p, 1 - 2 * (pref_x[p] % 2), 0)
        y = x.at[p].set(set_p)
        e_diag, rem_s, add_s, mel_s, ok_s, rem_d, add_d, mel_d, ok_d = conn(y)
        move = jax.vmap(lambda r, a: y.at[r].set(0).at[a].set(1))
        none = jnp.zeros((1, 0), dtype=rem_s.dtype)
        h_row = 0.0
        s_row = None
        for ys, rem_y, add_y, mel, ok_y in ((y[None], none, none, e_diag[None].astype(mel_s.dtype),
                                             jnp.ones(1, bool)),
                                            (move(rem_s, add_s), rem_s, add_s, mel_s, ok_s),
                                            (move(rem_d, add_d), rem_d, add_d, mel_d, ok_d)):
            pref_y = jnp.cumsum(ys, axis=1) - ys
            ok = ok_y[:, None] & (ys[:, orbs] == need_q)                        # (C, n_orb)
            sign_q = 1 - 2 * (pref_y[:, orbs] % 2)
            ratio = ratios(params, x, p, rem_y, add_y, ok) * sign_q
            if s_row is None:
                s_row = ratio[0]                                                # y' = y
            h_row = h_row + jnp.sum(jnp.where(ok_y, mel, 0.0)[:, None] * ratio, axis=0)
        return sign_p * s_row, sign_p * h_row

    def local(tables, x):
        x = x.astype(jnp.int32)
        return jax.vmap(partial(per_p, tables, x))(orbs)

    local.prepare = prepare
    return local


_COMPILED: dict = {}


def _compiled_local(ham, ham_hash: str, sector: Sector, model, k: int, create: bool, chunk_size: int):
    """The jitted batch version of :func:`make_subspace_local`, kept per (Hamiltonian hash,
    sector, model, k, branch), so repeated estimates (benchmarks, several parameter sets) do not
    rebuild and recompile it."""
    try:
        key = (ham_hash, sector.n_up, sector.n_dn, sector.k_total, model, k, create, chunk_size)
        hash(key)
    except TypeError:          # an unhashable model: no caching
        key = None
    if key is not None and key in _COMPILED:
        return _COMPILED[key]
    local = make_subspace_local(ham, sector, model, k, create)
    fn = jax.jit(lambda p, x: jax.lax.map(partial(local, local.prepare(p)), x, batch_size=chunk_size))
    if key is not None:
        if len(_COMPILED) >= 64:
            _COMPILED.clear()
        _COMPILED[key] = fn
    return fn


def blocked_samples(xs, weights=None, n_blocks: int | None = None):
    """(flat (S, 2M) int32, n_blocks, block_sum) for samples ``xs`` (n_chains, n_per_chain, 2M)
    with optional importance ``weights`` of the same shape: ``block_sum(v)`` gives the weighted
    per-block sums (n_blocks, ...) of per-sample values v (S, ...). Blocks for the jackknife: the
    chains when there are ≥ 8 of them (``n_blocks`` = n_chains), else each chain is cut into
    consecutive pieces (n_blocks = 32 by default)."""
    xs = np.asarray(xs, dtype=np.int32)
    if xs.ndim == 2:
        xs = xs[None]
    n_ch, n_pc, n = xs.shape
    w = np.full((n_ch, n_pc), 1.0) if weights is None else np.asarray(weights, dtype=float).reshape(n_ch, n_pc)
    if n_blocks is None:
        n_blocks = n_ch if n_ch >= 8 else 32
    if n_blocks == n_ch:
        block = np.repeat(np.arange(n_ch), n_pc)
    else:
        block = np.concatenate([np.arange(n_pc) * n_blocks // n_pc for _ in range(n_ch)])
    wf = w.reshape(-1)

    def block_sum(v):
        out = np.zeros((n_blocks,) + v.shape[1:], dtype=v.dtype)
        np.add.at(out, block, wf.reshape((-1,) + (1,) * (v.ndim - 1)) * v)
        return out

    return xs.reshape(-1, n), n_blocks, block_sum


def _jackknife(stat_fn, sums: list[np.ndarray], n_blocks: int):
    """Delete-one-block jackknife of ``stat_fn(*means)`` where ``sums[i]`` holds per-block
    weighted sums (leading axis n_blocks) and ``sums[0]`` the per-block weight totals."""
    total = [s.sum(0) for s in sums]
    full = stat_fn(*[t / total[0] for t in total[1:]])
    reps = []
    for b in range(n_blocks):
        part = [t - s[b] for t, s in zip(total, sums)]
        reps.append(stat_fn(*[p / part[0] for p in part[1:]]))
    reps = np.asarray(reps)
    err = np.sqrt((n_blocks - 1) / n_blocks * np.sum((reps - reps.mean(0)) ** 2, axis=0))
    return full, err


def subspace_monte_carlo(ham, model, params, xs, weights=None, sector: Sector | None = None,
                         s_threshold: float = DEFAULT_S_THRESHOLD, n_blocks: int | None = None,
                         chunk_size: int | None = None, memory_gb: float | None = None,
                         log=None) -> SubspaceBands:
    """Monte Carlo excitation-subspace bands from samples ``xs`` (n_chains, n_per_chain, 2M) of
    |Ψ|² (``weights`` the same shape for importance-weighted samples, else uniform).

    ``chunk_size``: samples evaluated at once by the local estimators; None plans it as a run
    does (:func:`nqsbench.nqs.memory.choose_chunk` from a probe of one (k, branch) estimator at
    chunk 1, within ``memory_gb``, default :func:`nqsbench.config.memory_gb`): a fixed 32 would
    hold 32 × n_orb × (connections) amplitude ratios at once, gigabytes at graphene 2×2×1.

    Blocks for the jackknife: the chains when there are ≥ 8 of them (``n_blocks`` = n_chains),
    else each chain is cut into consecutive pieces (n_blocks = 32 by default).

    ``log(line)``: the probe's time estimate for all samples and (k, branch) blocks, then one line
    per block done (at the H chain N_k = 8 with the NNBF, 1 024 samples took over 30 minutes)."""
    sector = sector or Sector.from_hamiltonian(ham)
    flat, n_blocks, block_sum = blocked_samples(xs, weights, n_blocks)
    ham_hash = ham.hash          # a sha256 over the integrals: once, not per (k, branch)
    budget = int((memory_gb or config.memory_gb()) * memory.GB)
    eloc_fn, *_ = memory.plan_local_energy(FermionHamiltonian(ham, sector), model, params, len(flat), budget,
                                           chunk_size)
    eloc = np.asarray(eloc_fn(params, flat))
    seconds = None
    if chunk_size is None:       # every (k, branch) estimator has the same size: probe one
        create = sector.n_up < sector.n_spatial
        per, seconds = memory.probe_local_energy(
            lambda c: _compiled_local(ham, ham_hash, sector, model, 0, create, c), params, sector.hf_config)
        chunk_size = memory.choose_chunk(per, len(flat), budget)
    n_groups = ham.nk * sum(0 <= sector.n_up + d <= sector.n_spatial for d in (1, -1))
    if log is not None and seconds is not None:
        log(f"subspace mc: ~{seconds * 1e3:.2f} ms per sample and (k, branch) block: "
            f"{memory.run_estimate(seconds, len(flat), n_groups)} for {len(flat)} samples × "
            f"{n_groups} blocks on this core (chunk {chunk_size})")

    w_b = block_sum(np.ones(len(flat)))
    e_b = block_sum(eloc)
    const = float(ham.constant)
    groups = {}
    t0 = time.monotonic()
    for create in (True, False):
        n_target = sector.n_up + (1 if create else -1)
        if not 0 <= n_target <= sector.n_spatial:
            continue
        for k in range(ham.nk):
            fn = _compiled_local(ham, ham_hash, sector, model, k, create, chunk_size)
            s_loc, h_loc = (np.asarray(a) for a in fn(params, jnp.asarray(flat)))
            groups[(create, k)] = (block_sum(s_loc), block_sum(h_loc))
            if log is not None:
                log(memory.block_done("subspace mc", create, k, len(flat), time.monotonic() - t0, len(groups),
                                      n_groups))

    def bands_of(e_mean, *mats):
        e_n = float(np.real(e_mean)) - const
        out = []
        for i, (create, k) in enumerate(groups):
            s_mat, h_mat = mats[2 * i], mats[2 * i + 1] - const * mats[2 * i]
            br = _branch(k, create, e_n, s_mat, h_mat, s_threshold)
            out.append(br)
        return out

    def stat(e_mean, *mats):
        """Flat vector: E(N), then per branch the raw ε of the n_orb weight-ordered roots
        (padded with NaN when the kept rank is smaller) — what the jackknife propagates."""
        brs = bands_of(e_mean, *mats)
        vals = [float(np.real(e_mean))]
        for br in brs:
            order = np.argsort(br.weights)[::-1]
            pad = np.full(sector.n_orb, np.nan)
            pad[:len(order)] = br.eps[order]
            vals.extend(pad)
        return np.asarray(vals)

    sums = [w_b, e_b] + [m for pair in groups.values() for m in pair]
    total = [s.sum(0) for s in sums]
    means = [t / total[0] for t in total[1:]]
    branches = bands_of(*means)
    _, err = _jackknife(stat, sums, n_blocks)
    e_err = float(err[0])
    pos = 1
    electron, hole = [], []
    for br in branches:
        order = np.argsort(br.weights)[::-1]
        e_sorted = err[pos:pos + sector.n_orb][:len(order)]
        pos += sector.n_orb
        br.eps_error = np.empty(len(order))
        br.eps_error[order] = e_sorted
        (electron if br.create else hole).append(br)
    return SubspaceBands(estimator="monte_carlo", s_threshold=s_threshold, e_ground=float(np.real(means[0])) - const,
                         electron=sorted(electron, key=lambda b: b.k), hole=sorted(hole, key=lambda b: b.k),
                         e_ground_error=e_err, n_samples=len(flat), n_blocks=int(n_blocks))
