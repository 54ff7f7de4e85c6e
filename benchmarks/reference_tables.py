"""Tables from the committed reference cache (references/): per-cell errors against exact (mHa)
and band gaps (Ha) versus H-chain bond length.

    python benchmarks/reference_tables.py [--nk 4]
"""
from __future__ import annotations

import argparse

import pandas as pd

from nqsbench import catalog
from nqsbench.store import Store, read

METHODS = ("hf", "mp2", "ccsd", "ccsd_t")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nk", type=int, default=4)
    args = ap.parse_args()
    spec = catalog.load("h-chain")
    rows = []
    for d in spec.parameters["d"].scan:
        geom = spec.geometry({"d": d}, (1, 1, args.nk))
        recs = {}
        for m in METHODS + ("exact", "eom_ccsd"):
            p = Store.default().path(m, geom)
            recs[m] = read(p) if p.exists() else None
        ex = recs["exact"]
        row = {"d": d}
        for m in METHODS:
            r = recs[m]
            row[f"{m} (mHa)"] = (1e3 * (r.energy_per_cell - ex.energy_per_cell)
                                 if r is not None and r.converged and ex is not None else None)
        singlet = ex.details.get("energy_per_cell_singlet") if ex else None
        row["ccsd vs exact singlet (mHa)"] = (1e3 * (recs["ccsd"].energy_per_cell - singlet)
                                             if singlet is not None and recs["ccsd"] and recs["ccsd"].converged
                                             else None)
        row["gap HF"] = recs["hf"].gap if recs["hf"] else None
        row["gap EOM"] = recs["eom_ccsd"].gap if recs["eom_ccsd"] and recs["eom_ccsd"].converged else None
        row["gap exact"] = ex.gap if ex else None
        row["exact S²"] = ex.details.get("s2_ground") if ex else None
        rows.append(row)
    df = pd.DataFrame(rows)
    print(f"H chain, k-mesh 1x1x{args.nk}: energy error per cell vs exact (mHa), gaps (Ha)")
    print(df.to_string(index=False, float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main()
