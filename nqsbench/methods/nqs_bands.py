"""NQS quasiparticle bands as a method: a trained NQS → excitation subspace → errors → record.

Reads the NQS ground-state record and the parameters saved beside it (dependency
``ground_state``), builds the excitation subspace on the NQS state with the exact or the Monte
Carlo estimator (:mod:`nqsbench.nqs.excitations`), builds the same subspace on the exact ground
state (the control), compares both with the exact, EOM-CCSD and HF band records (dependencies;
EOM-CCSD and HF only when present) and writes a :class:`~nqsbench.records.BandRecord` plus a band
figure (PNG + SVG) beside the record ``<ground-state stem>.bands-<estimator>.json``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..bandstructure import CONTROL_STYLE, NQS_STYLE, band_errors, band_method_label, gap, plot_bands
from ..errors import MemoryBudgetError, RecordError, SectorTooLargeError
from ..records import Band, BandRecord, NQSBandsSettings, ResultRecord
from .base import Dependency, Method, RunContext
from .nqs import nqs_settings
from .registry import get, register

log = logging.getLogger(__name__)

REFERENCE_BANDS = ("exact", "eom_ccsd", "hf")
# krylov: the order a user gets without --order. H chain N_k = 4, the eight scan points, no-flag RBM
# states (benchmarks/band_table.py, README "Quasiparticle bands"): band MAE against exact of orders
# 2 / 4 / 6 / 8 was 221-637 / 44-1232 / 8-718 / 4.5-876 meV; only order 8 is below EOM-CCSD's at every
# point (gap error ≤ 0.04 eV at d ≥ 2.6 from order 6 on). Cost: order + 1 sector matvecs per vector.
DEFAULT_KRYLOV_ORDER = 8
# λ (Ha) of the H + λ S² that `nqsbench bands` optimizes its own ground state in: bands are defined on
# the lowest singlet, and where a triplet lies below it (H chain N_k = 2 at d ≤ 1.8: 3.0–42 mHa per
# supercell; N_k = 4 at d = 1.0: 13.7) the plain random start finds the triplet. 2λ = 0.2 Ha clears those.
GROUND_STATE_SPIN_PENALTY = 0.1
SECTOR_ATTEMPTS = 3          # sector runs: the ground state's learning rate, then half, then a quarter
DEFAULT_SAMPLES = 8192
DEFAULT_CHAINS = 32
REFERENCE_STYLES = {"exact": ("exact", {"color": "k", "marker": "s", "ms": 3, "lw": 1.0}),
                    "eom_ccsd": ("EOM-CCSD", {"color": "C0", "marker": "^", "ms": 3, "lw": 0.8, "ls": "--"}),
                    "hf": ("HF (Koopmans)", {"color": "0.5", "marker": ".", "lw": 0.8, "ls": "-."})}


def default_band_method(estimator: str) -> str:
    """krylov with the exact estimator (the most accurate against exact: the issue-17 table in
    the README), subspace with the Monte Carlo one (its krylov is order 1 only, ~3 s per sample at
    the H chain N_k = 4 with error bars of 0.05–0.9 eV at 512 samples: README)."""
    return "subspace" if estimator == "monte_carlo" else "krylov"


def bands_settings(ground_state=None, estimator: str = "exact", samples: int | None = None,
                   chains: int | None = None, seed: int | None = None,
                   s_threshold: float | None = None, control: bool = True, method: str | None = None,
                   order: int | None = None, spin_penalty: float = 0.0) -> NQSBandsSettings:
    """Band settings with defaults (Monte Carlo: 8192 samples in 32 chains, the ground state's
    seed; method: :func:`default_band_method`; krylov: order :data:`DEFAULT_KRYLOV_ORDER`)."""
    gs = ground_state if ground_state is not None else nqs_settings()
    mc = estimator == "monte_carlo"
    method = method or default_band_method(estimator)
    if order is None:        # the Monte Carlo krylov estimator has order 1 only
        order = (1 if mc else DEFAULT_KRYLOV_ORDER) if method == "krylov" else 0
    return NQSBandsSettings(
        ground_state=gs, estimator=estimator, control=control, band_method=method, order=order,
        spin_penalty=spin_penalty, s_threshold=1e-3 if s_threshold is None else s_threshold,
        n_samples=(samples or DEFAULT_SAMPLES) if mc else None,
        n_chains=(chains or DEFAULT_CHAINS) if mc else None,
        seed=(gs.seed if seed is None else seed) if mc else None)


def ground_state_model(ham, result: ResultRecord, params_file):
    """(model, sector, params) of a ground-state record: the model rebuilt through the model
    registry from the record's settings, the parameters loaded into its structure."""
    import jax

    from ..nqs import models
    from ..nqs.hilbert import Sector
    from ..nqs.results import load_params

    sector = Sector.from_hamiltonian(ham, result.sector.get("n_up"), result.sector.get("n_dn"),
                                     result.sector.get("k_total"))
    model = models.build(result.settings.model, sector)
    template = model.init(jax.random.PRNGKey(0), reference=sector.hf_config)
    params, _ = load_params(params_file, ham, template=template, model=model)
    return model, sector, params


