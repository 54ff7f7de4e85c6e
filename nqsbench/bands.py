"""NQS quasiparticle bands end to end: trained NQS → excitation subspace → errors → record + figure.

``compute_bands(geom, result_path)`` takes an NQS result record (and the parameters saved beside
it), builds the excitation subspace on the NQS state with the exact or the Monte Carlo estimator
(:mod:`nqsbench.nqs.excitations`), builds the same subspace on the exact ground state (the
control), compares both with the exact, EOM-CCSD and HF band records of the reference cache and
writes a :class:`nqsbench.records.BandRecord` plus a band figure beside the NQS record.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import catalog
from .bandstructure import CONTROL_STYLE, NQS_STYLE, band_errors, gap, plot_bands
from .errors import CatalogError, RecordError
from .records import (Band, BandRecord, ReferenceRecord, ResultRecord, Timer, bands_path, provenance,
                      read_record, write_record)

log = logging.getLogger(__name__)

REFERENCE_BANDS = ("exact", "eom_ccsd", "hf")
DEFAULT_SAMPLES = 8192
DEFAULT_CHAINS = 32


def reference_bands(geom: catalog.Geometry, compute_exact: bool = True,
                    root: Path | None = None) -> dict[str, ReferenceRecord]:
    """Converged band records of the reference cache for ``geom`` (exact computed when missing
    and ``compute_exact``; EOM-CCSD and HF are read when present). ``root``: the cache folder
    (default ``$NQSBENCH_REFERENCES`` or references/)."""
    from .references import cache_status, run_reference
    from .suites import references_root

    root = Path(root) if root else references_root()
    out = {}
    for method in REFERENCE_BANDS:
        status = cache_status(geom, method, root)
        if not status.fresh:
            if method != "exact" or not compute_exact:
                continue
            p = [f"{k}={v!r}" for k, v in geom.params.items()]
            run_reference("exact", geom.spec.id, p, ",".join(map(str, geom.kmesh)), root=root)
        rec = read_record(status.path, ReferenceRecord)
        if rec.converged and rec.bands:
            out[method] = rec
    return out


def nqs_subspace(ham, result: ResultRecord, params, estimator: str, n_samples: int = DEFAULT_SAMPLES,
                 n_chains: int = DEFAULT_CHAINS, seed: int = 0, s_threshold: float | None = None):
    """Excitation-subspace bands of the NQS state with the chosen estimator."""
    import jax

    from .nqs.excitations import DEFAULT_S_THRESHOLD, nqs_vector, subspace_exact, subspace_monte_carlo
    from .nqs.hilbert import Sector
    from .nqs.models import RBM
    from .nqs.samplers import MetropolisSampler

    thr = DEFAULT_S_THRESHOLD if s_threshold is None else s_threshold
    sector = Sector.from_hamiltonian(ham, result.sector.get("n_up"), result.sector.get("n_dn"),
                                     result.sector.get("k_total"))
    model = RBM(sector.n_spin_orbitals, alpha=float(result.model["alpha"]))
    if estimator == "exact":
        psi, ed_sector = nqs_vector(ham, model, params, sector)
        sb = subspace_exact(ham, psi, k0=sector.k_total, n_alpha=sector.n_up, n_beta=sector.n_dn,
                            s_threshold=thr)
        # bands are defined on a singlet; an unconstrained NQS can land on a triplet (H chain N_k = 2)
        sb.meta["s2"] = float(ed_sector.s_squared(psi))
        return sb
    # |ψ|² chains (beta = 1: the subspace estimators assume samples of |ψ|²), long burn-in
    sampler = MetropolisSampler(sector, n_chains=n_chains, n_samples=n_samples, n_discard_per_chain=64)
    key = jax.random.PRNGKey(seed)
    state = sampler.init_state(model, params, key)
    xs, *_ = sampler.sample(model, params, state, jax.random.fold_in(key, 1))
    return subspace_monte_carlo(ham, model, params, np.asarray(xs), sector=sector, s_threshold=thr)


def exact_control(ham, s_threshold: float | None = None):
    """The subspace built on the exact ground state (lowest singlet of the N sector)."""
    from .exact import ExactDiagonalization
    from .nqs.excitations import DEFAULT_S_THRESHOLD, subspace_exact

    ed = ExactDiagonalization(ham, n_roots=2, bands=False).run()
    if ed.psi_singlet is not None:
        psi, k0 = ed.psi_singlet, ed.k_singlet
    else:
        psi, k0 = ed.psi_ground, ed.k_ground
    return subspace_exact(ham, psi, k0=k0, s_threshold=DEFAULT_S_THRESHOLD if s_threshold is None else s_threshold)


def compute_bands(geom: catalog.Geometry, result_path: str | Path, estimator: str = "exact",
                  n_samples: int = DEFAULT_SAMPLES, n_chains: int = DEFAULT_CHAINS, seed: int = 0,
                  s_threshold: float | None = None, control: bool = True, out: Path | None = None,
                  figure: bool = True) -> tuple[Path, BandRecord]:
    """Bands of the NQS state of ``result_path`` → (record path, BandRecord), written atomically."""
    from .build import get_hamiltonian
    from .nqs.results import load_params, params_path

    if estimator not in ("exact", "monte_carlo"):
        raise CatalogError(f"--estimator {estimator!r}: choose 'exact' or 'monte_carlo'")
    result_path = Path(result_path)
    result = read_record(result_path, ResultRecord)
    with Timer() as timer:
        ham = get_hamiltonian(geom)
        ppath = params_path(result_path)
        if not ppath.exists():
            raise RecordError(f"{ppath}: parameters of {result_path.name} not found; rerun `nqsbench run`")
        try:
            params, _ = load_params(ppath, ham)
        except ValueError as exc:
            raise RecordError(str(exc)) from None
        sb = nqs_subspace(ham, result, params, estimator, n_samples, n_chains, seed, s_threshold)
        bands = sb.bands(ham)
        refs = reference_bands(geom)
        ctrl = exact_control(ham, sb.s_threshold) if control else None
        ctrl_bands = ctrl.bands(ham) if ctrl is not None else []
        errors = {}
        for name, rec in refs.items():
            errors[f"nqs_vs_{name}"] = band_errors(bands, rec.bands)
            if ctrl is not None:
                errors[f"exact_state_subspace_vs_{name}"] = band_errors(ctrl_bands, rec.bands)
            if name != "exact" and "exact" in refs:
                errors[f"{name}_vs_exact"] = band_errors(rec.bands, refs["exact"].bands)
        if ctrl is not None:
            errors["nqs_vs_exact_state_subspace"] = band_errors(bands, ctrl_bands)
    n0 = ham.n_alpha + ham.n_beta
    e_cell = (sb.e_ground + ham.constant + ham.ewald_shift(n0)) / ham.nk
    path = Path(out) if out else bands_path(result_path, estimator)
    fig_stem = None
    if figure:
        series = {"NQS subspace": (bands, NQS_STYLE)}
        if ctrl is not None:
            series["exact-state subspace"] = (ctrl_bands, CONTROL_STYLE)
        styles = {"exact": {"color": "k", "marker": "s", "ms": 3, "lw": 1.0},
                  "eom_ccsd": {"color": "C0", "marker": "^", "ms": 3, "lw": 0.8, "ls": "--"},
                  "hf": {"color": "0.5", "marker": ".", "lw": 0.8, "ls": "-."}}
        for name, rec in refs.items():
            series[{"exact": "exact", "eom_ccsd": "EOM-CCSD", "hf": "HF (Koopmans)"}[name]] = (rec.bands, styles[name])
        title = f"{geom.label()} — {estimator} estimator"
        plot_bands(series, path.with_suffix(""), title)
        fig_stem = path.with_suffix("").name
    record = BandRecord(
        system=geom.spec.id, params=geom.params, kmesh=geom.kmesh, basis=geom.spec.basis,
        frozen_core=geom.spec.frozen_core, converged=True, energy_per_cell=e_cell,
        energy_per_cell_raw=(sb.e_ground + ham.constant) / ham.nk,
        energy_error=sb.e_ground_error / ham.nk if estimator == "monte_carlo" else None,
        madelung=ham.madelung, hamiltonian_hash=ham.hash, input_hash=ham.meta["input_hash"],
        ground_state={"path": result_path.name, "seed": result.seed, "sampler": result.sampler.get("kind"),
                      "n_steps": result.n_steps, "energy_per_cell": result.energy_per_cell,
                      **({"s2": round(sb.meta["s2"], 6)} if "s2" in sb.meta else {})},
        estimator=estimator, s_threshold=sb.s_threshold, ranks=sb.ranks(), n_samples=sb.n_samples,
        n_blocks=sb.n_blocks, seed=seed if estimator == "monte_carlo" else None,
        bands=[Band(**b) for b in bands], gap=gap(bands),
        control_bands=[Band(**b) for b in ctrl_bands], control_gap=gap(ctrl_bands) if ctrl_bands else None,
        errors=errors, figure=fig_stem, provenance=provenance(timer.elapsed))
    write_record(record, path)
    return path, record
