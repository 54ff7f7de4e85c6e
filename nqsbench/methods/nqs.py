"""The NQS ground state as a method: the one place a run is orchestrated (Hamiltonian → driver →
checkpoints and callbacks → record, trace and parameters), for ``nqsbench run``, suites and the
public API alike.

Side files beside the record ``<stem>.json``: ``<stem>.trace.csv`` (one row per step),
``<stem>.params.msgpack`` (final parameters) and ``<stem>.ckpt/`` (checkpoints, every
``ctx.checkpoint_every`` seconds, every ``ctx.checkpoint_steps`` steps and at the end); both hold the
active orbitals, so they load on any build of the same integrals. The
:class:`~nqsbench.nqs.DivergenceGuard` stops a run that turns NaN, rises far above its best
energy, or whose Markov chains collapse; the run then goes back 10–20 steps and on at half the
learning rate (:func:`run_with_rollback`, at most :data:`ROLLBACKS` times, each one said and kept in
the record's ``details.rollbacks``); a run that diverges once more writes nothing.
"""
from __future__ import annotations

import logging
import math

from ..errors import NqsbenchError
from ..records import (ConvergenceSettings, Estimate, ModelSettings, NQSSettings, OptimizerSettings,
                       ResultRecord, SamplerSettings, trace_path, write_trace_csv)
from .base import Method, RunContext
from .registry import register

log = logging.getLogger(__name__)

# steps = "auto" (the default): the step budget and the plateau criterion per sampler. Markov-chain
# energies scatter by ~1-5 mHa/cell per step, so their windows are longer (the error of a window
# mean falls as 1/sqrt(window)) and their error bars, not the tolerance, decide. Exact sampling
# has no noise and the tolerance alone decides: at 0.05 mHa/cell per 50 steps the RBM (α = 2) on
# the stretched H chain N_k = 4 stopped "converged" at +3.08 (d = 3.15, 495 steps) and +4.43
# mHa/cell (d = 3.6, 355 steps) while still creeping down (3000 steps reach +1.66 at d = 3.6):
# a slow tail, not a plateau. Hence 0.01 per window for exact sampling.
DEFAULT_MAX_STEPS = {"exact": 3000, "mcmc": 4000}
DEFAULT_WINDOW = {"exact": 50, "mcmc": 100}
DEFAULT_TOL_MHA = {"exact": 0.01, "mcmc": 0.05}


# A run stopped by the divergence guard goes back to a state kept 10–20 steps earlier and on at half
# the learning rate, at most this many times. The RBM's Markov chains with the defaults (α = 4,
# random start, no trust region at 16 spin-orbitals) diverged on the H chain N_k = 4 at d = 2.2,
# 3.0, 3.2 and 3.6 (steps 76, 29, 57, 380: rises of 0.17–0.56 Ha/cell in a step) and wrote nothing;
# with rollbacks they finish (d = 3.0: back twice, converged at +6.0 mHa/cell: saved, not accurate).
ROLLBACKS = 2


def run_with_rollback(driver, n_steps: int, callbacks, resume=None, ckpt_dir=None, note=None,
                      rollbacks: int = ROLLBACKS) -> list[dict]:
    """``driver.run(n_steps, callbacks, resume)``; when the :class:`~nqsbench.nqs.DivergenceGuard`
    among ``callbacks`` stops it, load the state a :class:`~nqsbench.nqs.Rollback` kept (10–20 steps
    before), halve ``driver.lr_scale`` and go on, at most ``rollbacks`` times (then the last
    DivergenceError, saying what was tried). Checkpoints in ``ckpt_dir`` newer than that state
    are removed (they are of the abandoned path); the trace's ``wall_s`` keeps the time of the
    abandoned steps. ``note(line)`` hears of each rollback. Returns one dict per rollback."""
    from ..nqs import DivergenceError, DivergenceGuard, Rollback
    from ..nqs.callbacks import discard_checkpoints_after

    keep = Rollback()
    callbacks = [*callbacks, keep]
    events: list[dict] = []
    while True:
        try:
            driver.run(n_steps, callbacks=callbacks, resume=resume)
            return events
        except DivergenceError as exc:
            back = keep.fallback()
            if back is None or len(events) >= rollbacks:
                if events:
                    raise DivergenceError(f"{exc} (after {len(events)} rollbacks, down to "
                                          f"{driver.lr_scale:g}× the learning rate)") from None
                raise
            walls = driver.trace.get("wall_s") or []
            spent = walls[-1] if walls else math.nan
            tripped, scale = driver.step - 1, driver.lr_scale * 0.5   # half the rate it diverged at
            driver.load_state_arrays(back)
            driver.lr_scale = scale
            for cb in callbacks:
                if isinstance(cb, DivergenceGuard):
                    cb.rewind(driver)
            if driver.trace.get("wall_s") and math.isfinite(spent):
                driver.trace["wall_s"][-1] = spent       # the abandoned steps' time still counts
            if ckpt_dir is not None:
                discard_checkpoints_after(ckpt_dir, driver.step)
            events.append({"step": tripped, "back_to_step": driver.step, "lr_scale": driver.lr_scale,
                           "reason": str(exc)})
            if note is not None:
                note(f"diverged at step {tripped} ({exc}); back to step {driver.step}, on at "
                     f"{driver.lr_scale:g}× the learning rate (rollback {len(events)} of {rollbacks})")
            resume = None


