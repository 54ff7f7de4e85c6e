"""A tidy pandas table of records: one row per record file, one column per quantity.

Every record under the given roots (the reference cache and the results folder: every method
of the registry, ours and external) is read against the schema its ``kind`` names
(reference, nqs, nqs-bands, external: every kind in records.RECORD_MODELS); a file that is not valid JSON or fails its schema is returned as an
error naming the path, never silently dropped. Energies are per primitive cell (Hartree, ewald
convention, plus the raw exxdiv=None value); ``delta_vs_exact_mha`` joins each record with the
exact record of the same system, geometry and k-mesh; band errors are in meV.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import RecordError

COLUMNS = ["kind", "system", "geometry", "kmesh", "nk", "method", "model", "sampler", "deterministic", "seed", "init",
           "n_steps", "converged", "failed", "energy_per_cell", "energy_error", "energy_per_atom", "energy_per_cell_raw",
           "e_hf_per_cell", "e_corr_per_cell", "delta_vs_exact_mha", "gap", "band_mae_vs_exact_meV",
           "v_score", "variance", "madelung", "wall_time_s", "peak_memory_mb", "input_hash",
           "hamiltonian_hash", "git_commit", "created", "failure", "record", "path"]


def read_any(path: str | Path):
    """A record of any kind (chosen by its ``kind`` field); RecordError names the path."""
    from .store import read

    return read(path)


def _n_atoms(system: str) -> int | None:
    from . import catalog

    try:
        return len(catalog.load(system).atoms)
    except Exception:  # noqa: BLE001 - a record of a system no longer in the catalog still lists
        return None


def record_row(rec, path: Path) -> dict:
    row = {"kind": rec.kind, "system": rec.system,
           "geometry": ",".join(f"{k}={v:g}" for k, v in sorted(rec.params.items())),
           "kmesh": "x".join(map(str, rec.kmesh)), "nk": rec.kmesh[0] * rec.kmesh[1] * rec.kmesh[2],
           "method": rec.method, "converged": rec.converged, "failed": rec.failed, "energy_per_cell": rec.energy_per_cell,
           "energy_per_cell_raw": rec.energy_per_cell_raw, "energy_error": getattr(rec, "energy_error", None),
           "madelung": rec.madelung, "input_hash": rec.input_hash, "hamiltonian_hash": rec.hamiltonian_hash,
           "wall_time_s": rec.provenance.wall_time_s, "peak_memory_mb": rec.provenance.peak_memory_mb,
           "git_commit": rec.provenance.git_commit, "created": rec.provenance.created,
           "failure": rec.failure, "record": Path(path).stem, "path": str(path)}
    for k, v in rec.params.items():
        row[f"param_{k}"] = v
    n_at = _n_atoms(rec.system)
    if n_at and rec.energy_per_cell is not None:
        row["energy_per_atom"] = rec.energy_per_cell / n_at
    if rec.kind == "reference":
        row.update(e_hf_per_cell=rec.e_hf_per_cell, e_corr_per_cell=rec.e_corr_per_cell, gap=rec.gap)
        singlet = (rec.details or {}).get("energy_per_cell_singlet")
        if singlet is not None and rec.energy_per_cell is not None and abs(singlet - rec.energy_per_cell) > 1e-12:
            row["energy_per_cell_singlet"] = singlet     # the lowest state is not a singlet
    elif rec.kind == "nqs":
        s = rec.settings
        row.update(model=s.model.kind, sampler=s.sampler.kind, seed=s.seed, init=s.init, n_steps=rec.n_steps, v_score=rec.v_score,
                   variance=rec.variance)
        if s.spin_penalty:
            row["spin_penalty"] = s.spin_penalty
        if s.sampler.deterministic:
            row["deterministic"] = s.sampler.deterministic     # Markov chains with a semistochastic set
    elif rec.kind == "nqs-bands":
        row.update(gap=rec.gap, seed=rec.ground_state.get("seed"), sampler=rec.ground_state.get("sampler"),
                   n_steps=rec.ground_state.get("n_steps"), method=f"{rec.method}-{rec.estimator}")
    elif rec.kind == "external":
        row.update(gap=rec.gap, code=rec.settings.code, code_version=rec.settings.code_version,
                   instance_sha256=rec.instance_sha256, convention=rec.submission.get("convention"))
    return row


def records_table(roots, strict: bool = False):
    """(DataFrame, errors): every record under ``roots``; errors are 'path: why' strings
    (raised instead with ``strict``)."""
    import pandas as pd

    from .store import record_paths

    rows, errors = [], []
    for root in roots:
        for p in record_paths(root):
            try:
                rec = read_any(p)
            except RecordError as exc:
                if strict:
                    raise
                errors.append(str(exc))
                continue
            rows.append(record_row(rec, p))
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS), errors
    df = add_exact_deltas(df)
    cols = [c for c in COLUMNS if c in df.columns]
    extra = sorted(c for c in df.columns if c not in cols)
    return df[cols + extra].reset_index(drop=True), errors


def add_exact_deltas(df):
    """``delta_vs_exact_mha`` (and for band records the band MAE vs exact) per row."""
    import numpy as np

    key = ["system", "geometry", "kmesh"]
    exact = df[(df["method"] == "exact") & (df["kind"] == "reference") & ~df["failed"].astype(bool)]
    e = exact.drop_duplicates(key).set_index(key)["energy_per_cell"]
    idx = df.set_index(key).index
    ref = np.array([e.get(k, np.nan) for k in idx], dtype=float)
    if "spin_penalty" in df.columns and "energy_per_cell_singlet" in df.columns:
        from .records import exact_target

        singlet = exact.drop_duplicates(key).set_index(key)["energy_per_cell_singlet"]
        ref = np.array([exact_target(lam, e_ref, singlet.get(k, np.nan))
                        for lam, e_ref, k in zip(df["spin_penalty"], ref, idx)], dtype=float)
    df = df.copy()
    df["delta_vs_exact_mha"] = (df["energy_per_cell"].astype(float) - ref) * 1e3
    if (df["kind"] == "nqs-bands").any():
        from .bandstructure import band_errors

        maes = []
        for _, row in df.iterrows():
            if row["kind"] != "nqs-bands":
                maes.append(np.nan)
                continue
            k = (row["system"], row["geometry"], row["kmesh"])
            ex = exact[(exact["system"] == k[0]) & (exact["geometry"] == k[1]) & (exact["kmesh"] == k[2])]
            if ex.empty:
                maes.append(np.nan)
                continue
            rec, ref_rec = read_any(row["path"]), read_any(ex["path"].iloc[0])
            maes.append(band_errors(rec.bands, ref_rec.bands)["mae_meV"] if ref_rec.bands else np.nan)
        df["band_mae_vs_exact_meV"] = maes
    return df


def json_document(df) -> dict:
    """``{"columns": [...], "records": [{column: value}, ...]}``: one object per row, every column
    present, NaN/missing as null, numbers at full precision."""
    import math

    def plain(v):
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):
            v = v.item()
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return None
        try:
            import pandas as pd

            if v is pd.NA or v is pd.NaT:
                return None
        except ImportError:  # pragma: no cover
            pass
        return v

    cols = [str(c) for c in df.columns]
    return {"columns": cols,
            "records": [{c: plain(v) for c, v in zip(cols, row)} for row in df.itertuples(index=False, name=None)]}


def write_table(df, fmt: str, out: Path | None):
    """Write ``df`` as csv/json/parquet/md to ``out`` (atomically) or return the text for stdout."""
    from .errors import NqsbenchError
    from .io import atomic_write, atomic_write_text

    fmt = fmt.lower()
    if fmt == "csv":
        text = df.to_csv(index=False, float_format="%.10g")
    elif fmt == "json":
        text = json.dumps(json_document(df), indent=2, ensure_ascii=False) + "\n"
    elif fmt in ("md", "markdown"):
        text = df.to_markdown(index=False, floatfmt=".8g") + "\n"
    elif fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise NqsbenchError("--format parquet needs pyarrow: pip install pyarrow (or use csv)") from None
        if out is None:
            raise NqsbenchError("--format parquet writes binary: give --out FILE.parquet")
        atomic_write(out, lambda tmp: df.to_parquet(tmp, index=False))
        return None
    else:
        raise NqsbenchError(f"--format {fmt!r}: choose csv, json, parquet or md")
    if out is None:
        return text
    atomic_write_text(out, text)
    return None
