"""``nqsbench report NAME`` → ``reports/NAME/index.md`` + ``index.html`` with tables and figures.

Reports are generated, never edited: the folder is rebuilt from the records each time (built in
a temporary folder beside it and swapped in, so a half-written report never replaces a good one).
Figures (matplotlib, Agg, PNG + SVG): energy against geometry with an error panel and the
chemical-accuracy band, errors at fixed geometry, quasiparticle bands, NQS optimization traces,
and V-score against error. Paths in the pages are relative, so the folder can be moved or opened
directly in a browser.
"""
from __future__ import annotations

import html
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .bandstructure import band_method_label
from .errors import RecordError
from .gates import rows_frame
from .store import Store
from .suites import Suite, check, jobs, status
from .units import CHEMICAL_ACCURACY_MHA

METHOD_STYLE = {  # label, colour, marker
    "exact": ("exact", "k", "s"), "hf": ("HF", "0.5", "."), "mp2": ("MP2", "C4", "v"),
    "ccsd": ("CCSD", "C0", "^"), "ccsd_t": ("CCSD(T)", "C1", "D"), "eom_ccsd": ("EOM-CCSD", "C0", "^"),
    "dmrg": ("DMRG", "C2", "P"),
}


@dataclass
class Report:
    folder: Path
    figures: list[str] = field(default_factory=list)
    n_records: int = 0
    missing: list[str] = field(default_factory=list)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, folder: Path, stem: str, rep: Report) -> None:
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(folder / "figures" / f"{stem}.{ext}", format=ext, dpi=130)
    _plt().close(fig)
    rep.figures.append(stem)


def _label(method: str) -> str:
    if method.startswith("nqs-"):
        return "NQS " + method.removeprefix("nqs-")
    return METHOD_STYLE.get(method, (method,))[0]


def _style(method: str) -> dict:
    if method.startswith("nqs-"):
        return {"color": "C3", "marker": "o", "ms": 5}
    _, c, m = METHOD_STYLE.get(method, (method, "C7", "x"))
    return {"color": c, "marker": m, "ms": 4}


def collect(suite: Suite, store: Store):
    """(records DataFrame, loaded records by job path, missing labels). Invalid files raise."""
    import pandas as pd

    from .table import add_exact_deltas, record_row

    rows, recs, missing, bad = [], {}, [], []
    for job in jobs(suite, store):
        st = status(job, store)
        if st.error:
            bad.append(st.error)
            continue
        if st.record is None:
            missing.append(f"{job.label()} ({st.reason})")
            continue
        rec = st.record                      # read by the status check (stale ones too)
        row = record_row(rec, job.path)
        if rec.kind == "nqs":
            row["method"] = job.name            # nqs-rbm-<sampler>-s<seed>[-label]: one column per run
        row["fresh"] = st.fresh
        row["stale_reason"] = "" if st.fresh else st.reason
        rows.append(row)
        recs[job.path] = (job, rec)
    if bad:
        raise RecordError(f"{len(bad)} invalid record file(s): " + " | ".join(bad))
    df = pd.DataFrame(rows)
    if not df.empty:
        df = add_exact_deltas(df)
    return df, recs, missing


# ----------------------------------------------------------------------------- figures
def _scan_param(sub) -> str | None:
    cols = [c for c in sub.columns if c.startswith("param_") and sub[c].nunique() > 1]
    return cols[0] if cols else None


