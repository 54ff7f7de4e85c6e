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
- Claims (:meth:`Store.claim`): a writer claims a record before computing it, with a lock file
  ``<record>.lock`` created with ``O_CREAT | O_EXCL`` (pid, host, time), refreshed every
  :data:`CLAIM_HEARTBEAT_S` and removed after the write; so two suites (local or Dask workers)
  on one results folder never compute one record twice. A claim is stale, and taken over, when
  its pid is dead on this host or its lock was not refreshed for :data:`CLAIM_STALE_S`.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .catalog import Geometry
from .errors import NqsbenchError, RecordError
from .io import inside
from .methods import Method, RunContext, compute, get
from .methods.base import checkpoint_dir
from .records import STALE, CellRecord, MethodSettings, read_record, write_record

log = logging.getLogger(__name__)


def geometry_folder(geom: Geometry, root: Path) -> Path:
    """<root>/<system>/<params>_k<mesh>: where every record of one geometry lives."""
    params = "_".join(f"{k}{v:g}" for k, v in sorted(geom.params.items()))
    folder = Path(root) / geom.spec.id / f"{params}_k{'x'.join(map(str, geom.kmesh))}"
    return inside(folder, root, f"{geom.spec.id}: record folder", depth=2)


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
    # the record read to decide (when it parsed), so callers need not read the file again
    record: CellRecord | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Outcome:
    path: Path
    record: CellRecord
    skipped: bool                   # a fresh record was reused


def _as_method(method: Method | str) -> Method:
    return get(method) if isinstance(method, str) else method


# ----------------------------------------------------------------------------- claims
CLAIM_HEARTBEAT_S = 30.0          # a live claim's lock file is touched this often
CLAIM_STALE_S = 6 * 3600.0        # not touched for this long: its writer is gone (another host,
                                  # or a thread starved by a C extension that holds the GIL)


class RecordClaimedError(NqsbenchError):
    """The record is being computed by another live process (its claim is ``holder``)."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = Path(path), holder
        super().__init__(f"{path}: claimed by pid {holder.get('pid')} on {holder.get('host')} since "
                         f"{time.strftime('%H:%M:%S', time.localtime(holder.get('time', 0)))}; "
                         "wait for it, or delete the .lock file if that process is gone")


def claim_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".lock")


def _read_claim(lock: Path) -> dict | None:
    """The claim's content, {} when unreadable (being written), None when there is none."""
    try:
        return json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_stale(lock: Path, holder: dict | None = None, stale_after_s: float = CLAIM_STALE_S) -> str | None:
    """Why the claim ``lock`` is stale (its pid is dead on this host, or it was not refreshed
    for ``stale_after_s``), or None while its holder looks alive."""
    holder = _read_claim(lock) if holder is None else holder
    if holder is None:
        return "released"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return "released"
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
            and not _pid_alive(holder["pid"]):
        return f"pid {holder['pid']} is dead"
    if age > stale_after_s:
        return f"not refreshed for {age:.0f} s"
    if not holder and age > 60:          # never finished writing its content: a killed claimer
        return "empty claim"
    return None


def _take_over(lock: Path, holder: dict) -> bool:
    """Remove the stale claim ``holder`` (and only it: a live claim that replaced it in the
    meantime is put back). True when the name is free again."""
    aside = lock.with_name(f"{lock.name}.{uuid.uuid4().hex[:8]}.stale")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return True
    moved = _read_claim(aside) or {}
    if holder and moved.get("token") != holder.get("token"):    # not the stale one: restore it
        try:
            os.link(aside, lock)
        except FileExistsError:
            pass
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    return True


def writer_temporaries(path: str | Path) -> list[Path]:
    """The temporary files a writer of record ``path`` may leave when killed mid-write: the
    record's and its sidecars' (parameters, trace) ``.<name>.*.tmp``, and the checkpoints' in
    ``<stem>.ckpt/``. Only the claim holder writes them, so once its claim is stale they are
    garbage."""
    path = Path(path)
    stem, parent = path.stem, path.parent
    names = (path.name, f"{stem}.params.msgpack", f"{stem}.trace.csv")
    own = [p for n in names for p in parent.glob(f".{n}.*.tmp")]
    return own + sorted(checkpoint_dir(path).glob(".*.tmp"))


def _remove_writer_temporaries(path: Path) -> None:
    for p in writer_temporaries(path):
        p.unlink(missing_ok=True)


def release_stale_claim(path: str | Path) -> bool:
    """Remove the claim on record ``path`` when its holder is gone (a killed worker's, say), and
    the temporary files that holder left, so no lock or half-written file outlives a failed run;
    a live holder's claim stays. True when one was removed."""
    lock = claim_path(Path(path))
    holder = _read_claim(lock)
    if not lock.exists() or claim_stale(lock, holder) is None:
        return False
    if not _take_over(lock, holder or {}):
        return False
    _remove_writer_temporaries(Path(path))
    return True