def nqs_subspace(ham, model, sector, params, s: NQSBandsSettings, memory_gb=None, log=None):
    """Excitation-subspace bands of the NQS state with the chosen estimator."""
    import jax

    from ..nqs.excitations import nqs_vector, subspace_exact, subspace_monte_carlo
    from ..nqs.krylov_mc import krylov_monte_carlo
    from ..nqs.samplers import MetropolisSampler

    if s.estimator == "exact":
        psi, ed_sector = nqs_vector(ham, model, params, sector)
        sb = subspace_exact(ham, psi, k0=sector.k_total, n_alpha=sector.n_up, n_beta=sector.n_dn,
                            s_threshold=s.s_threshold, order=s.order)
        # bands are defined on a singlet; an unconstrained NQS can land on a triplet (H chain N_k = 2)
        sb.meta["s2"] = float(ed_sector.s_squared(psi))
        return sb
    # |ψ|² chains (beta = 1: the subspace estimators assume samples of |ψ|²), long burn-in
    sampler = MetropolisSampler(sector, n_chains=s.n_chains, n_samples=s.n_samples, n_discard_per_chain=64)
    key = jax.random.PRNGKey(s.seed)
    state = sampler.init_state(model, params, key)
    xs, *_ = sampler.sample(model, params, state, jax.random.fold_in(key, 1))
    if s.band_method == "krylov":
        return krylov_monte_carlo(ham, model, params, np.asarray(xs), sector=sector, s_threshold=s.s_threshold,
                                  seed=s.seed, memory_gb=memory_gb, log=log)
    return subspace_monte_carlo(ham, model, params, np.asarray(xs), sector=sector, s_threshold=s.s_threshold,
                                memory_gb=memory_gb, log=log)


def _quasiparticle_sectors(ham, k0: int):
    """(create, k, partner) for every branch and k of the mesh; ``partner`` is the k whose
    sector stands for this one (−k when Ψ0's momentum is its own time-reversed partner, so the
    K0+k and K0−k sectors are complex-conjugate blocks with the same spectrum), else None."""
    from ..exact import quasiparticle_partner

    for create in (True, False):
        for k in range(ham.nk):
            yield create, k, quasiparticle_partner(ham, k0, k)


def _with_partners(ham, k0: int, solve) -> tuple[list, list, list]:
    """Electron and hole branches (and per-sector rows) of ``solve(create, k)`` → (branch, row),
    solved once per time-reversal pair (:func:`_quasiparticle_sectors`)."""
    from dataclasses import replace

    done, electron, hole, rows = {}, [], [], []
    for create, k, partner in _quasiparticle_sectors(ham, k0):
        if partner is not None:
            br, row = done[create, partner]
            br, row = replace(br, k=k), row and {**row, "k": k, "same_as_k": partner}
        else:
            br, row = done[create, k] = solve(create, k)
        (electron if create else hole).append(br)
        rows.append(row)
    return electron, hole, rows


