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
    save_params(driver, params_path(path))
    write_result(rec, path, trace=driver.trace_arrays)
    return path, rec


def params_path(record_path: str | Path) -> Path:
    """``<stem>.params.npz`` beside a result record: the final variational parameters."""
    p = Path(record_path)
    return p.with_name(p.stem + ".params.npz")


def save_params(driver, path: str | Path) -> Path:
    """Final parameters + what they belong to (Hamiltonian hash: Bloch-orbital phases are
    arbitrary, so parameters are only valid for the exact integrals they were trained on)."""
    import jax
    import numpy as np

    from ..io import atomic_write

    leaves, _ = jax.tree_util.tree_flatten(driver.params)
    meta = {"hamiltonian_hash": driver.ham.hash, "flags": _plain(driver.dump_flags()), "step": driver.step,
            "keys": sorted(driver.params)}

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)),
                     **{k: np.asarray(driver.params[k]) for k in sorted(driver.params)})
    return atomic_write(path, write)


def load_params(path: str | Path, ham) -> tuple[dict, dict]:
    """(params, meta) from :func:`save_params`; ValueError when they belong to other integrals."""
    import jax.numpy as jnp
    import numpy as np

    with np.load(path) as d:
        meta = json.loads(str(d["meta"]))
        params = {k: jnp.asarray(d[k]) for k in meta["keys"]}
    if meta["hamiltonian_hash"] != ham.hash:
        raise ValueError(f"{path}: parameters were trained on Hamiltonian {meta['hamiltonian_hash']}, "
                         f"not {ham.hash}; rerun `nqsbench run`")
    return params, meta