def fig_energy_curves(df, folder, rep):
    """Energy vs the scanned parameter (top) and error vs exact with the chemical-accuracy band
    (bottom, symlog in mHa), one figure per (system, k-mesh) with a scan."""
    plt = _plt()
    out = []
    # EOM-CCSD's ground-state energy is CCSD's: drawn once, as CCSD
    energies = df[df["kind"].isin(["reference", "nqs"]) & ~df["failed"].astype(bool) & (df["method"] != "eom_ccsd")]
    for (system, kmesh), sub in energies.groupby(["system", "kmesh"]):
        p = _scan_param(sub)
        if p is None:
            continue
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.2, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        for method, m in sorted(sub.groupby("method"), key=lambda t: (t[0].startswith("nqs"), t[0])):
            m = m.sort_values(p)
            st = _style(method)
            ax.plot(m[p], m["energy_per_cell"], label=_label(method), lw=1, **st)
            if method != "exact" and m["delta_vs_exact_mha"].notna().any():
                yerr = (m["energy_error"].fillna(0) * 1e3).to_numpy()
                ax2.errorbar(m[p], m["delta_vs_exact_mha"], yerr=yerr if yerr.any() else None, lw=1,
                             capsize=2, label=_label(method), **st)
        ax2.axhspan(-CHEMICAL_ACCURACY_MHA, CHEMICAL_ACCURACY_MHA, color="C2", alpha=0.2,
                    label=f"chemical accuracy (±{CHEMICAL_ACCURACY_MHA} mHa)")
        ax2.axhline(0, color="k", lw=0.6)
        ax2.set_yscale("symlog", linthresh=1.0)
        unit = "bohr" if system == "h-chain" else "Å"
        ax2.set_xlabel(f"{p.removeprefix('param_')} ({unit})")
        ax.set_ylabel("E per cell (Ha, ewald convention)")
        ax2.set_ylabel("E − E_exact (mHa/cell)")
        ax.set_title(f"{system}, k-mesh {kmesh}")
        ax.legend(fontsize=7)
        ax2.legend(fontsize=6, loc="best")
        stem = f"energy_{system}_k{kmesh}"
        _save(fig, folder, stem, rep)
        out.append((stem, f"{system}, k-mesh {kmesh}: energy per cell against {p.removeprefix('param_')} "
                    "and the error against exact diagonalization (symlog; green: chemical accuracy)"))
    return out


def fig_fixed_geometry(df, folder, rep):
    """Errors vs exact (mHa/cell, symlog) of every method at geometries that are not scanned."""
    plt = _plt()
    sub = df[df["kind"].isin(["reference", "nqs"]) & ~df["failed"].astype(bool) & ~df["method"].isin(["exact", "eom_ccsd"])
             & df["delta_vs_exact_mha"].notna()]
    singles = []
    for (system, kmesh), s in sub.groupby(["system", "kmesh"]):
        if _scan_param(s) is None:
            singles.append(s)
    if not singles:
        return []
    import pandas as pd

    s = pd.concat(singles)
    s = s.assign(where=s["system"] + " " + s["geometry"] + " k" + s["kmesh"])
    wheres = list(dict.fromkeys(s["where"]))
    methods = sorted(s["method"].unique(), key=lambda m: (m.startswith("nqs"), m))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(wheres) + 2), 4.0))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        xs, ys, es = [], [], []
        for j, w in enumerate(wheres):
            r = s[(s["where"] == w) & (s["method"] == m)]
            if len(r):
                xs.append(j + (i - (len(methods) - 1) / 2) * width)
                ys.append(float(r["delta_vs_exact_mha"].iloc[0]))
                es.append(float((r["energy_error"].fillna(0) * 1e3).iloc[0]))
        ax.bar(xs, ys, width=width, yerr=es if any(es) else None, label=_label(m), color=_style(m)["color"])
    ax.axhspan(-CHEMICAL_ACCURACY_MHA, CHEMICAL_ACCURACY_MHA, color="C2", alpha=0.2, label="chemical accuracy")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xticks(range(len(wheres)), wheres, fontsize=7)
    ax.set_ylabel("E − E_exact (mHa/cell)")
    ax.legend(fontsize=7)
    ax.set_title("errors against exact diagonalization at fixed geometry")
    _save(fig, folder, "energy_fixed_geometry", rep)
    return [("energy_fixed_geometry", "Errors of every method against exact diagonalization (symlog, mHa per "
             "cell) where the geometry is not scanned (graphene, LiH)")]