def _optimize_sector(ham, gs, create: bool, k: int, memory_gb=None, log=None, spin_penalty: float = 0.0) -> dict:
    """One sector of :func:`sector_bands`: an NQS of the ground state's settings ``gs`` optimized
    in the (N↑ ± 1, N↓, K0 ± k) sector from its own Koopmans determinant (of H + λ S² with
    λ = ``spin_penalty`` > 0: its lowest doublet rather than its lowest state); a diverged run
    is redone at half the rate (H chain N_k = 4, d = 1.0: the default lr 0.25 diverges at step
    33 in the N+1 sector). Top level and plain results (numpy parameters), so a worker process
    can run it."""
    import time

    import jax

    from ..nqs import DivergenceError
    from ..nqs.hilbert import Sector
    from .nqs import optimize

    qp = Sector.quasiparticle(ham, k, create)
    branch = "electron" if create else "hole"
    target = ham.with_spin_penalty(spin_penalty, qp.n_up, qp.n_dn) if spin_penalty else ham
    t0 = time.perf_counter()
    lr = gs.optimizer.lr
    for attempt in range(SECTOR_ATTEMPTS):
        # the sector's own penalty (``spin_penalty``) applies, not the ground state's singlet one
        start = gs.model_copy(update={"init": "hf", "spin_penalty": 0.0,
                                      "optimizer": gs.optimizer.model_copy(update={"lr": lr})})
        try:
            driver, converged, why = optimize(target, start, sector=qp, memory_gb=memory_gb)
            break
        except DivergenceError as exc:
            if attempt == SECTOR_ATTEMPTS - 1:
                raise DivergenceError(f"sector {branch} k={k}: {exc} "
                                      f"(tried lr {gs.optimizer.lr:g} down to {lr:g})") from None
            if log is not None:
                log(f"sector {branch} k={k}: {exc}; again at lr {lr / 2:g}")
            lr /= 2
    return {"params": jax.tree_util.tree_map(np.asarray, driver.params), "n_steps": int(driver.step), "lr": lr,
            "converged": bool(converged), "convergence": why, "wall_s": round(time.perf_counter() - t0, 1)}


def _sector_checkpoint(ckpt_dir, create: bool, k: int):
    return ckpt_dir / f"sector-{'electron' if create else 'hole'}-k{k}.params.msgpack"


def _sector_key(gs, spin_penalty: float) -> dict:
    """What a saved sector run must match to be read back: the run settings and the penalty."""
    return {**gs.model_dump(mode="json"), "spin_penalty": spin_penalty}


def _load_sector(path, ham, gs, qp, spin_penalty: float = 0.0) -> dict | None:
    """A finished sector run saved by an earlier, interrupted bands run of the same ground-state
    settings (parameters carried to this build's orbital phases), or None."""
    import jax

    from ..errors import RecordError
    from ..nqs import models
    from ..nqs.results import load_params

    if not path.is_file():
        return None
    model = models.build(gs.model, qp)
    try:
        template = model.init(jax.random.PRNGKey(0), reference=qp.hf_config)
        params, meta = load_params(path, ham, template=template, model=model)
    except (ValueError, RecordError):
        return None
    if meta.get("settings") != _sector_key(gs, spin_penalty):
        return None
    return {"params": params, **{k: meta[k] for k in ("n_steps", "lr", "converged", "convergence", "wall_s")}}


