"""Exact diagonalization in every (N↑, N↓, K) sector (:mod:`nqsbench.exact`) as a method."""
from __future__ import annotations

from ..catalog import Geometry
from ..errors import SectorTooLargeError
from ..records import Band, ExactSettings, ReferenceRecord
from .base import Method, RunContext
from .registry import register

MAX_DIM = 3_000_000     # default largest sector diagonalized (RunContext.options["max_dim"])


def check_exact_feasible(geom: Geometry, max_dim: int, bands: bool, n_roots: int = 2,
                         memory_gb: float | None = None) -> int:
    """Refuse before any PySCF work when a sector is too large for exact diagonalization, or when
    the vectors it needs (:func:`nqsbench.exact.peak_bytes`) would not fit the memory budget
    (``memory_gb``, default :func:`nqsbench.config.memory_gb`). Returns the estimated peak (bytes)."""
    from .. import config
    from ..build import active_space, pyscf_kmesh
    from ..errors import MemoryBudgetError
    from ..exact import DAVIDSON_MAX_SPACE, KRYLOV_MAX_DIM, peak_bytes, vector_elements
    from ..records import resident_memory_mb
    from ..sectors import kmesh_grid, sector_dims

    spec = geom.spec
    n_act, na = active_space(geom)
    mesh = pyscf_kmesh(geom)
    kvecs = kmesh_grid(mesh)
    dims = {}
    for a in ((na, na + 1, na - 1) if bands else (na,)):
        if 0 <= a <= n_act * geom.nk:
            dims[a] = dim = max(sector_dims(kvecs, mesh, n_act, a, na))
            if dim > max_dim:
                raise SectorTooLargeError(
                    f"{spec.id} k-mesh {'x'.join(map(str, geom.kmesh))}: sector (N↑={a}, N↓={na}) has "
                    f"{dim:,} determinants, above the exact-diagonalization limit {max_dim:,}; use the "
                    "beyond-tier runners (CCSD(T), EOM-CCSD, DMRG) or a smaller --kmesh")
    dim_pm = max((d for a, d in dims.items() if a != na), default=0)
    vectors = peak_bytes(dims[na], dim_pm, n_act, n_roots * geom.nk if bands else 0)
    peak = vectors + int(resident_memory_mb() * 1024 ** 2)
    budget = (memory_gb or config.memory_gb()) * 1024 ** 3
    if peak > budget:
        davidson, krylov = vector_elements(dims[na], dim_pm, n_act)
        what = (f"Krylov band search: {KRYLOV_MAX_DIM} vectors of {dim_pm:,} determinants" if krylov > davidson
                else f"Davidson: {4 * DAVIDSON_MAX_SPACE} vectors of {dims[na]:,} determinants")
        raise MemoryBudgetError(
            f"exact {spec.id} k-mesh {'x'.join(map(str, geom.kmesh))}: estimated peak {peak / 1024 ** 3:.1f} GB "
            f"exceeds the {budget / 1024 ** 3:.1f} GB budget ({what}); raise $NQSBENCH_MEMORY_GB, set "
            "bands=false (--set bands=false) or use a smaller --kmesh")
    return peak


@register
class Exact(Method):
    name = "exact"
    Settings = ExactSettings
    summary = "exact diagonalization of the N and N±1 sectors, quasiparticle bands by spectral weight"
    record_model = ReferenceRecord

    def preflight(self, geom, settings, ctx: RunContext) -> None:
        check_exact_feasible(geom, ctx.options.get("max_dim", MAX_DIM), settings.bands, settings.n_roots,
                             ctx.options.get("memory_gb"))

    def run(self, geom, ham, settings: ExactSettings, ctx: RunContext) -> ReferenceRecord:
        from ..exact import ExactDiagonalization

        ed = ExactDiagonalization(ham, n_roots=settings.n_roots, bands=settings.bands,
                                  max_dim=ctx.options.get("max_dim", MAX_DIM)).run()
        s = ed.summary()
        return ReferenceRecord(
            method=self.name, **self.common_fields(geom, ham), settings=settings,
            details={"solver": ed.solver, "residual_tol": ed.tol, "k_ground": s["k_ground"],
                     "s2_ground": s["s2_ground"], "energy_per_cell_singlet": s["energy_per_cell_singlet"],
                     "band_reference": s.get("band_reference"), "timings": s["timings"]},
            converged=True, energy_per_cell=s["energy_per_cell"], energy_per_cell_raw=s["energy_per_cell_raw"],
            e_hf_per_cell=ham.e_hf, sectors=s["sectors"], bands=[Band(**b) for b in s.get("bands", [])],
            gap=s.get("gap"))