def fig_bands(recs, folder, rep):
    """Quasiparticle bands per geometry: exact, EOM-CCSD, HF and NQS (when computed)."""
    from .bandstructure import CONTROL_STYLE, NQS_METHOD_STYLES, NQS_STYLE, plot_bands

    by_geom: dict = {}
    for job, rec in recs.values():
        if getattr(rec, "bands", None) and not rec.failed:
            by_geom.setdefault((job.system, job.params, job.kmesh), []).append((job, rec))
    out = []
    order = {"exact": 0, "eom_ccsd": 1, "hf": 2}
    for (system, params, kmesh), items in by_geom.items():
        if not any(r.kind == "nqs-bands" for _, r in items) and len(items) < 2:
            continue
        items.sort(key=lambda t: order.get(t[1].method, 9))
        series = {}
        for job, rec in items:
            if rec.kind == "nqs-bands":
                space = band_method_label(rec.band_method, rec.order)
                series[f"NQS {space} ({rec.estimator})"] = (rec.bands, NQS_METHOD_STYLES.get(rec.band_method, NQS_STYLE))
                if rec.control_bands:
                    series[f"exact-state {space}"] = (rec.control_bands, {
                        **CONTROL_STYLE, "color": NQS_METHOD_STYLES.get(rec.band_method, CONTROL_STYLE)["color"]})
            else:
                lab, c, mk = METHOD_STYLE.get(rec.method, (rec.method, "C7", "x"))
                series[lab] = (rec.bands, {"color": c, "marker": mk, "ms": 3, "lw": 0.9})
        g = "_".join(f"{k}{v:g}" for k, v in params)
        k = "x".join(map(str, kmesh))
        stem = f"bands_{system}_{g}_k{k}"
        plot_bands(series, folder / "figures" / stem, f"{system} {g} k-mesh {k}")
        rep.figures.append(stem)
        out.append((stem, f"{system} {g}, k-mesh {k}: quasiparticle bands (eV, relative to the valence-band "
                    "maximum of the first series)"))
    return out


def fig_traces(recs, df, folder, rep):
    """NQS optimization traces: |E(step) − E_exact| per cell, one panel per (system, k-mesh)."""
    import pandas as pd

    plt = _plt()
    from .records import trace_path

    groups: dict = {}
    for job, rec in recs.values():
        if rec.kind == "nqs":
            groups.setdefault((job.system, job.kmesh), []).append((job, rec))
    if not groups:
        return []
    exact = {(r["system"], r["geometry"], r["kmesh"]): r["energy_per_cell_raw"]
             for _, r in df[(df["method"] == "exact") & ~df["failed"].astype(bool)].iterrows()}
    n = len(groups)
    ncol = min(n, 3)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.6 * nrow), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax, ((system, kmesh), items) in zip(axes.ravel(), sorted(groups.items())):
        for i, (job, rec) in enumerate(sorted(items, key=lambda t: t[0].params)):
            tp = trace_path(job.path)
            geo = ",".join(f"{k}={v:g}" for k, v in job.params)
            e0 = exact.get((system, geo, "x".join(map(str, kmesh))))
            if not tp.exists() or e0 is None:
                continue
            t = pd.read_csv(tp)
            err = (t["energy"] - e0).abs() * 1e3
            ax.semilogy(t["step"], err.clip(lower=1e-4), lw=1, color=f"C{i}", label=geo or job.name)
        ax.axhline(CHEMICAL_ACCURACY_MHA, color="C2", ls="--", lw=1, label="1.6 mHa")
        ax.set_xlabel("SR step")
        ax.set_ylabel("|E − E_exact| (mHa/cell)")
        ax.set_title(f"{system} k-mesh {'x'.join(map(str, kmesh))}", fontsize=9)
        ax.legend(fontsize=6)
    _save(fig, folder, "nqs_traces", rep)
    return [("nqs_traces", "NQS optimization traces: error of the per-step energy estimate against exact "
             "diagonalization (raw convention, per cell)")]


def fig_vscore(df, folder, rep):
    """V-score against |E − E_exact| for every NQS record with an exact reference."""
    plt = _plt()
    s = df[(df["kind"] == "nqs") & df["delta_vs_exact_mha"].notna()]
    if "v_score" not in s or s["v_score"].isna().all():
        return []
    fig, ax = plt.subplots(figsize=(5.0, 4.0))
    for i, (system, g) in enumerate(s.groupby("system")):
        x = g["v_score"].astype(float)
        y = g["delta_vs_exact_mha"].abs().clip(lower=1e-4)
        ax.loglog(x, y, "o", color=f"C{i}", label=system)
    ax.axhline(CHEMICAL_ACCURACY_MHA, color="C2", ls="--", lw=1, label="chemical accuracy")
    ax.set_xlabel("V-score  N·Var(E)/(E − E∞)²")
    ax.set_ylabel("|E − E_exact| (mHa/cell)")
    ax.legend(fontsize=7)
    ax.set_title("V-score against error (NQS)")
    _save(fig, folder, "vscore_vs_error", rep)
    return [("vscore_vs_error", "V-score (Wu et al. 2024) against the error vs exact diagonalization, "
             "every NQS record")]


