"""The leaderboard: every method, ours and external, on every instance it ran, its error per cell
against the best available reference of that instance (exact, then DMRG, then CCSD(T)).

Built from every record in the store (:func:`nqsbench.table.records_table`: references, NQS runs,
external submissions). An entry is a reference method (``hf``, ``ccsd``, ``dmrg``, ...), an NQS
run (its record name, e.g. ``nqs-rbm-exact-s0``) or an external submission (``external:<name>``).
A record is compared only with a reference computed from the same inputs (equal ``input_hash``):
anything else would compare two different Hamiltonians. EOM-CCSD (its energy is CCSD's) and band
records (their E(N) repeats the ground-state run) are left out.
"""
from __future__ import annotations

import math

from .export import REFERENCE_ORDER
from .records import exact_target
from .units import CHEMICAL_ACCURACY_MHA

KEY = ["system", "geometry", "kmesh"]
COLUMNS = ["method", "origin", "system", "geometry", "kmesh", "reference", "error_mha", "sigma_mha",
           "within_chemical_accuracy", "energy_per_cell", "reference_energy", "path"]


def entry_name(row) -> str:
    return row["record"] if row["kind"] == "nqs" else row["method"]


def leaderboard(df, instances=None):
    """Long table (one row per method and instance) from a :func:`records_table` frame;
    ``instances``: a set of (system, geometry, kmesh) strings to keep (None: all)."""
    import pandas as pd

    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    ok = df[~df["failed"].astype(bool) & df["energy_per_cell"].notna()]
    refs = ok[(ok["kind"] == "reference") & ok["method"].isin(REFERENCE_ORDER)]
    best = {}
    for key, g in refs.groupby(KEY):
        g = g.assign(_rank=g["method"].map(REFERENCE_ORDER.index)).sort_values("_rank")
        best[key] = g.iloc[0]
    rows = []
    entries = ok[ok["kind"].isin(["reference", "nqs", "external"]) & (ok["method"] != "eom_ccsd")]
    for _, r in entries.iterrows():
        key = (r["system"], r["geometry"], r["kmesh"])
        if instances is not None and key not in instances:
            continue
        ref = best.get(key)
        if ref is None or r["path"] == ref["path"] or r["input_hash"] != ref["input_hash"]:
            continue
        target = float(exact_target(r.get("spin_penalty"), ref["energy_per_cell"], ref.get("energy_per_cell_singlet")))
        err = (float(r["energy_per_cell"]) - target) * 1e3
        s = [x for x in (r.get("energy_error"), ref.get("energy_error")) if x is not None and x == x]
        sigma = math.hypot(*s) * 1e3 if s else 0.0
        rows.append({"method": entry_name(r), "origin": "external" if r["kind"] == "external" else "nqsbench",
                     "system": r["system"], "geometry": r["geometry"], "kmesh": r["kmesh"],
                     "reference": ref["method"], "error_mha": err, "sigma_mha": sigma,
                     "within_chemical_accuracy": abs(err) <= CHEMICAL_ACCURACY_MHA + 2 * sigma,
                     "energy_per_cell": float(r["energy_per_cell"]),
                     "reference_energy": target, "path": r["path"]})
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(lb):
    """One row per method: instances, systems, mean and max |error| (mHa/cell), how many within
    chemical accuracy (+2σ); best first (mean |error|)."""
    import pandas as pd

    if lb.empty:
        return pd.DataFrame(columns=["rank", "method", "origin", "instances", "systems", "mean |error| (mHa/cell)",
                                     "max |error| (mHa/cell)", "within 1.6 mHa"])
    g = lb.assign(abs_err=lb["error_mha"].abs()).groupby(["method", "origin"])
    out = pd.DataFrame({
        "instances": g.size(),
        "systems": g["system"].agg(lambda s: ", ".join(sorted(set(s)))),
        "mean |error| (mHa/cell)": g["abs_err"].mean(),
        "max |error| (mHa/cell)": g["abs_err"].max(),
        "within 1.6 mHa": g["within_chemical_accuracy"].sum().astype(int).astype(str) + "/" + g.size().astype(str),
    }).reset_index().sort_values(["mean |error| (mHa/cell)", "method"])
    out.insert(0, "rank", range(1, len(out) + 1))
    return out.reset_index(drop=True)


def by_instance(lb):
    """Methods × instances: the signed error (mHa/cell) against the instance's best reference."""
    if lb.empty:
        return lb
    t = lb.assign(instance=lb["system"] + " " + lb["geometry"] + " k" + lb["kmesh"] + " vs " + lb["reference"])
    piv = t.pivot_table(index=["method", "origin"], columns="instance", values="error_mha", aggfunc="first")
    order = summary(lb)[["method", "origin"]].apply(tuple, axis=1).tolist()
    return piv.reindex(order).reset_index()


def plot(lb, stem, title: str = "leaderboard"):
    """|error| per cell of every method on every instance (log scale), best method on top; one
    marker per system, external submissions in bold. Writes ``stem``.png and .svg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(lb)
    methods = s["method"].tolist()
    ext = set(s.loc[s["origin"] == "external", "method"])
    systems = sorted(lb["system"].unique())
    markers = "osD^vP*X"
    fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(methods) + 1.6))
    for i, system in enumerate(systems):
        sub = lb[lb["system"] == system]
        y = [len(methods) - 1 - methods.index(m) for m in sub["method"]]
        ax.scatter(sub["error_mha"].abs().clip(lower=1e-4), y, marker=markers[i % len(markers)],
                   color=f"C{i}", s=22, alpha=0.8, label=system)
    ax.axvline(CHEMICAL_ACCURACY_MHA, color="C2", ls="--", lw=1, label="chemical accuracy")
    ax.set_xscale("log")
    ax.set_yticks(range(len(methods)), methods[::-1], fontsize=7)
    for lab in ax.get_yticklabels():
        if lab.get_text() in ext:
            lab.set_fontweight("bold")
    ax.set_xlabel("|E − E_best reference| (mHa/cell; exact, else DMRG, else CCSD(T))")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    for ext_ in ("png", "svg"):
        fig.savefig(f"{stem}.{ext_}", format=ext_, dpi=130)
    plt.close(fig)
