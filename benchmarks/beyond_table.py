"""Issue 14's beyond-tier table from existing records: one row per NQS record at a k-mesh past
exact diagonalization — model, sampler, steps, wall time, the energy per cell against DMRG (± the
Monte Carlo error) and against CCSD(T), CCSD and HF, and the time the run took to come within
1.6 mHa/cell of DMRG (the trailing 50-step mean of its trace, steps converted to seconds at the
run's mean rate; "not reached" when it never did). A run continued from another's parameters
(`run --init`) is counted with the runs before it: steps "600+400", their wall times added, and
the time to accuracy read on their traces joined.

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


def lineage(path: Path, rec) -> list[tuple]:
    """(record, its path) of the runs this one continued (``details.init``), first run first,
    this one last; a start whose record is not found ends the chain."""
    chain = [(rec, path)]
    while (start := (chain[0][0].details or {}).get("init")) is not None:
        params = Path(start["params"])
        params = params if params.is_absolute() else ROOT / params
        src = params.with_name(params.name.removesuffix(".params.msgpack") + ".json")
        if not src.exists():
            break
        chain.insert(0, (read(src), src))
    return chain


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
            chain = lineage(path, rec)
            row = {"system": rec.system, "geometry": ",".join(f"{k}={v:g}" for k, v in rec.params.items()),
                   "kmesh": "x".join(map(str, rec.kmesh)), "model": rec.settings.model.kind,
                   "sampler": rec.settings.sampler.kind, "samples": rec.settings.sampler.n_samples,
                   "steps": "+".join(str(r.n_steps) for r, _ in chain),
                   "wall (min)": round(sum(r.provenance.wall_time_s for r, _ in chain) / 60, 1),
                   "converged": rec.converged}
            for m in REFERENCES:
                d = (rec.energy_per_cell - refs[m].energy_per_cell) * 1e3 if m in refs else None
                pm = f" ± {err:.2f}" if m == "dmrg" and err else ""
                row[f"vs {m} (mHa/cell)"] = f"{d:+.2f}{pm}" if d is not None else "–"
            traces = [p.with_name(r.trace_file) if r.trace_file else None for r, p in chain]
            if "dmrg" in refs and all(t is not None and t.exists() for t in traces):
                target = refs["dmrg"].energy_per_cell_raw + tolerance_mha * 1e-3
                # one trace for the whole chain, each step weighted by its own run's rate
                energy = np.concatenate([np.asarray(read_trace_csv(t)["energy"], float) for t in traces])
                seconds = np.concatenate([np.full(r.n_steps, r.provenance.wall_time_s / max(r.n_steps, 1))
                                          for r, _ in chain])
                t = time_to_accuracy({"energy": energy}, target, 1.0)
                t = None if t is None else float(seconds[:int(t)].sum())
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
