"""Band-error table of NQS quasiparticle bands (issues 5 and 17) from existing band records.

    python benchmarks/band_table.py [--results DIR] [--model rbm] [--sampler exact] [--seed 0] [--nk 4]
        [--gs-spin-penalty λ] [--d 1.0 1.4 1.8 2.2 2.6 3.0 3.2 3.6] [--methods subspace krylov2 krylov4 krylov8 sector krylov1:mc]

Reads <results>/h-chain/d<d>_k1x1x<nk>/nqs-<model>-<sampler>-s<seed>[-s2pen<λ>].bands-[krylov<n>-|sector-|sector-spin<λ>-]<exact|monte_carlo>.json
(make them with `nqsbench run h-chain -p d=D -k 1,1,NK [--spin-penalty λ]` and `nqsbench bands ...
[--method krylov --order N | --method sector]`) and prints a markdown table, one row per (d, band method): the ground
state's error per cell (mHa), band MAE / max / gap error (meV) against exact of the NQS bands and of
the same method on the exact ground state (the control; for sector: the exact lowest level of each
sector), the NQS gap against the control's (for sector: the charge-gap error), the smallest
spectral weight Z of a band, and EOM-CCSD and HF against exact beside them.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

from nqsbench import catalog
from nqsbench.errors import NqsbenchError
from nqsbench.records import BandRecord, ReferenceRecord, exact_target
from nqsbench.store import Store, read


def band_file(gs: Path, method: str) -> Path:
    """``subspace``, ``sector``, ``krylov<n>``, each with an optional ``:mc`` (the Monte Carlo
    estimator's record; default the exact estimator's)."""
    m = re.fullmatch(r"(subspace|sector(?:-spin[0-9.e+-]+)?|krylov\d+)(?::(mc|exact))?", method)
    if m is None:
        raise SystemExit(f"--methods {method!r}: give subspace, sector, sector-spin<λ> (--spin-penalty λ) or "
                         "krylov<order>, each with an optional :mc, e.g. krylov4 or krylov1:mc")
    space, est = m.group(1), {"mc": "monte_carlo"}.get(m.group(2), "exact")
    return gs.with_name(f"{gs.stem}.bands-{'' if space == 'subspace' else space + '-'}{est}.json")


def rows(store: Store, d: float, nk: int, model: str, seed: int, methods: list[str],
         sampler: str = "exact", spin_penalty: float = 0.0) -> list[dict]:
    geom = catalog.load("h-chain").geometry({"d": d}, (1, 1, nk))
    pen = f"-s2pen{spin_penalty:g}" if spin_penalty else ""
    gs = store.path("nqs", geom).with_name(f"nqs-{model}-{sampler}-s{seed}{pen}.json")
    exact = read(store.path("exact", geom), ReferenceRecord)
    e_exact = exact_target(spin_penalty, exact.energy_per_cell, exact.details.get("energy_per_cell_singlet"))
    out = []
    for method in methods:
        try:
            rec = read(band_file(gs, method), BandRecord)
        except NqsbenchError:
            continue
        e = rec.errors
        get = lambda key, f: None if key not in e or e[key][f] is None else round(e[key][f], 1)  # noqa: E731
        out.append({"d": d, "method": method, "steps": rec.ground_state["n_steps"],
                    "E_err_mHa": round((rec.ground_state["energy_per_cell"] - e_exact) * 1e3, 3),
                    "NQS MAE": get("nqs_vs_exact", "mae_meV"), "NQS max": get("nqs_vs_exact", "max_meV"),
                    "NQS gap": get("nqs_vs_exact", "gap_error_meV"),
                    "control MAE": get("exact_state_subspace_vs_exact", "mae_meV"),
                    "control gap": get("exact_state_subspace_vs_exact", "gap_error_meV"),
                    # the NQS against the same method on the exact state: for sector, the charge gap error
                    "gap vs control": get("nqs_vs_exact_state_subspace", "gap_error_meV"),
                    "min Z": round(min(w for b in rec.bands for w in b.electron_weight + b.hole_weight), 3),
                    "EOM-CCSD MAE": get("eom_ccsd_vs_exact", "mae_meV"),
                    "EOM-CCSD gap": get("eom_ccsd_vs_exact", "gap_error_meV"),
                    "HF MAE": get("hf_vs_exact", "mae_meV"), "HF gap": get("hf_vs_exact", "gap_error_meV")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=None, help="results folder (default: the store's)")
    ap.add_argument("--model", default="rbm")
    ap.add_argument("--sampler", default="exact", help="sampler of the ground-state runs (exact|mcmc)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nk", type=int, default=4)
    ap.add_argument("--gs-spin-penalty", type=float, default=0.0, help="λ of ground states made with --spin-penalty λ")
    ap.add_argument("--d", type=float, nargs="+", default=[1.0, 1.4, 1.8, 2.2, 2.6, 3.0, 3.2, 3.6])
    ap.add_argument("--methods", nargs="+", default=["subspace", "krylov2", "krylov4", "krylov8"])
    a = ap.parse_args()
    store = Store.default(results=a.results)
    df = pd.DataFrame([r for d in a.d for r in rows(store, d, a.nk, a.model, a.seed, a.methods, a.sampler,
                                                      a.gs_spin_penalty)])
    print(df.to_markdown(index=False))       # tabulate is a dependency


if __name__ == "__main__":
    main()