def _solve_sectors(ham, gs, keys, memory_gb=None, jobs: int = 1, ckpt_dir=None, resume=True, log=None,
                   spin_penalty: float = 0.0) -> dict:
    """{(create, k): :func:`_optimize_sector` result} for ``keys``: those an interrupted run
    finished (``ckpt_dir``) are read back, the rest optimized, ``jobs`` at a time in worker
    processes (each with the memory budget's 1/jobs share), each saved as it finishes."""
    from ..config import memory_gb as default_memory_gb
    from ..nqs.hilbert import Sector
    from ..nqs.results import orbital_gauge, save_pytree

    out = {}
    if ckpt_dir is not None and resume:
        for create, k in keys:
            got = _load_sector(_sector_checkpoint(ckpt_dir, create, k), ham, gs, Sector.quasiparticle(ham, k, create),
                               spin_penalty)
            if got is not None:
                out[create, k] = got
                if log is not None:
                    log(f"sector {'electron' if create else 'hole'} k={k}: read back from {ckpt_dir.name}/ "
                        f"({got['n_steps']} steps)")
    todo = [key for key in keys if key not in out]

    def keep(key, res):
        out[key] = res
        if log is not None:
            log(f"sector {'electron' if key[0] else 'hole'} k={key[1]}: {res['n_steps']} steps in {res['wall_s']:.0f} s"
                + ("" if res["converged"] else " (not converged)"))
        if ckpt_dir is not None:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            meta = {"hamiltonian_hash": ham.hash, "settings": _sector_key(gs, spin_penalty),
                    **{k: res[k] for k in ("n_steps", "lr", "converged", "convergence", "wall_s")}}
            save_pytree(res["params"], _sector_checkpoint(ckpt_dir, *key), meta,
                        arrays={"mo_coeff": orbital_gauge(ham)})

    jobs = max(1, min(int(jobs), len(todo)))
    if jobs == 1:
        for key in todo:
            keep(key, _optimize_sector(ham, gs, *key, memory_gb=memory_gb, log=log, spin_penalty=spin_penalty))
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from functools import partial


    share = (default_memory_gb() if memory_gb is None else memory_gb) / jobs
    if log is not None:
        log(f"sectors: {len(todo)} runs, {jobs} at a time in worker processes ({share:.2f} GB budget each)")
    ctx = mp.get_context("spawn")
    slots = ctx.Value("i", 0)           # each worker takes the next slot: its own CPU
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_sector_worker_init, initargs=(slots,)) as pool:
        say = partial(print, flush=True)
        futures = {pool.submit(_optimize_sector, ham, gs, *key, share, say, spin_penalty): key for key in todo}
        for fut in as_completed(futures):
            keep(futures[fut], fut.result())
    return out


def _sector_worker_init(slots) -> None:
    """A sector worker: the next free slot's CPU (:func:`~nqsbench.config.pin_to_one_cpu`), one
    BLAS/XLA thread."""
    from ..config import pin_to_one_cpu, worker_init

    with slots.get_lock():
        slot, slots.value = slots.value, slots.value + 1
    pin_to_one_cpu(slot)
    worker_init()


