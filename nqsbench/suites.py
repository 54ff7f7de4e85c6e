"""Suites as data: ``suites/<name>.toml`` → a validated :class:`Suite` → jobs → records.

A suite lists *tasks* (what to compute) and, with each task, the *gates* its records must pass
(:mod:`nqsbench.gates`). Every task kind is a plug-in: a pydantic model registered in
:data:`TASK_KINDS` that expands into :class:`Job` s, one per record; every record kind has a
:class:`JobKind` in :data:`JOB_KINDS` that says whether its record is present and fresh, reads it
and computes it. Shipped kinds: ``reference`` (exact/HF/MP2/CCSD/... through
:func:`nqsbench.references.run_reference`), ``nqs`` (an NQS ground state, as ``nqsbench run``)
and ``bands`` (an NQS ground state and its quasiparticle bands, :mod:`nqsbench.bands`).

Fresh means: the record parses against its schema, its ``input_hash`` equals the hash of the
current build inputs (geometry, k-mesh, basis, SCF settings, PySCF version; computed without
building anything) and its settings equal the suite's. The ``hamiltonian_hash`` is *not*
compared across machines: Bloch-orbital phases are arbitrary, so the same inputs on another
thread count give another (equivalent) integral file and another hash (design.md).

Running is resumable: every record is written atomically (temporary file + rename) and fresh
records are skipped, so a suite killed mid-way and restarted recomputes only what is missing;
NQS runs also checkpoint every minute and resume from a checkpoint of the same settings.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import catalog
from .errors import CatalogError, NqsbenchError, RecordError
from .io import read_toml

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITES_DIR = REPO_ROOT / "suites"
CHEMICAL_ACCURACY_MHA = 1.6      # 1 kcal/mol = 1.5936 mHa, per primitive cell (design.md)


class SuiteError(NqsbenchError):
    """A suite file is invalid (one line naming the file, field and fix)."""


# ----------------------------------------------------------------------------- roots
def suites_dir() -> Path:
    env = os.environ.get("NQSBENCH_SUITES")
    return Path(env) if env else SUITES_DIR


def references_root() -> Path:
    """``$NQSBENCH_REFERENCES`` when set (tests), else the committed cache ``references/``."""
    from .references import REFERENCES_DIR

    env = os.environ.get("NQSBENCH_REFERENCES")
    return Path(env) if env else REFERENCES_DIR


def results_root() -> Path:
    from .records import results_root as _root

    return _root()


@dataclass(frozen=True)
class Roots:
    references: Path
    results: Path

    @classmethod
    def default(cls, references: Path | None = None, results: Path | None = None) -> "Roots":
        return cls(Path(references) if references else references_root(),
                   Path(results) if results else results_root())


# ----------------------------------------------------------------------------- models
class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ParamValue = float | list[float] | Literal["scan"]
Mesh = tuple[int, int, int]


class TaskBase(_Frozen):
    """Fields every task shares: which geometries (a scan is a list, or "scan" for the
    catalog's scan) and k-meshes (one mesh, a list of meshes, or default/exact/beyond/all)."""
    kind: str
    system: str
    params: dict[str, ParamValue] = {}
    kmesh: Mesh | list[Mesh] | Literal["default", "exact", "beyond", "all"] = "default"
    gates: list[dict[str, Any]] = []     # validated by nqsbench.gates.parse_gate (a plug-in registry)
    note: str = ""


class ReferenceTask(TaskBase):
    kind: Literal["reference"]
    methods: list[Literal["exact", "hf", "mp2", "ccsd", "ccsd_t", "eom_ccsd", "dmrg"]] = Field(min_length=1)


class NQSTask(TaskBase):
    """An NQS ground state, as ``nqsbench run`` (None = the per-sampler default of
    :mod:`nqsbench.nqs.defaults`, resolved when the suite is loaded)."""
    kind: Literal["nqs"]
    model: Literal["rbm"] = "rbm"
    alpha: float = Field(2.0, gt=0)
    sampler: Literal["exact", "mcmc"] = "exact"
    steps: int = Field(ge=1)
    seed: int = Field(0, ge=0)
    init: Literal["hf", "random"] = "hf"
    lr: float | None = Field(None, gt=0)
    lr_final: float | None = Field(None, ge=0, description="cosine-decay the lr to this over the steps; 0 = constant")
    max_norm: float | None = Field(None, ge=0, description="trust region on |δ| per SR step; 0 = none")
    diag_shift: float | None = Field(None, gt=0)
    samples: int | None = Field(None, ge=2)
    chains: int | None = Field(None, ge=1)
    beta: float | None = Field(None, gt=0, le=1)
    label: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]*$",
                              description="suffix of the record name, for runs that differ in settings")

    @model_validator(mode="after")
    def _mcmc_only(self):
        if self.sampler == "exact" and any(v is not None for v in (self.samples, self.chains, self.beta)):
            raise ValueError("samples/chains/beta apply to sampler = 'mcmc' only; remove them")
        return self


