"""Command line: ``nqsbench list | show | reference | run | schema | info``.

Heavy imports (PySCF, scipy) live inside the commands so ``--help`` stays fast. Input errors
print one line naming the file/field and the fix, and exit with status 2.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import NqsbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark and validation suite for neural-network quantum states on solids.")
reference_app = typer.Typer(help="Reference calculations (exact, hf, mp2, ccsd, ccsd_t, eom_ccsd, dmrg).")
app.add_typer(reference_app, name="reference")
console = Console()
err_console = Console(stderr=True)

REPO_ROOT = Path(__file__).resolve().parent.parent


def user_errors(fn):
    """Turn input errors into one line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NqsbenchError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
    return wrapper


ParamOpt = typer.Option(None, "--param", "-p", help="geometry parameter NAME=VALUE (repeatable)")
KmeshOpt = typer.Option(None, "--kmesh", "-k", help="k-mesh as three integers, e.g. 1,1,4")


@app.command("list")
@user_errors
def list_systems() -> None:
    """List the system catalog."""
    from . import catalog

    table = Table(title=f"nqsbench catalog ({catalog.systems_dir()})")
    for col in ("id", "dim", "basis", "atoms", "default k-mesh", "tier", "frozen core", "parameters"):
        table.add_column(col)
    for name in catalog.available():
        s = catalog.load(name)
        params = ", ".join(f"{k}={p.default:g} {p.unit}" for k, p in s.parameters.items())
        atoms = "".join(a.symbol for a in s.atoms)
        table.add_row(s.id, f"{s.dimension}D", s.basis, atoms, "x".join(map(str, s.kmesh)), s.tier,
                      str(s.frozen_core), params)
    console.print(table)


@app.command()
@user_errors
def show(system: str, param: Optional[List[str]] = ParamOpt, kmesh: Optional[str] = KmeshOpt) -> None:
    """Show a system: spec, orbitals and electrons per cell, and the size of every sector."""
    from . import catalog
    from .build import make_cell, pyscf_kmesh, pyscf_order
    from .sectors import kmesh_grid, sector_dims

    spec = catalog.load(system)
    geom = spec.geometry(catalog.parse_params(param), catalog.parse_kmesh(kmesh))
    cell = make_cell(geom)
    nao = int(cell.nao_nr())
    n_act = nao - spec.frozen_core
    n_el = spec.n_electrons_cell - 2 * spec.frozen_core
    console.print(f"[bold]{spec.id}[/]: {spec.description}\n  source: {spec.source}")
    console.print(f"  {spec.dimension}D, basis {spec.basis}, parameters {geom.params}, k-mesh "
                  f"{'x'.join(map(str, geom.kmesh))} (N_k = {geom.nk}, tier {geom.tier})")
    console.print(f"  per cell: {nao} orbitals ({spec.frozen_core} frozen), {spec.n_electrons_cell} "
                  f"electrons ({n_el} active)")
    m = n_act * geom.nk
    na = n_el * geom.nk // 2
    console.print(f"  k-space problem: {m} spatial orbitals, {2 * m} spin-orbitals, N↑ = N↓ = {na}")
    table = Table(title="sector dimensions (determinants)")
    table.add_column("N↑, N↓")
    mesh = pyscf_kmesh(geom)
    kvecs = kmesh_grid(mesh)
    order = pyscf_order(geom)
    for k in kvecs:  # PySCF keeps periodic axes first; show K in the catalog's axis order
        user = [0, 0, 0]
        for i, ax in enumerate(order):
            user[ax] = int(k[i])
        table.add_column(f"K={tuple(user)}")
    for a, b in ((na, na), (na + 1, na), (na - 1, na)):
        if 0 <= a <= m:
            dims = sector_dims(kvecs, mesh, n_act, a, b)
            table.add_row(f"{a}, {b}", *[f"{d:,}" for d in dims])
    console.print(table)


