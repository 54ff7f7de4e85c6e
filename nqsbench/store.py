"""The record store: where every record lives, reading and writing any record, and freshness.

One implementation for references, NQS runs, bands, suites, gates, table and report.

- Paths: ``<root>/<system>/<params>_k<mesh>/<name>.json`` with ``<root>`` the reference cache
  for reference records and the results folder for everything else, ``<name>`` from the method
  (``exact``, ``nqs-rbm-exact-s0``, ``nqs-rbm-exact-s0.bands-exact``).
- Fresh means: the record exists and parses against its schema (version-1 records are migrated
  on reading), its ``input_hash`` equals the hash of the current build inputs of its geometry
  (geometry, k-mesh, basis, SCF settings, PySCF version: computed without building anything),
  its ``settings_hash`` equals the hash of the settings asked for, and the records it is pinned
  to (an NQS ground state for its bands) are fresh and the very ones it was computed from. The
  ``hamiltonian_hash`` is *not* compared across machines: Bloch-orbital phases are arbitrary, so
  the same inputs on another thread count give another, equivalent, integral file.
- :meth:`Store.run`: reuse a fresh record or compute it (dependencies first), then write it
  atomically (temporary file + rename).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from . import config
from .catalog import Geometry
from .errors import RecordError
from .methods import Method, RunContext, compute, get
from .records import STALE, CellRecord, MethodSettings, read_record, write_record

log = logging.getLogger(__name__)


def geometry_folder(geom: Geometry, root: Path) -> Path:
    """<root>/<system>/<params>_k<mesh>: where every record of one geometry lives."""
    params = "_".join(f"{k}{v:g}" for k, v in sorted(geom.params.items()))
    return Path(root) / geom.spec.id / f"{params}_k{'x'.join(map(str, geom.kmesh))}"


def record_paths(root: str | Path) -> list[Path]:
    """Record files under ``root``: ``*.json``, not the temporary ``.*.tmp`` files of writers."""
    root = Path(root)
    return sorted(p for p in root.rglob("*.json") if not p.name.startswith(".")) if root.is_dir() else []


def read(path: str | Path, model=None) -> CellRecord:
    """A record of any kind (its ``kind`` picks the schema); RecordError names the path."""
    return read_record(path, model)


def write(record: CellRecord, path: str | Path) -> Path:
    return write_record(record, path)


@dataclass(frozen=True)
class Status:
    fresh: bool
    reason: str
    error: str | None = None        # a corrupt/invalid record, named by path


@dataclass(frozen=True)
class Outcome:
    path: Path
    record: CellRecord
    skipped: bool                   # a fresh record was reused


def _as_method(method: Method | str) -> Method:
    return get(method) if isinstance(method, str) else method


def settings_diff(want: MethodSettings, have: MethodSettings) -> str:
    a, b = want.flat(), have.flat()
    diff = [k for k in a if a[k] != b.get(k)] + [k for k in b if k not in a]
    return ", ".join(f"{k} {b.get(k)!r} ≠ {a.get(k)!r}" for k in diff) or "settings hash differs"


@dataclass(frozen=True)
class Store:
    """The two roots records live under: the reference cache and the results folder."""
    references: Path
    results: Path

    @classmethod
    def default(cls, references: Path | None = None, results: Path | None = None) -> "Store":
        """Explicit folders, else ``$NQSBENCH_REFERENCES`` / ``$NQSBENCH_RESULTS``, else the
        packaged reference cache and ``results/`` (:mod:`nqsbench.config`)."""
        return cls(Path(references) if references else config.references_dir(),
                   Path(results) if results else config.results_dir())

    # ------------------------------------------------------------------ paths
    def root_for(self, method: Method | str) -> Path:
        return self.references if _as_method(method).kind == "reference" else self.results

    def path(self, method: Method | str, geom: Geometry, settings: MethodSettings | None = None,
             label: str | None = None) -> Path:
        m = _as_method(method)
        settings = settings if settings is not None else m.default_settings()
        return geometry_folder(geom, self.root_for(m)) / f"{m.record_name(settings, label)}.json"

    # ------------------------------------------------------------------ freshness
    def status(self, method: Method | str, geom: Geometry, settings: MethodSettings | None = None,
               path: Path | None = None, label: str | None = None, input_hash: str | None = None) -> Status:
        """Is the record of (method, geometry, settings) present and computed from the same
        inputs? ``input_hash``: the geometry's current one, when the caller has it already."""
        m = _as_method(method)
        settings = settings if settings is not None else m.default_settings()
        path = Path(path) if path is not None else self.path(m, geom, settings, label)
        if not path.exists():
            return Status(False, "missing")
        try:
            rec = read(path)
        except RecordError as exc:
            return Status(False, "unreadable", str(exc))
        if input_hash is None:
            from .build import cache_key
            input_hash = cache_key(geom)
        if rec.input_hash != input_hash:
            return Status(False, f"input hash {rec.input_hash} != {input_hash} (inputs or PySCF changed)")
        if rec.settings_hash == STALE:
            return Status(False, "made by nqsbench with schema version 1 and settings that are not "
                                 "today's (or not recorded): recompute")
        if rec.settings_hash != settings.settings_hash():
            return Status(False, "settings differ: " + settings_diff(settings, rec.settings))
        pinned = {}
        for dep in m.dependencies(settings, label):
            if not dep.pinned:
                continue
            st = self.status(dep.method, geom, dep.settings, label=dep.label, input_hash=input_hash)
            if not st.fresh:
                return Status(False, f"its input {dep.name} is not fresh ({st.reason})")
            dpath = self.path(dep.method, geom, dep.settings, dep.label)
            pinned[dep.name] = (dpath, read(dpath))
        why = m.stale_reason(rec, pinned)
        if why:
            return Status(False, why)
        if not rec.converged:
            return Status(True, f"fresh, failed: {rec.failure}")
        return Status(True, "fresh")

    def fresh_record(self, method: Method | str, geom: Geometry, settings: MethodSettings | None = None,
                     label: str | None = None) -> tuple[Path, CellRecord] | None:
        """(path, record) when fresh, else None."""
        m = _as_method(method)
        path = self.path(m, geom, settings, label)
        return (path, read(path)) if self.status(m, geom, settings, path, label).fresh else None

    # ------------------------------------------------------------------ computing
    def inputs(self, method: Method, geom: Geometry, settings: MethodSettings, label: str | None = None,
               compute_missing: bool = True) -> dict[str, tuple[Path, CellRecord]]:
        """The method's dependencies: fresh ones read, missing required ones computed first."""
        out = {}
        for dep in method.dependencies(settings, label):
            found = self.fresh_record(dep.method, geom, dep.settings, dep.label)
            if found is None and dep.required and compute_missing:
                res = self.run(dep.method, geom, dep.settings, label=dep.label)
                found = (res.path, res.record)
            if found is not None:
                out[dep.name] = found
        return out

    def run(self, method: Method | str, geom: Geometry, settings: MethodSettings | None = None, *,
            path: Path | None = None, label: str | None = None, force: bool = False,
            ctx: RunContext | None = None, ham=None) -> Outcome:
        """The record of (method, geometry, settings): reused when fresh (unless ``force``), else
        computed and written atomically."""
        m = _as_method(method)
        settings = settings if settings is not None else m.default_settings()
        path = Path(path) if path is not None else self.path(m, geom, settings, label)
        st = self.status(m, geom, settings, path, label)
        if st.fresh and not force:
            return Outcome(path, read(path), True)
        if st.reason != "missing":
            log.info("recomputing %s: %s", path, st.error or st.reason)
        ctx = ctx or RunContext()
        ctx.path = path
        ctx.inputs = self.inputs(m, geom, settings, label)
        record = compute(m, geom, settings, ham=ham, ctx=ctx)
        write(record, path)
        return Outcome(path, record, False)
