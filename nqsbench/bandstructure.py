"""Band-structure comparisons and figures, shared by every method's band records.

Bands are the record format of :class:`nqsbench.records.Band`: per k, sorted ``electron`` and
``hole`` quasiparticle energies in Hartree (ewald convention). Errors are reported in meV.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .units import HARTREE_TO_EV, HARTREE_TO_MEV  # re-exported: other modules import them from here

# the NQS excitation-subspace bands and the same subspace on the exact state, in every band figure
NQS_STYLE = {"color": "C3", "marker": "o", "ms": 4, "lw": 1.2}
CONTROL_STYLE = {"color": "C2", "marker": "x", "ms": 5, "lw": 0.8, "ls": ":"}
# NQS band methods side by side in one figure (report): the first keeps NQS_STYLE
NQS_METHOD_STYLES = {"subspace": NQS_STYLE, "krylov": {"color": "C1", "marker": "D", "ms": 3, "lw": 1.0},
                     "sector": {"color": "C4", "marker": "v", "ms": 4, "lw": 1.0}}


def band_method_label(band_method: str, order: int = 0) -> str:
    """"subspace", "Krylov 8", "sector": the NQS band method as figures and tables name it."""
    return {"krylov": f"Krylov {order}", "sector": "sector"}.get(band_method, "subspace")


def _as_dicts(bands) -> list[dict]:
    return [b if isinstance(b, dict) else b.model_dump() for b in bands]


def gap(bands) -> float | None:
    """Fundamental gap min ε_e − max ε_h over the mesh (Hartree), None without both branches."""
    bands = _as_dicts(bands)
    el = [e for b in bands for e in b["electron"]]
    ho = [e for b in bands for e in b["hole"]]
    return float(min(el) - max(ho)) if el and ho else None


def band_errors(bands, reference) -> dict:
    """Errors of ``bands`` against ``reference``: mean absolute and maximum error over every
    (k, branch, band) present in both (paired at each k and branch by least total |Δ|), and the
    gap error, in meV. ``n`` counts the compared energies."""
    a = {b["k"]: b for b in _as_dicts(bands)}
    r = {b["k"]: b for b in _as_dicts(reference)}
    from scipy.optimize import linear_sum_assignment

    diffs = []
    for k in sorted(set(a) & set(r)):
        for branch in ("electron", "hole"):
            x, y = np.asarray(a[k][branch], float), np.asarray(r[k][branch], float)
            if not len(x) or not len(y):
                continue
            # least-|Δ| pairing; for equal counts it is the energy-order pairing, and when one
            # side lists fewer bands (satellites or unconverged roots left out) the others stay paired
            i, j = linear_sum_assignment(np.abs(x[:, None] - y[None, :]))
            diffs.extend(x[i] - y[j])
    diffs = np.abs(np.asarray(diffs, dtype=float)) * HARTREE_TO_MEV
    ga, gr = gap(bands), gap(reference)
    return {"mae_meV": float(diffs.mean()) if len(diffs) else None,
            "max_meV": float(diffs.max()) if len(diffs) else None,
            "gap_error_meV": None if ga is None or gr is None else float((ga - gr) * HARTREE_TO_MEV),
            "n": int(len(diffs))}


def k_path(bands) -> tuple[list[int], list[str]]:
    """The k indices ordered along the mesh (fractional coordinates wrapped to (−½, ½], sorted
    lexicographically — for a 1D chain the path −π/a … π/a) and tick labels."""
    bands = _as_dicts(bands)
    kv = np.array([b["kvec"] for b in bands], dtype=float)
    mesh = np.maximum(kv.max(axis=0) + 1, 1)
    frac = kv / mesh
    frac = np.where(frac > 0.5 + 1e-9, frac - 1.0, frac)
    order = sorted(range(len(bands)), key=lambda i: tuple(frac[i][::-1]))
    axes = [a for a in range(3) if mesh[a] > 1] or [0]
    labels = [",".join(f"{frac[i][a]:.2f}" for a in axes) for i in order]
    return [bands[i]["k"] for i in order], labels


def plot_bands(series: dict, stem: str | Path, title: str = "") -> list[Path]:
    """Overlay band structures: ``series`` maps a label to (bands, style dict). Energies in eV
    relative to the valence-band maximum of the first series; writes ``stem.png`` and
    ``stem.svg`` (atomically) and returns both paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_write

    first = _as_dicts(next(iter(series.values()))[0])
    order, labels = k_path(first)
    vbm = max(e for b in first for e in b["hole"]) if any(b["hole"] for b in first) else 0.0
    fig, ax = plt.subplots(figsize=(5.0, 4.2))
    for label, (bands, style) in series.items():
        by_k = {b["k"]: b for b in _as_dicts(bands)}
        for branch in ("hole", "electron"):
            n_band = max(len(by_k[k][branch]) for k in order if k in by_k)
            for j in range(n_band):
                xs, ys, es = [], [], []
                for x, k in enumerate(order):
                    vals = sorted(by_k[k][branch]) if k in by_k else []
                    if j < len(vals):
                        xs.append(x)
                        ys.append((vals[j] - vbm) * HARTREE_TO_EV)
                        err = by_k[k].get(f"{branch}_error") or []
                        es.append(err[j] * HARTREE_TO_EV if j < len(err) else 0.0)
                kw = dict(style)
                kw["label"] = label if (branch == "hole" and j == 0) else None
                if any(es):
                    ax.errorbar(xs, ys, yerr=es, capsize=2, **kw)
                else:
                    ax.plot(xs, ys, **kw)
    ax.axhline(0.0, color="0.7", lw=0.6)
    ax.set_xticks(range(len(order)), labels, rotation=30, fontsize=7)
    ax.set_xlabel("k (fractional, along the mesh)")
    ax.set_ylabel("quasiparticle energy − VBM (eV)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = stem.with_name(f"{stem.name}.{ext}")
        atomic_write(p, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=150))
        paths.append(p)
    plt.close(fig)
    return paths