def leaderboard_section(suite: Suite, store: Store, folder: Path, rep: Report):
    """The leaderboard of the suite's instances: every method in the store, ours and external
    (``nqsbench score``), against the best reference of each instance (:mod:`nqsbench.leaderboard`)."""
    from . import leaderboard as lbm
    from .table import records_table

    instances = {(j.system, ",".join(f"{k}={v:g}" for k, v in j.params), "x".join(map(str, j.kmesh)))
                 for j in jobs(suite, store)}
    df, _ = records_table([store.references, store.results])     # invalid files: reported by the gates
    lb = lbm.leaderboard(df, instances)
    if lb.empty:
        return [], {}
    stem = "leaderboard"
    lbm.plot(lb, folder / "figures" / stem, f"leaderboard: {suite.name} instances")
    rep.figures.append(stem)
    fig = [(stem, "Leaderboard: |error| per cell of every method (nqsbench's and external submissions, "
            "bold) on every instance of the suite it ran, against the instance's best reference "
            "(exact, else DMRG, else CCSD(T)); best method on top (log scale; green: chemical accuracy)")]
    tabs = {"Leaderboard (mHa per cell against the best reference; ours and external)": lbm.summary(lb),
            "Leaderboard by instance (signed error, mHa per cell)": lbm.by_instance(lb)}
    return fig, tabs


# ----------------------------------------------------------------------------- tables
def tables(df, recs):
    import pandas as pd

    out = {}
    en = df[df["kind"].isin(["reference", "nqs"])]
    if not en.empty:
        piv = en.pivot_table(index=["system", "geometry", "kmesh"], columns="method", values="energy_per_cell",
                             aggfunc="first")
        out["Energies per cell (Ha, ewald convention)"] = piv.reset_index()
        d = en[en["method"] != "exact"].pivot_table(index=["system", "geometry", "kmesh"], columns="method",
                                                    values="delta_vs_exact_mha", aggfunc="first")
        if not d.empty:
            out["Errors against exact (mHa per cell; chemical accuracy 1.6)"] = d.reset_index()
    nq = df[df["kind"] == "nqs"]
    if not nq.empty:
        cols = [c for c in ("system", "geometry", "kmesh", "method", "init", "n_steps", "energy_per_cell",
                            "energy_error", "delta_vs_exact_mha", "v_score", "wall_time_s", "fresh") if c in nq]
        out["NQS runs"] = nq[cols]
    band_rows = []
    for job, rec in recs.values():
        if rec.kind == "nqs-bands":
            for name, e in rec.errors.items():
                band_rows.append({"system": job.system, "geometry": ",".join(f"{k}={v:g}" for k, v in job.params),
                                  "kmesh": "x".join(map(str, job.kmesh)),
                                  "method": band_method_label(rec.band_method, rec.order), "comparison": name,
                                  "MAE (meV)": e.get("mae_meV"), "max (meV)": e.get("max_meV"),
                                  "gap error (meV)": e.get("gap_error_meV"), "n": e.get("n")})
    if band_rows:
        out["Band errors (meV; from the NQS band records)"] = pd.DataFrame(band_rows)
    return out


def _fmt(df):
    return df.map(lambda v: f"{v:.8g}" if isinstance(v, float) and math.isfinite(v) else ("" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v))


# ----------------------------------------------------------------------------- pages
def build_report(suite: Suite, store: Store, folder: str | Path) -> Report:
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        rep = _build(suite, store, tmp)
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            if old.exists():
                shutil.rmtree(old)
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rep.folder = folder
    return rep


