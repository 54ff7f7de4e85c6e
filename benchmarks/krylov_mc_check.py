"""The Monte Carlo Krylov estimator against the exact one on the same NQS state (issue 17).

    python benchmarks/krylov_mc_check.py --results DIR --d 1.8 [--nk 4] [--model rbm] [--seed 0]

Reads ``nqs-<model>-exact-s<seed>.bands-krylov1-monte_carlo.json`` and
``...bands-krylov1-exact.json`` beside the ground-state record (make them with ``nqsbench bands
h-chain -p d=D -k 1,1,NK --method krylov --estimator mc`` and ``... --method krylov --order 1``)
and prints, per k and branch, the Monte Carlo ε ± its jackknife error, the exact estimator's ε
at the same E(N) = ⟨Ψ|H|Ψ⟩ (the exact record's ε use the Lanczos-step E(N), the Monte Carlo
ones cannot: see ``nqsbench/nqs/krylov_mc.py``), their difference in meV and in error bars.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from nqsbench import catalog
from nqsbench.records import BandRecord
from nqsbench.store import Store, read
from nqsbench.units import HARTREE_TO_EV


def table(store: Store, d: float, nk: int, model: str, seed: int) -> pd.DataFrame:
    geom = catalog.load("h-chain").geometry({"d": d}, (1, 1, nk))
    gs = store.path("nqs", geom).with_name(f"nqs-{model}-exact-s{seed}.json")
    mc = read(gs.with_name(f"{gs.stem}.bands-krylov1-monte_carlo.json"), BandRecord)
    ex = read(gs.with_name(f"{gs.stem}.bands-krylov1-exact.json"), BandRecord)
    shift = (ex.energy_per_cell - ex.krylov_energy_per_cell) * nk     # E_state − E_Lanczos, supercell
    mev = 1e3 * HARTREE_TO_EV
    rows = []
    for a, b in zip(mc.bands, ex.bands):
        for branch, sign in (("electron", -1), ("hole", +1)):
            for e_mc, err, z_mc, e_ex, z_ex in zip(getattr(a, branch), getattr(a, f"{branch}_error"),
                                                   getattr(a, f"{branch}_weight"), getattr(b, branch),
                                                   getattr(b, f"{branch}_weight")):
                e_ex = e_ex + sign * shift
                rows.append({"d": d, "k": a.k, "branch": branch, "ε mc (eV)": round(e_mc * HARTREE_TO_EV, 3),
                             "± (meV)": round(err * mev, 1), "ε exact (eV)": round(e_ex * HARTREE_TO_EV, 3),
                             "mc − exact (meV)": round((e_mc - e_ex) * mev, 1),
                             "in σ": round((e_mc - e_ex) / err, 2), "Z mc": round(z_mc, 3), "Z exact": round(z_ex, 3)})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=None)
    ap.add_argument("--d", type=float, nargs="+", default=[1.8])
    ap.add_argument("--nk", type=int, default=4)
    ap.add_argument("--model", default="rbm")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    store = Store.default(results=None if a.results is None else Path(a.results))
    df = pd.concat([table(store, d, a.nk, a.model, a.seed) for d in a.d], ignore_index=True)
    print(df.to_markdown(index=False))
    print(f"\n|mc − exact| ≤ 2σ for {int((df['in σ'].abs() <= 2).sum())} of {len(df)} bands, ≤ 3σ for "
          f"{int((df['in σ'].abs() <= 3).sum())}")


if __name__ == "__main__":
    main()