class BandsTask(NQSTask):
    """An NQS ground state (same fields as ``nqs``) and its quasiparticle bands from the
    excitation subspace (:func:`nqsbench.bands.compute_bands`)."""
    kind: Literal["bands"]
    estimator: Literal["exact", "monte_carlo"] = "exact"
    band_samples: int = Field(8192, ge=2)
    band_chains: int = Field(32, ge=2)


TASK_KINDS: dict[str, type[TaskBase]] = {"reference": ReferenceTask, "nqs": NQSTask, "bands": BandsTask}


def register_task_kind(name: str, model: type[TaskBase], expand: Callable | None = None) -> None:
    """Plug in a task kind: ``model`` validates its TOML table, ``expand(task, geom, roots)``
    returns its jobs (default: the model's own ``jobs`` method)."""
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


def _where(loc) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _one_line(path: Path, prefix: str, exc: ValidationError) -> SuiteError:
    err = exc.errors()[0]
    loc = _where(err["loc"])
    where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "suite")
    if err["type"] == "extra_forbidden":
        return SuiteError(f"{path}: field '{where}': unknown key; remove it (see README, Suites)")
    if err["type"] == "missing":
        return SuiteError(f"{path}: field '{where}': missing; add it")
    return SuiteError(f"{path}: field '{where}': {err['msg'].removeprefix('Value error, ')}")


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (``suites/NAME.toml``) or path; errors name the file and field."""
    from .gates import parse_gate

    p = Path(name_or_path)
    if p.suffix != ".toml" and not p.exists():
        p = suites_dir() / f"{name_or_path}.toml"
        if not p.exists():
            names = ", ".join(sorted(q.stem for q in suites_dir().glob("*.toml")))
            raise SuiteError(f"unknown suite {str(name_or_path)!r}; available: {names}")
    data = read_toml(p, SuiteError, "suite file")
    raw_tasks = data.pop("tasks", None)
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise SuiteError(f"{p}: field 'tasks': missing; add at least one [[tasks]] table")
    tasks = []
    for i, t in enumerate(raw_tasks):
        kind = t.get("kind") if isinstance(t, dict) else None
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
@dataclass(frozen=True)
class Job:
    """One record to produce: kind (of record), where, with which settings, under which gates."""
    kind: str
    system: str
    params: tuple[tuple[str, float], ...]
    kmesh: Mesh
    method: str
    path: Path
    settings: str                       # canonical JSON of the settings that define the record
    task: int
    gates: tuple[str, ...] = ()         # canonical JSON of each gate (nqsbench.gates.parse_gate)
    depends: str | None = None          # path of a record this one is computed from

    @property
    def settings_dict(self) -> dict:
        return json.loads(self.settings)

    @property
    def group(self) -> str:
        return f"{self.system}|{self.params}|{self.kmesh}"

    def geometry(self) -> catalog.Geometry:
        return catalog.load(self.system).geometry(dict(self.params), self.kmesh)

    def label(self) -> str:
        p = ",".join(f"{k}={v:g}" for k, v in self.params)
        return f"{self.system} {p} k{'x'.join(map(str, self.kmesh))} {self.method}".replace("  ", " ")


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


def nqs_settings(task: NQSTask) -> dict:
    """The settings an NQS record must carry to count as this task's (defaults resolved)."""
    from .nqs.defaults import resolve_settings

    r = resolve_settings(task.sampler, lr=task.lr, lr_final=task.lr_final, max_norm=task.max_norm,
                         diag_shift=task.diag_shift, n_samples=task.samples, n_chains=task.chains,
                         beta=task.beta)
    s = {"model": task.model, "alpha": task.alpha, "sampler": task.sampler, "steps": task.steps,
         "seed": task.seed, "init": task.init, "lr": r["lr"], "lr_final": r["lr_final"],
         "max_norm": r["max_norm"], "diag_shift": r["diag_shift"]}
    if task.sampler == "mcmc":
        s.update(samples=r["n_samples"], chains=r["n_chains"], beta=r["beta"])
    return s