@contextmanager
def claim(path: str | Path, stale_after_s: float = CLAIM_STALE_S, heartbeat_s: float = CLAIM_HEARTBEAT_S):
    """Hold the claim on record ``path`` for the ``with`` block: ``<path>.lock``, created
    atomically (``O_CREAT | O_EXCL``), holding pid/host/time, touched every ``heartbeat_s``,
    removed on exit. A stale claim is taken over; a live one raises :class:`RecordClaimedError`."""
    path = Path(path)
    lock = claim_path(path)
    made = [d for d in (lock.parent, *lock.parent.parents) if not d.exists()]   # deepest first
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "token": uuid.uuid4().hex}
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_claim(lock)
            why = claim_stale(lock, holder, stale_after_s)
            if why is None:
                raise RecordClaimedError(path, holder or {}) from None
            if why != "released":
                log.warning("taking over the claim on %s: %s", path, why)
            _take_over(lock, holder or {})
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        _remove_writer_temporaries(path)    # ours now: any left are a killed writer's
        break
    else:
        raise RecordClaimedError(path, _read_claim(lock) or {})
    stop = threading.Event()

    def beat():
        while not stop.wait(heartbeat_s):
            try:
                os.utime(lock)
            except OSError:
                return
    t = threading.Thread(target=beat, name=f"claim {path.name}", daemon=True)
    t.start()
    try:
        yield lock
    finally:
        stop.set()
        t.join()
        if (_read_claim(lock) or {}).get("token") == me["token"]:
            lock.unlink(missing_ok=True)
        for d in made:           # a run refused or failed before writing: no empty folders left
            try:
                d.rmdir()
            except OSError:      # not empty (the record, or another run's files): keep it
                break


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
        folder = geometry_folder(geom, self.root_for(m))
        return inside(folder / f"{m.record_name(settings, label)}.json", folder, f"{m.name} record", depth=1)

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
            return Status(False, f"input hash {rec.input_hash} != {input_hash} (inputs or PySCF changed)",
                          record=rec)
        if rec.settings_hash == STALE:
            return Status(False, "made by nqsbench with schema version 1 and settings that are not "
                                 "today's (or not recorded): recompute", record=rec)
        verdict = m.same_computation(settings, rec, geom)
        if verdict is None:       # the settings as written decide
            same = None
            if rec.settings_hash != settings.settings_hash():
                return Status(False, "settings differ: " + settings.diff(rec.settings), record=rec)
        else:
            ok, same = verdict
            if not ok:
                return Status(False, same, record=rec)
        pinned = {}
        for dep in m.dependencies(settings, label):
            if not dep.pinned:
                continue
            dpath = self.path(dep.method, geom, dep.settings, dep.label)
            st = self.status(dep.method, geom, dep.settings, dpath, dep.label, input_hash=input_hash)
            if not st.fresh:
                return Status(False, f"its input {dep.name} is not fresh ({st.reason})", record=rec)
            pinned[dep.name] = (dpath, st.record)
        why = m.stale_reason(rec, pinned)
        if why:
            return Status(False, why, record=rec)
        if rec.failed:
            return Status(True, f"fresh, failed: {rec.failure}", record=rec)
        if not rec.converged:
            return Status(True, f"fresh, not converged: {getattr(rec, 'convergence', None)}", record=rec)
        return Status(True, f"fresh ({same})" if same else "fresh", record=rec)

    def fresh_record(self, method: Method | str, geom: Geometry, settings: MethodSettings | None = None,
                     label: str | None = None) -> tuple[Path, CellRecord] | None:
        """(path, record) when fresh, else None."""
        m = _as_method(method)
        path = self.path(m, geom, settings, label)
        st = self.status(m, geom, settings, path, label)
        return (path, st.record) if st.fresh else None

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
        computed and written atomically, under a claim on the record (:meth:`claim`; a record
        claimed by another live process raises :class:`RecordClaimedError`)."""
        m = _as_method(method)
        settings = settings if settings is not None else m.default_settings()
        path = Path(path) if path is not None else self.path(m, geom, settings, label)
        st = self.status(m, geom, settings, path, label)
        if st.fresh and not force:
            return Outcome(path, st.record, True)
        with self.claim(path):
            if not force:        # written by another process between the check and the claim?
                st = self.status(m, geom, settings, path, label)
                if st.fresh:
                    return Outcome(path, st.record, True)
            if st.reason != "missing":
                log.info("recomputing %s: %s", path, st.error or st.reason)
            ctx = ctx or RunContext()
            ctx.path = path
            ctx.inputs = self.inputs(m, geom, settings, label)
            record = compute(m, geom, settings, ham=ham, ctx=ctx)
            write(record, path)
        return Outcome(path, record, False)

    def claim(self, path: str | Path, stale_after_s: float = CLAIM_STALE_S):
        """Context manager: hold the claim on record ``path`` (see :func:`claim`)."""
        return claim(path, stale_after_s)