class CheckpointMismatchError(NqsbenchError):
    """``resume=True`` with a checkpoint of another run."""


def model_table(model: str | dict | ModelSettings = "rbm", alpha: float | None = None) -> dict:
    """``{"kind": ..., ...}`` from a model's name, table or settings, with ``alpha`` (shorthand
    for the RBM's) merged in; CatalogError when ``alpha`` is given for another model."""
    from ..errors import CatalogError

    table = {"kind": model} if isinstance(model, str) else (
        model.model_dump() if isinstance(model, ModelSettings) else dict(model))
    if alpha is not None:
        if table.get("kind", "rbm") != "rbm":
            raise CatalogError(f"alpha {alpha}: the RBM's hidden-unit density; model {table['kind']!r} "
                               "takes its own options")
        table["alpha"] = alpha
    return table


def nqs_settings(sampler: str = "exact", model: str | dict | ModelSettings = "rbm",
                 steps: int | str | None = "auto", seed: int = 0, init: str = "auto",
                 lr: float | None = None, lr_final: float | None = None, max_norm: float | None = None,
                 diag_shift: float | None = None, samples: int | None = None, chains: int | None = None,
                 beta: float | None = None, max_steps: int | None = None, max_minutes: float | None = None,
                 window: int | None = None, alpha: float | None = None, sr_solver: str = "auto",
                 spin_penalty: float = 0.0, deterministic: int | None = None) -> NQSSettings:
    """Settings of an NQS run with the defaults filled in (None = default;
    :mod:`nqsbench.nqs.defaults` for the optimizer and sampler, :data:`DEFAULT_MAX_STEPS` and
    :data:`DEFAULT_WINDOW` and :data:`DEFAULT_TOL_MHA` for the plateau criterion). ``model``: a registered model's name, a
    ``{"kind": ..., ...}`` table or its settings; ``alpha`` is shorthand for the RBM's.
    Raises pydantic's ValidationError on bad values, CatalogError on an unknown model."""
    from ..nqs import models
    from ..nqs.defaults import DEFAULTS, resolve_settings

    if sampler not in DEFAULTS:
        raise ValueError(f"sampler {sampler!r}: choose one of {', '.join(DEFAULTS)}")
    model_settings = models.settings(model_table(model, alpha))
    r = resolve_settings(sampler, lr=lr, lr_final=lr_final, max_norm=max_norm, diag_shift=diag_shift,
                         n_samples=samples, n_chains=chains, beta=beta, deterministic=deterministic,
                         overrides=models.get(model_settings.kind).optimizer_defaults.get(sampler))
    smp = (SamplerSettings(kind="mcmc", n_samples=r["n_samples"], n_chains=r["n_chains"], beta=r["beta"],
                           deterministic=r["deterministic"])
           if sampler == "mcmc" else SamplerSettings(kind="exact", deterministic=deterministic or 0))
    steps = "auto" if steps is None else steps
    auto = steps == "auto"
    conv = ConvergenceSettings(window=window or DEFAULT_WINDOW[sampler], tol_mha=DEFAULT_TOL_MHA[sampler])
    return NQSSettings(model=model_settings, sampler=smp,
                       optimizer=OptimizerSettings(lr=r["lr"], lr_final=r["lr_final"], max_norm=r["max_norm"],
                                                   diag_shift=r["diag_shift"], solver=sr_solver),
                       steps=steps, max_steps=(max_steps or DEFAULT_MAX_STEPS[sampler]) if auto else max_steps,
                       max_minutes=max_minutes, convergence=conv, seed=seed, init=init, spin_penalty=spin_penalty)