@reference_app.command("exact")
@user_errors
def reference_exact(system: str, param: Optional[List[str]] = ParamOpt, kmesh: Optional[str] = KmeshOpt,
                    roots: int = typer.Option(2, help="eigenvalues per sector"),
                    bands: bool = typer.Option(True, help="also the N±1 sectors and quasiparticle bands"),
                    max_dim: int = typer.Option(3_000_000, help="largest sector to diagonalize"),
                    out: Optional[Path] = typer.Option(None, help="record path (default: references/...)"),
                    ) -> None:
    """Exact diagonalization in every (N↑, N↓, K) sector → a JSON ReferenceRecord."""
    from .references import run_exact

    path, record = run_exact(system, param, kmesh, roots=roots, bands=bands, max_dim=max_dim, out=out)
    console.print(f"exact {record.system} {record.params} k-mesh {'x'.join(map(str, record.kmesh))}: "
                  f"E = {record.energy_per_cell:.10f} Ha/cell (ewald convention), "
                  f"{record.energy_per_cell_raw:.10f} raw (exxdiv=None)"
                  + (f", gap {record.gap:.6f} Ha" if record.gap is not None else ""))
    console.print(f"wrote {path}  ({record.provenance.wall_time_s:.1f} s, "
                  f"{record.provenance.peak_memory_mb:.0f} MB peak)")


_METHOD_HELP = {
    "hf": "KRHF energy and Koopmans bands (ewald convention)",
    "mp2": "KMP2 on the shared KRHF orbitals (exxdiv=None Fock denominators)",
    "ccsd": "KRCCSD on the shared KRHF orbitals",
    "ccsd_t": "KRCCSD(T) (exxdiv=None Fock denominators)",
    "eom_ccsd": "EOM-IP/EA-KRCCSD quasiparticle bands at every k (roots by one-particle weight)",
    "dmrg": "DMRG (block2, extra 'dmrg') on the real Γ-supercell Hamiltonian, extrapolated in discarded weight",
}


def _print_record(path, record, skipped: bool) -> None:
    head = f"{record.method} {record.system} {record.params} k-mesh {'x'.join(map(str, record.kmesh))}: "
    if not record.converged:
        console.print(head + f"[bold red]FAILED[/] ({record.failure})", highlight=False)
    else:
        console.print(head + f"E = {record.energy_per_cell:.10f} Ha/cell (ewald convention), "
                      f"{record.energy_per_cell_raw:.10f} raw (exxdiv=None)"
                      + (f" ± {record.energy_error:.1e}" if record.energy_error else "")
                      + (f", gap {record.gap:.6f} Ha" if record.gap is not None else ""), highlight=False)
    console.print(("cached, input hash matches: " if skipped else "wrote ") + f"{path}"
                  + ("" if skipped else f"  ({record.provenance.wall_time_s:.1f} s, "
                     f"{record.provenance.peak_memory_mb:.0f} MB peak)"))


def _make_method_command(method: str):
    def command(system: str, param: Optional[List[str]] = ParamOpt, kmesh: Optional[str] = KmeshOpt,
                force: bool = typer.Option(False, help="recompute even if the cached record matches"),
                out: Optional[Path] = typer.Option(None, help="record path (default: references/...)")) -> None:
        from .references import run_reference

        path, record, skipped = run_reference(method, system, param, kmesh, out=out, force=force)
        _print_record(path, record, skipped)
    command.__doc__ = _METHOD_HELP[method] + " → a JSON ReferenceRecord (skipped if the cached one matches)."
    return command


for _m in _METHOD_HELP:
    reference_app.command(_m)(user_errors(_make_method_command(_m)))


