"""Band-error table of NQS excitation-subspace bands (issue 5) from existing band records.

    python benchmarks/band_table.py --seed 1 [--estimator exact] [--nk 4] [--d 1.4 1.8 2.6 3.6]

Reads results/h-chain/d<d>_k1x1x<nk>/nqs-rbm-exact-s<seed>.bands-<estimator>.json (make them
with `nqsbench run ... --seed S` and `nqsbench bands ... --seed S`) and prints a markdown table:
ground-state error per cell (mHa), then band MAE / gap error (meV) of the NQS subspace, the
exact-state subspace, EOM-CCSD and HF against exact, and NQS against the exact-state subspace.
"""
from __future__ import annotations

import argparse

import pandas as pd

from nqsbench import catalog
from nqsbench.records import BandRecord, ReferenceRecord
from nqsbench.store import Store, read

STORE = Store.default()


def row(d: float, nk: int, seed: int, estimator: str) -> dict:
    geom = catalog.load("h-chain").geometry({"d": d}, (1, 1, nk))
    gs = STORE.path("nqs", geom).with_name(f"nqs-rbm-exact-s{seed}.json")
    rec = read(gs.with_name(f"{gs.stem}.bands-{estimator}.json"), BandRecord)
    exact = read(STORE.path("exact", geom), ReferenceRecord)
    e = rec.errors
    get = lambda key, f: None if key not in e or e[key][f] is None else round(e[key][f], 1)  # noqa: E731
    out = {"d": d, "steps": rec.ground_state["n_steps"],
           "E_err_mHa": round((rec.ground_state["energy_per_cell"] - exact.energy_per_cell) * 1e3, 3)}
    for label, key in (("NQS", "nqs_vs_exact"), ("exact-state sub", "exact_state_subspace_vs_exact"),
                       ("EOM-CCSD", "eom_ccsd_vs_exact"), ("HF", "hf_vs_exact"),
                       ("NQS vs exact-state sub", "nqs_vs_exact_state_subspace")):
        out[f"{label} MAE"] = get(key, "mae_meV")
        out[f"{label} gap"] = get(key, "gap_error_meV")
    out["NQS vs exact-state sub max"] = get("nqs_vs_exact_state_subspace", "max_meV")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nk", type=int, default=4)
    ap.add_argument("--estimator", default="exact")
    ap.add_argument("--d", type=float, nargs="+", default=[1.4, 1.8, 2.6, 3.6])
    a = ap.parse_args()
    df = pd.DataFrame([row(d, a.nk, a.seed, a.estimator) for d in a.d])
    print(df.to_markdown(index=False))       # tabulate is a dependency


if __name__ == "__main__":
    main()
