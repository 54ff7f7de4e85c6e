"""Monte Carlo estimator of the order-1 Krylov excitation space span{c†_p|Ψ⟩, H c†_p|Ψ⟩}.

The exact estimator (:func:`nqsbench.nqs.excitations.subspace_exact` with ``order`` ≥ 1) sums
over the N±1 sectors. Here, from samples x of |Ψ|² only. With φ_p = c†_p|Ψ⟩ (c_p for a hole),
p over the n_orb spin-up orbitals at k, the Rayleigh–Ritz problem in span{φ, Hφ} needs

    G = ⟨v_a|v_b⟩/⟨Ψ|Ψ⟩,  T = ⟨v_a|H|v_b⟩/⟨Ψ|Ψ⟩,   v = (φ_1 … φ_n, Hφ_1 … Hφ_n),

i.e. Σ_y conj(v_a(y)) w_b(y) with w = (Hφ, H²φ), a sum over configurations y of the N±1 sector.
Sampling y as c†_r x (x ~ |Ψ|²) alone would miss every y where all φ vanish but Hφ does not
(no spin-up electron at k: a large part of the sector), so each x gives two draws per r:

    y0 = c†_r x,   and   y1 = one move of H (a single or double, uniform among y0's n(y0)),

whose expected counts are q0(y) = Σ_r |Ψ(c_r y)|²/‖Ψ‖² and q1(y) = Σ_{y'~y} q0(y')/n(y'). With
q = q0 + q1 (the balance heuristic of multiple importance sampling) the estimator
Σ_draws conj(v_a) w_b / q is unbiased for every y with Hφ(y) ≠ 0, and its variance is bounded
(|Hφ(y)|² ≤ Σ|H_{yy'}|² Σ_{y'~y}|φ(y')|² ≤ n · max|H|² · q(y) up to constants). Everything is a
ratio to Ψ(x), so no normalization is needed. Hφ(y) and H²φ(y) are the connection sums of
:func:`nqsbench.nqs.operator.make_connections` one and two levels deep (C² amplitude ratios
per y, C ≈ 240 on the H chain N_k = 4: ~2·10⁶ ratios per sample over the 8 (k, branch) blocks,
~3 s on one core; so order 1 only — order n would need n + 1 nested levels). The bound above is
loose: at N_k = 4 (512 samples) the error bars are 0.05–0.9 eV; drawing y from Σ|Hφ|² (a Markov
chain in the N±1 sector) would cut them.

E(N) is ⟨Ψ|H|Ψ⟩ (the local energy's mean, zero-variance), not — as in the exact estimator —
the lowest Ritz value of span{Ψ, HΨ}: that Lanczos step needs ⟨H³⟩ = E[conj(E_loc) (H²Ψ)(x)/Ψ(x)],
whose noise is that of ‖H − E‖·σ(E_loc) divided by the tiny variance σ² of a good state. Measured
(H chain N_k = 4, d = 1.8, the no-flag RBM, 256 samples): E(N) 1.9 ± 1.1 Ha (supercell) below
⟨Ψ|H|Ψ⟩, every band 52 eV off. The ε of this estimator therefore carry the state's variational
error on the E(N) side (for that state +0.28 mHa/cell, ~30 meV on the gap) and are compared with
the exact estimator's E(N±1), not its ε (:func:`make_ground_sample` keeps the Lanczos-step
sample for the record of that measurement and the test of its per-sample values).

``hops="all"`` replaces the random move by the average over all of y0's moves: with x
enumerated and weighted by |Ψ|² the estimator is then exact (the test against the exact
estimator at 1e-10); ``"one"`` is the Monte Carlo default.
"""
from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import MemoryBudgetError
from .hilbert import Sector
from .operator import FermionHamiltonian, make_amplitude_ratio, make_connections

jax.config.update("jax_enable_x64", True)


