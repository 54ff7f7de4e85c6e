"""Side by side with NetKet on one Hamiltonian: same RBM parameters, same samples, and the
energies and throughputs of both codes (``nqsbench compare netket SYSTEM``).

What is compared (one workload, :func:`nqsbench.nqs.workloads.make_workload`: an HF-biased
random RBM and a batch of our Metropolis samples of the HF (N↑, N↓, K) sector):

* exact ⟨H⟩ of the same parameters over the whole sector (when it has at most ``exact_max``
  determinants): ours from our log ψ and local energies, NetKet's from its ``nk.models.RBM``
  and its own local-energy kernel on the same determinants, both as Σ|ψ|² E_loc / Σ|ψ|²;
* local energies per sample on the batch (max |ΔE_loc|) and their throughput (jitted, best of
  ``repeat``; NetKet timed at each chunk size in ``netket_chunks``, best kept; all candidates
  take turns within each repetition, so load changes on a shared machine hit them alike);
* one SR step on the same ``sr_samples`` samples, without sampling: local energies, force,
  Jacobian, S + ε and a Cholesky solve of the N_p × N_p system on both sides (ours:
  ``sr_direction(mode='sr')`` under one ``jax.jit``; NetKet: ``MCState.expect_and_grad`` and
  ``QGTJacobianDense(holomorphic=True).solve(cholesky)``, what its VMC driver runs with an SR
  preconditioner). NetKet's gradient of a holomorphic ansatz is 2F (∂E/∂Re θ + i ∂E/∂Im θ), so
  its update is twice ours; the agreement printed is |δ_ours − δ_netket / 2|.

Ratios are ours ÷ NetKet throughputs (> 1: ours is faster), measured in the same process.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class NetketComparison:
    """Results of :func:`compare_netket` (energies of the supercell unless named per cell)."""

    label: str
    nk: int
    n_spin_orbitals: int
    n_up: int
    n_dn: int
    k_total: int
    n_parameters: int
    batch: int
    sr_samples: int
    netket_version: str = ""
    jax_version: str = ""
    netket_build_s: float = float("nan")     # our integrals → NetKet's fast operator
    netket_max_conn: int = 0
    sector_dim: int | None = None
    exact_ours: float | None = None          # ⟨H⟩ over the sector, supercell, raw H
    exact_netket: float | None = None
    exact_note: str = ""
    eloc_max_diff: float = float("nan")      # max_x |E_loc^ours(x) − E_loc^netket(x)|
    eloc_scale: float = float("nan")         # max_x |E_loc(x)| (for a relative reading)
    eloc_s_ours: float = float("nan")        # seconds per batch, best of repeat
    eloc_s_netket: float = float("nan")
    chunk: int = 0                           # our local-energy chunk (planned unless given)
    netket_chunk: int | None = None          # NetKet's fastest chunk size (None: whole batch)
    netket_chunk_s: dict = field(default_factory=dict)
    sr_s_ours: float | None = None           # seconds per SR step (no sampling), best of repeat
    sr_s_netket: float | None = None
    sr_max_diff: float | None = None         # max |δ_ours − δ_netket/2|
    sr_scale: float | None = None            # max |δ_ours|

    @property
    def eloc_rate_ours(self) -> float:
        return self.batch / self.eloc_s_ours

    @property
    def eloc_rate_netket(self) -> float:
        return self.batch / self.eloc_s_netket

    @property
    def eloc_ratio(self) -> float:
        """Our local-energy throughput ÷ NetKet's."""
        return self.eloc_s_netket / self.eloc_s_ours

    @property
    def sr_ratio(self) -> float | None:
        """Our SR steps per second ÷ NetKet's (= NetKet's step time ÷ ours)."""
        if self.sr_s_ours is None or self.sr_s_netket is None:
            return None
        return self.sr_s_netket / self.sr_s_ours


def _best_interleaved(fns: dict, repeat: int) -> dict:
    """Best wall time of each ``fn()`` (which blocks until its result is ready), after one
    warm-up call each. The candidates take turns within every repetition, so a change of load
    on a shared machine hits all of them alike instead of biasing whichever ran during it."""
    for fn in fns.values():    # compile and warm up
        fn()
    best = dict.fromkeys(fns, np.inf)
    for _ in range(repeat):
        for key, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t)
    return best