def sector_bands(ham, model, sector, params, gs, s: NQSBandsSettings, memory_gb=None, log=None,
                 jobs: int = 1, ckpt_dir=None, resume=True):
    """The sector method: for every k and branch an NQS of the ground state's settings ``gs``
    (model, sampler, optimizer, steps) optimized in the (N↑ ± 1, N↓, K0 ± k) sector from that
    sector's Koopmans determinant (:func:`_optimize_sector`; ``jobs`` of them at once, each saved
    to ``ckpt_dir`` as it finishes so an interrupted run resumes: :func:`_solve_sectors`); its
    lowest state gives ε_e(k) = E(N+1, K0+k) − E(N) and
    ε_h(k) = E(N) − E(N−1, K0−k), with E(N) = ⟨Ψ0|H|Ψ0⟩ of the ground-state network, both by
    exact sums, and Z = Σ_p |⟨ψ_k|c†_pk↑|Ψ0⟩|² says whether the state is the quasiparticle.

    Returns (SubspaceBands, control or None, rows). The control: the exact lowest level of each
    sector on the exact ground state (its Z summed over a degenerate level, where the lowest
    eigenvector is not unique). ``rows``: one dict per sector (its run, S², Z, and with the
    control the exact energy, error and exact Z)."""
    from ..nqs import models
    from ..nqs.excitations import SubspaceBands, nqs_vector, sector_branch
    from ..nqs.hilbert import Sector

    psi0, src = nqs_vector(ham, model, params, sector)
    e_n = float(np.vdot(psi0, src.matvec(psi0)).real)
    keys = [(create, k) for create, k, partner in _quasiparticle_sectors(ham, sector.k_total) if partner is None]
    runs = _solve_sectors(ham, gs, keys, memory_gb=memory_gb, jobs=jobs, ckpt_dir=ckpt_dir, resume=resume, log=log,
                          spin_penalty=s.spin_penalty)

    def solve(create, k):
        qp = Sector.quasiparticle(ham, k, create)
        branch = "electron" if create else "hole"
        run = runs[create, k]
        psi1, dst = nqs_vector(ham, models.build(gs.model, qp), run["params"], qp)
        br = sector_branch(ham, psi0, src, psi1, dst, k, create, e_n)
        row = {"branch": branch, "k": k, "n_up": qp.n_up, "n_dn": qp.n_dn,
               "k_total": qp.k_total, "dim": len(psi1), "energy_raw": float(br.e_total[0]),
               "s2": round(float(dst.s_squared(psi1)), 6), "z": float(br.weights[0]),
               "n_steps": run["n_steps"], "lr": run["lr"], "converged": bool(run["converged"]),
               "convergence": run["convergence"], "wall_s": run["wall_s"]}
        if log is not None:
            log(f"sector {branch} k={k} (N↑={qp.n_up}, N↓={qp.n_dn}, K={qp.k_total}): {row['n_steps']} "
                f"steps, {row['wall_s']:.0f} s, S² {row['s2']:.3f}, Z {row['z']:.3f}")
        return br, row

    electron, hole, rows = _with_partners(ham, sector.k_total, solve)
    sb = SubspaceBands(estimator="exact", s_threshold=s.s_threshold, e_ground=e_n, electron=electron,
                       hole=hole, meta={"s2": float(src.s_squared(psi0))})
    ctrl = exact_sector_control(ham, spin_penalty=s.spin_penalty) if s.control else None
    if ctrl is not None and ctrl.meta["k0"] == sector.k_total:
        for row, s2 in zip(rows, ctrl.meta["s2"]):       # both in _quasiparticle_sectors' order
            br = (ctrl.electron if row["branch"] == "electron" else ctrl.hole)[row["k"]]
            row.update(exact_energy_raw=float(br.e_total[0]), exact_s2=s2, exact_z=float(br.weights[0]),
                       error_mHa=1e3 * (row["energy_raw"] - float(br.e_total[0])))
    return sb, ctrl, rows


def _exact_ground_state(ham):
    """(vector, K0, energy) of the state the controls are built on: the lowest singlet of the
    N sector (the lowest state when no singlet is among the roots)."""
    from ..exact import ExactDiagonalization

    ed = ExactDiagonalization(ham, n_roots=2, bands=False).run()
    if ed.psi_singlet is not None:
        return ed.psi_singlet, ed.k_singlet, ed.e_singlet
    return ed.psi_ground, ed.k_ground, ed.e_ground