def unified_connections(fham: FermionHamiltonian):
    """``conn(y)`` → (rem (C, 2), add (C, 2), mel (C,), ok (C,), hop (C,)): the diagonal, the
    singles and the doubles of :func:`make_connections` as one list of two-unit moves (a single
    c†_a c_i as rem (i, i), add (a, i) and the diagonal as rem (0, 0), add (0, 0): a unit removed
    and added cancels); ``hop``: the valid off-diagonal moves. The constant of H is left out of
    the diagonal (raw H, as the exact estimator's sector matvec)."""
    conn = make_connections(fham)
    const = fham.constant

    def unified(y):
        e_diag, rem_s, add_s, mel_s, ok_s, rem_d, add_d, mel_d, ok_d = conn(y)
        zero = jnp.zeros((1, 2), dtype=rem_s.dtype)
        rem = jnp.concatenate([zero, jnp.concatenate([rem_s, rem_s], -1), rem_d])
        add = jnp.concatenate([zero, jnp.concatenate([add_s, rem_s], -1), add_d])
        mel = jnp.concatenate([(e_diag - const)[None].astype(mel_s.dtype), mel_s, mel_d])
        hop = jnp.concatenate([jnp.zeros(1, bool), ok_s, ok_d])
        return rem, add, jnp.where(hop, mel, 0.0).at[0].set(mel[0]), hop.at[0].set(True), hop

    return unified


def _moved(y, rem, add):
    """Configurations y − Σ rem + Σ add for move rows ``rem``/``add`` (C, r)."""
    rows = jnp.arange(rem.shape[0])[:, None]
    return jnp.broadcast_to(y, (rem.shape[0], y.shape[0])).at[rows, rem].add(-1).at[rows, add].add(1)


def make_krylov_local(fham: FermionHamiltonian, model, orbs=None, create: bool = True):
    """``at(tables, x, y, rem, add)`` → (v (2n,), w (2n,), q0, Y1, rem1, add1, hop1, q0_1, n1) at
    the configuration y = x − Σ rem + Σ add of the sector of ``fham`` (the N±1 sector; ``orbs``
    None: the N sector itself, φ = Ψ, n = 1). v = (φ(y), Hφ(y)) and w = (Hφ(y), H²φ(y)) as ratios
    to Ψ(x); q0 = Σ_r |φ_r(y)|²; Y1 … the moves of y, with q0 and move counts n of each."""
    conn = unified_connections(fham)
    prepare, ratio_of_flips = make_amplitude_ratio(model)
    sector = fham.sector
    default_orbs = None if orbs is None else jnp.asarray(orbs)
    need = 1 if create else 0

    def phi(tables, x, ys, rem, add, orbs_j):
        """φ_q(y) for rows ys (C, 2M) reached from x by rem/add (C, r): (C, n)."""
        c = ys.shape[0]
        if orbs_j is None:
            ok = jnp.ones(c, bool)
            return ratio_of_flips(tables, x, rem, add, ok)[:, None]
        n = orbs_j.shape[0]
        pref = jnp.cumsum(ys, axis=1) - ys
        ok = ys[:, orbs_j] == need                                   # (C, n)
        sign = 1 - 2 * (pref[:, orbs_j] % 2)
        q = jnp.broadcast_to(orbs_j[None, :, None], (c, n, 1))
        r_ = jnp.broadcast_to(rem[:, None, :], (c, n, rem.shape[1]))
        a_ = jnp.broadcast_to(add[:, None, :], (c, n, add.shape[1]))
        # create: z = y − q (back in Ψ's sector); hole: z = y + q
        rr, aa = (jnp.concatenate([r_, q], -1), a_) if create else (r_, jnp.concatenate([a_, q], -1))
        width = rr.shape[-1]
        out = ratio_of_flips(tables, x, rr.reshape(c * n, width), aa.reshape(c * n, width), ok.reshape(-1))
        return out.reshape(c, n) * sign

    def at(tables, x, y, rem, add, orbs=None):
        orbs = default_orbs if orbs is None else orbs
        rem1, add1, mel1, ok1, hop1 = conn(y)                           # (C, 2) …
        c = rem1.shape[0]
        y1 = _moved(y, rem1, add1)                                        # (C, 2M)
        r1 = jnp.concatenate([jnp.broadcast_to(rem, (c, rem.shape[0])), rem1], -1)
        a1 = jnp.concatenate([jnp.broadcast_to(add, (c, add.shape[0])), add1], -1)
        phi1 = jnp.where(ok1[:, None], phi(tables, x, y1, r1, a1, orbs), 0.0)   # (C, n)

        def second(y1_c, r1_c, a1_c):
            rem2, add2, mel2, ok2, hop2 = conn(y1_c)
            y2 = _moved(y1_c, rem2, add2)
            r2 = jnp.concatenate([jnp.broadcast_to(r1_c, (c, r1_c.shape[0])), rem2], -1)
            a2 = jnp.concatenate([jnp.broadcast_to(a1_c, (c, a1_c.shape[0])), add2], -1)
            phi2 = jnp.where(ok2[:, None], phi(tables, x, y2, r2, a2, orbs), 0.0)
            return mel2 @ phi2, hop2.sum()                                # Hφ(y1_c), n(y1_c)

        h_phi1, n1 = jax.lax.map(lambda a: second(*a), (y1, r1, a1))      # (C, n), (C,)
        phi0 = phi1[0]                                                    # move 0 is the diagonal: y itself
        h_phi = mel1 @ phi1
        h2_phi = mel1 @ jnp.where(ok1[:, None], h_phi1, 0.0)
        v = jnp.concatenate([phi0, h_phi])
        w = jnp.concatenate([h_phi, h2_phi])
        q0_1 = jnp.sum(jnp.abs(phi1) ** 2, axis=1)
        return v, w, jnp.sum(jnp.abs(phi0) ** 2), y1, r1, a1, hop1, q0_1, n1

    at.prepare = prepare
    at.sector = sector
    return at