@reference_app.callback(invoke_without_command=True)
@user_errors
def reference_main(ctx: typer.Context,
                   suite: Optional[str] = typer.Option(None, "--suite", help="fill the cache for a named set: 'default'"),
                   force: bool = typer.Option(False, "--force", help="with --suite: recompute every record")) -> None:
    """Reference calculations (exact, hf, mp2, ccsd, ccsd_t, eom_ccsd, dmrg) → references/."""
    if ctx.invoked_subcommand is not None:
        return
    if suite is None:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    if suite != "default":
        err_console.print(f"[bold red]error:[/] --suite {suite!r}: unknown suite; the only one is 'default'")
        raise typer.Exit(2)
    import time

    from .references import run_suite

    t0 = time.perf_counter()
    res = run_suite(force=force, echo=lambda line: console.print(line, highlight=False))
    n_new = sum(not s for _, _, s in res)
    n_fail = sum(not r.converged for _, r, _ in res)
    console.print(f"suite {suite}: {len(res)} records ({n_new} computed, {len(res) - n_new} cached, "
                  f"{n_fail} failed) in {time.perf_counter() - t0:.0f} s")


@app.command("run")
@user_errors
def run_nqs(system: str, param: Optional[List[str]] = ParamOpt, kmesh: Optional[str] = KmeshOpt,
            model: str = typer.Option("rbm", help="variational model: rbm"),
            alpha: float = typer.Option(2.0, help="hidden-unit density of the RBM"),
            init: str = typer.Option("hf", help="start: hf (visible bias ±0.5 towards HF) or random "
                                     "(small random parameters; LiH Γ stalls at HF from the hf start)"),
            sampler: str = typer.Option("exact", help="exact (enumerate the sector) or mcmc (Metropolis chains)"),
            steps: Optional[int] = typer.Option(None, help="total optimization steps, resumed ones included (default: exact 200, mcmc 400)"),
            seed: int = typer.Option(0, help="seed for parameters and sampling"),
            resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint"),
            lr: Optional[float] = typer.Option(None, "--lr", help="SR learning rate (default per sampler)"),
            diag_shift: Optional[float] = typer.Option(None, "--diag-shift", help="SR diagonal shift (default per sampler)"),
            samples: Optional[int] = typer.Option(None, "--samples", help="Monte Carlo samples per step (mcmc)"),
            chains: Optional[int] = typer.Option(None, "--chains", help="Markov chains (mcmc)"),
            beta: Optional[float] = typer.Option(None, "--beta", help="mcmc: sample |ψ|^(2·beta) with importance weights (default 0.5)"),
            checkpoint_every: float = typer.Option(300.0, "--checkpoint-every", help="seconds between checkpoints"),
            out: Optional[Path] = typer.Option(None, help="record path (default: results/...)"),
            progress: bool = typer.Option(True, help="show a progress bar"),
            ) -> None:
    """Optimize a neural-network quantum state → a JSON ResultRecord (+ trace CSV, checkpoints)."""
    code = _run_nqs(system, param, kmesh, model, alpha, sampler, steps, seed, resume, lr, diag_shift,
                    samples, chains, beta, checkpoint_every, out, progress, init)
    if code:
        raise typer.Exit(code)