def exact_sector_control(ham, degenerate: float = 1e-6, spin_penalty: float = 0.0):
    """The sector method on the exact ground state (lowest singlet): the lowest level of each
    (N↑ ± 1, N↓, K0 ± k) sector by exact diagonalization (of H + λ S² with λ = ``spin_penalty``
    > 0, as the NQS runs; energies and Z of H), Z summed over the level's roots within
    ``degenerate`` Ha; ``meta["s2"]``: ⟨S²⟩ of each sector's lowest root, electron then hole."""
    from dataclasses import replace

    from ..exact import SectorBlock
    from ..nqs.excitations import SubspaceBands, sector_branch

    psi0, k0, e0 = _exact_ground_state(ham)
    src = SectorBlock(ham, ham.n_alpha, ham.n_beta, k0)

    def solve(create, k):
        kt = ham.k_add(k0, k) if create else ham.k_sub(k0, k)
        n_up = ham.n_alpha + (1 if create else -1)
        dst = SectorBlock(ham, n_up, ham.n_beta, kt)
        res = (SectorBlock(ham.with_spin_penalty(spin_penalty, n_up, ham.n_beta), n_up, ham.n_beta, kt)
               if spin_penalty else dst).solve(3)
        level = [v for e, v in zip(res.energies, res.vectors) if e - res.energies[0] < degenerate]
        brs = [sector_branch(ham, psi0, src, v, dst, k, create, e0) for v in level]
        return (replace(brs[0], weights=np.array([sum(b.weights[0] for b in brs)])),
                {"s2": round(float(res.s2[0]), 6)})

    electron, hole, rows = _with_partners(ham, k0, solve)
    return SubspaceBands(estimator="exact", s_threshold=0.0, e_ground=e0, electron=electron, hole=hole,
                         meta={"k0": k0, "s2": [row["s2"] for row in rows]})


def check_control(geom, s: NQSBandsSettings, max_dim: int | None = None) -> None:
    """Refuse (one line naming ``--no-control``) bands whose control — the same method on the exact
    ground state — needs a sector past exact diagonalization or the memory budget; before any work."""
    from .exact import MAX_DIM, check_exact_feasible

    if not s.control:
        return
    try:
        check_exact_feasible(geom, max_dim or MAX_DIM, bands=True)
    except (SectorTooLargeError, MemoryBudgetError) as exc:
        raise type(exc)(f"--control builds the bands on the exact ground state: {exc}; or pass --no-control") from None


def exact_control(ham, s_threshold: float, order: int = 0):
    """The subspace (``order`` > 0: the Krylov space of that order) built on the exact ground
    state (lowest singlet of the N sector)."""
    from ..nqs.excitations import subspace_exact

    psi, k0, _ = _exact_ground_state(ham)
    return subspace_exact(ham, psi, k0=k0, s_threshold=s_threshold, order=order)


