"""Reference runners → :class:`ReferenceRecord` files under ``references/``.

Methods: exact diagonalization, KRHF (+ Koopmans bands), KMP2, KRCCSD, KRCCSD(T), EOM-IP/EA-KRCCSD
bands (:mod:`nqsbench.runners.kpoint`) and DMRG (:mod:`nqsbench.runners.dmrg`, optional extra).
Each record's path is derived from system, geometry, k-mesh and method, so a cache of records can
be filled and looked up without an index. A record is reused when its ``input_hash`` (every input
of the Hamiltonian: geometry, k-mesh, basis, frozen core, SCF settings, PySCF version) and its
runner configuration match; otherwise it is recomputed. Non-converged runs are stored as failed
records (``converged=False``, ``failure``), never as results.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from . import catalog
from .errors import SectorTooLargeError
import numpy as np

from .records import Band, ReferenceRecord, Timer, geometry_folder, provenance, write_record

REFERENCES_DIR = Path(__file__).resolve().parent.parent / "references"
METHODS = ("exact", "hf", "mp2", "ccsd", "ccsd_t", "eom_ccsd", "dmrg")
log = logging.getLogger(__name__)


def record_path(geom: catalog.Geometry, method: str, root: Path = REFERENCES_DIR) -> Path:
    return geometry_folder(geom, root) / f"{method}.json"


def check_exact_feasible(geom: catalog.Geometry, max_dim: int, bands: bool) -> None:
    """Refuse before any PySCF work when a sector is too large for exact diagonalization."""
    from .build import make_cell, pyscf_kmesh
    from .sectors import kmesh_grid, sector_dims

    spec = geom.spec
    n_act = int(make_cell(geom).nao_nr()) - spec.frozen_core
    na = (spec.n_electrons_cell - 2 * spec.frozen_core) * geom.nk // 2
    mesh = pyscf_kmesh(geom)
    kvecs = kmesh_grid(mesh)
    for a in ((na, na + 1, na - 1) if bands else (na,)):
        if 0 <= a <= n_act * geom.nk:
            dim = max(sector_dims(kvecs, mesh, n_act, a, na))
            if dim > max_dim:
                raise SectorTooLargeError(
                    f"{spec.id} k-mesh {'x'.join(map(str, geom.kmesh))}: sector (N↑={a}, N↓={na}) has "
                    f"{dim:,} determinants, above the exact-diagonalization limit {max_dim:,}; use the "
                    "beyond-tier runners (CCSD(T), EOM-CCSD, DMRG) or a smaller --kmesh")


def run_exact(system: str, params: list[str] | None = None, kmesh: str | None = None, roots: int = 2,
              bands: bool = True, max_dim: int = 3_000_000, out: Path | None = None):
    from .build import get_hamiltonian
    from .exact import ExactDiagonalization

    spec = catalog.load(system)
    geom = spec.geometry(catalog.parse_params(params), catalog.parse_kmesh(kmesh))
    check_exact_feasible(geom, max_dim, bands)
    with Timer() as timer:
        ham = get_hamiltonian(geom)
        ed = ExactDiagonalization(ham, n_roots=roots, bands=bands, max_dim=max_dim).run()
        s = ed.summary()
    record = ReferenceRecord(
        method="exact", system=spec.id, params=geom.params, kmesh=geom.kmesh, basis=spec.basis,
        frozen_core=spec.frozen_core,
        settings={"n_roots": roots, "bands": bands, "solver": ed.solver, "residual_tol": ed.tol,
                  "k_ground": s["k_ground"], "s2_ground": s["s2_ground"],
                  "energy_per_cell_singlet": s["energy_per_cell_singlet"],
                  "band_reference": s.get("band_reference"), "timings": s["timings"],
                  "config_hash": config_hash("exact")},
        converged=True, energy_per_cell=s["energy_per_cell"], energy_per_cell_raw=s["energy_per_cell_raw"],
        madelung=ham.madelung, e_hf_per_cell=ham.e_hf, sectors=s["sectors"],
        bands=[Band(**b) for b in s.get("bands", [])], gap=s.get("gap"),
        hamiltonian_hash=ham.hash, input_hash=ham.meta["input_hash"], provenance=provenance(timer.elapsed))
    path = write_record(record, out or record_path(geom, "exact"))
    return path, record


# ----------------------------------------------------------------------------- other methods
def runner_config(method: str) -> dict:
    """Static configuration of a runner; part of the cache key of its records."""
    if method == "exact":
        # v2: bands on the lowest singlet, time-reversal shortcut, Krylov quasiparticle search.
        return {"exact_version": 2, "band_reference": "lowest singlet"}
    if method == "dmrg":
        from .runners.dmrg import DMRG_SETTINGS
        return {"dmrg": DMRG_SETTINGS}
    from .runners.kpoint import CC_SETTINGS, EOM_SETTINGS
    cfg = {"hf": {}, "mp2": {"denominators": "exxdiv=None"}, "ccsd": CC_SETTINGS,
           "ccsd_t": dict(CC_SETTINGS, denominators="exxdiv=None"),
           "eom_ccsd": {"cc": CC_SETTINGS, "eom": EOM_SETTINGS}}
    return cfg[method]


def config_hash(method: str) -> str:
    text = json.dumps({"method": method, "config": runner_config(method), "runner_version": 1},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class CacheStatus:
    path: Path
    fresh: bool
    reason: str


def cache_status(geom: catalog.Geometry, method: str, root: Path = REFERENCES_DIR,
                 out: Path | None = None) -> CacheStatus:
    """Is the record for (geometry, method) present and computed from the same inputs?"""
    from .build import cache_key
    from .errors import RecordError
    from .records import read_record

    path = out or record_path(geom, method, root)
    if not path.exists():
        return CacheStatus(path, False, "missing")
    try:
        rec = read_record(path)
    except RecordError as exc:
        return CacheStatus(path, False, f"unreadable ({exc})")
    if rec.input_hash != cache_key(geom):
        return CacheStatus(path, False, f"input hash {rec.input_hash} != {cache_key(geom)} (inputs or PySCF changed)")
    if rec.settings.get("config_hash") != config_hash(method):
        return CacheStatus(path, False, "runner settings changed")
    return CacheStatus(path, True, "input hash matches")


def _geometry(system: str, params, kmesh) -> catalog.Geometry:
    spec = catalog.load(system)
    p = catalog.parse_params(params) if isinstance(params, (list, tuple)) or params is None else dict(params)
    km = catalog.parse_kmesh(kmesh) if isinstance(kmesh, str) or kmesh is None else tuple(kmesh)
    return spec.geometry(p, km)


def run_method(method: str, geom: catalog.Geometry, ham=None):
    """Run one non-exact method on ``geom`` → (record, hamiltonian). Never writes."""
    from .build import get_hamiltonian

    if method not in METHODS or method == "exact":
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    spec = geom.spec
    with Timer() as timer:
        ham = ham or get_hamiltonian(geom)
        if method == "dmrg":
            from .runners.dmrg import run_dmrg as runner
        else:
            from .runners.kpoint import RUNNERS
            runner = RUNNERS[method]
        try:
            res = runner(geom, ham)
        except (RuntimeError, ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
            from .runners.kpoint import failed
            log.warning("%s failed on %s: %s", method, geom.label(), exc)
            res = failed(f"{type(exc).__name__}: {exc}")
    settings = dict(res.settings, config_hash=config_hash(method))
    e_raw = e_head = None
    if res.converged:
        e_raw = (res.e_supercell_raw) / ham.nk
        e_head = (res.e_supercell_raw + ham.ewald_shift(res.n_active)) / ham.nk
    record = ReferenceRecord(
        method=method, system=spec.id, params=geom.params, kmesh=geom.kmesh, basis=spec.basis,
        frozen_core=spec.frozen_core, settings=settings, converged=res.converged, failure=res.failure,
        energy_per_cell=e_head, energy_per_cell_raw=e_raw, madelung=ham.madelung, e_hf_per_cell=ham.e_hf,
        bands=[Band(**b) for b in res.bands] if res.converged else [],
        gap=res.gap if res.converged else None,
        e_corr_per_cell=res.e_corr_per_cell if res.converged else None,
        energy_error=res.energy_error if res.converged else None,
        hamiltonian_hash=ham.hash, input_hash=ham.meta["input_hash"], provenance=provenance(timer.elapsed))
    return record, ham


def run_reference(method: str, system: str, params=None, kmesh=None, out: Path | None = None,
                  force: bool = False, root: Path = REFERENCES_DIR, **exact_opts):
    """Compute (or reuse) one record → (path, record, skipped)."""
    from .records import read_record

    geom = _geometry(system, params, kmesh)
    status = cache_status(geom, method, root, out)
    if status.fresh and not force:
        return status.path, read_record(status.path), True
    if status.reason != "missing":
        log.info("recomputing %s: %s", status.path, status.reason)
    if method == "exact":
        p = [f"{k}={v!r}" for k, v in geom.params.items()]
        path, record = run_exact(system, p, ",".join(map(str, geom.kmesh)), out=status.path, **exact_opts)
        return path, record, False
    record, _ = run_method(method, geom)
    return write_record(record, status.path), record, False


# ----------------------------------------------------------------------------- the default suite
def default_suite() -> list[tuple[str, dict, tuple, tuple]]:
    """(system, params, kmesh, methods) of the committed reference cache (issue 3)."""
    all_k = ("exact", "hf", "mp2", "ccsd", "ccsd_t", "eom_ccsd")
    jobs = []
    spec = catalog.load("h-chain")
    for nk in (2, 4):
        for d in spec.parameters["d"].scan:
            jobs.append(("h-chain", {"d": d}, (1, 1, nk), all_k))
    for km in ((1, 1, 1), (2, 1, 1)):
        jobs.append(("lih", {}, km, all_k))
    jobs.append(("graphene", {}, (1, 1, 1), all_k))
    # Beyond tier: no exact diagonalization; DMRG stands in where it fits.
    jobs.append(("h-chain", {"d": spec.parameters["d"].default}, (1, 1, 8),
                 ("hf", "mp2", "ccsd", "ccsd_t", "eom_ccsd", "dmrg")))
    jobs.append(("graphene", {}, (2, 2, 1), ("hf", "mp2", "ccsd", "ccsd_t", "eom_ccsd")))
    jobs.append(("lih", {}, (2, 2, 2), ("hf", "mp2", "ccsd", "ccsd_t", "eom_ccsd")))
    return jobs


def run_suite(jobs=None, force: bool = False, root: Path = REFERENCES_DIR, echo=print) -> list:
    out = []
    for system, params, kmesh, methods in (jobs or default_suite()):
        geom = _geometry(system, params, kmesh)
        for method in methods:
            try:
                path, rec, skipped = run_reference(method, system, params, kmesh, force=force, root=root)
            except Exception as exc:  # noqa: BLE001 - an environment error (disk, HDF5 lock) must
                # not stop a long fill; nothing is written, so the next fill retries this record.
                echo(f"ERROR     {method:9s} {geom.label():28s} {type(exc).__name__}: {exc} (not written)")
                continue
            out.append((path, rec, skipped))
            echo(f"{'skip' if skipped else 'done'} {method:9s} {geom.label():28s} "
                 + (f"E = {rec.energy_per_cell:.8f} Ha/cell" if rec.converged else f"FAILED: {rec.failure}")
                 + (f" gap {rec.gap:.5f}" if rec.gap is not None else "")
                 + ("" if skipped else f" ({rec.provenance.wall_time_s:.1f} s)"))
    return out