def _nqs_job(task: NQSTask, index: int, geom, roots: Roots, gates) -> Job:
    from .records import results_path

    path = results_path(geom, task.model, task.sampler, task.seed, root=roots.results)
    if task.label:
        path = path.with_name(f"{path.stem}-{task.label}.json")
    return Job("nqs", geom.spec.id, tuple(sorted(geom.params.items())), geom.kmesh, path.stem, path,
               _canon(nqs_settings(task)), index, gates)


def _gate_kinds(gates) -> dict[str, tuple[str, ...]]:
    from .gates import parse_gate

    out: dict[str, list[str]] = {}
    for g in gates:
        gate = parse_gate(g)
        for kind in gate.applies_to:
            out.setdefault(kind, []).append(_canon(gate.model_dump()))
    return {k: tuple(v) for k, v in out.items()}


def _expand_reference(task: ReferenceTask, index: int, geom, roots: Roots) -> list[Job]:
    from .gates import parse_gate
    from .references import record_path

    out = []
    for m in task.methods:
        gates = []
        for g in task.gates:
            gate = parse_gate(g)
            mine = gate.methods if gate.methods is not None else [x for x in task.methods
                                                                 if x not in getattr(gate, "against", ())]
            if "reference" in gate.applies_to and m in mine:
                gates.append(_canon(gate.model_dump()))
        out.append(Job("reference", geom.spec.id, tuple(sorted(geom.params.items())), geom.kmesh, m,
                       record_path(geom, m, roots.references), _canon({"method": m}), index, tuple(gates)))
    return out


def _expand_nqs(task: NQSTask, index: int, geom, roots: Roots) -> list[Job]:
    return [_nqs_job(task, index, geom, roots, _gate_kinds(task.gates).get("nqs", ()))]


def _expand_bands(task: BandsTask, index: int, geom, roots: Roots) -> list[Job]:
    from .records import bands_path

    kinds = _gate_kinds(task.gates)
    gs = _nqs_job(task, index, geom, roots, kinds.get("nqs", ()))
    path = bands_path(gs.path, task.estimator)
    s = {"estimator": task.estimator, "ground_state": gs.path.name, "steps": task.steps}
    if task.estimator == "monte_carlo":
        s.update(samples=task.band_samples, chains=task.band_chains, seed=task.seed)
    bj = Job("bands", gs.system, gs.params, gs.kmesh, path.stem, path, _canon(s), index,
             kinds.get("bands", ()), depends=str(gs.path))
    return [gs, bj]


_EXPANDERS: dict[str, Callable] = {"reference": _expand_reference, "nqs": _expand_nqs, "bands": _expand_bands}


def jobs(suite: Suite, roots: Roots | None = None) -> list[Job]:
    """Every record of the suite, in task order, each once (a record asked for by two tasks with
    the same settings is one job with the union of their gates; different settings are an error)."""
    roots = roots or Roots.default()
    out: dict[Path, Job] = {}
    for i, task in enumerate(suite.tasks):
        try:
            geoms = list(_geometries(task))
        except CatalogError as exc:
            raise SuiteError(f"{suite.path}: field 'tasks[{i}]': {exc}") from None
        except ValueError as exc:
            raise SuiteError(f"{suite.path}: field 'tasks[{i}].kmesh': {exc}") from None
        for geom in geoms:
            for job in _EXPANDERS[task.kind](task, i, geom, roots):
                old = out.get(job.path)
                if old is None:
                    out[job.path] = job
                elif old.settings != job.settings:
                    raise SuiteError(
                        f"{suite.path}: field 'tasks[{i}]': {job.label()} is also made by tasks[{old.task}] "
                        f"with other settings ({old.settings} vs {job.settings}); give one a 'label'")
                else:
                    out[job.path] = Job(**{**old.__dict__, "gates": old.gates + tuple(
                        g for g in job.gates if g not in old.gates)})
    return list(out.values())


# ----------------------------------------------------------------------------- job kinds
@dataclass
class Status:
    fresh: bool
    reason: str
    error: str | None = None        # a corrupt/invalid record, named by path