@register
class NQSBands(Method):
    name = "nqs_bands"
    Settings = NQSBandsSettings
    kind = "nqs-bands"
    record_model = BandRecord
    summary = "quasiparticle bands of an NQS ground state from its excitation subspace"

    def default_settings(self) -> NQSBandsSettings:
        return bands_settings()

    def record_name(self, s: NQSBandsSettings, label: str | None = None) -> str:
        sector = f"sector-spin{s.spin_penalty:g}-" if s.spin_penalty else "sector-"    # λ S²: another state
        space = {"krylov": f"krylov{s.order}-", "sector": sector}.get(s.band_method, "")
        return f"{get('nqs').record_name(s.ground_state, label)}.bands-{space}{s.estimator}"

    def dependencies(self, s: NQSBandsSettings, label: str | None = None) -> list[Dependency]:
        # the Monte Carlo estimator needs no sector vectors, so it runs past exact diagonalization
        # (H chain N_k = 8): there it is compared with EOM-CCSD and HF, and with exact where that
        # record exists; the exact estimator computes exact first (it is as feasible as exact is)
        return [Dependency("ground_state", "nqs", s.ground_state, label, required=True, pinned=True),
                Dependency("exact", "exact", required=s.estimator == "exact"),
                Dependency("eom_ccsd", "eom_ccsd", required=False),
                Dependency("hf", "hf", required=False)]

    def stale_reason(self, record: BandRecord, inputs) -> str | None:
        if "ground_state" not in inputs:
            return "its ground-state record is missing or unreadable"
        path, gs = inputs["ground_state"]
        # bands belong to one ground-state run: a rerun NQS makes them stale
        if (record.ground_state.get("n_steps") != gs.n_steps
                or record.ground_state.get("energy_per_cell") != gs.energy_per_cell
                or record.ground_state.get("path") != Path(path).name):
            return "computed from another ground-state run"
        return None

    def run(self, geom, ham, s: NQSBandsSettings, ctx: RunContext) -> BandRecord:
        from ..nqs.results import params_path

        result_path, result = ctx.inputs["ground_state"]
        result_path = Path(result_path)
        ppath = params_path(result_path)
        if not ppath.exists():
            raise RecordError(f"{ppath}: parameters of {result_path.name} not found; rerun `nqsbench run`")
        try:
            model, sector, params = ground_state_model(ham, result, ppath)
        except ValueError as exc:
            raise RecordError(str(exc)) from None
        check_control(geom, s, ctx.options.get("max_dim"))
        rows = []
        if s.band_method == "sector":
            ckpt = ctx.checkpoint_dir
            sb, ctrl, rows = sector_bands(ham, model, sector, params, result.settings, s,
                                          memory_gb=ctx.options.get("memory_gb"), log=ctx.log,
                                          jobs=ctx.options.get("jobs", 1), ckpt_dir=ckpt,
                                          resume=ctx.resume is not False)
        else:
            sb = nqs_subspace(ham, model, sector, params, s, memory_gb=ctx.options.get("memory_gb"), log=ctx.log)
            ctrl = exact_control(ham, sb.s_threshold, s.order) if s.control else None
        bands = sb.bands(ham)
        refs = {m: ctx.inputs[m][1] for m in REFERENCE_BANDS
                if m in ctx.inputs and not ctx.inputs[m][1].failed and ctx.inputs[m][1].bands}
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
        fig_stem = None
        if ctx.path is not None and ctx.options.get("figure", True):
            space = band_method_label(s.band_method, s.order)
            series = {f"NQS {space}": (bands, NQS_STYLE)}
            if ctrl is not None:
                series[f"exact-state {space}"] = (ctrl_bands, CONTROL_STYLE)
            for name, rec in refs.items():
                label, style = REFERENCE_STYLES[name]
                series[label] = (rec.bands, style)
            plot_bands(series, ctx.path.with_suffix(""), f"{geom.label()} — {space}, {s.estimator} estimator")
            fig_stem = ctx.path.with_suffix("").name
        mc = s.estimator == "monte_carlo"
        e_state = sb.meta.get("e_state", sb.e_ground)      # ⟨Ψ|H|Ψ⟩ (krylov's E(N) is another)
        # decided, not assumed: every branch kept a direction and every band energy is finite
        made = all(r > 0 for rs in sb.ranks().values() for r in rs) and all(
            np.isfinite(e).all() for b in bands for e in (b["electron"], b["hole"])) and all(
            row["converged"] for row in rows)      # sector: every sector's run at its plateau
        return BandRecord(
            method=f"nqs-{result.settings.model.kind}-bands", **self.common_fields(geom, ham), settings=s,
            band_method=s.band_method, order=s.order, sectors=rows,
            converged=bool(made), energy_per_cell=(e_state + ham.constant + ham.ewald_shift(n0)) / ham.nk,
            energy_per_cell_raw=(e_state + ham.constant) / ham.nk,
            krylov_energy_per_cell=((sb.e_ground + ham.constant + ham.ewald_shift(n0)) / ham.nk
                                    if s.band_method == "krylov" and not mc else None),   # mc: E(N) = ⟨Ψ|H|Ψ⟩
            energy_error=sb.e_ground_error / ham.nk if mc else None,
            ground_state={"path": result_path.name, "seed": result.settings.seed,
                          "sampler": result.settings.sampler.kind, "n_steps": result.n_steps,
                          "energy_per_cell": result.energy_per_cell,
                          **({"s2": round(sb.meta["s2"], 6)} if "s2" in sb.meta else {})},
            estimator=s.estimator, s_threshold=sb.s_threshold, ranks=sb.ranks(), n_samples=sb.n_samples,
            n_blocks=sb.n_blocks, seed=s.seed if mc else None,
            bands=[Band(**b) for b in bands], gap=gap(bands),
            control_bands=[Band(**b) for b in ctrl_bands], control_gap=gap(ctrl_bands) if ctrl_bands else None,
            errors=errors, figure=fig_stem)