def _q1(hop, q0_1, n1):
    """q1(y) = Σ_{y'~y} q0(y')/n(y') over the valid moves of y."""
    return jnp.sum(jnp.where(hop, q0_1 / jnp.maximum(n1, 1), 0.0))


def make_branch_sample(ham, sector: Sector, model, create: bool, hops: str = "one"):
    """``sample(tables, x, key, orbs)`` → (G (2n, 2n), T (2n, 2n)): one sample's Σ_draws
    conj(v_a) v_b / q and conj(v_a) w_b / q for the branch block of the spin-up orbitals
    ``orbs`` (the n_orb of one k; module docstring). The connections of the N±1 sector do not
    depend on its momentum, so one compiled function serves every k (``orbs`` traced)."""
    d = 1 if create else -1
    target = Sector.from_hamiltonian(ham, n_up=sector.n_up + d, n_dn=sector.n_dn, k_total=sector.k_total)
    at = make_krylov_local(FermionHamiltonian(ham, target), model, np.asarray(sector.groups[0]), create)
    set_r = 1 if create else 0

    def contribution(v, w, q):
        keep = q > 0
        qs = jnp.where(keep, q, 1.0)
        g = jnp.where(keep, jnp.outer(v.conj(), v) / qs, 0.0)
        t = jnp.where(keep, jnp.outer(v.conj(), w) / qs, 0.0)
        return g, t

    def per_r(tables, x, key, r, orbs):
        valid = x[r] == 1 - set_r
        y0 = x.at[r].set(set_r)
        rem0 = jnp.zeros((0,), x.dtype) if create else jnp.full((1,), r, x.dtype)
        add0 = jnp.full((1,), r, x.dtype) if create else jnp.zeros((0,), x.dtype)
        v, w, q0, y1s, r1s, a1s, hop, q0_1, n1 = at(tables, x, y0, rem0, add0, orbs)
        n0 = hop.sum()
        q_y0 = q0 + _q1(hop, q0_1, n1)
        g0, t0 = contribution(v, w, q_y0)

        def one(c):
            v1, w1, q01, _, _, _, hop_b, q0_b, n_b = at(tables, x, y1s[c], r1s[c], a1s[c], orbs)
            return contribution(v1, w1, q01 + _q1(hop_b, q0_b, n_b))

        if hops == "all":
            g1, t1 = jax.lax.map(one, jnp.arange(hop.shape[0]))
            wgt = jnp.where(hop, 1.0 / jnp.maximum(n0, 1), 0.0)
            g1, t1 = jnp.tensordot(wgt, g1, 1), jnp.tensordot(wgt, t1, 1)
        else:
            c = jax.random.categorical(key, jnp.where(hop, 0.0, -jnp.inf))
            g1, t1 = one(c)
            g1, t1 = jnp.where(n0 > 0, g1, 0.0), jnp.where(n0 > 0, t1, 0.0)
        ok = valid
        return jnp.where(ok, g0 + g1, 0.0), jnp.where(ok, t0 + t1, 0.0)

    def sample(tables, x, key, orbs):
        x = x.astype(jnp.int32)
        keys = jax.random.split(key, orbs.shape[0])
        g, t = jax.vmap(partial(per_r, tables, x, orbs=orbs))(keys, orbs)
        return g.sum(0), t.sum(0)

    sample.prepare = at.prepare
    return sample