def _build(suite: Suite, store: Store, folder: Path) -> Report:
    from .records import git_commit

    (folder / "figures").mkdir(parents=True, exist_ok=True)
    rep = Report(folder)
    df, recs, missing = collect(suite, store)
    rep.n_records, rep.missing = len(df), missing
    gates = rows_frame(check(suite, store))
    gated = gates[gates["gate"] != "fresh"] if not gates.empty else gates
    stale = gates[(gates["gate"] == "fresh") & (gates["status"] != "PASS")] if not gates.empty else gates
    figs = []
    if not df.empty:
        figs += fig_energy_curves(df, folder, rep)
        figs += fig_fixed_geometry(df, folder, rep)
        figs += fig_bands(recs, folder, rep)
        figs += fig_traces(recs, df, folder, rep)
        figs += fig_vscore(df, folder, rep)
    tabs = tables(df, recs) if not df.empty else {}
    lb_figs, lb_tabs = leaderboard_section(suite, store, folder, rep)
    figs += lb_figs
    tabs.update(lb_tabs)
    n_fail = int((gates["status"] == "FAIL").sum()) if not gates.empty else 0
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    head = (f"Generated by `nqsbench report {suite.name}` on {when} at commit {git_commit()} from "
            f"{len(df)} records ({store.references}, {store.results}). Regenerate, do not edit.")
    verdict = ("all gates pass" if n_fail == 0 else f"{n_fail} gate row(s) FAIL") + \
        f" ({len(gated)} gate rows, {len(missing)} records missing)"
    gate_cols = ["gate", "system", "geometry", "kmesh", "method", "value", "limit", "reference", "status", "detail"]

    # markdown
    md = [f"# nqsbench report: {suite.name}", "", suite.description, "", head, "",
          "Energies are per primitive cell in Hartree (ewald convention); errors in mHa per cell; "
          "chemical accuracy 1.6 mHa per cell; band errors in meV.", "", f"## Gates: {verdict}", ""]
    if not gated.empty:
        md += [_fmt(gated[gate_cols]).to_markdown(index=False), ""]
    if not stale.empty:
        md += ["### Records missing, stale or failed", "", _fmt(stale[["system", "geometry", "kmesh", "method", "status",
                                                                       "detail"]]).to_markdown(index=False), ""]
    md += ["## Figures", ""]
    for stem, caption in figs:
        md += [f"![{caption}](figures/{stem}.svg)", "", f"*{caption}* ([PNG](figures/{stem}.png), "
               f"[SVG](figures/{stem}.svg))", ""]
    for title, t in tabs.items():
        md += [f"## {title}", "", _fmt(t).to_markdown(index=False), ""]
    (folder / "index.md").write_text("\n".join(md) + "\n")

    # html
    css = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
           "figure{margin:1.5em 0}img{max-width:100%}.FAIL{color:#b00;font-weight:bold}.PASS{color:#070}")
    h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>nqsbench report: {html.escape(suite.name)}</title>"
         f"<style>{css}</style></head><body>", f"<h1>nqsbench report: {html.escape(suite.name)}</h1>",
         f"<p>{html.escape(suite.description)}</p><p><small>{html.escape(head)}</small></p>",
         f"<h2>Gates: {html.escape(verdict)}</h2>"]
    if not gated.empty:
        h.append(_fmt(gated[gate_cols]).to_html(index=False, escape=True, classes="gates"))
    if not stale.empty:
        h += ["<h3>Records missing, stale or failed</h3>",
              _fmt(stale[["system", "geometry", "kmesh", "method", "status", "detail"]]).to_html(index=False)]
    h.append("<h2>Figures</h2>")
    for stem, caption in figs:
        h.append(f"<figure><img src='figures/{stem}.svg' alt='{html.escape(caption)}'><figcaption>"
                 f"{html.escape(caption)} (<a href='figures/{stem}.png'>PNG</a>, "
                 f"<a href='figures/{stem}.svg'>SVG</a>)</figcaption></figure>")
    for title, t in tabs.items():
        h += [f"<h2>{html.escape(title)}</h2>", _fmt(t).to_html(index=False)]
    h.append("</body></html>")
    (folder / "index.html").write_text("\n".join(h) + "\n")
    return rep
