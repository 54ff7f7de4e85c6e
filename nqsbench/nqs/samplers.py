"""Samplers over a fixed (N_up, N_down, K) sector: immutable objects with explicit state and keys.

``sampler.init_state(model, params, key) -> state`` (a pytree of arrays) and
``sampler.sample(model, params, state, key) -> (xs, weights, state, info)`` with xs of shape
(n_chains, n_per_chain, 2M) — the leading chain axis is the one to shard across devices —
``weights`` (n_chains, n_per_chain) summing to 1 for exact enumeration, or None for Markov
chains (uniform), and ``info`` a dict of scalars (acceptance; Markov chains: the β they sampled).
Both are pure JAX and jittable; an adaptive β lives in the state, so it is checkpointed with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import SectorTooLargeError
from .hilbert import Sector

jax.config.update("jax_enable_x64", True)


# Exact sampling evaluates the model and the local energy on every configuration of the sector at
# every step (one core: ~0.8 s per NNBF step over the H chain N_k = 4's 1 236 configurations, ~3 s
# per RBM step over graphene Γ's 4 900), so 50 000 (~30 s per step) is the most a run of hundreds
# of steps affords; the H chain N_k = 6 sector (142 376) takes Markov chains (`--sampler auto`).
EXACT_MAX_DIM = 50_000


@dataclass(frozen=True, eq=False)
class ExactSampler:
    """Every configuration of the sector with weight |ψ(x)|² / Σ|ψ|² (exact expectation values)."""

    sector: Sector
    configs: np.ndarray = field(default=None, repr=False)
    max_dim: int = EXACT_MAX_DIM

    def __post_init__(self):
        if self.configs is None:
            object.__setattr__(self, "configs", self.sector.enumerate())
        if len(self.configs) > self.max_dim:
            raise SectorTooLargeError(
                f"exact sampling over {len(self.configs)} configurations exceeds max_dim={self.max_dim}; "
                "use sampler='mcmc' (metropolis chains) or raise max_dim")

    @property
    def n_samples(self) -> int:
        return len(self.configs)

    def init_state(self, model, params, key):
        return {}

    def sample(self, model, params, state, key):
        xs = jnp.asarray(self.configs, dtype=jnp.int32)
        lp = model.log_psi(params, xs)
        logw = 2.0 * jnp.real(lp)
        w = jnp.exp(logw - jnp.max(logw))
        w = w / w.sum()
        return xs[None], w[None], state, {"acceptance": jnp.asarray(1.0)}


@dataclass(frozen=True, eq=False)
class MetropolisSampler:
    """Parallel Metropolis chains with a symmetric, N_up/N_down/K-conserving proposal.

    With probability ``p_single`` a single excitation: an occupied spin-orbital i uniformly
    (1/N), a target a uniformly within i's (spin, k) group (1/n_orb); otherwise a double: an
    occupied pair {i, j} uniformly, a uniformly among all 2M spin-orbitals, b uniformly in the
    (spin, k) group fixed by spin and momentum conservation. Proposals that hit an occupied
    target or break spin are rejected (the chain stays). Every (spin, k) group has n_orb members,
    so q(x→x') = q(x'→x) and the acceptance is min(1, |ψ(x')/ψ(x)|²).

    ``n_samples`` per call in total (rounded up to a multiple of ``n_chains``), ``sweep_size``
    Metropolis steps between stored samples (thinning; default 2M), ``n_discard_per_chain``
    samples thrown away at the start of every call (burn-in; chains persist across calls).

    ``beta`` < 1 samples |ψ|^{2β} instead of |ψ|² (a flatter distribution: for states peaked on
    one determinant, as near-HF molecular and solid states are, the chains then visit the
    correlating determinants far more often) and returns self-normalised importance weights
    w ∝ |ψ|^{2(1−β)} that sum to 1; with ``beta = 1`` the weights are None (uniform).

    ``target_ess`` (a fraction) makes β adaptive (it is then part of the state): ``beta`` is its
    start and its floor, and after every call β moves towards 1 when Kish's effective sample
    size 1/Σw² of the call fell below ``target_ess`` · n_samples (1 − β halves), else towards the
    floor (1 − β grows by ``BETA_STEP``): as flat as the weights allow. A fixed β = 0.5 leaves
    10–93 effective samples of 1024 at the hf start of polyacetylene, graphene 2×2×1 and LiH
    2×2×2, and SR diverges there; β = 1 freezes the chains once the state is near HF (README).
    """

    sector: Sector
    n_chains: int = 32
    n_samples: int = 1024
    sweep_size: int | None = None
    n_discard_per_chain: int = 8
    p_single: float = 0.5
    beta: float = 1.0
    target_ess: float | None = None

    BETA_STEP = 0.01        # per call towards the floor while the weights are even enough
    BETA_BACKOFF = 0.5      # factor on 1 − β when they are not

    def __post_init__(self):
        if not 0.0 < self.beta <= 1.0:
            raise ValueError(f"beta {self.beta}: must be in (0, 1]")
        if self.target_ess is not None and not 0.0 < self.target_ess < 1.0:
            raise ValueError(f"target_ess {self.target_ess}: a fraction of the samples, in (0, 1)")

    @property
    def adaptive(self) -> bool:
        return self.target_ess is not None

    def next_beta(self, beta, w):
        """The β of the next call after a call at ``beta`` with normalised weights ``w``."""
        frac = 1.0 / jnp.sum(w ** 2) / w.size
        u = 1.0 - beta
        u = jnp.where(frac < self.target_ess, u * self.BETA_BACKOFF, u + self.BETA_STEP)
        return 1.0 - jnp.clip(u, 0.0, 1.0 - self.beta)

    @property
    def n_per_chain(self) -> int:
        return -(-self.n_samples // self.n_chains)

    @property
    def _sweep(self) -> int:
        return self.sweep_size or self.sector.n_spin_orbitals

    def init_state(self, model, params, key):
        x0 = self.sector.start_config()
        state = {"x": jnp.broadcast_to(jnp.asarray(x0), (self.n_chains, len(x0)))}
        if self.adaptive:
            state["beta"] = jnp.asarray(self.beta, dtype=jnp.float64)
        return state

    def _propose(self, key, x):
        sec = self.sector
        n_el = sec.n_electrons
        nk, n_orb, n2 = sec.nk, sec.n_orb, sec.n_spin_orbitals
        groups = jnp.asarray(sec.groups)
        so_k = jnp.asarray(sec.so_k)
        so_s = jnp.asarray(sec.so_spin)
        kadd, ksub = jnp.asarray(sec.kadd), jnp.asarray(sec.ksub)
        iu = jnp.asarray(np.array(np.triu_indices(n_el, 1)).T.astype(np.int32))
        ks = jax.random.split(key, 6)
        occ = jnp.nonzero(x, size=n_el)[0]
        # single
        i = occ[jax.random.randint(ks[0], (), 0, n_el)]
        a = groups[so_s[i] * nk + so_k[i], jax.random.randint(ks[1], (), 0, n_orb)]
        ok_s = x[a] == 0
        x_s = x.at[i].set(0).at[a].set(1)
        # double
        pr = iu[jax.random.randint(ks[2], (), 0, iu.shape[0])]
        i2, j2 = occ[pr[0]], occ[pr[1]]
        a2 = jax.random.randint(ks[3], (), 0, n2)
        kb = ksub[kadd[so_k[i2], so_k[j2]], so_k[a2]]
        sb = so_s[i2] + so_s[j2] - so_s[a2]
        ok_spin = (sb >= 0) & (sb <= 1)
        b2 = groups[jnp.clip(sb, 0, 1) * nk + kb, jax.random.randint(ks[4], (), 0, n_orb)]
        ok_d = ok_spin & (x[a2] == 0) & (x[b2] == 0) & (a2 != b2)
        x_d = x.at[i2].set(0).at[j2].set(0).at[a2].set(1).at[b2].set(1)
        single = jax.random.uniform(ks[5]) < self.p_single
        xn = jnp.where(single, x_s, x_d)
        ok = jnp.where(single, ok_s, ok_d)
        return jnp.where(ok, xn, x), ok

    def sample(self, model, params, state, key):
        n_keep, n_disc, sweep = self.n_per_chain, self.n_discard_per_chain, self._sweep
        beta = state["beta"] if self.adaptive else self.beta

        def mh_step(carry, key):
            x, lp, acc = carry
            k1, k2 = jax.random.split(key)
            xn, ok = self._propose(k1, x)
            lpn = model.log_psi(params, xn)
            accept = ok & (jnp.log(jax.random.uniform(k2)) < 2.0 * beta * jnp.real(lpn - lp))
            x = jnp.where(accept, xn, x)
            lp = jnp.where(accept, lpn, lp)
            return (x, lp, acc + accept), None

        def one_sample(carry, key):
            carry, _ = jax.lax.scan(mh_step, carry, jax.random.split(key, sweep))
            return carry, (carry[0], carry[1])

        def chain(x0, key):
            lp0 = model.log_psi(params, x0)
            (x, lp, acc), (xs, lps) = jax.lax.scan(one_sample, (x0, lp0, jnp.asarray(0)),
                                                   jax.random.split(key, n_disc + n_keep))
            return xs[n_disc:], lps[n_disc:], x, acc / ((n_disc + n_keep) * sweep)

        keys = jax.random.split(key, self.n_chains)
        xs, lps, x_last, acc = jax.vmap(chain)(state["x"], keys)
        state = {"x": x_last}
        if self.beta == 1.0 and not self.adaptive:
            w = None
        else:
            logw = 2.0 * (1.0 - beta) * jnp.real(lps)
            w = jnp.exp(logw - jnp.max(logw))
            w = w / w.sum()
            if self.adaptive:
                state["beta"] = self.next_beta(beta, w)
        return xs, w, state, {"acceptance": acc.mean(), "beta": jnp.asarray(beta, dtype=jnp.float64)}