def make_ground_sample(ham, sector: Sector, model):
    """``sample(tables, x)`` → (G (2, 2), T (2, 2)) of span{Ψ, HΨ} at x ~ |Ψ|²:
    v = (1, E_loc(x)), w = (E_loc(x), (H²Ψ)(x)/Ψ(x)) — the Lanczos step of variational Monte
    Carlo, too noisy for E(N) here (module docstring); kept for tests and measurements."""
    at = make_krylov_local(FermionHamiltonian(ham, sector), model, None)

    def sample(tables, x):
        x = x.astype(jnp.int32)
        none = jnp.zeros((0,), jnp.int32)
        v, w, *_ = at(tables, x, x, none, none)
        return jnp.outer(v.conj(), v), jnp.outer(v.conj(), w)

    sample.prepare = at.prepare
    return sample


def _probe(fn, params, x, keys, orbs) -> tuple[int, float]:
    """(XLA temporaries in bytes, seconds) of one sample of a branch function compiled at
    chunk 1 (the second call timed: the first may still warm up)."""
    compiled = fn.lower(params, x, keys, orbs).compile()
    ma = compiled.memory_analysis()
    jax.block_until_ready(compiled(params, x, keys, orbs))
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params, x, keys, orbs))
    return (int(ma.temp_size_in_bytes) if ma is not None else 0), time.perf_counter() - t0


def krylov_ritz(g: np.ndarray, t: np.ndarray, n: int, s_threshold: float, rel_tol: float = 1e-10):
    """Rayleigh–Ritz in span{φ, Hφ} from the Gram matrix ``g`` and ⟨v|H|v⟩ ``t`` (2n × 2n, the
    φ block first), as :func:`nqsbench.nqs.excitations.krylov_subspace` does it on vectors: the
    φ block orthonormalized canonically with the S threshold, then the part of Hφ outside it
    with the relative tolerance. Returns (E, Z, eigenvalues of S, basis size)."""
    g = 0.5 * (g + g.conj().T)
    t = 0.5 * (t + t.conj().T)
    s, u = np.linalg.eigh(g[:n, :n])
    keep = s > s_threshold
    if not keep.any():
        return np.zeros(0), np.zeros(0), s, 0
    q1 = np.zeros((2 * n, int(keep.sum())), dtype=complex)
    q1[:n] = u[:, keep] / np.sqrt(s[keep])
    hq = np.zeros_like(q1)
    hq[n:] = q1[:n]                                       # H (Σ_p c_p φ_p) = Σ_p c_p Hφ_p
    ip = lambda a, b: a.conj().T @ g @ b                  # noqa: E731 - ⟨a|b⟩ in these coordinates
    scale = float(np.sqrt(max(np.linalg.eigvalsh(ip(hq, hq)).max(), 0.0)))
    wres = hq - q1 @ ip(q1, hq)
    wres -= q1 @ ip(q1, wres)
    gw, uw = np.linalg.eigh(ip(wres, wres))
    kept = gw > (rel_tol * max(scale, 1.0)) ** 2
    q2 = wres @ (uw[:, kept] / np.sqrt(gw[kept]))
    q2 -= q1 @ ip(q1, q2)
    basis = np.concatenate([q1, q2], axis=1)
    tb = basis.conj().T @ t @ basis
    e, c = np.linalg.eigh(0.5 * (tb + tb.conj().T))
    z = np.sum(np.abs(g[:n] @ (basis @ c)) ** 2, axis=0)
    return e, z, s, basis.shape[1]


