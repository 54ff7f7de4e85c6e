"""Suites as data: ``suites/<name>.toml`` → a validated :class:`Suite` → jobs → records → gates.

A suite lists *tasks* (what to compute) and, with each task, the *gates* its records must pass
(:mod:`nqsbench.gates`). Every task kind is a plug-in: a pydantic model registered in
:data:`TASK_KINDS` that expands into :class:`Job` s, one per record. A job names a registered
method (:mod:`nqsbench.methods`), its typed settings and the record path; whether the record is
present and fresh, and computing it, is the record store's business (:mod:`nqsbench.store`), the
same for every kind. Shipped task kinds: ``reference`` (any registered reference method),
``nqs`` (an NQS ground state, as ``nqsbench run``) and ``bands`` (an NQS ground state and its
quasiparticle bands, as ``nqsbench bands``).

Running is resumable: every record is written atomically (temporary file + rename) and fresh
records are skipped, so a suite killed mid-way and restarted recomputes only what is missing;
NQS runs also checkpoint every minute and resume from a checkpoint of the same settings.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import product
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import catalog, config
from .errors import CatalogError, NqsbenchError, SuiteError, validation_field_error
from .gates import Row, parse_gate
from .io import read_toml
from .methods import RunContext, registry
from .methods.nqs import nqs_settings
from .methods.nqs_bands import bands_settings
from .records import BetaSetting, MethodSettings
from .executors import Executor, LocalExecutor, Task
from .store import RecordClaimedError, Status, Store, claim_path, claim_stale, release_stale_claim

log = logging.getLogger(__name__)

__all__ = ["Suite", "Job", "Status", "Store", "SuiteError", "TASK_KINDS", "register_task_kind", "load_suite",
           "jobs", "status", "read", "plan", "run_suite", "check"]


# ----------------------------------------------------------------------------- models
class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ParamValue = float | list[float] | Literal["scan"]
Mesh = tuple[int, int, int]


class Resources(_Frozen):
    """What one record of a task needs (hints): ``cores`` and ``memory_gb`` become Dask worker
    resources (a task runs only on a worker that declares at least that much, where the cluster's
    workers declare them: ``dask worker --resources "cores=8,memory_gb=64"``); ``expected_hours``
    feeds the progress bar's ETA until a record's own wall time is known. ``memory_gb`` is also
    the memory budget of the task's NQS runs (``nqsbench run --memory-gb``)."""
    cores: int | None = Field(None, ge=1)
    memory_gb: float | None = Field(None, gt=0)
    expected_hours: float | None = Field(None, gt=0)


class TaskBase(_Frozen):
    """Fields every task shares: which geometries (a scan is a list, or "scan" for the
    catalog's scan) and k-meshes (one mesh, a list of meshes, or default/exact/beyond/all)."""
    kind: str
    system: str
    params: dict[str, ParamValue] = {}
    kmesh: Mesh | list[Mesh] | Literal["default", "exact", "beyond", "all"] = "default"
    gates: list[dict[str, Any]] = []     # validated by nqsbench.gates.parse_gate (a plug-in registry)
    note: str = ""
    resources: Resources | None = None   # hints for schedulers (nqsbench.executors)


class ReferenceTask(TaskBase):
    """Reference records by registered method name (``nqsbench.methods.names("reference")``)."""
    kind: Literal["reference"]
    methods: list[str] = Field(min_length=1)
    settings: dict[str, dict[str, Any]] = Field({}, description="per-method settings over the defaults, "
                                                'e.g. { dmrg = { max_bond_dim = 1500 } }')

    @field_validator("methods")
    @classmethod
    def _registered(cls, v):
        known = registry.names("reference")
        for m in v:
            if m not in known:
                raise ValueError(f"{m!r} is not a reference method; choose from {', '.join(known)}")
        return v

    @model_validator(mode="after")
    def _settings_valid(self):
        for m, table in self.settings.items():
            if m not in self.methods:
                raise ValueError(f"settings.{m}: {m!r} is not among this task's methods ({', '.join(self.methods)})")
            try:
                registry.get(m).settings_from(**table)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(map(str, err["loc"]))
                raise ValueError(f"settings.{m}{'.' + where if where else ''}: {err['msg']}") from None
        return self

    def method_settings(self, method: str):
        """The settings of ``method``'s records: its defaults, with this task's ``settings`` table."""
        return registry.get(method).settings_from(**self.settings.get(method, {}))