class JobKind:
    """What a record kind must provide: status, read, run (subclass and add to JOB_KINDS)."""
    record_model: ClassVar[type]

    def read(self, job: Job):
        from .records import read_record

        return read_record(job.path, self.record_model)

    def status(self, job: Job, roots: Roots) -> Status:
        raise NotImplementedError

    def run(self, job: Job, roots: Roots, on_step: Callable | None = None):
        raise NotImplementedError

    def read_same_inputs(self, job: Job):
        """(record, None) when the record exists, parses and was made from the current inputs,
        else (None, the Status saying why not)."""
        if not job.path.exists():
            return None, Status(False, "missing")
        try:
            rec = self.read(job)
        except RecordError as exc:
            return None, Status(False, "unreadable", str(exc))
        bad = _input_hash_ok(rec, job.geometry())
        return (None, Status(False, bad)) if bad else (rec, None)


def _input_hash_ok(rec, geom) -> str | None:
    from .build import cache_key

    key = cache_key(geom)
    if rec.input_hash != key:
        return f"input hash {rec.input_hash} != {key} (inputs or PySCF changed)"
    return None


class ReferenceKind(JobKind):
    @property
    def record_model(self):
        from .records import ReferenceRecord
        return ReferenceRecord

    def status(self, job, roots):
        from .references import cache_status

        st = cache_status(job.geometry(), job.method, roots.references, job.path)
        if st.reason.startswith("unreadable"):
            return Status(False, "unreadable", st.reason[len("unreadable ("):-1])
        return Status(st.fresh, "fresh" if st.fresh else st.reason)

    def run(self, job, roots, on_step=None):
        from .references import run_reference

        _, rec, _ = run_reference(job.method, job.system, dict(job.params), job.kmesh, out=job.path,
                                  force=True, root=roots.references)
        return rec


