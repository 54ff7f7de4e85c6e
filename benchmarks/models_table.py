"""Issue 15's model comparison from existing records: one row per NQS record — system, geometry,
k-mesh, model and its options, sampler (+setM: a semistochastic set of M), error per cell against
exact (mHa, ± the Monte Carlo error), whether the plateau criterion held, steps, wall time of the
whole run (every process of a resumed one, where its trace kept time) — with CCSD and CCSD(T)
beside it.

    python benchmarks/models_table.py [--results results] [--references references] [--markdown]

Make the runs with `nqsbench suite models` or `nqsbench run ... --model NAME`; this script only
reads records (rows whose exact reference is missing show no error).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from nqsbench.methods.nqs import run_wall_seconds
from nqsbench.store import read
from nqsbench.table import records_table

ROOT = Path(__file__).resolve().parent.parent


def model_label(rec) -> str:
    m = rec.settings.model
    opts = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in m.model_dump().items() if k != "kind")
    return f"{m.kind}({opts})" if opts else m.kind


def sampler_label(row) -> str:
    """The sampler, with the semistochastic set's size where there is one ("mcmc+set128")."""
    m = row.get("deterministic")
    return f"{row.sampler}+set{int(m)}" if pd.notna(m) and m else row.sampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--references", type=Path, default=ROOT / "references")
    ap.add_argument("--markdown", action="store_true", help="a markdown table (default: plain text)")
    a = ap.parse_args()
    df, errors = records_table([a.results, a.references])
    for e in errors:
        print("skipped:", e)
    refs = df[df.kind == "reference"]
    rows = []
    for _, r in df[df.kind == "nqs"].iterrows():
        same = refs[(refs.system == r.system) & (refs.geometry == r.geometry) & (refs.kmesh == r.kmesh)]
        ref = {m: same[same.method == m].delta_vs_exact_mha for m in ("ccsd", "ccsd_t")}
        err = r.energy_error * 1e3 if pd.notna(r.energy_error) and r.energy_error else None
        rec = read(r.path)
        rows.append({"system": r.system, "geometry": r.geometry, "kmesh": r.kmesh, "model": model_label(rec),
                     "sampler": sampler_label(r),
                     "ΔE vs exact (mHa/cell)": (f"{r.delta_vs_exact_mha:+.3f}" + (f" ± {err:.3f}" if err else ""))
                     if pd.notna(r.delta_vs_exact_mha) else "",
                     "converged": bool(r.converged), "steps": int(r.n_steps), "wall (s)": round(run_wall_seconds(rec)),
                     "CCSD": f"{ref['ccsd'].iloc[0]:+.3f}" if len(ref["ccsd"]) else "",
                     "CCSD(T)": f"{ref['ccsd_t'].iloc[0]:+.3f}" if len(ref["ccsd_t"]) else ""})
    table = pd.DataFrame(rows).sort_values(["system", "kmesh", "geometry", "sampler", "model"])
    print(table.to_markdown(index=False) if a.markdown else table.to_string(index=False))


if __name__ == "__main__":
    main()