def _optimization_wall(driver) -> dict:
    """``{"optimization_wall_s": …}``: the seconds of optimization over every process of the run
    (the trace's ``wall_s`` at its last step: a resumed run counts its earlier processes too);
    empty where the trace does not know (no step, or a checkpoint of older code)."""
    walls = driver.trace.get("wall_s") or []
    return {"optimization_wall_s": round(float(walls[-1]), 3)} if walls and math.isfinite(walls[-1]) else {}


def run_wall_seconds(record) -> float:
    """The wall time of an NQS record's whole run: its optimization over every process
    (``details.optimization_wall_s``) where known, else this process's (``provenance``; a resumed
    run's record made before the trace kept time says only its last process)."""
    return max(float((record.details or {}).get("optimization_wall_s") or 0.0), record.provenance.wall_time_s)


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _sector_dims(geom, n_up=None, n_dn=None) -> tuple[int, int, list[int]]:
    """(active orbitals per cell, spin-up electrons of the neutral cell, the dimension of every
    (N↑, N↓, K) sector in PySCF's k order; N↑ = N↓ = neutral by default), counted from the
    catalog geometry (basis size and k-mesh; no SCF, nothing enumerated)."""
    from ..build import active_space, pyscf_kmesh
    from ..sectors import kmesh_grid, sector_dims

    n_act, na = active_space(geom)
    mesh = pyscf_kmesh(geom)
    return n_act, na, sector_dims(kmesh_grid(mesh), mesh, n_act, na if n_up is None else n_up,
                                  na if n_dn is None else n_dn)


def largest_sector_dim(geom) -> int:
    """Configurations in the largest (N↑ = N↓, K) sector of the neutral cell (:func:`_sector_dims`)."""
    return max(_sector_dims(geom)[2])


def sector_size(geom, sector=None) -> tuple[int, int]:
    """(spin-orbitals, configurations) of the (N↑, N↓, K) sector ``sector`` (a record's:
    ``n_up``, ``n_dn``, ``k_total``; None: the neutral Γ sector) of this geometry, counted from
    the catalog geometry (no SCF): the sizes the "auto" settings depend on."""
    get = (lambda k: sector[k]) if isinstance(sector, dict) else (lambda k: getattr(sector, k))
    n_up, n_dn, k = (None, None, 0) if sector is None else (get("n_up"), get("n_dn"), get("k_total"))
    n_act, _, dims = _sector_dims(geom, n_up, n_dn)
    return 2 * n_act * geom.nk, dims[k]


def has_size_autos(s: NQSSettings) -> bool:
    """Whether ``s`` holds an "auto" whose value depends on the system's size (the model's
    options, ``init``, ``max_norm``; not ``steps``, ``beta`` or the solver, which are methods)."""
    return s.init == "auto" or s.optimizer.max_norm == "auto" or any(v == "auto" for _, v in s.model)


def resolve_autos(s: NQSSettings, n_spin_orbitals: int, sector_dim: int) -> NQSSettings:
    """``s`` with each size-dependent "auto" replaced by what it means on a system of this size:
    the model's options (its registry entry's ``resolve_auto``), ``init``
    (:func:`~nqsbench.nqs.models.base.resolve_init`) and ``max_norm`` (``resolve_max_norm``)."""
    from ..nqs import models
    from ..nqs.models.base import resolve_init, resolve_max_norm

    spec = models.get(s.model.kind)
    model = spec.resolve_auto(s.model, n_spin_orbitals, sector_dim) if spec.resolve_auto else s.model
    opt = s.optimizer.model_copy(update={"max_norm": resolve_max_norm(s.optimizer.max_norm, n_spin_orbitals)})
    return s.model_copy(update={"model": model, "optimizer": opt,
                                "init": resolve_init(s.init, n_spin_orbitals)})


