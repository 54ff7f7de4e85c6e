"""Issue 14's beyond-tier table from existing records: one row per NQS record at a k-mesh past
exact diagonalization — model, sampler, steps, wall time, the energy per cell against DMRG (± the
Monte Carlo error) and against CCSD(T), CCSD and HF, and the time the run took to come within
1.6 mHa/cell of DMRG (the trailing 50-step mean of its trace, steps converted to seconds at the
run's mean rate; "not reached" when it never did).

    python benchmarks/beyond_table.py [--results records] [--results results] [--markdown]

The NQS runs are committed under records/ (they take hours); references under references/. A
variational energy below CCSD(T) is a result, not a failure: the stretched chain is where CC fails.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from nqsbench import catalog
from nqsbench.records import read_trace_csv
from nqsbench.store import Store, read

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = ("dmrg", "ccsd_t", "ccsd", "hf")
WINDOW = 50


def time_to_accuracy(trace: dict, target: float, seconds_per_step: float, window: int = WINDOW) -> float | None:
    """Seconds until the trailing ``window``-step mean of the trace's energy (per cell, raw) is
    at or below ``target``; None if never."""
    e = np.asarray(trace["energy"], dtype=float)
    if len(e) < window:
        return None
    mean = np.convolve(e, np.ones(window) / window, mode="valid")       # mean[i] ends at step i + window - 1
    hit = np.flatnonzero(mean <= target)
    return None if len(hit) == 0 else float((hit[0] + window) * seconds_per_step)


def rows(results: list[Path], references: Path, tolerance_mha: float = 1.6) -> list[dict]:
    store = Store(references, results[0])
    out = []
    for root in results:
        for path in sorted(root.rglob("nqs-*.json")):
            if ".bands-" in path.name:
                continue
            rec = read(path)
            geom = catalog.load(rec.system).geometry(rec.params, kmesh=tuple(rec.kmesh))
            if geom.tier != "beyond":
                continue
            refs = {}
            for m in REFERENCES:
                st = store.status(m, geom)
                if st.fresh and not st.record.failed:
                    refs[m] = st.record
            err = (rec.energy_error or 0.0) * 1e3
            row = {"system": rec.system, "geometry": ",".join(f"{k}={v:g}" for k, v in rec.params.items()),
                   "kmesh": "x".join(map(str, rec.kmesh)), "model": rec.settings.model.kind,
                   "sampler": rec.settings.sampler.kind, "samples": rec.settings.sampler.n_samples,
                   "steps": rec.n_steps, "wall (min)": round(rec.provenance.wall_time_s / 60, 1),
                   "converged": rec.converged}
            for m in REFERENCES:
                d = (rec.energy_per_cell - refs[m].energy_per_cell) * 1e3 if m in refs else None
                pm = f" ± {err:.2f}" if m == "dmrg" and err else ""
                row[f"vs {m} (mHa/cell)"] = f"{d:+.2f}{pm}" if d is not None else "–"
            trace_file = path.with_name(rec.trace_file) if rec.trace_file else None
            if "dmrg" in refs and trace_file is not None and trace_file.exists():
                target = refs["dmrg"].energy_per_cell_raw + tolerance_mha * 1e-3
                t = time_to_accuracy(read_trace_csv(trace_file), target,
                                     rec.provenance.wall_time_s / max(rec.n_steps, 1))
                row[f"time to {tolerance_mha} mHa of DMRG"] = "not reached" if t is None else f"{t / 60:.1f} min"
            else:
                row[f"time to {tolerance_mha} mHa of DMRG"] = "–"
            out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, action="append", help="folders of NQS records (default: records/)")
    ap.add_argument("--references", type=Path, default=ROOT / "references")
    ap.add_argument("--markdown", action="store_true", help="a markdown table (default: plain text)")
    a = ap.parse_args()
    table = pd.DataFrame(rows(a.results or [ROOT / "records"], a.references))
    if table.empty:
        print("no beyond-tier NQS records")
        return
    table = table.sort_values(["system", "kmesh", "geometry", "model", "sampler"])
    print(table.to_markdown(index=False, disable_numparse=True) if a.markdown else table.to_string(index=False))


if __name__ == "__main__":
    main()