def _run_nqs(system, param, kmesh, model, alpha, sampler, steps, seed, resume, lr, diag_shift, samples,
             chains, beta, checkpoint_every, out, progress, init="hf") -> int:
    from . import catalog
    from .errors import CatalogError

    if model != "rbm":
        raise CatalogError(f"--model {model!r}: unknown model; available: rbm")
    if sampler not in ("exact", "mcmc"):
        raise CatalogError(f"--sampler {sampler!r}: choose 'exact' or 'mcmc'")
    if init not in ("hf", "random"):
        raise CatalogError(f"--init {init!r}: choose 'hf' or 'random'")
    if steps is None:
        steps = 200 if sampler == "exact" else 400
    if steps < 0:
        raise CatalogError(f"--steps {steps}: must be ≥ 0")
    spec = catalog.load(system)
    geom = spec.geometry(catalog.parse_params(param), catalog.parse_kmesh(kmesh))

    import time

    from .build import get_hamiltonian
    from .nqs import Checkpoint, DivergenceError, DivergenceGuard, ProgressBar
    from .nqs.defaults import make_driver
    from .nqs.results import save_result
    from .records import ReferenceRecord, read_record, results_path
    from .references import record_path

    path = Path(out) if out else results_path(geom, model, sampler, seed)
    ckpt_dir = path.with_name(path.stem + ".ckpt")
    t0 = time.perf_counter()
    ham = get_hamiltonian(geom)
    driver = make_driver(ham, sampler=sampler, alpha=alpha, seed=seed, lr=lr, diag_shift=diag_shift,
                         n_samples=samples, n_chains=chains, beta=beta, init=init)
    if not resume and ckpt_dir.is_dir():
        for p in ckpt_dir.glob("ckpt_*.npz"):   # a fresh run: this record's old checkpoints are stale
            p.unlink()
    callbacks = [DivergenceGuard(), Checkpoint(ckpt_dir, every_seconds=checkpoint_every)]
    if progress:
        callbacks.insert(0, ProgressBar(f"{spec.id} {sampler}"))
    try:
        driver.run(steps, callbacks=callbacks, resume=ckpt_dir if resume else None)
    except DivergenceError as exc:
        err_console.print(f"[bold red]diverged:[/] {exc}; no record written", highlight=False, soft_wrap=True)
        return 3
    except ValueError as exc:       # a checkpoint that does not belong to this run
        raise CatalogError(f"--resume from {ckpt_dir}: {exc}") from None
    path, rec = save_result(driver, geom, time.perf_counter() - t0, path, model_name=model,
                            sampler_name=sampler)
    err = f" ± {rec.energy_error * 1e3:.3f} mHa" if rec.energy_error else ""
    console.print(f"nqs-{model} {sampler} {spec.id} {geom.params} k-mesh {'x'.join(map(str, geom.kmesh))}, "
                  f"{rec.n_steps} steps: E = {rec.energy_per_cell:.8f} Ha/cell{err} (ewald convention), "
                  f"{rec.energy_per_cell_raw:.8f} raw; V-score {rec.v_score:.2e}", highlight=False)
    ref_path = record_path(geom, "exact")
    if ref_path.exists():
        try:
            ref = read_record(ref_path, ReferenceRecord)
        except NqsbenchError as exc:
            console.print(f"exact reference unreadable: {exc}", highlight=False)
        else:
            if ref.converged and ref.energy_per_cell is not None:
                d = (rec.energy_per_cell - ref.energy_per_cell) * 1e3
                note = "" if ref.input_hash == rec.input_hash else " [input hash differs from the reference]"
                console.print(f"vs exact ({ref_path.name}): {d:+.3f} mHa/cell"
                              + (f" ± {rec.energy_error * 1e3:.3f}" if rec.energy_error else "")
                              + (" (within chemical accuracy)" if abs(d) <= 1.6 else "") + note,
                              highlight=False)
    console.print(f"wrote {path}  ({rec.provenance.wall_time_s:.1f} s, "
                  f"{rec.provenance.peak_memory_mb:.0f} MB peak)")
    return 0


@app.command()
@user_errors
def schema(out: Path = typer.Option(REPO_ROOT / "schemas", help="folder for the JSON Schemas")) -> None:
    """Export the JSON Schemas of SystemSpec and the records."""
    from .catalog import json_schema
    from .io import atomic_write_json
    from .records import ReferenceRecord, ResultRecord

    atomic_write_json(out / "system.schema.json", json_schema())
    atomic_write_json(out / "reference-record.schema.json", ReferenceRecord.model_json_schema())
    atomic_write_json(out / "result-record.schema.json", ResultRecord.model_json_schema())
    console.print(f"wrote {out}/system.schema.json, reference-record.schema.json, result-record.schema.json")


@app.command()
def info() -> None:
    """Versions, git commit and cache locations."""
    from .build import cache_dir
    from .catalog import systems_dir
    from .records import git_commit, versions

    console.print(json.dumps({"versions": versions(), "git_commit": git_commit(),
                              "catalog": str(systems_dir()), "cache": str(cache_dir())}, indent=2))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