def ran_settings(record, n_spin_orbitals: int, sector_dim: int) -> NQSSettings:
    """The record's settings with each "auto" replaced by what its run resolved it to
    (``details``: ``model``, ``start``, ``optimizer.max_norm``); where its details do not say
    (records made before they did), by today's rule (:func:`resolve_autos`)."""
    s, d = record.settings, record.details or {}
    ran_model = d.get("model") or {}
    update = {"model": s.model.model_copy(update={k: ran_model[k] for k, v in s.model
                                                  if v == "auto" and k in ran_model})}
    if s.init == "auto" and d.get("start") in ("hf", "random"):
        update["init"] = d["start"]
    ran_opt = d.get("optimizer") or {}
    if s.optimizer.max_norm == "auto" and "max_norm" in ran_opt:
        update["optimizer"] = s.optimizer.model_copy(update={"max_norm": float(ran_opt["max_norm"] or 0.0)})
    return resolve_autos(s.model_copy(update=update), n_spin_orbitals, sector_dim)


def auto_sampler(geom) -> tuple[str, str]:
    """(sampler, why) of ``sampler = "auto"`` for this geometry (:func:`sampler_for_dim`)."""
    return sampler_for_dim(largest_sector_dim(geom))


def sampler_for_dim(dim: int) -> tuple[str, str]:
    """(sampler, why) of ``sampler = "auto"`` for a sector of ``dim`` configurations: exact
    sampling (exact expectation values, no noise) up to
    :data:`~nqsbench.nqs.samplers.EXACT_MAX_DIM`, else Markov chains (the H chain N_k ≥ 6,
    graphene and LiH past Γ)."""
    from ..nqs.samplers import EXACT_MAX_DIM

    if dim <= EXACT_MAX_DIM:
        return "exact", f"the sector has {dim:,} configurations (≤ {EXACT_MAX_DIM:,}: exact sampling)"
    return "mcmc", f"the sector has {dim:,} configurations (> {EXACT_MAX_DIM:,} for exact sampling: Markov chains)"


def make_driver(ham, s: NQSSettings, memory_gb: float | None = None, sector=None):
    """The driver of these settings: the model from the model registry; with ``steps="auto"``
    a constant learning rate (:class:`~nqsbench.nqs.convergence.AutoSteps` lowers it on
    plateaus), else the cosine decay over the steps when ``lr_final`` > 0. ``memory_gb``: the
    run's memory budget (default :func:`nqsbench.config.memory_gb`; a run option, not a
    setting: it changes how the work is chunked, not the numbers). ``sector``: the
    (N↑, N↓, K) sector (default: the HF determinant's)."""
    from ..nqs import models
    from ..nqs.defaults import make_driver as _make
    from ..nqs.hilbert import Sector

    o, smp = s.optimizer, s.sampler
    sector = sector or Sector.from_hamiltonian(ham)
    auto = s.steps == "auto"
    return _make(ham, sampler=smp.kind, model=models.build(s.model, sector), sector=sector, seed=s.seed,
                 lr=o.lr, lr_final=0.0 if auto else o.lr_final, max_norm=o.max_norm, diag_shift=o.diag_shift,
                 n_steps=None if auto else s.steps, n_samples=smp.n_samples, n_chains=smp.n_chains,
                 beta=smp.beta, init=s.init, sr_solver=o.solver, memory_gb=memory_gb,
                 spin_penalty=s.spin_penalty, **({"deterministic": smp.deterministic} if smp.deterministic else {}))


def make_evaluator(driver, s: NQSSettings, memory_gb: float | None = None):
    """For a run of H + λ S² (``s.spin_penalty`` > 0): a driver of the same settings on H alone, in
    the run's sector, that the record's ⟨H⟩ is evaluated with (:func:`plain_energy`). Made before
    the run, so that its memory is planned (and a run that cannot hold both is refused) up front.
    None without a penalty."""
    if not s.spin_penalty:
        return None
    return make_driver(driver.ham, s.model_copy(update={"spin_penalty": 0.0}), memory_gb=memory_gb,
                       sector=driver.sector)


