"""From a finished :class:`NQS` driver to a :class:`nqsbench.records.ResultRecord` (+ trace CSV).

Takes the catalog ``Geometry`` only for its identifiers (system id, parameters, k-mesh, basis,
frozen core); nothing here imports PySCF.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..records import ResultRecord, provenance, results_path, trace_path, write_result


def _plain(obj):
    """JSON-plain copy (numpy scalars, tuples, schedules → str)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else repr(o)))


def result_record(driver, geom, wall_time_s: float, model_name: str = "rbm",
                  trace_file: str | None = None) -> ResultRecord:
    flags = _plain(driver.dump_flags())
    ham, spec = driver.ham, geom.spec
    return ResultRecord(
        method=f"nqs-{model_name}", system=spec.id, params=geom.params, kmesh=geom.kmesh,
        basis=spec.basis, frozen_core=spec.frozen_core, model=flags["model"], sampler=flags["sampler"],
        optimizer=flags["optimizer"], sector=flags["sector"], init=flags["init"], seed=driver.seed,
        n_steps=driver.step, converged=True, stopped_early=driver.stopped_early,
        energy_per_cell=driver.energy_ewald, energy_error=driver.energy_error,
        energy_per_cell_raw=driver.energy, variance=driver.variance, e_inf=driver.e_inf,
        v_score=driver.v_score, madelung=float(ham.madelung), trace_file=trace_file,
        hamiltonian_hash=ham.hash, input_hash=ham.meta.get("input_hash", "unknown"),
        provenance=provenance(wall_time_s))


def save_result(driver, geom, wall_time_s: float, path: str | Path | None = None,
                model_name: str = "rbm", sampler_name: str | None = None) -> tuple[Path, ResultRecord]:
    """Write the trace CSV and the record (both atomically); returns (record path, record)."""
    if path is None:
        sampler_name = sampler_name or ("exact" if driver._exact else "mcmc")
        path = results_path(geom, model_name, sampler_name, driver.seed)
    path = Path(path)
    rec = result_record(driver, geom, wall_time_s, model_name, trace_file=trace_path(path).name)
    write_result(rec, path, trace=driver.trace_arrays)
    return path, rec