def _exact_expectation(log_psi: np.ndarray, eloc: np.ndarray) -> float:
    """Σ|ψ|² E_loc / Σ|ψ|² over a whole sector (= ψ†Hψ/ψ†ψ, H conserving the sector)."""
    w = np.exp(2.0 * (log_psi.real - log_psi.real.max()))
    return float(np.real(np.sum(w * eloc) / np.sum(w)))


def compare_netket(ham, *, label: str = "", alpha: float = 2.0, batch: int = 512,
                   sr_samples: int = 1024, chunk: int | None = None, netket_chunks=(64, 256), repeat: int = 3,
                   seed: int = 0, diag_shift: float = 1e-3, exact_max: int = 20_000, sr: bool = True,
                   echo=None) -> NetketComparison:
    """Run the comparison on ``ham`` (see the module doc). ``netket_chunks``: NetKet chunk sizes
    to time (0 or None: the whole batch at once); ``chunk``: ours (default: the chunk a run plans,
    :func:`nqsbench.nqs.memory.plan_local_energy`); ``echo``: a callable for progress lines."""
    from .netket import require_netket

    nk = require_netket()
    import jax
    import jax.numpy as jnp

    from .. import config
    from ..nqs import memory
    from ..nqs.operator import FermionHamiltonian
    from ..nqs.optimizer import force, jacobian, sr_direction
    from ..nqs.workloads import make_workload
    from .netket import (from_netket_tree, netket_hilbert, netket_local_energy, netket_log_psi,
                         netket_operator, netket_rbm, to_netket_params, to_netket_samples)

    say = echo or (lambda line: None)
    w = make_workload(ham, alpha=alpha, batch=max(batch, sr_samples), seed=seed)
    sec, model, params = w.sector, w.model, w.params
    xs_all = w.samples
    res = NetketComparison(label=label, nk=ham.nk, n_spin_orbitals=sec.n_spin_orbitals,
                           n_up=sec.n_up, n_dn=sec.n_dn, k_total=sec.k_total,
                           n_parameters=model.n_parameters(), batch=batch, sr_samples=sr_samples,
                           netket_version=nk.__version__, jax_version=jax.__version__)

    t0 = time.perf_counter()
    op = netket_operator(ham)
    res.netket_build_s = time.perf_counter() - t0
    res.netket_max_conn = int(op.max_conn_size)
    say(f"NetKet operator from our integrals: {res.netket_build_s:.1f} s, "
        f"at most {res.netket_max_conn} connections per determinant")
    nk_model, nk_params = netket_rbm(model), to_netket_params(params)

    fham = FermionHamiltonian(ham, sec)
    eloc, chunk, _, _ = memory.plan_local_energy(fham, model, params, batch, int(config.memory_gb() * memory.GB),
                                                 chunk_size=chunk)
    res.chunk = chunk

    # ---- exact expectation of the same parameters over the whole sector
    m = sec.n_spatial
    approx_dim = math.comb(m, sec.n_up) * math.comb(m, sec.n_dn) // sec.nk    # ~ per K, before enumerating
    configs = sec.enumerate() if approx_dim <= 4 * exact_max else None
    res.sector_dim = len(configs) if configs is not None else approx_dim
    if configs is not None and res.sector_dim <= exact_max:
        lp_o = np.asarray(model.log_psi(params, configs))
        e_o = np.asarray(eloc(params, configs))
        cnk = to_netket_samples(configs)
        lp_n = np.asarray(netket_log_psi(nk_model)(nk_params, cnk))
        e_n = np.asarray(netket_local_energy(op, nk_model, chunk_size=256)(nk_params, cnk))
        res.exact_ours = _exact_expectation(lp_o, e_o)
        res.exact_netket = _exact_expectation(lp_n, e_n)
    else:
        about = "" if configs is not None else "about "
        res.exact_note = f"sector has {about}{res.sector_dim:,} determinants > exact_max {exact_max:,}"
    del configs

    # ---- local energies on the same batch
    xs = xs_all[:batch]
    xnk = to_netket_samples(xs)
    nk_fns = {c or 0: netket_local_energy(op, nk_model, chunk_size=c or None) for c in netket_chunks}
    fns = {"ours": lambda: eloc(params, xs).block_until_ready()}
    fns.update({c: (lambda f=f: f(nk_params, xnk).block_until_ready()) for c, f in nk_fns.items()})
    t = _best_interleaved(fns, repeat)
    res.eloc_s_ours = t.pop("ours")
    say(f"ours: {batch / res.eloc_s_ours:.1f} local energies/s (chunk {chunk})")
    for c, tc in t.items():
        say(f"netket chunk {c or 'all'}: {batch / tc:.1f} local energies/s")
    res.netket_chunk_s = t
    best_c = min(t, key=t.get)
    res.eloc_s_netket, res.netket_chunk = t[best_c], best_c or None
    e_ours = np.asarray(eloc(params, xs))
    e_nk = np.asarray(nk_fns[best_c](nk_params, xnk))
    res.eloc_max_diff = float(np.abs(e_ours - e_nk).max())
    res.eloc_scale = float(np.abs(e_ours).max())

    if not sr:
        return res
    # ---- one SR step on the same samples, no sampling
    xs_sr = xs_all[:sr_samples]
    xsr_nk = to_netket_samples(xs_sr)

    @jax.jit
    def ours_step(p, x):
        el = eloc(p, x)
        o = jacobian(model, p, x)
        wts = jnp.full(x.shape[0], 1.0 / x.shape[0])
        return force(o, el, wts), sr_direction(o, el, wts, diag_shift, mode="sr")

    _, delta = ours_step(params, xs_sr)

    n_chains = 32 if sr_samples % 32 == 0 else 1
    sampler = nk.sampler.MetropolisLocal(netket_hilbert(ham), n_chains=n_chains)  # never run
    vs = nk.vqs.MCState(sampler, nk_model, n_samples=sr_samples, variables={"params": nk_params},
                        chunk_size=res.netket_chunk)
    # Feed our samples: MCState caches them in _samples until reset()/sample(), and every
    # estimate below reads that cache (no public setter exists in NetKet 3.23).
    vs._samples = xsr_nk.reshape(n_chains, -1, xsr_nk.shape[-1])
    solver = nk.optimizer.solver.cholesky

    def netket_step():
        _, grad = vs.expect_and_grad(op, use_covariance=True)
        qgt = nk.optimizer.qgt.QGTJacobianDense(vs, holomorphic=True, diag_shift=diag_shift)
        dp, _ = qgt.solve(solver, grad)
        return jax.block_until_ready(dp)

    t = _best_interleaved({"ours": lambda: jax.block_until_ready(ours_step(params, xs_sr)),
                           "netket": netket_step}, repeat)
    res.sr_s_ours, res.sr_s_netket = t["ours"], t["netket"]
    d_nk = from_netket_tree(netket_step())
    d_ours = {k: np.asarray(v) for k, v in _unravel(params, delta).items()}
    res.sr_max_diff = float(max(np.abs(d_ours[k] - 0.5 * d_nk[k]).max() for k in d_ours))
    res.sr_scale = float(max(np.abs(v).max() for v in d_ours.values()))
    say(f"SR step ({sr_samples} samples): ours {res.sr_s_ours:.3f} s, netket {res.sr_s_netket:.3f} s")
    return res


def _unravel(params, flat):
    from jax.flatten_util import ravel_pytree

    return ravel_pytree(params)[1](flat)


def table_rows(r: NetketComparison) -> list[tuple[str, str, str, str]]:
    """(quantity, ours, netket, ours/netket) rows for printing."""
    rows = []
    if r.exact_ours is not None:
        d = abs(r.exact_ours - r.exact_netket)
        rows.append(("exact ⟨H⟩ of the same RBM (Ha/cell, raw)", f"{r.exact_ours / r.nk:.12f}",
                     f"{r.exact_netket / r.nk:.12f}", f"|Δ| {d:.1e} Ha (supercell)"))
    else:
        rows.append(("exact ⟨H⟩ of the same RBM", "skipped", "skipped", r.exact_note))
    rows.append((f"local energies / s (batch {r.batch})", f"{r.eloc_rate_ours:.1f}",
                 f"{r.eloc_rate_netket:.1f}", f"{r.eloc_ratio:.2f}"))
    if r.sr_ratio is not None:
        rows.append((f"SR steps / s ({r.sr_samples} samples, no sampling)", f"{1 / r.sr_s_ours:.3f}",
                     f"{1 / r.sr_s_netket:.3f}", f"{r.sr_ratio:.2f}"))
    return rows