def plain_energy(driver, evaluator, s: NQSSettings) -> float:
    """Finalize ``evaluator`` (:func:`make_evaluator`) at the run's final parameters (its
    ``energy``, ``stats``, … become ⟨H⟩'s, from its own samples) and return ⟨S²⟩ =
    (⟨H + λ S²⟩ − ⟨H⟩)/λ (exact with exact sampling; with Markov chains the difference of two
    independent estimates)."""
    evaluator.start_from(driver.params)
    evaluator.finalize()
    return (driver.e_tot - evaluator.e_tot) / s.spin_penalty


class InitParamsError(NqsbenchError):
    """``init = "params:<digest>"`` without its file, with another file, or with parameters that
    do not fit this model or Hamiltonian."""


def start_from_params(driver, s: NQSSettings, path) -> dict | None:
    """For ``init = "params:<digest>"``: load the parameters file ``path`` (its digest must be
    the settings'; its Hamiltonian and model this run's) into the driver at step 0, and return
    what the record says about the start (file, digest, the steps it had run). None for hf and
    random starts."""
    from flax import serialization

    from ..nqs.results import carry_params, load_params, params_digest

    if not s.init.startswith("params:"):
        return None
    digest = s.init.split(":", 1)[1]
    if path is None:
        raise InitParamsError(f"init {s.init!r}: give the parameters file it names (--init PATH)")
    try:
        found = params_digest(path)
    except OSError as exc:
        raise InitParamsError(f"--init {path}: {exc.strerror or exc}; give a .params.msgpack or its record .json") from None
    if found != digest:
        raise InitParamsError(f"--init {path}: digest {found}, the settings name {digest}; "
                              "the file changed since the settings were made")
    params, meta, arrays = load_params(path, arrays=True)
    if meta["hamiltonian_hash"] != driver.ham.hash:
        try:        # another build of these integrals (other orbital phases) is carried over
            params = carry_params(params, meta, arrays, driver.ham, driver.model)
        except ValueError as exc:
            raise InitParamsError(f"--init {path}: parameters of Hamiltonian {meta['hamiltonian_hash']}, this run's "
                                  f"is {driver.ham.hash} (another geometry, k-mesh or basis: {exc}); give those "
                                  "of a run on this geometry") from None
    before = (meta.get("flags") or {}).get("model") or {}
    try:
        params = serialization.from_state_dict(driver.params, params)
    except (ValueError, KeyError):
        raise InitParamsError(f"--init {path}: parameters of a {before.get('kind', 'another model')}, this run's "
                              f"model is {type(driver.model).__name__}; give --model and its options as "
                              "that run had them") from None
    try:
        driver.start_from(params)
    except ValueError as exc:
        raise InitParamsError(f"--init {path}: {exc}") from None
    return {"params": str(path), "digest": digest, "steps_before": int(meta.get("step", 0)),
            "model_before": before, "optimizer_before": (meta.get("flags") or {}).get("optimizer")}


def auto_steps(s: NQSSettings):
    """The :class:`~nqsbench.nqs.convergence.AutoSteps` callback of ``steps = "auto"`` settings
    (None for a fixed number of steps)."""
    from ..nqs.convergence import AutoSteps

    if s.steps != "auto":
        return None
    c = s.convergence
    return AutoSteps(c.window, c.tol_mha, c.sigmas, c.decay, lr_final=s.optimizer.lr_final,
                     max_minutes=s.max_minutes)


def optimize(ham, s: NQSSettings, sector=None, memory_gb: float | None = None, callbacks=()):
    """A driver of these settings optimized in ``sector`` (default: the ground-state sector)
    from the start ``s.init`` names ("hf": the sector's own reference determinant), with the
    divergence guard and, for ``steps = "auto"``, the plateau criterion; no files. Returns
    (driver, converged, why) (:func:`verdict`)."""
    from ..nqs import DivergenceGuard

    driver = make_driver(ham, s, memory_gb=memory_gb, sector=sector)
    auto = auto_steps(s)
    driver.run(s.step_budget, callbacks=[DivergenceGuard(), *([auto] if auto else []), *callbacks])
    return (driver, *verdict(driver, s, auto))