def krylov_monte_carlo(ham, model, params, xs, weights=None, sector: Sector | None = None,
                       s_threshold: float = 1e-3, n_blocks: int | None = None, chunk_size: int = 4,
                       seed: int = 0, hops: str = "one", memory_gb: float | None = None, log=None):
    """Order-1 Krylov bands of Ψ from samples ``xs`` (n_chains, n_per_chain, 2M) of |Ψ|²
    (``weights``: importance weights of the same shape, else uniform): the estimator of the
    module docstring, E(N) = ⟨Ψ|H|Ψ⟩, jackknife error bars over blocks as the subspace
    estimator. Returns a :class:`~nqsbench.nqs.excitations.SubspaceBands` (meta: order 1 and
    ``e_state`` = ⟨Ψ|H|Ψ⟩ = ``e_ground``)."""
    from .excitations import SubspaceBands, SubspaceBranch, _jackknife, blocked_samples

    if hops not in ("one", "all"):
        raise ValueError(f"hops {hops!r}: 'one' (Monte Carlo) or 'all' (exact given x)")
    sector = sector or Sector.from_hamiltonian(ham)
    flat, n_blocks, block_sum = blocked_samples(xs, weights, n_blocks)
    flat = jnp.asarray(flat)

    from .. import config
    from . import memory

    budget = int((memory_gb or config.memory_gb()) * memory.GB)
    eloc_fn, *_ = memory.plan_local_energy(FermionHamiltonian(ham, sector), model, params, len(flat), budget)
    const = float(ham.constant)
    sums = [block_sum(np.ones(len(flat))), block_sum(np.asarray(eloc_fn(params, flat)) - const)]
    branches = []
    creates = [c for c in (True, False) if 0 <= sector.n_up + (1 if c else -1) <= sector.n_spatial]
    n_blocks_total = ham.nk * len(creates)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(flat) * 2 * ham.nk).reshape(2, ham.nk, len(flat), 2)
    samplers = {c: make_branch_sample(ham, sector, model, c, hops) for c in creates}

    def batched(smp, chunk):
        return jax.jit(lambda p, x, kk, orbs: jax.lax.map(lambda a: smp(smp.prepare(p), *a, orbs), (x, kk),
                                                          batch_size=chunk))

    # pre-flight: one sample's temporaries and time, from the first branch compiled at chunk 1
    per, seconds = _probe(batched(samplers[creates[0]], 1), params, flat[:1], keys[0, 0, :1],
                          jnp.asarray(sector.groups[0]))
    if per > memory.ELOC_SHARE * budget:
        raise MemoryBudgetError(
            f"krylov mc: one sample's two-level connection sums need {per / memory.GB:.2f} GB of temporaries, "
            f"over {memory.ELOC_SHARE:.0%} of the {budget / memory.GB:.1f} GB budget; use --method subspace "
            "or the exact estimator here, or raise the budget (NQSBENCH_MEMORY_GB)")
    chunk = max(1, min(chunk_size, int(memory.ELOC_SHARE * budget // max(per, 1))))
    if log is not None:
        log(f"krylov mc: {per / 1e6:.1f} MB of temporaries and ~{seconds:.2f} s per sample and (k, branch) "
            f"block: {memory.run_estimate(seconds, len(flat), n_blocks_total)} for {len(flat)} samples × "
            f"{n_blocks_total} blocks on this core (chunk {chunk})")
    t0 = time.monotonic()
    for ib, create in enumerate((True, False)):
        if create not in samplers:
            continue
        fn = batched(samplers[create], chunk)
        for k in range(ham.nk):
            g, t = (np.asarray(a) for a in fn(params, flat, keys[ib, k], jnp.asarray(sector.groups[k])))
            sums += [block_sum(g), block_sum(t)]
            branches.append((create, k, len(sector.groups[k])))
            if log is not None:
                log(memory.block_done("krylov mc", create, k, len(flat), time.monotonic() - t0, len(branches),
                                      n_blocks_total))

    def solve(e_mean, *mats):
        e_n = float(np.real(e_mean))
        out = []
        for i, (create, k, n_b) in enumerate(branches):
            e, z, s_eig, r = krylov_ritz(mats[2 * i], mats[2 * i + 1], n_b, s_threshold)
            out.append(SubspaceBranch(k=k, create=create, e_total=e, eps=e - e_n if create else e_n - e,
                                      weights=z, s_eigenvalues=s_eig, rank=r))
        return e_n, out

    def stat(*means):
        """E(N), then per branch the ε of the 2n weight-ordered roots (NaN-padded)."""
        e_n, brs = solve(*means)
        vals = [e_n]
        for br, (_, _, n_b) in zip(brs, branches):
            order = np.argsort(br.weights)[::-1]
            pad = np.full(2 * n_b, np.nan)
            pad[:len(order)] = br.eps[order]
            vals.extend(pad)
        return np.asarray(vals)

    total = [s.sum(0) for s in sums]
    means = [x / total[0] for x in total[1:]]
    e_n, brs = solve(*means)
    _, err = _jackknife(stat, sums, n_blocks)
    pos = 1
    electron, hole = [], []
    for br, (_, _, n_b) in zip(brs, branches):
        order = np.argsort(br.weights)[::-1]
        br.eps_error = np.empty(len(order))
        br.eps_error[order] = err[pos:pos + 2 * n_b][:len(order)]
        pos += 2 * n_b
        (electron if br.create else hole).append(br)
    return SubspaceBands(estimator="monte_carlo", s_threshold=s_threshold, e_ground=e_n,
                         electron=sorted(electron, key=lambda b: b.k), hole=sorted(hole, key=lambda b: b.k),
                         e_ground_error=float(err[0]), n_samples=len(flat), n_blocks=int(n_blocks),
                         meta={"order": 1, "e_state": e_n})
