"""The Hamiltonian as an operator on occupation vectors: local energy, diagonal, Tr H / dim.

The operator knows nothing of wave functions beyond calling ``model.ratio``, ``model.log_ratio``
or ``model.log_psi`` (:func:`make_amplitude_ratio`). For a configuration x with occupied spin-orbitals occ (N, fixed) and empty
ones emp, the connected configurations are

* singles  c†_a c_i,        i ∈ occ, a ∈ emp, same spin and same k (k_i = k_a);
* doubles  c†_a c†_b c_j c_i, i<j ∈ occ, a<b ∈ emp, spin and k_i + k_j = k_a + k_b conserved,

with matrix elements (v the spin-orbital chemist ERI, t the one-body matrix)

    ⟨x'|H|x⟩ = [t_ai + Σ_{n∈x} (v_aınn − v_anni)] · s,     s = ⟨x'|c†_a c_i|x⟩
    ⟨x'|H|x⟩ = (v_aibj − v_ajbi) · s,                       s = ⟨x'|c†_a c†_b c_j c_i|x⟩

(E_loc(x) = Σ_x' ⟨x|H|x'⟩ ψ(x')/ψ(x) uses the complex conjugates of these) and Jordan–Wigner signs from the exclusive prefix count P_l = Σ_{m<l} x_m:
single (−1)^{P_i + P_a − [i<a]}, double (−1)^{P_i+P_j+P_a+P_b − 1 − [i<a] − [j<a] − [i<b] − [j<b]}.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .hilbert import Sector

jax.config.update("jax_enable_x64", True)


class FermionHamiltonian:
    """Spin-orbital view of a :class:`nqsbench.hamiltonian.Hamiltonian`, built once per sector.

    Two-electron integrals stay in the Hamiltonian's momentum blocks (N_k³ · n_orb⁴ complex
    numbers, one copy); a spin-orbital element v_aibj is gathered from them on demand
    (:meth:`v`), so no (2M)⁴ array is ever formed (1.4 GB per copy at 2M = 96). Only the
    one-body matrix (2M)², the singles' (2M)³ table and the diagonal's (2M)² are dense."""

    def __init__(self, ham, sector: Sector):
        m = ham.n_spatial
        n = 2 * m
        self.sector = sector
        self.constant = float(ham.constant)
        self.nk = ham.nk
        self.n_orb = ham.n_orb
        self.eri_blocks = np.ascontiguousarray(ham.eri / ham.nk)      # (k1, k2, k3, p, q, r, s), 1/N_k in
        self.kconserv = np.asarray(ham.kconserv, dtype=np.int32)
        h_spatial = np.zeros((m, m), dtype=complex)                    # block diagonal in k
        for k, hk in enumerate(ham.h1):
            h_spatial[k * ham.n_orb:(k + 1) * ham.n_orb, k * ham.n_orb:(k + 1) * ham.n_orb] = hk
        t = np.kron(np.eye(2), h_spatial)                                 # spin conserved
        self.t = t                                                    # (2M, 2M)
        so = np.arange(n)
        # diagonal: E_d(x) = t_nn x_n + ½ xᵀ D x,  D_mn = v_mmnn − v_mnnm
        self.t_diag = np.real(np.diagonal(t)).copy()
        mm, nn = so[:, None], so[None, :]
        self.d_mat = np.real(self.v(mm, mm, nn, nn) - self.v(mm, nn, nn, mm)).copy()
        # singles: F_ai(x) = t_ai + Σ_n G_ain x_n,   G_ain = v_ainn − v_anni
        a, i, nn = so[:, None, None], so[None, :, None], so[None, None, :]
        self.g = self.v(a, i, nn, nn) - self.v(a, nn, nn, i)

    def v(self, a, i, b, j, eri=None, xp=np):
        """Chemist (a i | b j) over spin-orbitals (index arrays, broadcast): spin conserved on
        each of a–i and b–j, zero unless momentum is conserved. ``eri``/``xp``: the blocks as a
        JAX array and ``jax.numpy`` inside traced code."""
        eri = self.eri_blocks if eri is None else eri
        m, h = self.sector.n_spatial, self.n_orb
        kc = self.kconserv if xp is np else xp.asarray(self.kconserv)
        (sa, pa), (si, pi), (sb, pb), (sj, pj) = (divmod(z, m) for z in (a, i, b, j))
        (ka, oa), (ki, oi), (kb, ob), (kj, oj) = (divmod(z, h) for z in (pa, pi, pb, pj))
        allowed = (sa == si) & (sb == sj) & (kc[ka, ki, kb] == kj)
        return xp.where(allowed, eri[ka, ki, kb, oa, oi, ob, oj], 0.0)

    @property
    def n_spin_orbitals(self) -> int:
        return self.t.shape[0]

    # ------------------------------------------------------------------ Tr H / dim
    def e_inf(self) -> float:
        """Tr H / dim over the whole (N_up, N_down) sector (all K), closed form (supercell)."""
        m = self.n_spin_orbitals // 2
        nu, nd = self.sector.n_up, self.sector.n_dn
        spin = self.sector.so_spin
        nsig = np.where(spin == 0, nu, nd)
        occ1 = nsig / m                                                  # ⟨x_n⟩
        same = spin[:, None] == spin[None, :]
        npair = np.array([nu * (nu - 1), nd * (nd - 1)]) / max(m * (m - 1), 1)
        occ2 = np.where(same, npair[spin][:, None], nu * nd / m**2)   # ⟨x_m x_n⟩, m ≠ n
        np.fill_diagonal(occ2, 0.0)   # D_nn = 0 anyway
        return float(self.t_diag @ occ1 + 0.5 * (self.d_mat * occ2).sum() + self.constant)


def _double_tables(sec: Sector) -> np.ndarray:
    """(C, 4) positions (p, q) in the ascending occupied list and (r, s) in the ascending empty
    list for every spin-conserving double (i<j → a<b): up-up, down-down and up-down pairs
    (the first N_up occupied / M − N_up empty spin-orbitals are the spin-up ones)."""
    m = sec.n_spatial
    nu, nd = sec.n_up, sec.n_dn
    eu, ed = m - nu, m - nd
    occ_u = [(p, q) for p in range(nu) for q in range(p + 1, nu)]
    occ_d = [(nu + p, nu + q) for p in range(nd) for q in range(p + 1, nd)]
    occ_x = [(p, nu + q) for p in range(nu) for q in range(nd)]
    emp_u = [(r, s) for r in range(eu) for s in range(r + 1, eu)]
    emp_d = [(eu + r, eu + s) for r in range(ed) for s in range(r + 1, ed)]
    emp_x = [(r, eu + s) for r in range(eu) for s in range(ed)]
    rows = [o + e for occ, emp in ((occ_u, emp_u), (occ_d, emp_d), (occ_x, emp_x))
            for o in occ for e in emp]
    return np.array(rows, dtype=np.int32).reshape(-1, 4)


def n_connections(n_up: int, n_dn: int, n_spatial: int, n_orb: int) -> tuple[int, int]:
    """(singles, doubles) entries per configuration of the grouped connection lists (padding
    included): what a local energy costs, in ratios to evaluate."""
    eu, ed = n_spatial - n_up, n_spatial - n_dn
    singles = (n_up + n_dn) * n_orb
    pairs = n_up * (n_up - 1) // 2 * eu + n_dn * (n_dn - 1) // 2 * ed + n_up * n_dn * eu
    return singles, pairs * n_orb


def _grouped_double_tables(sec: Sector) -> np.ndarray:
    """(C, 4) rows (p, q, r, t): occupied positions p<q (as in :func:`_double_tables`), an empty
    position r for a (spin up for up-up and up-down pairs, down for down-down), and t, the member
    of the (spin, k) group of b fixed by momentum conservation."""
    m = sec.n_spatial
    nu, nd = sec.n_up, sec.n_dn
    eu, ed = m - nu, m - nd
    n_orb = sec.n_orb
    rows = []
    for p in range(nu):                                   # up-up
        for q in range(p + 1, nu):
            rows += [(p, q, r, t) for r in range(eu) for t in range(n_orb)]
    for p in range(nd):                                   # down-down
        for q in range(p + 1, nd):
            rows += [(nu + p, nu + q, eu + r, t) for r in range(ed) for t in range(n_orb)]
    for p in range(nu):                                   # up-down (a up, b down)
        for q in range(nd):
            rows += [(p, nu + q, r, t) for r in range(eu) for t in range(n_orb)]
    return np.array(rows, dtype=np.int32).reshape(-1, 4)


def make_connections(fham: FermionHamiltonian, grouped: bool = True):
    """Returns ``conn(x)`` for one configuration x (2M,) int →
    (e_diag, rem_s (Cs,1), add_s (Cs,1), mel_s (Cs,), ok_s (Cs,), rem_d (Cd,2), add_d (Cd,2),
    mel_d (Cd,), ok_d (Cd,)): the diagonal ⟨x|H|x⟩ and the fixed-size, masked lists of singles and
    doubles x' with ⟨x|H|x'⟩ (sign included). Entries with ok = False are padding.

    ``grouped`` (default): doubles are generated by momentum: for each occupied pair (i, j) and
    empty a, b runs over the n_orb spin-orbitals of the (spin, k) group with
    k_b = k_i + k_j − k_a, so momentum-forbidden doubles are never formed (the padding left is
    b occupied, and b < a for equal spins). ``grouped=False``: every spin-allowed
    (occupied pair, empty pair), masked by momentum (the worst case)."""
    sec = fham.sector
    n = fham.n_spin_orbitals
    n_el = sec.n_electrons
    n_emp = n - n_el
    so_k = jnp.asarray(sec.so_k)
    so_s = jnp.asarray(sec.so_spin)
    kadd = jnp.asarray(sec.kadd)
    t = jnp.asarray(fham.t)
    g = jnp.asarray(fham.g)
    eri = jnp.asarray(fham.eri_blocks)
    t_diag = jnp.asarray(fham.t_diag)
    d_mat = jnp.asarray(fham.d_mat)
    const = fham.constant
    tab = jnp.asarray(_double_tables(sec))
    gtab = jnp.asarray(_grouped_double_tables(sec))
    groups = jnp.asarray(sec.groups)
    ksub = jnp.asarray(sec.ksub)
    nk = sec.nk
    n_orb = sec.n_orb

    def vas(a, b, i, j):                                                  # v_aibj − v_ajbi
        return fham.v(a, i, b, j, eri, jnp) - fham.v(a, j, b, i, eri, jnp)

    def conn(x):
        x = x.astype(jnp.int32)
        xf = x.astype(jnp.float64)
        occ = jnp.nonzero(x, size=n_el)[0]
        emp = jnp.nonzero(1 - x, size=n_emp)[0]
        pref = jnp.cumsum(x) - x                                          # exclusive prefix count
        e_diag = t_diag @ xf + 0.5 * xf @ d_mat @ xf + const
        # singles c†_a c_i: grouped — a runs over the n_orb members of i's (spin, k) group
        # (ok when a is empty); masked — every (occupied, empty) pair, ok when spin and k match
        if grouped:
            i = jnp.repeat(occ, n_orb)
            a = groups[so_s[i] * nk + so_k[i], jnp.tile(jnp.arange(n_orb), n_el)]
            ok_s = x[a] == 0
        else:
            i = jnp.repeat(occ, n_emp)
            a = jnp.tile(emp, n_el)
            ok_s = (so_k[i] == so_k[a]) & (so_s[i] == so_s[a])
        f = t[a, i] + jnp.einsum("cn,n->c", g[a, i], xf.astype(g.dtype))
        par_s = pref[i] + pref[a] - (i < a)
        mel_s = jnp.where(ok_s, jnp.conj(f) * (1 - 2 * (par_s % 2)), 0.0)
        # doubles c†_a c†_b c_j c_i
        if grouped:
            i2, j2 = occ[gtab[:, 0]], occ[gtab[:, 1]]                    # i < j
            a2 = emp[gtab[:, 2]]
            kb = ksub[kadd[so_k[i2], so_k[j2]], so_k[a2]]
            sb = so_s[i2] + so_s[j2] - so_s[a2]
            b2 = groups[sb * nk + kb, gtab[:, 3]]
            ok_d = (x[b2] == 0) & (a2 < b2)
        else:
            i2, j2 = occ[tab[:, 0]], occ[tab[:, 1]]                      # i < j
            a2, b2 = emp[tab[:, 2]], emp[tab[:, 3]]                      # a < b, spin conserved
            ok_d = kadd[so_k[i2], so_k[j2]] == kadd[so_k[a2], so_k[b2]]
        par_d = (pref[i2] + pref[j2] + pref[a2] + pref[b2] - 1
                 - (i2 < a2) - (j2 < a2) - (i2 < b2) - (j2 < b2))
        mel_d = jnp.where(ok_d, jnp.conj(vas(a2, b2, i2, j2)) * (1 - 2 * (par_d % 2)), 0.0)
        return (e_diag, i[:, None], a[:, None], mel_s, ok_s,
                jnp.stack([i2, j2], -1), jnp.stack([a2, b2], -1), mel_d, ok_d)

    return conn


def make_amplitude_ratio(model, product: bool | None = None):
    """``(prepare, ratio)`` for amplitude ratios ψ(x')/ψ(x) of connected configurations:
    ``tables = prepare(params)`` once per parameter set, then ``ratio(tables, x, rem, add, ok)``
    → (C,) for x' = x − Σ rem + Σ add (rows of unit indices; a unit both removed and added
    cancels, so chained excitations such as c_q H c†_p can be written as flips of x), 0 where
    not ``ok``. Fastest first: ``model.ratio`` (RBM: products of precomputed exp(±W) columns, no
    transcendental per connection; ``product``, default when the model has it),
    ``model.log_ratio`` (RBM: θ' = θ + Σ ΔW columns, log cosh per connection), or ``model.log_psi``
    on every x'."""
    from .models.base import LogRatio, ProductRatio

    if product is None:
        product = isinstance(model, ProductRatio)
    if product:
        def ratio(tables, x, rem, add, ok):
            return jnp.where(ok, model.ratio(tables, x, rem, add), 0.0)
        return model.ratio_tables, ratio

    if isinstance(model, LogRatio):
        log_ratio = model.log_ratio
    else:
        def log_ratio(params, x, rem, add):
            units = jnp.arange(x.shape[-1])
            hot = lambda i: (i[..., None] == units).sum(-2).astype(x.dtype)       # noqa: E731
            return model.log_psi(params, x[None] - hot(rem) + hot(add)) - model.log_psi(params, x)

    def ratio(params, x, rem, add, ok):
        lr = log_ratio(params, x, rem, add)
        return jnp.where(ok, jnp.exp(jnp.where(ok, lr, 0.0)), 0.0)
    return (lambda params: params), ratio


COMPACT_MIN = 1024
"""Padded doubles lists shorter than this are evaluated as they are (compaction buys little)."""


def double_capacity(fham: FermionHamiltonian, n_probe: int = 64, margin: float = 1.1, seed: int = 0) -> int | None:
    """How many of the padded doubles entries to evaluate per configuration: the largest number
    of real (momentum- and Pauli-allowed) doubles over the HF configuration and ``n_probe``
    random configurations of the sector, times ``margin``; None when the padded list is short
    (< :data:`COMPACT_MIN`) or the capacity would not be smaller. Measured (64 random
    configurations): graphene 2×2×1 23.6–24.9k of 63.5k entries are real, LiH 2×2×2 47.8–48.5k
    of 95.2k, H chain N_k = 8 712–764 of 1920, polyacetylene 1×1×2 7.0–7.2k of 19k. A
    configuration with more falls back to the whole list (:func:`make_local_energy`), so the
    capacity changes the speed, never the numbers."""
    sec = fham.sector
    _, n_doubles = n_connections(sec.n_up, sec.n_dn, sec.n_spatial, sec.n_orb)
    if n_doubles < COMPACT_MIN:
        return None
    rng = np.random.default_rng(seed)
    hf = np.asarray(sec.hf_config)
    m = sec.n_spatial
    xs = [hf]
    for _ in range(200 * n_probe):             # random occupations of each spin, kept when in the sector
        if len(xs) > n_probe:
            break
        x = np.concatenate([rng.permutation(hf[:m]), rng.permutation(hf[m:])])
        if sec.contains(x):
            xs.append(x)
    ok = jax.jit(jax.vmap(lambda x: make_connections(fham)(x)[8]))(jnp.asarray(np.array(xs), dtype=jnp.int32))
    cap = int(np.ceil(margin * int(np.asarray(ok).sum(1).max())))
    return cap if cap < n_doubles else None


def make_local_energy(fham: FermionHamiltonian, model, chunk_size: int = 64, grouped: bool = True,
                      product_ratios: bool | None = None, capacity: int | str | None = "auto"):
    """Returns ``eloc(params, xs)`` → (B,) complex local energies (supercell, constant included),
    jitted, for configurations xs (B, 2M) in ``fham.sector``. ``chunk_size`` configurations are
    processed at a time (memory ~ chunk * n_doubles * n_hidden complex numbers). Amplitude
    ratios: :func:`make_amplitude_ratio` (``product_ratios`` picks the RBM's product form).

    ``capacity``: the real doubles (60 % of the padded list is padding: b occupied, or b < a
    for equal spins) are compacted into this many entries before any ratio is computed, and a
    configuration with more takes the whole list ("auto": :func:`double_capacity`; None: never
    compact). Same numbers either way, up to the order of the sum."""
    conn = make_connections(fham, grouped=grouped)
    prepare, ratio = make_amplitude_ratio(model, product_ratios)
    if capacity == "auto":
        capacity = double_capacity(fham) if grouped else None

    def terms(tables, x, rem, add, mel, ok):
        return jnp.sum(mel * ratio(tables, x, rem, add, ok))      # mel and ratio are 0 on padding

    def compact_terms(tables, x, rem, add, mel, ok):
        idx = jnp.nonzero(ok, size=capacity, fill_value=0)[0]
        real = jnp.arange(capacity) < ok.sum()
        return terms(tables, x, rem[idx], add[idx], jnp.where(real, mel[idx], 0.0), real)

    def single(tables, x):
        """(E_loc, whether the real doubles overflow the capacity)"""
        x = x.astype(jnp.int32)
        e_diag, rem_s, add_s, mel_s, ok_s, rem_d, add_d, mel_d, ok_d = conn(x)
        args_d = (tables, x, rem_d, add_d, mel_d, ok_d)
        term_d = terms(*args_d) if capacity is None else compact_terms(*args_d)
        over = jnp.asarray(False) if capacity is None else ok_d.sum() > capacity
        return e_diag + terms(tables, x, rem_s, add_s, mel_s, ok_s) + term_d, over

    def overflow(tables, x):
        """The real doubles past the capacity, from the whole padded list (rare: the connections
        are generated again rather than kept for every configuration of the batch)."""
        x = x.astype(jnp.int32)
        _, _, _, _, _, rem_d, add_d, mel_d, ok_d = conn(x)
        beyond = ok_d & (jnp.cumsum(ok_d) > capacity)
        return terms(tables, x, rem_d, add_d, jnp.where(beyond, mel_d, 0.0), beyond)

    @jax.jit
    def eloc(params, xs):
        xs = jnp.asarray(xs).astype(jnp.int32)
        tables = prepare(params)
        e, over = jax.lax.map(partial(single, tables), xs, batch_size=chunk_size)
        if capacity is None:
            return e
        # a cond per batch, not per configuration: inside the map it slowed every configuration
        # 3× on graphene 2×2×1 (XLA CPU), even when the branch was never taken
        def add_overflow():
            extra = jax.lax.map(lambda xo: jax.lax.cond(xo[1], partial(overflow, tables),
                                                          lambda x: jnp.zeros((), jnp.complex128), xo[0]),
                                (xs, over))
            return e + extra
        return jax.lax.cond(over.any(), add_overflow, lambda: e)

    eloc.capacity = capacity
    return eloc


def sector_matrix_coo(fham: FermionHamiltonian, configs: np.ndarray, chunk_size: int = 256):
    """(rows, cols, vals) of ⟨x_r|H|x_c⟩ over ``configs`` (all of one sector), diagonal included,
    built with :func:`make_connections` (for exact-enumeration runs: E_loc = (Hψ)_r / ψ_r)."""
    conn = jax.jit(jax.vmap(make_connections(fham)))
    n = configs.shape[1]
    pw = 1 << np.arange(n, dtype=np.int64)
    codes = configs.astype(np.int64) @ pw
    order = np.argsort(codes)
    sorted_codes = codes[order]
    rows, cols, vals = [np.arange(len(configs))], [np.arange(len(configs))], []
    diag = []
    for s0 in range(0, len(configs), chunk_size):
        xb = configs[s0:s0 + chunk_size].astype(np.int64)
        out = [np.asarray(o) for o in conn(jnp.asarray(xb, dtype=jnp.int32))]
        e_diag, rem_s, add_s, mel_s, ok_s, rem_d, add_d, mel_d, ok_d = out
        diag.append(e_diag)
        for rem, add, mel, ok in ((rem_s, add_s, mel_s, ok_s), (rem_d, add_d, mel_d, ok_d)):
            b, c = np.nonzero(ok & (mel != 0))
            dcode = (pw[add[b, c]].sum(-1) - pw[rem[b, c]].sum(-1))
            new = codes[s0 + b] + dcode
            pos = np.minimum(np.searchsorted(sorted_codes, new), len(codes) - 1)
            if not np.all(sorted_codes[pos] == new):
                raise AssertionError("a connected configuration is outside the sector")
            rows.append(s0 + b); cols.append(order[pos]); vals.append(mel[b, c])
    vals = [np.concatenate(diag).astype(complex)] + vals
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def v_score(energy: float, variance: float, n_electrons: int, e_inf: float) -> float:
    """V = N · Var(E) / (E − E∞)² (Wu et al., Science 386, 296, 2024); supercell E, Var, E∞."""
    return float(n_electrons * variance / (energy - e_inf) ** 2)