def verdict(driver, s: NQSSettings, auto=None):
    """(converged, why) of a finished driver: the plateau criterion at the end of the run (for
    ``steps="auto"``: at the final learning rate, as :class:`AutoSteps` decided)."""
    from ..nqs.convergence import plateau, segment_since_lr_change

    c = s.convergence
    if auto is not None and auto.verdict is not None:
        return True, auto.verdict.reason
    segment = segment_since_lr_change(driver.trace) if auto is not None else driver.trace["energy"]
    v = plateau(segment, c.window, c.tol_mha, c.sigmas)
    if auto is None:
        return v.converged, v.reason
    lr_note = (f" at learning rate {driver.learning_rate:.3g} (final {s.optimizer.lr_final:g})"
               if s.optimizer.lr_final > 0 else "")
    stop = auto.stop_reason or f"max_steps {s.max_steps} reached"
    return False, f"{stop}{lr_note}; {v.reason}"


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
            # the same run: same flags and seed, on these integrals (another build's checkpoint is
            # carried to this build's orbital phases when it loads)
            if found[1]["meta"].get("flags") == driver._meta()["flags"] and driver.checkpoint_mismatch(found[1]) is None:
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
    summary = "NQS ground state (a registered model + stochastic reconfiguration)"

    def default_settings(self) -> NQSSettings:
        return nqs_settings()

    def settings_from(self, **fields) -> NQSSettings:
        """The keywords of :func:`nqs_settings` (sampler, model, steps, lr, ...), defaults resolved."""
        return nqs_settings(**fields)

    def same_computation(self, want: NQSSettings, record, geom) -> tuple[bool, str] | None:
        """Compares what runs, not what is written: each size-dependent ``"auto"`` (the model's
        options, ``init``, ``max_norm``) as it resolves on this system (:func:`resolve_autos`)
        against what the record ran (:func:`ran_settings`), so a record made with ``--alpha 4
        --init random`` is what ``alpha = "auto"`` computes where auto means that, and a record
        made with ``"auto"`` is stale once auto means another value there. And a ``steps =
        "auto"`` run that stopped by its own plateau verdict never met its budgets (``max_steps``,
        ``max_minutes``): it is what ``want`` computes when they differ in those alone and
        ``want``'s budgets would not have stopped it sooner."""
        have = record.settings
        written_equal = want.settings_hash() == have.settings_hash()
        if written_equal and not has_size_autos(have):
            return None
        try:
            n, dim = sector_size(geom, record.sector)
        except NqsbenchError:          # a mesh too large to count: the settings as written decide
            return None
        want_r, ran = resolve_autos(want, n, dim), ran_settings(record, n, dim)
        same = want_r.settings_hash() == ran.settings_hash()
        if written_equal:
            return None if same else (False, "settings differ in what they mean on this system: "
                                      f"{want_r.diff(ran)} (as the record ran ≠ as 'auto' resolves now)")
        meaning = f"written as {want.diff(have)}, the same on this system"
        if same:
            return True, meaning
        if want.steps != "auto" or have.steps != "auto" or not record.converged:
            return None
        budgets = {"max_steps": ran.max_steps, "max_minutes": ran.max_minutes}
        if want_r.model_copy(update=budgets).settings_hash() != ran.settings_hash():
            return None
        wall = run_wall_seconds(record)
        if want.max_steps is not None and record.n_steps > want.max_steps:
            return None
        if want.max_minutes is not None and wall > 60 * want.max_minutes:
            return None
        autos = want.model_copy(update=budgets).settings_hash() != have.settings_hash()
        return True, (f"made with max_steps {have.max_steps}, max_minutes {have.max_minutes}; it converged in "
                      f"{record.n_steps} steps, {wall / 60:.0f} min, within the budgets asked for"
                      + (f"; otherwise {meaning}" if autos else ""))

    def record_name(self, s: NQSSettings, label: str | None = None) -> str:
        # a run started from other parameters never shares the name (and file) of the run it continues
        start = f"-from-{s.init.split(':', 1)[1][:8]}" if s.init.startswith("params:") else ""
        penalty = f"-s2pen{s.spin_penalty:g}" if s.spin_penalty else ""   # another state, another file
        return f"nqs-{s.model.kind}-{s.sampler.kind}-s{s.seed}{start}{penalty}" + (f"-{label}" if label else "")

    def run(self, geom, ham, s: NQSSettings, ctx: RunContext) -> ResultRecord:
        from ..nqs import Checkpoint, DivergenceGuard, ProgressBar
        from ..nqs.results import params_path, save_params

        driver = make_driver(ham, s, memory_gb=ctx.options.get("memory_gb"))
        evaluator = make_evaluator(driver, s, memory_gb=ctx.options.get("memory_gb"))
        start = start_from_params(driver, s, ctx.options.get("init_params"))
        if ctx.log is not None:
            ctx.log(driver.memory_plan.summary())
            if evaluator is not None:
                ctx.log(f"⟨H⟩ at the end (spin penalty): {evaluator.memory_plan.summary()}")
        ckpt_dir = ctx.checkpoint_dir
        resume = _resume_from(driver, ckpt_dir, ctx.resume)
        callbacks = [DivergenceGuard()]
        auto = auto_steps(s)
        if auto is not None:
            callbacks.append(auto)
        if ckpt_dir is not None:
            callbacks.append(Checkpoint(ckpt_dir, every_seconds=ctx.checkpoint_every,
                                        every_steps=ctx.checkpoint_steps or None))
        if ctx.progress:
            callbacks.insert(0, ProgressBar(f"{geom.spec.id} {s.sampler.kind}"))
        if ctx.on_step is not None:
            callbacks.append(lambda driver, step, log: ctx.on_step(step + 1, s.step_budget) or False)
        try:
            rollbacks = run_with_rollback(driver, s.step_budget, callbacks, resume=resume, ckpt_dir=ckpt_dir,
                                          note=ctx.log or log.warning)
        except ValueError as exc:        # a checkpoint that does not belong to this run
            raise CheckpointMismatchError(f"--resume from {ckpt_dir}: {exc}") from None
        if driver.rephased and ctx.log is not None:
            ctx.log(f"resumed from a checkpoint of another build of these integrals (orbital phases up to "
                    f"{driver.rephased:.2f} rad apart), carried over")
        converged, why = verdict(driver, s, auto)
        record = self.record(driver, geom, s, converged, why,
                             trace_file=trace_path(ctx.path).name if ctx.path else None, start=start,
                             evaluator=evaluator, rollbacks=rollbacks)
        if ctx.path is not None:
            save_params(driver, params_path(ctx.path))
            write_trace_csv(trace_path(ctx.path), driver.trace_arrays)
        return record

    def record(self, driver, geom, s: NQSSettings, converged: bool, convergence: str,
               trace_file: str | None = None, start: dict | None = None,
               evaluator=None, rollbacks: list[dict] | None = None) -> ResultRecord:
        """The record of a finished driver (energies per cell; the final estimate's statistics;
        ``converged``/``convergence``: :func:`verdict`; ``start``: :func:`start_from_params`).
        A run of H + λ S² records ⟨H⟩ (:func:`plain_energy`, on ``evaluator`` or one made here)
        and, in ``details.spin_penalty``, λ, ⟨S²⟩ and the per-cell ⟨H + λ S²⟩ its trace ends at."""
        from ..nqs.results import plain

        flags = plain(driver.dump_flags())
        penalty, est = None, driver
        if s.spin_penalty:
            est = evaluator or make_evaluator(driver, s)
            s2 = plain_energy(driver, est, s)
            penalty = {"lambda": s.spin_penalty, "s2": s2, "energy_per_cell_penalized": driver.energy}
        st = est.stats
        return ResultRecord(
            method=f"nqs-{s.model.kind}", **self.common_fields(geom, driver.ham), settings=s,
            details={**{k: flags[k] for k in ("model", "sampler", "optimizer")},
                     "start": flags["init"],          # what init = "auto" resolved to
                     "memory": driver.memory_plan.to_dict(), **({"init": start} if start else {}),
                     **_optimization_wall(driver),
                     **({"rollbacks": rollbacks} if rollbacks else {}),
                     **({"spin_penalty": penalty} if penalty else {})},
            sector=flags["sector"],
            n_parameters=driver.n_parameters, n_steps=driver.step, converged=converged,
            convergence=convergence, final_lr=driver.learning_rate,
            stopped_early=driver.stopped_early,
            estimate=Estimate(mean=est.energy, error=est.energy_error, variance=est.variance,
                              tau_corr=_finite(st.tau_corr), r_hat=_finite(st.R_hat), n_samples=int(st.n_samples)),
            energy_per_cell=est.energy_ewald, energy_error=est.energy_error,
            energy_per_cell_raw=est.energy, variance=est.variance, e_inf=est.e_inf,
            v_score=est.v_score, trace_file=trace_file)
