"""NQS accuracy table of issue 4 from existing records: error per cell against exact (mHa) of every
NQS run (sampler, steps, α, seed), with CCSD and CCSD(T) beside it.

    python benchmarks/nqs_table.py [--results results] [--references references]

Rows: H chain N_k = 4 at d = 1.4, 1.8, 2.6, 3.6; LiH Γ; graphene Γ. Make the runs with
`nqsbench suite nqs-accuracy` (or `nqsbench run ...`); this script only reads records. Where a
Markov-chain run has an exact-estimator band record beside it (`nqsbench bands ... --sampler
mcmc`), the exact ⟨H⟩ of the same final state is shown in brackets: an independent check of
the Monte Carlo estimate and its error bar.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from nqsbench.store import read
from nqsbench.table import records_table

ROOT = Path(__file__).resolve().parent.parent
ROWS = [("h-chain", "d=1.4", "1x1x4"), ("h-chain", "d=1.8", "1x1x4"), ("h-chain", "d=2.6", "1x1x4"),
        ("h-chain", "d=3.6", "1x1x4"), ("lih", "a=4.08", "1x1x1"), ("graphene", "a=2.46", "1x1x1")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--references", type=Path, default=ROOT / "references")
    a = ap.parse_args()
    df, errors = records_table([a.results, a.references])
    for e in errors:
        print("skipped:", e)
    out = []
    for system, geometry, kmesh in ROWS:
        sel = df[(df.system == system) & (df.geometry == geometry) & (df.kmesh == kmesh)]
        row = {"system": system, "geometry": geometry, "kmesh": kmesh}
        for m in ("ccsd", "ccsd_t"):
            r = sel[sel.method == m]
            row[m] = round(float(r.delta_vs_exact_mha.iloc[0]), 3) if len(r) else None
        nqs = sel[sel.kind == "nqs"].sort_values(["sampler", "n_steps"])
        for _, r in nqs.iterrows():
            err = "" if pd.isna(r.energy_error) or not r.energy_error else f" ± {1e3 * r.energy_error:.3f}"
            model = read(r.path).settings.model
            alpha = getattr(model, "alpha", None)
            label = (("" if model.kind == "rbm" else f"{model.kind} ") + f"{r.sampler} {int(r.n_steps)} steps "
                     f"s{int(r.seed)}" + (f" α{alpha:g}" if alpha else ""))
            cell = f"{r.delta_vs_exact_mha:+.3f}{err}"
            # E(N) of the same state by exact sums: any exact-estimator band record of the run
            bands = next(Path(r.path).parent.glob(Path(r.path).stem + ".bands-*exact.json"), None)
            if r.sampler != "exact" and bands is not None:
                e_exact_state = json.loads(bands.read_text())["energy_per_cell"]
                cell += f" [{1e3 * (e_exact_state - (r.energy_per_cell - r.delta_vs_exact_mha / 1e3)):+.3f}]"
            row[label] = cell
        out.append(row)
    table = pd.DataFrame(out)
    table = table.astype(object).where(table.notna(), "")     # runs a row does not have: blank
    print(table.to_markdown(index=False))       # tabulate is a dependency


if __name__ == "__main__":
    main()
