"""The VMC driver: ``NQS(ham, ...).run(n_steps)``, results as attributes (PySCF method style).

The loop itself does no I/O; progress bars, checkpoints, early stopping and divergence checks
are callbacks (:mod:`nqsbench.nqs.callbacks`). Randomness: parameters from
``PRNGKey(seed)``; the sampler key of step t is ``fold_in(PRNGKey(seed) ⊕ 1, t)``, so a run
resumed from a checkpoint reproduces an uninterrupted run exactly.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .callbacks import UNREADABLE, CheckpointError, DivergenceGuard, load_checkpoint, load_latest_checkpoint
from .. import config
from . import memory
from .hilbert import Sector
from .models import RBM, count_parameters
from .models.base import resolve_init
from .operator import FermionHamiltonian, make_local_energy, sector_matrix_coo, v_score
from .optimizer import SR, jacobian, sr_solve_flops
from .samplers import ExactSampler, MetropolisSampler
from .stats import Stats, effective_sample_size, importance_statistics, pool, statistics

jax.config.update("jax_enable_x64", True)

TINY = 1e-300          # a guard against 0/0 where a weight sum can be empty

# wall_s: seconds of optimization from step 0 to the end of the step, over every process of the run
# (a resumed run adds to its checkpoint's; NaN where a checkpoint of older code did not keep it)
TRACE_KEYS = ("energy", "error", "variance", "energy_imag", "acceptance", "tau_corr", "R_hat",
              "update_norm", "lr", "beta", "effective_samples", "wall_s")


class NQS:
    """Variational Monte Carlo ground state of ``ham`` in one (N_up, N_down, K) sector.

    Parameters
    ----------
    ham : :class:`nqsbench.hamiltonian.Hamiltonian`.
    model : a model (default ``RBM(2M, alpha)``).
    sampler : 'exact' (full enumeration), 'mcmc' (Metropolis chains), or a sampler object.
    optimizer : an :class:`SR` (default lr 0.25, diag_shift 1e-3).
    seed : integer seed (parameters and sampling).
    init : 'hf' (visible bias ±model.bias towards the HF determinant), 'random', or 'auto'
        (random up to :data:`~.models.base.SMALL_SYSTEM_SPIN_ORBITALS` spin-orbitals, else hf).
    n_samples, n_chains : Markov-chain settings when ``sampler='mcmc'``.
    eval_batches : sampler calls pooled for the final estimate (Markov chains; default 8).
    chunk_size : configurations per local-energy batch (default: the most that 32 MB holds, or a
        quarter of ``memory_gb`` if smaller: :func:`nqsbench.nqs.memory.choose_chunk`).
    memory_gb : memory budget of the run (default :func:`nqsbench.config.memory_gb`). The SR
        step is compiled ahead of time and its XLA memory analysis, on top of what the process
        holds, is checked against the budget and the machine before anything is allocated
        (:class:`~nqsbench.errors.MemoryBudgetError` otherwise); ``memory_plan`` keeps it.
    exact_matrix : with the exact sampler, build the sector matrix once from the same
        connections and get E_loc = (Hψ)/ψ by a sparse product (much faster; same numbers).
    sector : a :class:`Sector` (default: N_up = N_down = HF, K = HF momentum).
    deterministic : Markov chains: a set D of this many configurations (the most probable ones
        seen: after each step, the largest |ψ|² among D and the step's samples, distinct) is
        summed exactly each step and the samples that fall in D are replaced by that sum
        (Rao–Blackwell: the same expectation, without the variance a few heavy configurations
        carry; ``benchmarks/sr_noise.py --deterministic``). 0 (the default): plain sampling.
    spin_penalty : λ (Ha) > 0 optimizes H + λ S² (:meth:`Hamiltonian.with_spin_penalty`), whose
        lowest state is the lowest singlet once 2λ exceeds the singlet's distance from the states
        of higher spin below it; ``energy``, the trace and ``stats`` are then of H + λ S² (the
        ``nqs`` method evaluates ⟨H⟩ separately), ``ham`` stays H.

    After :meth:`run`: ``energy`` (Ha per cell, raw exxdiv=None H), ``energy_error``,
    ``energy_ewald`` (per cell, ewald convention), ``e_tot`` (supercell), ``variance``
    (supercell Var E_loc), ``e_inf`` (Tr H/dim, supercell), ``v_score``, ``stats``
    (:class:`Stats`, supercell), ``trace`` (dict of per-step numpy arrays, energies per cell),
    ``params``, ``step``, ``stopped_early``.
    """

    def __init__(self, ham, model=None, sampler="exact", optimizer=None, seed: int = 0,
                 init: str = "hf", alpha: float = 2.0, n_samples: int = 1024, n_chains: int = 32,
                 chunk_size: int | None = None, sector: Sector | None = None, exact_matrix: bool = True,
                 eval_batches: int = 8, memory_gb: float | None = None, spin_penalty: float = 0.0,
                 deterministic: int = 0):
        self.ham = ham
        self.sector = sector or Sector.from_hamiltonian(ham)
        self.spin_penalty = float(spin_penalty)
        self.model = model or RBM(self.sector.n_spin_orbitals, alpha=alpha)
        if isinstance(sampler, str):
            if sampler == "exact":
                sampler = ExactSampler(self.sector)
            elif sampler == "mcmc":
                sampler = MetropolisSampler(self.sector, n_chains=n_chains, n_samples=n_samples)
            else:
                raise ValueError(f"sampler must be 'exact', 'mcmc' or a sampler, not {sampler!r}")
        self.sampler = sampler
        self.deterministic = int(deterministic)
        if self.deterministic and not isinstance(sampler, MetropolisSampler):
            raise ValueError("deterministic applies to Markov chains (sampler 'mcmc') only")
        if self.deterministic < 0:
            raise ValueError(f"deterministic {deterministic}: the number of exactly summed configurations, ≥ 0")
        self.optimizer = optimizer or SR(learning_rate=0.25, diag_shift=1e-3)
        self.seed = int(seed)
        self.init = resolve_init(init, self.sector.n_spin_orbitals)
        self.exact_matrix = exact_matrix
        self.eval_batches = int(eval_batches)
        self.memory_gb = float(memory_gb or config.memory_gb())
        # what is optimized (and what energy, trace and the final estimate are of): H, or H + λ S²
        # (``spin_penalty`` λ > 0, Ha; ``ham`` stays the plain H that parameters and checkpoints belong to)
        target = (ham.with_spin_penalty(self.spin_penalty, self.sector.n_up, self.sector.n_dn)
                  if self.spin_penalty else ham)
        self.fham = FermionHamiltonian(target, self.sector)
        self.reset()
        self._plan(chunk_size)

    def _plan(self, chunk_size):
        """Chunk the local energy, compile the step ahead of time and check its memory."""
        budget = int(self.memory_gb * memory.GB)
        uses_eloc = not (isinstance(self.sampler, ExactSampler) and self.exact_matrix)
        n_samples = self.sampler.n_samples
        per, seconds = 0, None
        if uses_eloc:
            self._eloc, chunk_size, per, seconds = memory.plan_local_energy(
                self.fham, self.model, self.params, n_samples, budget, chunk_size)
        else:
            chunk_size = chunk_size or 64
            self._eloc = make_local_energy(self.fham, self.model, chunk_size=chunk_size, capacity=None)
        self.chunk_size = int(chunk_size)
        self._build()
        lowered = self._step.lower(self.params, self.opt_state, self.sampler_state,
                                   jax.random.fold_in(self._sample_key, 0), 1.0)
        compiled = lowered.compile()
        # the SR solve: beside the local energies of Markov chains, and most of an exact-sampling
        # step once the parameters are many (graphene Γ NNBF: 4 900 configurations × 2 576)
        flops = sr_solve_flops(getattr(self.optimizer, "mode", "auto"), n_samples + self.deterministic,
                               self.n_parameters)
        solve = flops / memory.complex_gemm_rate()
        self.memory_plan = memory.MemoryPlan(
            budget=budget, process=memory.rss_bytes(), process_peak=memory.peak_rss_bytes(),
            step=memory.compiled_bytes(compiled),
            chunk_size=self.chunk_size if uses_eloc else 0, eloc_per_config=per, n_samples=n_samples,
            n_parameters=self.n_parameters, available=memory.available_bytes(),
            seconds_per_config=seconds, solve_seconds=solve, device_limit=memory.accelerator_bytes(),
            n_deterministic=self.deterministic).check()
        self._step = compiled

    def _sample_mesh(self):
        """A one-axis mesh over ``jax.devices()`` when there are several and the samples of a
        step split evenly across them (Markov chains; the exact tier is small), else None."""
        devices = jax.devices()
        if len(devices) < 2 or isinstance(self.sampler, ExactSampler):
            return None
        if (self.sampler.n_per_chain * self.sampler.n_chains) % len(devices):
            return None
        return jax.sharding.Mesh(np.array(devices), ("samples",))

    # ------------------------------------------------------------------ setup
    def _build(self):
        model, sampler, opt, eloc_fn = self.model, self.sampler, self.optimizer, self._eloc
        n = self.sector.n_spin_orbitals

        exact_matrix = isinstance(sampler, ExactSampler) and self.exact_matrix
        if exact_matrix:
            # all connected configurations lie in the enumerated sector: E_loc = (Hψ)_x / ψ_x
            rows, cols, vals = (jnp.asarray(a) for a in sector_matrix_coo(self.fham, sampler.configs))
            dim = len(sampler.configs)

        jac_fn = partial(jacobian, model)
        eloc_all, jac_all = eloc_fn, jac_fn     # unsplit: for the deterministic set's rows
        mesh = self._sample_mesh()
        if mesh is not None:
            # samples split across devices: each computes its share of the local energies and
            # of the Jacobian rows (per-sample work, so the numbers do not depend on the split)
            spec = jax.sharding.PartitionSpec("samples")
            # check_vma=False: with it, the gradient with respect to the replicated parameters
            # inside the Jacobian is summed over devices (every row becomes the sum of shards)
            split = partial(jax.shard_map, mesh=mesh, in_specs=(jax.sharding.PartitionSpec(), spec),
                            out_specs=spec, check_vma=False)
            eloc_fn, jac_fn = split(eloc_fn), split(jac_fn)

        def sample_and_eloc(params, sstate, key):
            xs, w, sstate, info = sampler.sample(model, params, sstate, key)
            nc, npc = xs.shape[:2]
            flat = xs.reshape(nc * npc, n)
            wf = w.reshape(-1) if w is not None else jnp.full(nc * npc, 1.0 / (nc * npc))
            if exact_matrix:
                lp = model.log_psi(params, flat)
                el = jax.ops.segment_sum(vals * jnp.exp(lp[cols] - lp[rows]), rows, num_segments=dim)
            else:
                el = eloc_fn(params, flat)
            return flat, wf, el.reshape(nc, npc), (w is not None), sstate, info

        def step(params, opt_state, sstate, key, lr_scale):
            flat, wf, el, _, sstate, info = sample_and_eloc(params, sstate, key)
            o = jac_fn(params, flat)
            params, opt_state, dnorm = opt.update(o, el.reshape(-1), wf, params, opt_state, lr_scale)
            return params, opt_state, sstate, el, wf, info, dnorm

        def semistochastic_step(params, opt_state, sstate, key, lr_scale):
            det_x, det_ok = whole(sstate["det_x"]), whole(sstate["det_ok"])
            chains = {k: v for k, v in sstate.items() if not k.startswith("det_")}
            flat, _, el, _, chains, info = sample_and_eloc(params, chains, key)
            beta = info["beta"]
            lp, lp_d = jnp.real(model.log_psi(params, flat)), jnp.real(model.log_psi(params, det_x))
            el_d = eloc_all(params, det_x)
            words_d, words_x = packed(det_x), packed(flat)
            in_d = (jnp.all(words_x[:, None, :] == words_d[None, :, :], -1) & det_ok[None, :]).any(1)
            n_d = in_d.sum()
            # raw weights, one scale for all: a sample's |ψ|^(2(1-β)) (its importance weight), and
            # for each member d of D, n_D·|ψ_d|²/Σ_D|ψ|^(2β) (the samples in D, each replaced by
            # the q-conditional mean over D of its weight times its value)
            ref = jnp.maximum(lp.max(), jnp.where(det_ok, lp_d, -jnp.inf).max())
            u = jnp.exp(2.0 * (1.0 - beta) * (lp - ref))
            q_d = jnp.where(det_ok, jnp.exp(2.0 * beta * (lp_d - ref)), 0.0).sum()
            v = jnp.where(det_ok, n_d * jnp.exp(2.0 * (lp_d - ref)), 0.0) / jnp.maximum(q_d, TINY)
            u_out = jnp.where(in_d, 0.0, u)
            total = u_out.sum() + v.sum()
            o = jnp.concatenate([jac_fn(params, flat), jac_all(params, det_x)])
            el_all, w_all = jnp.concatenate([el.reshape(-1), el_d]), jnp.concatenate([u_out, v]) / total
            params, opt_state, dnorm = opt.update(o, el_all, w_all, params, opt_state, lr_scale)
            # Var H itself (the per-sample values below have less: they are means over D)
            info = {**info, "variance": jnp.sum(w_all * jnp.abs(el_all - jnp.sum(w_all * el_all)) ** 2)}
            # the statistics per sample (chains, jackknife): a sample in D carries D's mean
            e_d = jnp.sum(v * el_d) / jnp.maximum(v.sum(), TINY)
            el_s = jnp.where(in_d, e_d, el.reshape(-1)).reshape(el.shape)
            wf_s = jnp.where(in_d, v.sum() / jnp.maximum(n_d, 1), u) / total
            # the next D: the most probable distinct configurations among D and these samples
            cand = jnp.concatenate([det_x, flat])
            ok = jnp.concatenate([det_ok, jnp.ones(flat.shape[0], bool)])
            words = jnp.concatenate([words_d, words_x])
            order = jnp.lexsort((~ok, *[words[:, w] for w in range(words.shape[1])]))
            sw = words[order]
            dup = jnp.concatenate([jnp.zeros(1, bool), jnp.all(sw[1:] == sw[:-1], -1)])
            score = jnp.where(ok[order] & ~dup, jnp.real(model.log_psi(params, cand[order])), -jnp.inf)
            best, idx = jax.lax.top_k(score, n_det)
            keep = best > -jnp.inf
            det_x = jnp.where(keep[:, None], cand[order][idx], placeholder[None, :])
            return params, opt_state, {**chains, "det_x": whole(det_x), "det_ok": whole(keep)}, el_s, wf_s, info, dnorm

        n_det = self.deterministic
        if n_det:
            # configurations as integers (62 spin-orbitals per int64 word), to match and sort them
            bits = jnp.asarray([1 << (j % 62) for j in range(n)], dtype=jnp.int64)
            word = np.arange(n) // 62

            def packed(x):
                xb = x.astype(jnp.int64) * bits
                return jnp.stack([jnp.sum(jnp.where(word == w, xb, 0), -1) for w in range(word[-1] + 1)], -1)

            placeholder = jnp.asarray(self.sector.start_config())   # empty slots: finite ψ, weight 0
            # D whole on every device (split samples or not), so the step's input and output agree
            replicated = None if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

            def whole(a):
                return a if replicated is None else jax.lax.with_sharding_constraint(a, replicated)
        self._step = jax.jit(semistochastic_step if n_det else step)
        self._exact = isinstance(sampler, ExactSampler)
        # Markov chains of |ψ|^(2β), β < 1: importance weights (statistics, effective samples)
        self._weighted = not self._exact and (getattr(sampler, "beta", 1.0) != 1.0
                                              or getattr(sampler, "adaptive", False) or bool(n_det))

    def reset(self):
        """Fresh parameters, optimizer and sampler state (step 0)."""
        key = jax.random.PRNGKey(self.seed)
        ref = self.sector.hf_config if self.init == "hf" else None
        self.params = self.model.init(jax.random.split(key)[0], reference=ref)
        self._fresh_optimizer_and_chains()
        self._sample_key = jax.random.fold_in(key, 1)
        self.step = 0
        self.rephased = 0.0          # > 0 after resuming a checkpoint of another build (load_state_arrays)
        self.effective_samples = math.nan   # of the last step: 1/Σw² under importance weights
        self.lr_scale = 1.0           # reduce-on-plateau factor (nqs.convergence.AutoSteps)
        self.trace = {k: [] for k in TRACE_KEYS}
        self.stopped_early = False
        self.stats = None
        return self

    def start_from(self, params) -> "NQS":
        """Start (at step 0) from given parameters instead of ``model.init``: a pytree of this
        model's structure, shapes and dtypes (ValueError naming the first mismatch otherwise).
        The optimizer and the chains start afresh, as for any other start."""
        if self.step:
            raise ValueError(f"start_from at step {self.step}: only a run that has not started can")
        mine = jax.tree_util.tree_flatten_with_path(self.params)[0]
        theirs, tdef = jax.tree_util.tree_flatten_with_path(params)
        if tdef != jax.tree_util.tree_structure(self.params):
            raise ValueError(f"parameters of another model: {sorted(jax.tree_util.keystr(k) for k, _ in theirs)} "
                             f"where this {type(self.model).__name__} has "
                             f"{sorted(jax.tree_util.keystr(k) for k, _ in mine)}")
        for (k, a), (_, b) in zip(mine, theirs):
            if a.shape != b.shape or a.dtype != b.dtype:
                raise ValueError(f"parameter {jax.tree_util.keystr(k)}: {b.dtype}{list(b.shape)} given, this "
                                 f"{type(self.model).__name__} has {a.dtype}{list(a.shape)} (another width?)")
        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        self._fresh_optimizer_and_chains()
        return self

    def _fresh_optimizer_and_chains(self) -> None:
        """Optimizer state and chains for ``self.params`` (the seed's second key, as at any start);
        with ``deterministic``, an empty set D (it fills from the first step's samples)."""
        self.opt_state = self.optimizer.init(self.params)
        self.sampler_state = self.sampler.init_state(self.model, self.params,
                                                     jax.random.split(jax.random.PRNGKey(self.seed))[1])
        if self.deterministic:
            self.sampler_state = {**self.sampler_state,
                                  "det_x": jnp.tile(jnp.asarray(self.sector.start_config()), (self.deterministic, 1)),
                                  "det_ok": jnp.zeros(self.deterministic, bool)}

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step: the optimizer's (schedule) times ``lr_scale``."""
        lr = self.optimizer.learning_rate
        return float(lr(self.step) if callable(lr) else lr) * self.lr_scale

    @property
    def n_parameters(self) -> int:
        return count_parameters(self.params)

    def dump_flags(self) -> dict:
        """Settings that define the run (for logs and records)."""
        opt = self.optimizer
        lr = opt.learning_rate
        lr = lr if isinstance(lr, (int, float)) else lr.to_dict() if hasattr(lr, "to_dict") else repr(lr)
        s = self.sampler
        samp = ({"kind": "exact", "n_samples": s.n_samples} if self._exact else
                {"kind": "mcmc", "n_chains": s.n_chains, "n_samples": s.n_per_chain * s.n_chains,
                 "sweep_size": s._sweep, "n_discard_per_chain": s.n_discard_per_chain,
                 "p_single": s.p_single, "beta": getattr(s, "beta", 1.0),
                 **({"target_ess": s.target_ess} if getattr(s, "target_ess", None) is not None else {}),
                 **({"deterministic": self.deterministic} if self.deterministic else {}),
                 "n_eval_samples": self.eval_batches * s.n_per_chain * s.n_chains})
        m = self.model
        model = {"kind": type(m).__name__, **(m.describe() if hasattr(m, "describe") else {}),
                 "n_parameters": self.n_parameters}
        return {"model": model, "sampler": samp,
                "optimizer": {"kind": "SR", "learning_rate": lr, "diag_shift": opt.diag_shift,
                              "mode": opt.mode, "max_norm": opt.max_norm},
                "seed": self.seed, "init": self.init,
                **({"spin_penalty": self.spin_penalty} if self.spin_penalty else {}),
                "sector": {"n_up": self.sector.n_up, "n_dn": self.sector.n_dn,
                           "k_total": self.sector.k_total}}

    # ------------------------------------------------------------------ loop
    def run(self, n_steps: int, callbacks=None, resume=None) -> "NQS":
        """Optimize until ``step == n_steps`` (total, counting resumed steps).

        ``callbacks``: list (default: [DivergenceGuard()]). ``resume``: a checkpoint directory
        (or file); the newest ``ckpt_*.npz`` is loaded when present."""
        if callbacks is None:
            callbacks = [DivergenceGuard()]
        if resume is not None:
            p = Path(resume)
            if p.is_file():
                try:
                    data = load_checkpoint(p)
                except UNREADABLE as exc:
                    raise CheckpointError(f"{p}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
            else:
                found = load_latest_checkpoint(p)
                data = found[1] if found else None
            if data is not None:
                self.load_state_arrays(data)
        for cb in callbacks:
            if hasattr(cb, "on_run_start"):
                cb.on_run_start(self, n_steps)
        nk = self.ham.nk
        walls = self.trace["wall_s"]
        wall0, t0 = (walls[-1] if walls else 0.0), time.monotonic()
        try:
            while self.step < n_steps:
                t = self.step
                key = jax.random.fold_in(self._sample_key, t)
                lr_now = self.learning_rate
                params, opt_state, sstate, el, wf, info, dnorm = self._step(
                    self.params, self.opt_state, self.sampler_state, key, self.lr_scale)
                st = self._stats(el, wf, info)
                self.effective_samples = effective_sample_size(wf) if self._weighted else float(el.size)
                log = {"step": t, "energy": float(np.real(st.mean)) / nk, "error": st.error_of_mean / nk,
                       "variance": st.variance, "energy_imag": float(np.imag(st.mean)) / nk,
                       "acceptance": float(info["acceptance"]), "tau_corr": st.tau_corr,
                       "R_hat": st.R_hat, "update_norm": float(dnorm), "lr": lr_now,
                       "beta": float(info.get("beta", math.nan)), "effective_samples": self.effective_samples,
                       "wall_s": wall0 + (time.monotonic() - t0)}
                for k in TRACE_KEYS:
                    self.trace[k].append(log[k])
                self.params, self.opt_state, self.sampler_state = params, opt_state, sstate
                self.step = t + 1
                stop = False
                for cb in callbacks:
                    stop = bool(cb(self, t, log)) or stop
                if stop:
                    self.stopped_early = True
                    break
            self.finalize()
            for cb in callbacks:          # judge the final estimate (e.g. a collapsed Markov chain)
                if hasattr(cb, "on_result"):
                    cb.on_result(self)
        except BaseException:
            for cb in callbacks:          # e.g. close a progress bar; checkpoints do not save here
                if hasattr(cb, "on_run_abort"):
                    cb.on_run_abort(self)
            raise
        for cb in callbacks:
            if hasattr(cb, "on_run_end"):
                cb.on_run_end(self)
        return self

    def _stats(self, el, wf, info=None) -> Stats:
        el = np.asarray(el)
        if self._exact:
            return statistics(el, np.asarray(wf).reshape(el.shape))
        if not self._weighted:
            return statistics(el)
        st = importance_statistics(el, np.asarray(wf).reshape(el.shape))
        if info is not None and "variance" in info:     # semistochastic: Var H from the step itself
            st = dataclasses.replace(st, variance=float(info["variance"]))
        return st

    def evaluate(self, n_batches: int = 1) -> Stats:
        """Stats (supercell) of the local energy of the current parameters (no update): with
        Markov chains, ``n_batches`` successive sampler calls (the chains run on between them)
        pooled by :func:`stats.pool`; exact enumeration needs one."""
        key = jax.random.fold_in(jax.random.fold_in(self._sample_key, 2**31 - 1), self.step)
        sstate, batches = self.sampler_state, []
        for b in range(1 if self._exact else max(int(n_batches), 1)):
            # reuse the compiled step (one compilation per driver); its update is discarded
            _, _, sstate, el, wf, info, _ = self._step(self.params, self.opt_state, sstate,
                                                       jax.random.fold_in(key, b), 1.0)
            batches.append(self._stats(el, wf, info))
        return pool(batches)

    def finalize(self):
        """Set the result attributes from a fresh estimate with the final parameters
        (``eval_batches`` sampler calls: the final energy's error bar is that of
        eval_batches × n_samples samples, not of one optimization step's)."""
        nk = self.ham.nk
        self.stats = st = self.evaluate(self.eval_batches)
        self.e_tot = float(np.real(st.mean))
        self.energy = self.e_tot / nk
        self.energy_error = st.error_of_mean / nk
        self.variance = st.variance
        n_el = self.sector.n_electrons
        self.energy_ewald = (self.e_tot + self.ham.ewald_shift(n_el)) / nk
        self.e_inf = self.fham.e_inf()
        self.v_score = v_score(self.e_tot, self.variance, n_el, self.e_inf)
        return self

    @property
    def trace_arrays(self) -> dict:
        return {k: np.asarray(v, dtype=float) for k, v in self.trace.items()}

    def result_dict(self) -> dict:
        """Plain-JSON summary (for a result record)."""
        return {"method": "nqs", "settings": self.dump_flags(),
                "energy_per_cell": self.energy_ewald, "energy_per_cell_raw": self.energy,
                "energy_error": self.energy_error, "variance": self.variance,
                "e_inf": self.e_inf, "v_score": self.v_score, "madelung": float(self.ham.madelung),
                "n_steps": self.step, "stopped_early": self.stopped_early, "seed": self.seed,
                "hamiltonian_hash": self.ham.hash}

    # ------------------------------------------------------------------ checkpoint state
    def _meta(self) -> dict:
        return {"format": 1, "hamiltonian_hash": self.ham.hash, "seed": self.seed,
                "n_parameters": self.n_parameters, "flags": json.loads(json.dumps(self.dump_flags(), default=str))}

    def state_arrays(self) -> dict:
        """Everything needed to resume, as a flat dict of numpy arrays (npz-ready)."""
        out = {"meta": np.array(json.dumps(self._meta())), "step": np.array(self.step),
               "lr_scale": np.array(self.lr_scale)}
        for name, tree in (("params", self.params), ("opt", self.opt_state), ("sampler", self.sampler_state)):
            for i, leaf in enumerate(jax.tree_util.tree_leaves(tree)):
                out[f"{name}/{i}"] = np.asarray(leaf)
        for k, v in self.trace.items():
            out[f"trace/{k}"] = np.asarray(v, dtype=float)
        if getattr(self.ham, "mo_coeff", None) is not None:
            from .results import orbital_gauge

            out["gauge/mo_coeff"] = np.asarray(orbital_gauge(self.ham))   # so another build can resume it
        return out

    def _resume_plan(self, d: dict):
        """(why not, θ) for checkpoint ``d``: why it cannot resume this run (another seed or
        parameter count, or another Hamiltonian that is not these integrals in other orbital
        phases), else None and the phases θ that carry a checkpoint of another build to this one
        (``results.carry_phases``; None for the same build)."""
        from .results import carry_phases

        meta, mine = d["meta"], self._meta()
        for k in ("seed", "n_parameters"):
            if meta.get(k) != mine[k]:
                return f"checkpoint {k} = {meta.get(k)!r} does not match this run ({mine[k]!r})", None
        if meta.get("hamiltonian_hash") == mine["hamiltonian_hash"]:
            return None, None
        try:
            return None, carry_phases(d.get("gauge/mo_coeff"), self.ham, self.model)
        except ValueError as exc:
            return (f"checkpoint hamiltonian_hash = {meta.get('hamiltonian_hash')!r} does not match this run "
                    f"({mine['hamiltonian_hash']!r}) and its parameters cannot be carried over: {exc}"), None

    def checkpoint_mismatch(self, d: dict) -> str | None:
        """Why checkpoint ``d`` cannot resume this run, or None (:meth:`_resume_plan`)."""
        return self._resume_plan(d)[0]

    def load_state_arrays(self, d: dict):
        """Resume from checkpoint arrays ``d``; one written on another build of the same integrals
        is carried to this build's orbital phases (``model.rephase``; ``self.rephased``: the
        largest |θ|, 0 when the build is the same). ValueError when ``d`` is another run's."""
        why, theta = self._resume_plan(d)
        if why is not None:
            raise ValueError(f"{why}; use a fresh checkpoint directory")
        for name in ("params", "opt", "sampler"):
            tree = {"params": self.params, "opt": self.opt_state, "sampler": self.sampler_state}[name]
            leaves, treedef = jax.tree_util.tree_flatten(tree)
            new = [jnp.asarray(d[f"{name}/{i}"], dtype=jnp.asarray(l).dtype) for i, l in enumerate(leaves)]
            tree = jax.tree_util.tree_unflatten(treedef, new)
            if name == "params":
                self.params = tree
            elif name == "opt":
                self.opt_state = tree
            else:
                self.sampler_state = tree
        self.rephased = 0.0
        if theta is not None:
            self.params = self.model.rephase(self.params, theta)
            self.rephased = float(np.abs(theta).max())
        self.step = int(d["step"])
        self.lr_scale = float(d["lr_scale"]) if "lr_scale" in d else 1.0
        self.trace = {k: list(d[f"trace/{k}"]) if f"trace/{k}" in d else [float("nan")] * self.step
                      for k in TRACE_KEYS}
        return self