class NQSKind(JobKind):
    @property
    def record_model(self):
        from .records import ResultRecord
        return ResultRecord

    @staticmethod
    def record_settings(rec) -> dict:
        """The suite-comparable settings of a result record (see :func:`nqs_settings`)."""
        kind = {"metropolis": "mcmc"}.get(rec.sampler.get("kind"), rec.sampler.get("kind"))
        lr = rec.optimizer.get("learning_rate")
        lr, lr_final = (lr["init"], lr["final"]) if isinstance(lr, dict) else (lr, 0.0)   # 0.0: off
        s = {"model": rec.method.removeprefix("nqs-"), "alpha": rec.model.get("alpha"), "sampler": kind,
             "steps": rec.n_steps, "seed": rec.seed, "init": rec.init, "lr": lr, "lr_final": lr_final,
             "max_norm": rec.optimizer.get("max_norm") or 0.0, "diag_shift": rec.optimizer.get("diag_shift")}
        if kind == "mcmc":
            s.update(samples=rec.sampler.get("n_samples"), chains=rec.sampler.get("n_chains"),
                     beta=rec.sampler.get("beta"))
        return s

    def status(self, job, roots):
        rec, why_not = self.read_same_inputs(job)
        if why_not:
            return why_not
        want, have = job.settings_dict, self.record_settings(rec)
        if want.get("sampler") == "mcmc" and have.get("samples") is not None:
            # the sampler rounds samples up to a multiple of the chains
            want = dict(want, samples=-(-want["samples"] // want["chains"]) * want["chains"])
        diff = [k for k in want if want[k] != have.get(k)]
        if diff:
            return Status(False, "settings differ: " + ", ".join(f"{k} {have.get(k)!r} ≠ {want[k]!r}" for k in diff))
        if not rec.converged:
            return Status(True, f"fresh, failed: {rec.failure}")
        return Status(True, "fresh")

    def run(self, job, roots, on_step=None):
        return run_nqs_job(job, on_step=on_step)


class BandsKind(JobKind):
    @property
    def record_model(self):
        from .records import BandRecord
        return BandRecord

    def status(self, job, roots):
        from .records import ResultRecord, read_record

        rec, why_not = self.read_same_inputs(job)
        if why_not:
            return why_not
        s = job.settings_dict
        if rec.estimator != s["estimator"] or rec.ground_state.get("path") != s["ground_state"]:
            return Status(False, "settings differ (estimator or ground state)")
        try:
            gs = read_record(job.depends, ResultRecord)
        except RecordError:
            return Status(False, "its ground-state record is missing or unreadable")
        # bands belong to one ground-state run: a rerun NQS makes them stale
        if (rec.ground_state.get("n_steps") != gs.n_steps
                or rec.ground_state.get("energy_per_cell") != gs.energy_per_cell):
            return Status(False, "computed from another ground-state run")
        return Status(True, "fresh")

    def run(self, job, roots, on_step=None):
        from .bands import compute_bands

        s = job.settings_dict
        _, rec = compute_bands(job.geometry(), job.depends, estimator=s["estimator"],
                               n_samples=s.get("samples", 8192), n_chains=s.get("chains", 32),
                               seed=s.get("seed", 0), out=job.path, figure=True)
        return rec


JOB_KINDS: dict[str, JobKind] = {"reference": ReferenceKind(), "nqs": NQSKind(), "bands": BandsKind()}


def run_nqs_job(job: Job, on_step: Callable | None = None):
    """``nqsbench run`` for one suite job: resumes from a checkpoint with the same settings,
    checkpoints every minute, writes the record atomically. Raises DivergenceError (nothing
    written) when the optimization diverges."""
    from .build import get_hamiltonian
    from .nqs import Checkpoint, DivergenceGuard, latest_checkpoint, load_checkpoint
    from .nqs.defaults import make_driver
    from .nqs.results import save_result

    s = job.settings_dict
    geom = job.geometry()
    t0 = time.perf_counter()
    ham = get_hamiltonian(geom)
    driver = make_driver(ham, sampler=s["sampler"], alpha=s["alpha"], seed=s["seed"], lr=s["lr"],
                         lr_final=s["lr_final"], max_norm=s["max_norm"], n_steps=s["steps"],
                         diag_shift=s["diag_shift"], n_samples=s.get("samples"), n_chains=s.get("chains"),
                         beta=s.get("beta"), init=s["init"])
    ckpt_dir = job.path.with_name(job.path.stem + ".ckpt")
    resume = None
    ck = latest_checkpoint(ckpt_dir)
    if ck is not None:
        try:
            meta = load_checkpoint(ck)["meta"]
            mine = driver._meta()
            same = all(meta.get(k) == mine[k] for k in ("hamiltonian_hash", "seed", "n_parameters", "flags"))
        except Exception as exc:  # noqa: BLE001 - a checkpoint cut short by a kill is just discarded
            log.info("discarding unreadable checkpoint %s: %s", ck, exc)
            same = False
        if same:
            resume = ckpt_dir
        else:
            for p in ckpt_dir.glob("ckpt_*.npz"):
                p.unlink()
    callbacks = [DivergenceGuard(), Checkpoint(ckpt_dir, every_seconds=60.0)]
    if on_step is not None:
        callbacks.append(lambda driver, step, log: on_step(step + 1, s["steps"]) or False)
    driver.run(s["steps"], callbacks=callbacks, resume=resume)
    _, rec = save_result(driver, geom, time.perf_counter() - t0, job.path, model_name=s["model"],
                         sampler_name=s["sampler"])
    return rec


def status(job: Job, roots: Roots) -> Status:
    return JOB_KINDS[job.kind].status(job, roots)


def read(job: Job):
    return JOB_KINDS[job.kind].read(job)


# ----------------------------------------------------------------------------- running
@dataclass
class Outcome:
    job: Job
    state: Literal["skipped", "done", "failed"]
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
    if job.kind == "nqs":
        s = job.settings_dict
        nk = job.kmesh[0] * job.kmesh[1] * job.kmesh[2]
        return s["steps"] * (0.05 * nk if s["sampler"] == "exact" else 0.5)
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


def run_job(job: Job, roots: Roots, on_step: Callable | None = None) -> Outcome:
    t0 = time.perf_counter()
    _clean_stale_tmp(job.path.parent)
    _clean_stale_tmp(job.path.with_name(job.path.stem + ".ckpt"))
    try:
        rec = JOB_KINDS[job.kind].run(job, roots, on_step=on_step)
    except NqsbenchError as exc:          # divergence, a missing input record, ...: nothing written
        return Outcome(job, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
    msg = ""
    if getattr(rec, "converged", True) is False:
        msg = f"FAILED record: {rec.failure}"
    elif getattr(rec, "energy_per_cell", None) is not None:
        msg = f"E = {rec.energy_per_cell:.8f} Ha/cell"
    return Outcome(job, "done", msg, time.perf_counter() - t0)


def _run_group(group: list[Job], roots: Roots) -> list[Outcome]:
    """Worker entry point: the jobs of one geometry in order (references, then NQS, then bands)."""
    out = []
    for job in group:
        if job.depends and any(o.job.path == Path(job.depends) and o.state == "failed" for o in out):
            out.append(Outcome(job, "failed", "its ground-state run failed"))
            continue
        try:
            out.append(run_job(job, roots))
        except Exception as exc:  # noqa: BLE001 - one broken job must not take the suite down;
            # nothing was written for it, so the next `nqsbench suite` retries it
            out.append(Outcome(job, "failed", f"{type(exc).__name__}: {exc}"))
    return out


def _worker_init() -> None:
    # One thread per worker: N workers on N cores without oversubscription (BLAS and XLA).
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()


@dataclass
class Plan:
    todo: list[Job] = field(default_factory=list)
    skipped: list[tuple[Job, Status]] = field(default_factory=list)
    reasons: dict[Path, Status] = field(default_factory=dict)


def plan(suite: Suite, roots: Roots, force: bool = False) -> Plan:
    """Which jobs must run (missing, stale, unreadable) and which are fresh."""
    p = Plan()
    recomputed: set[Path] = set()
    for job in jobs(suite, roots):
        st = status(job, roots)
        # a record computed from one that is about to be recomputed is stale too
        if st.fresh and not force and not (job.depends and Path(job.depends) in recomputed):
            p.skipped.append((job, st))
        else:
            p.todo.append(job)
            recomputed.add(job.path)
            p.reasons[job.path] = st if not force else Status(False, "forced")
    return p


def run_suite(suite: Suite, roots: Roots | None = None, n_jobs: int = 1, force: bool = False,
              echo: Callable[[str], None] = print, progress: bool = True) -> list[Outcome]:
    """Compute every missing or stale record of ``suite`` (fresh ones are skipped)."""
    roots = roots or Roots.default()
    pl = plan(suite, roots, force)
    outcomes = [Outcome(j, "skipped", st.reason) for j, st in pl.skipped]
    for job in pl.todo:
        st = pl.reasons[job.path]
        if st.error:
            echo(f"recomputing {job.path}: {st.error}")
    groups: dict[str, list[Job]] = {}
    for job in pl.todo:
        groups.setdefault(job.group, []).append(job)
    weights = {job.path: _estimate_s(job) for job in pl.todo}
    total = sum(weights.values()) or 1.0

    from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[now]}"),
                   disable=not progress, transient=False)
    n_total, n_done = len(pl.todo), 0

    def report(o: Outcome):
        nonlocal n_done
        n_done += 1
        tag = {"done": "done", "failed": "FAILED"}[o.state]
        echo(f"{tag:6s} {o.job.label():48s} {o.message} ({o.wall_s:.1f} s)")
        outcomes.append(o)

    with bar:
        tid = bar.add_task(f"suite {suite.name}", total=total, count=f"0/{n_total} records", now="")
        if n_jobs <= 1 or len(groups) <= 1:
            for group in groups.values():
                done_paths: dict[Path, str] = {}
                for job in group:
                    base = bar.tasks[0].completed
                    w = weights[job.path]
                    bar.update(tid, now=job.label())

                    def on_step(i, n, base=base, w=w):
                        bar.update(tid, completed=base + w * i / max(n, 1))
                    if job.depends and done_paths.get(Path(job.depends)) == "failed":
                        o = Outcome(job, "failed", "its ground-state run failed")
                    else:
                        try:
                            o = run_job(job, roots, on_step=on_step)
                        except Exception as exc:  # noqa: BLE001 - see _run_group
                            o = Outcome(job, "failed", f"{type(exc).__name__}: {exc}")
                    done_paths[job.path] = o.state
                    bar.update(tid, completed=base + w, count=f"{n_done + 1}/{n_total} records")
                    report(o)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn, never fork: JAX (threads, XLA state) is not fork-safe
            with ProcessPoolExecutor(max_workers=n_jobs, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init) as pool:
                futs = {pool.submit(_run_group, g, roots): g for g in groups.values()}
                bar.update(tid, now=f"{min(n_jobs, len(groups))} workers")
                for fut in as_completed(futs):
                    g = futs[fut]
                    try:
                        res = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a worker died (e.g. out of memory)
                        res = [Outcome(j, "failed", f"worker died: {type(exc).__name__}: {exc}") for j in g]
                    for o in res:
                        bar.advance(tid, weights[o.job.path])
                        bar.update(tid, count=f"{n_done + 1}/{n_total} records")
                        report(o)
        bar.update(tid, completed=total, now="")
    return outcomes
