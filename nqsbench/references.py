"""Reference runners → :class:`ReferenceRecord` files under ``references/``.

For now: exact diagonalization. Each record's path is derived from system, geometry, k-mesh
and method, so a cache of records can be filled and looked up without an index.
"""
from __future__ import annotations

from pathlib import Path

from . import catalog
from .errors import SectorTooLargeError
from .records import Band, ReferenceRecord, Timer, provenance, write_record

REFERENCES_DIR = Path(__file__).resolve().parent.parent / "references"


def record_path(geom: catalog.Geometry, method: str, root: Path = REFERENCES_DIR) -> Path:
    params = "_".join(f"{k}{v:g}" for k, v in sorted(geom.params.items()))
    return root / geom.spec.id / f"{params}_k{'x'.join(map(str, geom.kmesh))}" / f"{method}.json"


def check_exact_feasible(geom: catalog.Geometry, max_dim: int, bands: bool) -> None:
    """Refuse before any PySCF work when a sector is too large for exact diagonalization."""
    from .build import make_cell, pyscf_kmesh
    from .sectors import sector_dims
    import numpy as np

    spec = geom.spec
    n_act = int(make_cell(geom).nao_nr()) - spec.frozen_core
    na = (spec.n_electrons_cell - 2 * spec.frozen_core) * geom.nk // 2
    mesh = pyscf_kmesh(geom)
    kvecs = np.array(np.meshgrid(*[np.arange(n) for n in mesh], indexing="ij")).reshape(3, -1).T
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
                  "k_ground": s["k_ground"], "s2_ground": s["s2_ground"]},
        converged=True, energy_per_cell=s["energy_per_cell"], energy_per_cell_raw=s["energy_per_cell_raw"],
        madelung=ham.madelung, e_hf_per_cell=ham.e_hf, sectors=s["sectors"],
        bands=[Band(**b) for b in s.get("bands", [])], gap=s.get("gap"),
        hamiltonian_hash=ham.hash, input_hash=ham.meta["input_hash"], provenance=provenance(timer.elapsed))
    path = write_record(record, out or record_path(geom, "exact"))
    return path, record