class NQSTask(TaskBase):
    """An NQS ground state, as ``nqsbench run`` (None = the per-sampler default of
    :mod:`nqsbench.nqs.defaults`, resolved when the suite is loaded)."""
    kind: Literal["nqs"]
    model: str | dict[str, Any] = Field("rbm", description='a registered model: its name or a table '
                                        '{ kind = "nnbf", width = 2 } (nqsbench.nqs.models)')
    alpha: float | None = Field(None, gt=0, description="shorthand for model = { kind = \"rbm\", alpha = ... }")
    sampler: Literal["exact", "mcmc"] = "exact"
    steps: Annotated[int, Field(ge=1)] | Literal["auto"] = Field("auto", description="a number, or auto: until "
                                                                 "the energy plateaus")
    max_steps: int | None = Field(None, ge=1, description="auto: at most this many steps")
    max_minutes: float | None = Field(None, gt=0, description="auto: at most this many minutes")
    window: int | None = Field(None, ge=5, description="steps per window of the plateau criterion")
    seed: int = Field(0, ge=0)
    init: str = Field("auto", description="auto, hf, random, or the .params.msgpack (or record .json) of an earlier run "
                      "on the task's one geometry, relative to the suite file: continue it with these settings")
    lr: float | None = Field(None, gt=0)
    lr_final: float | None = Field(None, ge=0, description="cosine-decay the lr to this over the steps; 0 = constant")
    max_norm: Annotated[float, Field(ge=0)] | Literal["auto"] | None = Field(
        None, description="trust region on |δ| per SR step; 0 = none; auto: none up to 16 spin-orbitals, 1 above")
    diag_shift: float | None = Field(None, gt=0)
    samples: int | None = Field(None, ge=2)
    chains: int | None = Field(None, ge=1)
    beta: BetaSetting | None = Field(None, description="mcmc: β of |ψ|^(2β), or 'auto' (adaptive)")
    deterministic: int | None = Field(None, ge=0, description="mcmc: configurations summed exactly each step, "
                                      "as run --deterministic; 0: none; default per model (the NNBF 128, the RBM 0)")
    gs_spin_penalty: float = Field(0.0, ge=0, description="λ (Ha): the ground state of H + λ S² (the lowest "
                                   "singlet; gated against exact's lowest singlet), as run --spin-penalty")
    label: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]*$",
                              description="suffix of the record name, for runs that differ in settings")

    @model_validator(mode="after")
    def _mcmc_only(self):
        if self.sampler == "exact" and (any(v is not None for v in (self.samples, self.chains, self.beta))
                                        or self.deterministic):
            raise ValueError("samples/chains/beta/deterministic apply to sampler = 'mcmc' only; remove them")
        return self

    @field_validator("init")
    @classmethod
    def _init_known(cls, v):
        from .nqs.results import init_setting

        try:
            init_setting(v)
        except FileNotFoundError as exc:
            raise ValueError(f"{exc}; give auto, hf, random, or the parameters (or record) of an earlier run, "
                             "relative to the suite file") from None
        return v

    @property
    def init_params(self) -> Path | None:
        """The parameters file of ``init = PATH`` (None for auto, hf and random)."""
        from .nqs.results import init_setting

        return init_setting(self.init)[1]

    @model_validator(mode="after")
    def _model_known(self):
        from .errors import CatalogError
        from .methods.nqs import model_table
        from .nqs import models

        try:
            models.settings(model_table(self.model, self.alpha))
        except CatalogError as exc:
            raise ValueError(str(exc)) from None
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ValueError(f"model.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        return self

    def settings(self):
        """The :class:`~nqsbench.records.NQSSettings` this task asks for (defaults resolved)."""
        from .nqs.results import init_setting

        return nqs_settings(self.sampler, alpha=self.alpha, steps=self.steps, seed=self.seed,
                            init=init_setting(self.init)[0],
                            lr=self.lr, lr_final=self.lr_final, max_norm=self.max_norm,
                            diag_shift=self.diag_shift, samples=self.samples, chains=self.chains,
                            beta=self.beta, model=self.model, max_steps=self.max_steps,
                            max_minutes=self.max_minutes, window=self.window, spin_penalty=self.gs_spin_penalty,
                            deterministic=self.deterministic)


class BandsTask(NQSTask):
    """An NQS ground state (same fields as ``nqs``) and its quasiparticle bands from the
    excitation subspace (:mod:`nqsbench.methods.nqs_bands`)."""
    kind: Literal["bands"]
    estimator: Literal["exact", "monte_carlo"] = "exact"
    band_method: Literal["subspace", "krylov", "sector"] | None = Field(
        None, description="subspace (the paper's), krylov or sector; default: krylov with the exact estimator, "
        "else subspace")
    order: int | None = Field(None, ge=1, description="krylov: highest power of H (default 8; Monte Carlo: 1, the only one)")
    band_samples: int = Field(8192, ge=2)
    band_chains: int = Field(32, ge=2)
    spin_penalty: float = Field(0.0, ge=0, description="sector: λ (Ha) of H + λ S² in each sector (its lowest doublet)")

    @model_validator(mode="after")
    def _band_method(self):
        try:       # the band settings' own rules (Monte Carlo krylov: order 1; order: krylov only)
            bands_settings(nqs_settings(), estimator=self.estimator, method=self.band_method, order=self.order,
                           spin_penalty=self.spin_penalty)
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return self

    def band_settings(self):
        return bands_settings(self.settings(), estimator=self.estimator, samples=self.band_samples,
                              chains=self.band_chains, seed=self.seed, method=self.band_method, order=self.order,
                              spin_penalty=self.spin_penalty)


TASK_KINDS: dict[str, type[TaskBase]] = {"reference": ReferenceTask, "nqs": NQSTask, "bands": BandsTask}


def register_task_kind(name: str, model: type[TaskBase], expand: Callable | None = None) -> None:
    """Plug in a task kind: ``model`` validates its TOML table, ``expand(task, index, geom, store)``
    returns its jobs."""
    TASK_KINDS[name] = model
    if expand is not None:
        _EXPANDERS[name] = expand


class Suite(_Frozen):
    """One suite file: tasks with their gates."""
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    budget_minutes: float | None = Field(None, gt=0, description="wall-time budget (informative)")
    tasks: list[TaskBase] = Field(min_length=1)
    path: str = ""


def _one_line(path: Path, prefix: str, exc: ValidationError) -> SuiteError:
    return SuiteError(f"{path}: {validation_field_error(exc, prefix, see='README, Suites', default='suite')}")


def available() -> list[str]:
    return sorted(q.stem for q in config.suites_dir().glob("*.toml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (``suites/NAME.toml``) or path; errors name the file and field."""
    from .nqs.results import NAMED_STARTS

    p = Path(name_or_path)
    if p.suffix != ".toml" and not p.is_file():      # "references" is a suite and a folder
        p = config.suites_dir() / f"{name_or_path}.toml"
        if not p.exists():
            raise SuiteError(f"unknown suite {str(name_or_path)!r}; available: {', '.join(available())}")
    data = read_toml(p, SuiteError, "suite file")
    raw_tasks = data.pop("tasks", None)
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise SuiteError(f"{p}: field 'tasks': missing; add at least one [[tasks]] table")
    tasks = []
    for i, t in enumerate(raw_tasks):
        kind = t.get("kind") if isinstance(t, dict) else None
        if isinstance(t, dict) and isinstance(t.get("init"), str) and t["init"] not in NAMED_STARTS:
            t = dict(t, init=str(p.parent / t["init"]))      # a parameters file: relative to the suite
        if kind not in TASK_KINDS:
            raise SuiteError(f"{p}: field 'tasks[{i}].kind': {kind!r} is not a task kind; "
                             f"choose one of {', '.join(TASK_KINDS)}")
        try:
            task = TASK_KINDS[kind].model_validate(t)
        except ValidationError as exc:
            raise _one_line(p, f"tasks[{i}]", exc) from None
        for j, g in enumerate(task.gates):
            try:
                parse_gate(g)
            except ValidationError as exc:
                raise _one_line(p, f"tasks[{i}].gates[{j}]", exc) from None
            except SuiteError as exc:
                raise SuiteError(f"{p}: field 'tasks[{i}].gates[{j}]': {exc}") from None
        tasks.append(task)
    try:
        suite = Suite.model_validate(dict(data, tasks=tasks, path=str(p)))
    except ValidationError as exc:
        raise _one_line(p, "", exc) from None
    if suite.name != p.stem:
        raise SuiteError(f"{p}: field 'name': {suite.name!r} does not match the file name; rename one")
    jobs(suite)       # expands every task: unknown systems/parameters/k-meshes and clashes fail here
    return suite


# ----------------------------------------------------------------------------- jobs
@dataclass(frozen=True, eq=False)
class Job:
    """One record to produce: which method with which settings, on which geometry, where, under
    which gates (canonical JSON of each gate), after which other record (``depends``)."""
    method: str
    geom: catalog.Geometry
    settings: MethodSettings
    path: Path
    task: int
    kind: str                            # record kind ("reference", "nqs", "nqs-bands")
    record_label: str | None = None      # a task's 'label': suffix of the record name
    gates: tuple[str, ...] = ()
    depends: Path | None = None
    resources: Resources | None = None   # the task's hints (cores, memory_gb, expected_hours)
    # the suite's reference settings on this geometry where they are not the defaults (a reference
    # task's 'settings'): gates look the references up with these
    reference_settings: tuple[tuple[str, MethodSettings], ...] = ()
    init_params: Path | None = None      # an NQS task's init = PATH: the parameters it starts from

    @property
    def name(self) -> str:
        """The record's name: ``exact``, ``nqs-rbm-exact-s0``, ``nqs-rbm-exact-s0.bands-exact``."""
        return self.path.stem

    @property
    def system(self) -> str:
        return self.geom.spec.id

    @property
    def params(self) -> tuple[tuple[str, float], ...]:
        return tuple(sorted(self.geom.params.items()))

    @property
    def kmesh(self) -> Mesh:
        return self.geom.kmesh

    @property
    def group(self) -> str:
        return f"{self.system}|{self.params}|{self.kmesh}"

    def geometry(self) -> catalog.Geometry:
        return self.geom

    def label(self) -> str:
        p = ",".join(f"{k}={v:g}" for k, v in self.params)
        return f"{self.system} {p} k{'x'.join(map(str, self.kmesh))} {self.name}".replace("  ", " ")

    def __repr__(self) -> str:
        return f"Job({self.label()})"


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _kmeshes(task: TaskBase, spec) -> list[Mesh]:
    km = task.kmesh
    if km == "default":
        return [tuple(spec.kmesh)]
    if km in ("exact", "beyond", "all"):
        out = []
        if km in ("exact", "all"):
            out += list(spec.kmeshes.exact)
        if km in ("beyond", "all"):
            out += list(spec.kmeshes.beyond)
        if not out:
            raise CatalogError(f"{spec.id} has no {km!r} k-meshes in its catalog file")
        return [tuple(m) for m in out]
    if km and isinstance(km[0], (tuple, list)):
        return [tuple(m) for m in km]
    return [tuple(km)]


def _param_grid(task: TaskBase, spec) -> list[dict[str, float]]:
    axes = []
    for name, val in task.params.items():
        if name not in spec.parameters:
            raise CatalogError(f"unknown parameter {name!r} of {spec.id}; known: {sorted(spec.parameters)}")
        if val == "scan":
            vals = list(spec.parameters[name].scan) or [spec.parameters[name].default]
        elif isinstance(val, list):
            vals = val
        else:
            vals = [val]
        axes.append([(name, float(v)) for v in vals])
    return [dict(c) for c in product(*axes)] if axes else [{}]


def _geometries(task: TaskBase):
    spec = catalog.load(task.system)
    for km in _kmeshes(task, spec):
        for p in _param_grid(task, spec):
            yield spec.geometry(p, km)


def _gates_for(gates, record_kind: str, method: str | None = None, task_methods=()) -> tuple[str, ...]:
    """Canonical JSON of the gates that apply to a record of this kind (reference tasks: the
    gate's ``methods``, default every method of the task not named in its ``against``)."""
    out = []
    for g in gates:
        gate = parse_gate(g)
        if record_kind not in gate.applies_to:
            continue
        if record_kind == "reference":
            mine = gate.methods if gate.methods is not None else [
                x for x in task_methods if x not in getattr(gate, "against", ())]
            if method not in mine:
                continue
        out.append(_canon(gate.model_dump()))
    return tuple(out)


def _job(method: str, geom, settings, store: Store, index: int, gates=(), label=None, depends=None) -> Job:
    m = registry.get(method)
    return Job(method, geom, settings, store.path(m, geom, settings, label), index, m.kind, label,
               tuple(gates), depends)


def _expand_reference(task: ReferenceTask, index: int, geom, store: Store) -> list[Job]:
    return [_job(m, geom, task.method_settings(m), store, index,
                 _gates_for(task.gates, "reference", m, task.methods)) for m in task.methods]


def _expand_nqs(task: NQSTask, index: int, geom, store: Store) -> list[Job]:
    job = _job("nqs", geom, task.settings(), store, index, _gates_for(task.gates, "nqs"), task.label)
    return [replace(job, init_params=task.init_params)]


def _expand_bands(task: BandsTask, index: int, geom, store: Store) -> list[Job]:
    gs = _expand_nqs(task, index, geom, store)[0]
    bands = _job("nqs_bands", geom, task.band_settings(), store, index, _gates_for(task.gates, "nqs-bands"),
                 task.label, depends=gs.path)
    return [gs, bands]


_EXPANDERS: dict[str, Callable] = {"reference": _expand_reference, "nqs": _expand_nqs, "bands": _expand_bands}


def jobs(suite: Suite, store: Store | None = None) -> list[Job]:
    """Every record of the suite, in task order, each once (a record asked for by two tasks with
    the same settings is one job with the union of their gates; different settings are an error)."""
    store = store or Store.default()
    out: dict[Path, Job] = {}
    for i, task in enumerate(suite.tasks):
        try:
            geoms = list(_geometries(task))
        except CatalogError as exc:
            raise SuiteError(f"{suite.path}: field 'tasks[{i}]': {exc}") from None
        except ValueError as exc:
            raise SuiteError(f"{suite.path}: field 'tasks[{i}].kmesh': {exc}") from None
        for geom in geoms:
            for job in _EXPANDERS[task.kind](task, i, geom, store):
                if task.resources is not None and job.resources is None:
                    job = replace(job, resources=task.resources)
                old = out.get(job.path)
                if old is None:
                    out[job.path] = job
                elif old.settings != job.settings:
                    raise SuiteError(
                        f"{suite.path}: field 'tasks[{i}]': {job.label()} is also made by tasks[{old.task}] "
                        f"with other settings ({old.settings.settings_hash()} vs "
                        f"{job.settings.settings_hash()}); give one a 'label'")
                else:
                    out[job.path] = replace(old, gates=old.gates + tuple(g for g in job.gates if g not in old.gates))
    refs: dict[str, dict[str, MethodSettings]] = {}
    for job in out.values():
        if job.kind == "reference" and job.settings != registry.get(job.method).default_settings():
            refs.setdefault(job.group, {})[job.method] = job.settings
    return [replace(job, reference_settings=tuple(refs[job.group].items())) if job.group in refs else job
            for job in out.values()]


# ----------------------------------------------------------------------------- status, gates
_INPUT_HASHES: dict[str, str] = {}


def _input_hash(geom) -> str:
    """The geometry's current input hash, memoised for one process (status checks of a suite)."""
    from .build import cache_key

    key = f"{geom.label()}|{json.dumps(geom.as_dict(), sort_keys=True)}"
    if key not in _INPUT_HASHES:
        _INPUT_HASHES[key] = cache_key(geom)
    return _INPUT_HASHES[key]


def status(job: Job, store: Store) -> Status:
    return store.status(job.method, job.geom, job.settings, job.path, job.record_label,
                        input_hash=_input_hash(job.geom))


def read(job: Job):
    from .store import read as read_record

    return read_record(job.path)


def check(suite: Suite, store: Store | None = None) -> list[Row]:
    """Every record present and fresh, and every gate of every record → rows."""
    store = store or Store.default()
    rows = []
    for job in jobs(suite, store):
        st = status(job, store)
        if not st.fresh:
            rows.append(Row("fresh", job, "FAIL", detail=st.error or st.reason))
            for g in job.gates:
                rows.append(Row(parse_gate(g).kind, job, "FAIL", detail="record not present and fresh"))
            continue
        rec = st.record
        failed = getattr(rec, "failed", False)
        rows.append(Row("fresh", job, "WARN" if failed and not job.gates else "PASS",
                        detail=st.reason if not failed else f"failed record: {rec.failure}"))
        for g in job.gates:
            rows.append(parse_gate(g).evaluate(job, rec, store))
    return rows


# ----------------------------------------------------------------------------- running
@dataclass
class Outcome:
    job: Job
    state: Literal["skipped", "done", "failed", "claimed"]   # claimed: by another live run (rechecked)
    message: str = ""
    wall_s: float = 0.0


def _estimate_s(job: Job) -> float:
    """Rough cost (seconds) for the progress bar's ETA: the old record's wall time when there is
    one, else a per-kind guess."""
    try:
        rec = json.loads(job.path.read_text())
        return max(float(rec["provenance"]["wall_time_s"]), 1.0)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if job.resources is not None and job.resources.expected_hours:
        return 3600.0 * job.resources.expected_hours
    if job.kind == "nqs":
        s = job.settings
        return s.steps * (0.05 * job.geom.nk if s.sampler.kind == "exact" else 0.5)
    return 10.0


def _clean_stale_tmp(folder: Path, older_than_s: float = 60.0) -> None:
    """Temporary files left by a killed writer (never records: readers only open ``*.json``).
    Young ones may belong to a live writer, so only old ones go."""
    if not folder.is_dir():
        return
    now = time.time()
    for p in folder.glob(".*.tmp"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                p.unlink()
        except OSError:
            pass


def _run_options(job: Job) -> dict:
    """Run options of a job: its resources' memory as the NQS memory budget."""
    r = job.resources
    out = {"memory_gb": r.memory_gb} if r is not None and r.memory_gb else {}
    return out | ({"init_params": job.init_params} if job.init_params is not None else {})


def run_job(job: Job, store: Store, on_step: Callable | None = None, force: bool = True) -> Outcome:
    """Compute one record (its dependencies are already fresh or computed by the store). With
    ``force=False`` a record that turned fresh meanwhile (another run wrote it) is reused; a
    record another live process has claimed is not computed: state "claimed"."""
    t0 = time.perf_counter()
    _clean_stale_tmp(job.path.parent)    # other writers' leftovers; this record's go with its claim
    try:
        res = store.run(job.method, job.geom, job.settings, path=job.path, label=job.record_label, force=force,
                        ctx=RunContext(resume="auto", checkpoint_every=60.0, on_step=on_step,
                                       options=_run_options(job)))
    except RecordClaimedError as exc:     # another suite computes it (or its input): recheck at the end
        h = exc.holder
        return Outcome(job, "claimed", f"claimed by pid {h.get('pid')} on {h.get('host')}", time.perf_counter() - t0)
    except NqsbenchError as exc:          # divergence, a missing input record, ...: nothing written
        return Outcome(job, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
    rec = res.record
    if res.skipped:
        return Outcome(job, "skipped", "fresh (written by another run meanwhile)", time.perf_counter() - t0)
    msg = ""
    if getattr(rec, "failed", False):
        msg = f"FAILED record: {rec.failure}"
    elif getattr(rec, "energy_per_cell", None) is not None:
        msg = f"E = {rec.energy_per_cell:.8f} Ha/cell"
    return Outcome(job, "done", msg, time.perf_counter() - t0)


@dataclass
class Hooks:
    """In-process progress: ``start(job)`` returns the job's ``on_step(i, n)``; ``outcome(o)``
    as each job ends (not picklable: only executors that run work in this process use it)."""
    start: Callable[[Job], Callable | None]
    outcome: Callable[[Outcome], None]


def _run_group(group: list[Job], store: Store, force: bool = True, hooks: Hooks | None = None) -> list[Outcome]:
    """One task, anywhere: the jobs of one geometry in order (references, then NQS, then bands)."""
    out: list[Outcome] = []
    for job in group:
        dep = next((o for o in out if job.depends and o.job.path == Path(job.depends)), None)
        if dep is not None and dep.state == "failed":
            o = Outcome(job, "failed", "its ground-state run failed")
        elif dep is not None and dep.state == "claimed":
            o = Outcome(job, "claimed", f"its ground state is {dep.message}")
        else:
            try:
                o = run_job(job, store, on_step=hooks.start(job) if hooks else None, force=force)
            except Exception as exc:  # noqa: BLE001 - one broken job must not take the suite down;
                # nothing was written for it, so the next `nqsbench suite` retries it
                o = Outcome(job, "failed", f"{type(exc).__name__}: {exc}")
        if hooks:
            hooks.outcome(o)
        out.append(o)
    return out


def _task_resources(group: list[Job]) -> dict[str, float]:
    """A task's Dask resources: the largest cores and memory of its jobs."""
    out: dict[str, float] = {}
    for job in group:
        r = job.resources
        if r is None:
            continue
        for key, val in (("cores", r.cores), ("memory_gb", r.memory_gb)):
            if val is not None:
                out[key] = max(out.get(key, 0.0), float(val))
    return out


def _wait_for_claims(paths: list[Path], echo: Callable[[str], None], poll_s: float) -> None:
    """Until every claim on ``paths`` is released (or stale: taken over by the next run)."""
    waiting = [claim_path(p) for p in paths]
    said = False
    while True:
        waiting = [lk for lk in waiting if lk.exists() and claim_stale(lk) is None]
        if not waiting:
            return
        if not said:
            echo(f"waiting for {len(waiting)} record(s) claimed by another run")
            said = True
        time.sleep(poll_s)


@dataclass
class Plan:
    todo: list[Job] = field(default_factory=list)
    skipped: list[tuple[Job, Status]] = field(default_factory=list)
    reasons: dict[Path, Status] = field(default_factory=dict)


def plan(suite: Suite, store: Store, force: bool = False) -> Plan:
    """Which jobs must run (missing, stale, unreadable) and which are fresh."""
    p = Plan()
    recomputed: set[Path] = set()
    for job in jobs(suite, store):
        st = status(job, store)
        # a record computed from one that is about to be recomputed is stale too
        if st.fresh and not force and not (job.depends and Path(job.depends) in recomputed):
            p.skipped.append((job, st))
        else:
            p.todo.append(job)
            recomputed.add(job.path)
            p.reasons[job.path] = st if not force else Status(False, "forced")
    return p


TIMEOUT_FACTOR = 4.0     # a task's timeout: this many times its estimate ...
TIMEOUT_FLOOR_S = 600.0  # ... and at least this long


def task_timeout_s(estimate_s: float, minutes: float | None = None) -> float | None:
    """How long a worker may take over a task estimated at ``estimate_s`` before it counts as
    stalled: ``minutes`` when given (0: no limit), else :data:`TIMEOUT_FACTOR` × the estimate,
    at least :data:`TIMEOUT_FLOOR_S` (estimates are rough: a slower machine must not trip it)."""
    if minutes is not None:
        return 60.0 * minutes if minutes > 0 else None
    return max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * estimate_s)



def run_suite(suite: Suite, store: Store | None = None, n_jobs: int = 1, force: bool = False,
              echo: Callable[[str], None] = print, progress: bool = True, executor: Executor | None = None,
              claim_poll_s: float = 2.0, task_timeout_minutes: float | None = None) -> list[Outcome]:
    """Compute every missing or stale record of ``suite`` (fresh ones are skipped) on
    ``executor`` (default: :class:`~nqsbench.executors.LocalExecutor` with ``n_jobs``). Records
    claimed by another live run are waited for and rechecked at the end, never computed twice.
    A task that takes longer than :func:`task_timeout_s` counts as stalled (the local process
    pool and the Dask executor retry it from its checkpoint; ``--jobs 1`` in-process has no watch)."""
    import uuid

    store = store or Store.default()
    executor = executor or LocalExecutor(n_jobs)
    pl = plan(suite, store, force)
    outcomes = [Outcome(j, "skipped", st.reason) for j, st in pl.skipped]
    for job in pl.todo:
        st = pl.reasons[job.path]
        if st.error:
            echo(f"recomputing {job.path}: {st.error}")
    weights = {job.path: _estimate_s(job) for job in pl.todo}
    total = sum(weights.values()) or 1.0

    from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[now]}"),
                   disable=not progress, transient=False)
    n_total, n_done = len(pl.todo), 0
    run_id = uuid.uuid4().hex[:8]

    def tasks_of(todo: list[Job], round_: int) -> list[Task]:
        groups: dict[str, list[Job]] = {}
        for job in todo:
            groups.setdefault(job.group, []).append(job)
        return [Task(f"{suite.name}-{run_id}-{round_}-{i}", g, _task_resources(g),
                     task_timeout_s(sum(weights[j.path] for j in g), task_timeout_minutes))
                for i, g in enumerate(groups.values())]

    with bar:
        tid = bar.add_task(f"suite {suite.name}", total=total, count=f"0/{n_total} records", now="")
        claimed: list[Outcome] = []
        reported: set[int] = set()

        def report(o: Outcome):
            nonlocal n_done
            if id(o) in reported:
                return
            reported.add(id(o))
            if o.state == "claimed":
                echo(f"{'claimed':8s} {o.job.label():48s} {o.message}: rechecked at the end")
                claimed.append(o)
                return
            n_done += 1
            bar.update(tid, completed=done_weight[0] + weights[o.job.path], count=f"{n_done}/{n_total} records")
            done_weight[0] += weights[o.job.path]
            tag = {"done": "done", "failed": "FAILED", "skipped": "fresh"}[o.state]
            echo(f"{tag:8s} {o.job.label():48s} {o.message} ({o.wall_s:.1f} s)")
            outcomes.append(o)

        done_weight = [0.0]

        def start(job: Job):
            base, w = done_weight[0], weights[job.path]
            bar.update(tid, now=job.label())

            def on_step(i, n):
                bar.update(tid, completed=base + w * i / max(n, 1))
            return on_step

        hooks = Hooks(start, report)

        def done(task: Task, res: list[Outcome]):
            for o in res:
                report(o)

        def died(task: Task, reason: str):
            for job in task.items:
                release_stale_claim(job.path)       # a killed worker's claim: nothing was written
                report(Outcome(job, "failed", reason))

        tasks = tasks_of(pl.todo, 0)
        round_ = 0
        while tasks:
            bar.update(tid, now=executor.describe(len(tasks)))
            claimed.clear()
            executor.run(tasks, partial(_run_group, store=store, force=force), hooks, done, died, echo)
            if not claimed:
                break
            # another run holds these: wait for it, then recheck (a record it wrote is fresh and
            # reused; one it gave up on is computed here)
            _wait_for_claims([o.job.path for o in claimed], echo, claim_poll_s)
            again = {o.job.path for o in claimed}
            round_ += 1
            tasks = tasks_of([j for j in pl.todo if j.path in again], round_)
            force = False
        bar.update(tid, completed=total, now="")
    return outcomes
