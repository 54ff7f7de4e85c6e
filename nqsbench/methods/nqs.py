"""The NQS ground state as a method: the one place a run is orchestrated (Hamiltonian → driver →
checkpoints and callbacks → record, trace and parameters), for ``nqsbench run``, suites and the
public API alike.

Side files beside the record ``<stem>.json``: ``<stem>.trace.csv`` (one row per step),
``<stem>.params.npz`` (final parameters, tied to the Hamiltonian hash) and ``<stem>.ckpt/``
(checkpoints, every ``ctx.checkpoint_every`` seconds, every ``ctx.checkpoint_steps`` steps and at
the end). The :class:`~nqsbench.nqs.DivergenceGuard` stops a run that turns NaN, rises far above
its best energy, or whose Markov chains collapse; nothing is written then.
"""
from __future__ import annotations

import logging
import math

from ..errors import NqsbenchError
from ..records import (Estimate, ModelSettings, NQSSettings, OptimizerSettings, ResultRecord,
                       SamplerSettings, trace_path, write_trace_csv)
from .base import Method, RunContext
from .registry import register

log = logging.getLogger(__name__)

DEFAULT_STEPS = {"exact": 200, "mcmc": 400}


class CheckpointMismatchError(NqsbenchError):
    """``resume=True`` with a checkpoint of another run."""


def nqs_settings(sampler: str = "exact", alpha: float = 2.0, steps: int | None = None, seed: int = 0,
                 init: str = "hf", lr: float | None = None, lr_final: float | None = None,
                 max_norm: float | None = None, diag_shift: float | None = None,
                 samples: int | None = None, chains: int | None = None,
                 beta: float | None = None, model: str = "rbm") -> NQSSettings:
    """Settings of an NQS run with the per-sampler defaults filled in (None = default;
    :mod:`nqsbench.nqs.defaults`). Raises pydantic's ValidationError on bad values."""
    from ..nqs.defaults import DEFAULTS, resolve_settings

    if sampler not in DEFAULTS:
        raise ValueError(f"sampler {sampler!r}: choose one of {', '.join(DEFAULTS)}")
    r = resolve_settings(sampler, lr=lr, lr_final=lr_final, max_norm=max_norm, diag_shift=diag_shift,
                         n_samples=samples, n_chains=chains, beta=beta)
    smp = (SamplerSettings(kind="mcmc", n_samples=r["n_samples"], n_chains=r["n_chains"], beta=r["beta"])
           if sampler == "mcmc" else SamplerSettings(kind="exact"))
    return NQSSettings(model=ModelSettings(kind=model, alpha=alpha), sampler=smp,
                       optimizer=OptimizerSettings(lr=r["lr"], lr_final=r["lr_final"], max_norm=r["max_norm"],
                                                   diag_shift=r["diag_shift"]),
                       steps=DEFAULT_STEPS[sampler] if steps is None else steps, seed=seed, init=init)


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def make_driver(ham, s: NQSSettings):
    from ..nqs.defaults import make_driver as _make

    o, smp = s.optimizer, s.sampler
    return _make(ham, sampler=smp.kind, alpha=s.model.alpha, seed=s.seed, lr=o.lr, lr_final=o.lr_final,
                 max_norm=o.max_norm, diag_shift=o.diag_shift, n_steps=s.steps, n_samples=smp.n_samples,
                 n_chains=smp.n_chains, beta=smp.beta, init=s.init)


def _resume_from(driver, ckpt_dir, resume) -> object:
    """What to resume from (a checkpoint folder or file, or None), clearing checkpoints that are
    not this run's. ``resume=True``: the folder (the driver loads its newest readable checkpoint
    and refuses one of another run); "auto": the newest readable checkpoint when it belongs to
    this very run; False: none."""
    from ..nqs import CheckpointError, load_latest_checkpoint

    if ckpt_dir is None:
        return None
    if resume is True:
        return ckpt_dir
    if resume == "auto":
        try:
            found = load_latest_checkpoint(ckpt_dir)
        except CheckpointError as exc:       # every checkpoint cut short by a kill: start afresh
            log.info("%s", exc)
            found = None
        if found is not None:
            meta, mine = found[1]["meta"], driver._meta()
            if all(meta.get(k) == mine[k] for k in ("hamiltonian_hash", "seed", "n_parameters", "flags")):
                return found[0]
    for p in ckpt_dir.glob("ckpt_*.npz"):   # a fresh run: old checkpoints are stale
        p.unlink()
    return None


@register
class NQSMethod(Method):
    name = "nqs"
    Settings = NQSSettings
    kind = "nqs"
    record_model = ResultRecord
    summary = "NQS ground state (complex RBM + stochastic reconfiguration)"

    def default_settings(self) -> NQSSettings:
        return nqs_settings()

    def record_name(self, s: NQSSettings, label: str | None = None) -> str:
        return f"nqs-{s.model.kind}-{s.sampler.kind}-s{s.seed}" + (f"-{label}" if label else "")

    def run(self, geom, ham, s: NQSSettings, ctx: RunContext) -> ResultRecord:
        from ..nqs import Checkpoint, DivergenceGuard, ProgressBar
        from ..nqs.results import params_path, save_params

        driver = make_driver(ham, s)
        ckpt_dir = ctx.path.with_name(ctx.path.stem + ".ckpt") if ctx.path is not None else None
        resume = _resume_from(driver, ckpt_dir, ctx.resume)
        callbacks = [DivergenceGuard()]
        if ckpt_dir is not None:
            callbacks.append(Checkpoint(ckpt_dir, every_seconds=ctx.checkpoint_every,
                                        every_steps=ctx.checkpoint_steps or None))
        if ctx.progress:
            callbacks.insert(0, ProgressBar(f"{geom.spec.id} {s.sampler.kind}"))
        if ctx.on_step is not None:
            callbacks.append(lambda driver, step, log: ctx.on_step(step + 1, s.steps) or False)
        try:
            driver.run(s.steps, callbacks=callbacks, resume=resume)
        except ValueError as exc:        # a checkpoint that does not belong to this run
            raise CheckpointMismatchError(f"--resume from {ckpt_dir}: {exc}") from None
        record = self.record(driver, geom, s, trace_file=trace_path(ctx.path).name if ctx.path else None)
        if ctx.path is not None:
            save_params(driver, params_path(ctx.path))
            write_trace_csv(trace_path(ctx.path), driver.trace_arrays)
        return record

    def record(self, driver, geom, s: NQSSettings, trace_file: str | None = None) -> ResultRecord:
        """The record of a finished driver (energies per cell; the final estimate's statistics)."""
        from ..nqs.results import plain

        flags = plain(driver.dump_flags())
        st = driver.stats
        return ResultRecord(
            method=f"nqs-{s.model.kind}", **self.common_fields(geom, driver.ham), settings=s,
            details={k: flags[k] for k in ("model", "sampler", "optimizer")}, sector=flags["sector"],
            n_parameters=driver.n_parameters, n_steps=driver.step, converged=True,
            stopped_early=driver.stopped_early,
            estimate=Estimate(mean=driver.energy, error=driver.energy_error, variance=driver.variance,
                              tau_corr=_finite(st.tau_corr), r_hat=_finite(st.R_hat), n_samples=int(st.n_samples)),
            energy_per_cell=driver.energy_ewald, energy_error=driver.energy_error,
            energy_per_cell_raw=driver.energy, variance=driver.variance, e_inf=driver.e_inf,
            v_score=driver.v_score, trace_file=trace_file)
