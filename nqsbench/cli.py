"""Command line: ``nqsbench list | show | reference | run | bands | suite | check | report | table | schema | info``.

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
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table as _RichTable

from .errors import NqsbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark and validation suite for neural-network quantum states on solids.")
reference_app = typer.Typer(help="Reference calculations: every registered reference method (nqsbench info lists them).")
app.add_typer(reference_app, name="reference")
PIPE_WIDTH = 100_000


class _Console(Console):
    """rich's Console at the terminal's width; when the output is not a terminal (a pipe, a file)
    and ``$COLUMNS`` is unset, as wide as what is printed (rich would otherwise render at 80
    columns, or at the width of another stream's terminal, and cut table cells: ``polyacet…``).
    Tables fold their cells (``Table``, below), so a narrow terminal wraps, never cuts."""

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if self._width is None and not self.is_terminal and not self._environ.get("COLUMNS", "").isdigit():
            return ConsoleDimensions(PIPE_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)


class Table(_RichTable):
    """rich's Table whose columns fold long cells instead of cutting them with an ellipsis."""

    def add_column(self, *args, **kwargs) -> None:
        kwargs.setdefault("overflow", "fold")
        super().add_column(*args, **kwargs)


console = _Console()
err_console = _Console(stderr=True)



def user_errors(fn):
    """Turn input errors into one line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NqsbenchError as exc:
            # escape: messages are plain text ("pip install -e '.[peers]'" is no markup tag)
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
    return wrapper


ParamOpt = typer.Option(None, "--param", "-p", help="geometry parameter NAME=VALUE (repeatable)")
KmeshOpt = typer.Option(None, "--kmesh", "-k", help="k-mesh as three integers, e.g. 1,1,4")


JsonOpt = typer.Option(False, "--json", help="print one JSON document on stdout (for scripts) instead of the table")


def _print_json(doc) -> None:
    """One JSON document on stdout, no rich markup or wrapping."""
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


@app.command("list")
@user_errors
def list_systems(as_json: bool = JsonOpt) -> None:
    """List the system catalog."""
    from . import catalog

    if as_json:
        specs = [catalog.load(name) for name in catalog.available()]
        _print_json({"catalog": str(catalog.systems_dir()), "systems": [
            {"id": s.id, "description": s.description, "dimension": s.dimension, "basis": s.basis,
             "atoms": [a.symbol for a in s.atoms], "kmesh": list(s.kmesh), "tier": s.tier,
             "frozen_core": s.frozen_core,
             "parameters": {k: {"default": p.default, "unit": p.unit, "scan": list(p.scan)}
                            for k, p in s.parameters.items()}} for s in specs]})
        return
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


@app.command("models")
@user_errors
def list_models(as_json: bool = JsonOpt) -> None:
    """List the registered variational models, their options (with defaults) and their own
    optimizer and sampler defaults (`nqsbench run --model NAME --model-opt KEY=VALUE`)."""
    from .nqs import models

    rows = []
    for name in models.names():
        spec = models.get(name)
        opts = {k: {"default": f.default, "description": f.description or ""}
                for k, f in spec.Settings.model_fields.items() if k != "kind"}
        rows.append({"name": name, "summary": spec.summary, "options": opts,
                     "optimizer_defaults": spec.optimizer_defaults})
    if as_json:
        _print_json({"models": rows})
        return
    table = Table(title="nqsbench models")
    for col in ("name", "summary", "options (default)", "optimizer and sampler defaults"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["summary"], ", ".join(f"{k}={v['default']}" for k, v in r["options"].items()),
                      "; ".join(f"{s}: " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())
                                for s, d in r["optimizer_defaults"].items()) or "-")
    console.print(table)


@app.command()
@user_errors
def show(system: str, param: Optional[List[str]] = ParamOpt, kmesh: Optional[str] = KmeshOpt,
         as_json: bool = JsonOpt) -> None:
    """Show a system: spec, orbitals and electrons per cell, and the size of every sector."""
    from .build import make_cell, pyscf_kmesh, pyscf_order
    from .nqs.operator import n_connections
    from .sectors import check_countable, kmesh_grid, sector_dims

    geom = _geometry(system, param, kmesh)
    spec = geom.spec
    check_countable(geom.kmesh)     # before printing anything: one line for an absurd mesh
    cell = make_cell(geom)
    nao = int(cell.nao_nr())
    n_act = nao - spec.frozen_core
    n_el = spec.n_electrons_cell - 2 * spec.frozen_core
    m = n_act * geom.nk
    na = n_el * geom.nk // 2
    mesh = pyscf_kmesh(geom)
    kvecs = kmesh_grid(mesh)
    order = pyscf_order(geom)
    ks = []
    for k in kvecs:  # PySCF keeps periodic axes first; show K in the catalog's axis order
        user = [0, 0, 0]
        for i, ax in enumerate(order):
            user[ax] = int(k[i])
        ks.append(tuple(user))
    n_single, n_double = n_connections(na, na, m, n_act)
    sectors = [(a, b, [int(d) for d in sector_dims(kvecs, mesh, n_act, a, b)])
               for a, b in ((na, na), (na + 1, na), (na - 1, na)) if 0 <= a <= m]
    from .methods.nqs import sampler_for_dim

    sampler, why = sampler_for_dim(max(sectors[0][2]))    # the (N↑ = N↓) row: what run --sampler auto counts
    if as_json:
        _print_json({"id": spec.id, "description": spec.description, "source": spec.source,
                     "dimension": spec.dimension, "basis": spec.basis, "params": geom.params,
                     "kmesh": list(geom.kmesh), "nk": geom.nk, "tier": geom.tier,
                     "orbitals_per_cell": nao, "frozen_core": spec.frozen_core,
                     "electrons_per_cell": spec.n_electrons_cell, "active_electrons_per_cell": n_el,
                     "spatial_orbitals": m, "spin_orbitals": 2 * m, "n_up": na, "n_dn": na,
                     "connections": {"singles": n_single, "doubles": n_double},
                     "nqs_sampler": {"auto": sampler, "why": why},
                     "sectors": [{"n_up": a, "n_dn": b, "k_total": list(k), "dim": d}
                                 for a, b, dims in sectors for k, d in zip(ks, dims)]})
        return
    console.print(f"[bold]{spec.id}[/]: {spec.description}\n  source: {spec.source}")
    console.print(f"  {spec.dimension}D, basis {spec.basis}, parameters {geom.params}, k-mesh "
                  f"{'x'.join(map(str, geom.kmesh))} (N_k = {geom.nk}, tier {geom.tier})")
    console.print(f"  per cell: {nao} orbitals ({spec.frozen_core} frozen), {spec.n_electrons_cell} "
                  f"electrons ({n_el} active)")
    console.print(f"  k-space problem: {m} spatial orbitals, {2 * m} spin-orbitals, N↑ = N↓ = {na}")
    console.print(f"  NQS local energy: {n_single:,} singles + {n_double:,} doubles per configuration "
                  f"(`nqsbench run {spec.id} -k {','.join(map(str, geom.kmesh))} --dry-run` "
                  "estimates a run's peak memory and time per step)", highlight=False, soft_wrap=True)
    console.print(f"  NQS sampler (run --sampler auto): {sampler}, {why}", highlight=False, soft_wrap=True)
    table = Table(title="sector dimensions (determinants)")
    table.add_column("N↑, N↓")
    for k in ks:
        table.add_column(f"K={k}")
    for a, b, dims in sectors:
        table.add_row(f"{a}, {b}", *[f"{d:,}" for d in dims])
    console.print(table)


def _geometry(system: str, param, kmesh):
    from . import catalog

    spec = catalog.load(system)
    return spec.geometry(catalog.parse_params(param), catalog.parse_kmesh(kmesh))


def _store(references: Optional[Path] = None, results: Optional[Path] = None):
    from .store import Store

    return Store.default(references, results)


def _settings_error(flag: str, exc, options: dict[str, str] | None = None) -> NqsbenchError:
    """A pydantic ValidationError of CLI-built settings → one line naming the option.

    ``options``: settings field → the CLI option that sets it (``alpha`` → ``--alpha``); the
    key ``""`` names the options of an error about several fields at once."""
    from .errors import CatalogError

    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if options is not None:
        field = str(err["loc"][-1]) if err["loc"] else ""
        head = msg.split(" ", 1)[0]
        if not field and head in options:     # a rule across fields that names its field first
            return CatalogError(f"{options[head]}{msg[len(head):]}")
        if field in options:
            value = f" {err['input']}" if field and not isinstance(err.get("input"), dict) else ""
            return CatalogError(f"{options[field]}{value}: {msg}")
    return CatalogError(f"{flag}{' ' + loc if loc else ''}: {msg}")


# settings fields → the options of `nqsbench run` / `bands` that set them
_NQS_OPTIONS = {"alpha": "--alpha", "n_samples": "--samples", "n_chains": "--chains", "beta": "--beta",
                "lr": "--lr", "lr_final": "--lr-final", "max_norm": "--max-norm", "diag_shift": "--diag-shift",
                "steps": "--steps", "seed": "--seed", "init": "--init", "max_steps": "--max-steps",
                "max_minutes": "--max-minutes", "solver": "--sr-solver", "spin_penalty": "--spin-penalty",
                "deterministic": "--deterministic", "": "--samples/--chains"}
_BAND_OPTIONS = {"s_threshold": "--threshold", "n_samples": "--samples", "n_chains": "--chains",
                 "seed": "--seed", "order": "--order", "band_method": "--method", "spin_penalty": "--spin-penalty",
                 "": "--samples/--chains"}


def _parse_sets(items: Optional[List[str]], flag: str = "--set", example: str = "e.g. n_roots=3") -> dict:
    """``["eom.min_weight=0.2", "n_roots=3"]`` → nested dict (values as JSON, else strings);
    ``flag`` and ``example`` name the option in the one-line error."""
    from .errors import CatalogError

    out: dict = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise CatalogError(f"{flag} {item!r}: expected KEY=VALUE, {example}")
        try:
            value = json.loads(val)
        except ValueError:
            value = val
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _print_record(path, record, skipped: bool) -> None:
    head = f"{record.method} {record.system} {record.params} k-mesh {'x'.join(map(str, record.kmesh))}: "
    if record.failed:
        console.print(head + f"[bold red]FAILED[/] ({record.failure})", highlight=False)
    else:
        console.print(head + f"E = {record.energy_per_cell:.10f} Ha/cell (ewald convention), "
                      f"{record.energy_per_cell_raw:.10f} raw (exxdiv=None)"
                      + (f" ± {record.energy_error:.1e}" if record.energy_error else "")
                      + (f", gap {record.gap:.6f} Ha" if record.gap is not None else ""), highlight=False)
    console.print(("cached, input hash matches: " if skipped else "wrote ") + f"{path}"
                  + ("" if skipped else f"  ({record.provenance.wall_time_s:.1f} s, "
                     f"{record.provenance.peak_memory_mb:.0f} MB peak)"), highlight=False)


ReferencesOpt = typer.Option(None, "--references", help="reference cache (default: $NQSBENCH_REFERENCES or the packaged references/)")
ResultsOpt = typer.Option(None, "--results", help="results folder (default: $NQSBENCH_RESULTS or results/ of the checkout)")


def _make_method_command(name: str):
    from .methods import get as _get

    mpi_help = getattr(_get(name), "run_options", {}).get("mpi")

    def command(ctx: typer.Context, system: str, param: Optional[List[str]] = ParamOpt,
                kmesh: Optional[str] = KmeshOpt,
                force: bool = typer.Option(False, help="recompute even if the cached record matches"),
                sets: Optional[List[str]] = typer.Option(None, "--set", help="a setting KEY=VALUE (repeatable; "
                                                         "dotted keys for nested ones, e.g. eom.min_weight=0.2)"),
                out: Optional[Path] = typer.Option(None, help="record path (default: references/...)"),
                mpi: Optional[int] = typer.Option(None, "--mpi", min=1, hidden=mpi_help is None,
                                                  help=mpi_help or "MPI ranks"),
                references: Optional[Path] = ReferencesOpt) -> None:
        from pydantic import ValidationError

        from .errors import NqsbenchError
        from .methods import RunContext, get

        group = ctx.obj or {}         # `nqsbench reference --references X --force METHOD ...`
        references = references if references is not None else group.get("references")
        force = force or group.get("force", False)
        method = get(name)
        try:
            settings = method.settings_from(**_parse_sets(sets))
        except ValidationError as exc:
            raise _settings_error("--set", exc) from None
        if mpi is not None and mpi_help is None:
            raise NqsbenchError(f"--mpi: {name} has no MPI build; remove --mpi")
        geom = _geometry(system, param, kmesh)
        ctx = RunContext(options={"mpi": mpi} if mpi else {})
        res = _store(references).run(method, geom, settings, path=out, force=force, ctx=ctx)
        _print_record(res.path, res.record, res.skipped)
    return command


def _register_reference_commands() -> None:
    from .methods import methods

    for name, method in methods().items():
        if method.kind == "reference":
            cmd = _make_method_command(name)
            cmd.__doc__ = (f"{method.summary} → a JSON ReferenceRecord (skipped if the cached one matches; "
                           f"settings: nqsbench.records.{method.Settings.__name__}).")
            reference_app.command(name)(user_errors(cmd))


_register_reference_commands()


@reference_app.callback(invoke_without_command=True)
@user_errors
def reference_main(ctx: typer.Context,
                   suite: Optional[str] = typer.Option(None, "--suite", help="fill the cache with a suite's "
                                                       "reference records, e.g. 'references' (the committed cache)"),
                   force: bool = typer.Option(False, "--force", help="with --suite: recompute every record"),
                   references: Optional[Path] = ReferencesOpt) -> None:
    """Reference calculations (every registered reference method) → the reference cache."""
    if ctx.invoked_subcommand is not None:
        if suite is not None:
            from .errors import CatalogError

            raise CatalogError(f"--suite {suite}: fills the cache with a suite's records; give it without "
                               f"the method {ctx.invoked_subcommand!r}, or drop it")
        ctx.obj = {"references": references, "force": force}   # given before the method: they apply to it
        return
    if suite is None:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    import time

    from .suites import load_suite, run_suite

    s = load_suite("references" if suite == "default" else suite)
    s = s.model_copy(update={"tasks": [t for t in s.tasks if t.kind == "reference"]})
    t0 = time.perf_counter()
    out = run_suite(s, _store(references), force=force, progress=False,
                    echo=lambda line: console.print(line, highlight=False, soft_wrap=True))
    n = {k: sum(o.state == k for o in out) for k in ("done", "skipped", "failed")}
    console.print(f"references of suite {s.name}: {len(out)} records ({n['done']} computed, "
                  f"{n['skipped']} cached, {n['failed']} failed) in {time.perf_counter() - t0:.0f} s")
    if n["failed"]:
        raise typer.Exit(1)


@app.command("run")
@user_errors
def run_nqs(system: str, param: Optional[List[str]] = ParamOpt, kmesh: Optional[str] = KmeshOpt,
            model: str = typer.Option("rbm", help="variational model (`nqsbench models` lists them): rbm, nnbf, ..."),
            model_opt: Optional[List[str]] = typer.Option(None, "--model-opt", help="a model option KEY=VALUE "
                                                          "(repeatable), e.g. --model nnbf --model-opt width=2"),
            alpha: Optional[float] = typer.Option(None, help="hidden-unit density of the RBM (default auto: "
                                                  "4 up to 16 spin-orbitals where the sector has at least as many "
                                                  "configurations as those parameters, else 2; same as "
                                                  "--model-opt alpha=...)"),
            init: str = typer.Option("auto", help="start: auto (random up to 16 spin-orbitals, else hf), hf "
                                     "(visible bias ±0.5 towards HF), random "
                                     "(small random parameters; LiH Γ stalls at HF from the hf start), or "
                                     "PATH: the parameters of an earlier run of this model on this geometry "
                                     "(its .params.msgpack or record .json), to continue it with other settings"),
            sampler: str = typer.Option("auto", help="exact (enumerate the sector), mcmc (Metropolis chains) or "
                                        "auto: exact up to 50,000 configurations in the sector, else mcmc "
                                        "(and mcmc when --samples/--chains/--beta are given)"),
            steps: str = typer.Option("auto", help="auto (run until the energy plateaus at the final learning rate) "
                                      "or a number of steps, resumed ones included"),
            max_steps: Optional[int] = typer.Option(None, "--max-steps", help="auto: at most this many steps "
                                                    "(default: exact 3000, mcmc 4000)"),
            max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="auto: stop (unconverged) "
                                                        "after this many minutes of optimization, resumed "
                                                        "ones included"),
            seed: int = typer.Option(0, help="seed for parameters and sampling"),
            spin_penalty: float = typer.Option(0.0, "--spin-penalty", help="λ (Ha): optimize H + λ S², so the lowest "
                                               "singlet is found where a triplet lies below it (H chain N_k = 2 at "
                                               "d ≤ 1.8, N_k = 4 at d = 1.0); the record is ⟨H⟩ with ⟨S²⟩ beside it, "
                                               "named …-s2penλ; 0.1 is ample there"),
            resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint"),
            lr: Optional[float] = typer.Option(None, "--lr", help="SR learning rate (default per sampler)"),
            lr_final: Optional[float] = typer.Option(None, "--lr-final", help="--steps N: cosine-decay the learning rate to this over the N steps; --steps auto: the rate that plateaus halve it down to; 0 = constant (default per sampler)"),
            max_norm: Optional[float] = typer.Option(None, "--max-norm", help="trust region: cap |δ| of each SR step; 0 = none (default per sampler and model: the RBM's Markov chains 1 above 16 spin-orbitals, else none; the NNBF 0.5; `nqsbench models`)"),
            diag_shift: Optional[float] = typer.Option(None, "--diag-shift", help="SR diagonal shift (default per sampler)"),
            sr_solver: str = typer.Option("auto", "--sr-solver", help="SR linear solve: sr (parameters²), minsr "
                                          "(samples²), cg (matrix-free, memory samples × parameters) or auto"),
            samples: Optional[int] = typer.Option(None, "--samples", help="Monte Carlo samples per step (mcmc)"),
            chains: Optional[int] = typer.Option(None, "--chains", help="Markov chains (mcmc)"),
            beta: Optional[str] = typer.Option(None, "--beta", help="mcmc: sample |ψ|^(2·beta) with importance weights; "
                                               "auto (the default): beta adapts per step, from 0.5 towards 1 "
                                               "while fewer than a quarter of the samples are effective"),
            deterministic: Optional[int] = typer.Option(None, "--deterministic", min=0, help="mcmc: sum this many "
                                                        "configurations exactly each step (the most probable seen; the "
                                                        "samples among them replaced by their sum: less noise where a "
                                                        "few configurations carry it); 0: none (default per model: the "
                                                        "NNBF 128, the RBM 0; `nqsbench models`)"),
            checkpoint_every: float = typer.Option(60.0, "--checkpoint-every", help="seconds between checkpoints"),
            checkpoint_steps: int = typer.Option(50, "--checkpoint-steps", min=0,
                                                 help="also checkpoint every this many steps (0: by time only)"),
            memory_gb: Optional[float] = typer.Option(None, "--memory-gb", min=0.1, help="memory budget of the run in GB "
                                                      "(default $NQSBENCH_MEMORY_GB or 8): sizes the local-energy "
                                                      "chunks; a run whose estimated peak exceeds it is refused"),
            dry_run: bool = typer.Option(False, "--dry-run", help="build the run and print its pre-flight "
                                         "estimate of peak memory and time per step; compute and write nothing"),
            out: Optional[Path] = typer.Option(None, help="record path (default: results/...)"),
            progress: bool = typer.Option(True, help="show a progress bar"),
            results: Optional[Path] = ResultsOpt, references: Optional[Path] = ReferencesOpt,
            ) -> None:
    """Optimize a neural-network quantum state → a JSON ResultRecord (+ trace CSV, parameters,
    checkpoints). The pre-flight memory and time estimate is printed first; a run that would not
    fit its memory budget is refused before it allocates."""
    from .methods import RunContext
    from .nqs import DivergenceError

    init, init_path = _init_setting(init)
    geom = _geometry(system, param, kmesh)
    sampler, why = _resolve_sampler(sampler, geom, chain_options=any(v is not None for v in (samples, chains, beta))
                                    or bool(deterministic))
    settings = _nqs_settings(_model_table(model, model_opt, alpha), sampler, init, steps, seed=seed, lr=lr,
                             lr_final=lr_final, max_norm=max_norm, diag_shift=diag_shift, samples=samples,
                             chains=chains, beta=beta, max_steps=max_steps, max_minutes=max_minutes,
                             sr_solver=sr_solver, spin_penalty=spin_penalty, deterministic=deterministic)
    log = _log_after(f"sampler auto → {sampler}: {why}" if why else None)
    if dry_run:
        from .build import get_hamiltonian
        from .methods.nqs import make_driver, make_evaluator

        driver = make_driver(get_hamiltonian(geom), settings, memory_gb=memory_gb)
        log(None)
        console.print(driver.memory_plan.summary(), highlight=False, soft_wrap=True)
        evaluator = make_evaluator(driver, settings, memory_gb=memory_gb)
        if evaluator is not None:
            console.print(f"⟨H⟩ at the end (spin penalty): {evaluator.memory_plan.summary()}",
                          highlight=False, soft_wrap=True)
        return
    store = _store(references, results)
    try:
        res = store.run("nqs", geom, settings, path=out, force=True,
                        ctx=RunContext(resume=resume, progress=progress, checkpoint_every=checkpoint_every,
                                       checkpoint_steps=checkpoint_steps,
                                       options={k: v for k, v in (("memory_gb", memory_gb),
                                                                  ("init_params", init_path)) if v},
                                       log=log))
    except DivergenceError as exc:
        err_console.print(f"[bold red]diverged:[/] {exc}; no record written", highlight=False, soft_wrap=True)
        raise typer.Exit(3)
    path, rec = res.path, res.record
    err = f" ± {rec.energy_error * 1e3:.3f} mHa" if rec.energy_error else ""
    console.print(f"{rec.method} {sampler} {geom.spec.id} {geom.params} k-mesh {'x'.join(map(str, geom.kmesh))}, "
                  f"{rec.n_steps} steps: E = {rec.energy_per_cell:.8f} Ha/cell{err} (ewald convention), "
                  f"{rec.energy_per_cell_raw:.8f} raw; V-score {rec.v_score:.2e}", highlight=False)
    if rec.converged:
        console.print(f"converged: {rec.convergence}", highlight=False, soft_wrap=True)
    else:
        hint = ("rerun with a larger --max-steps/--max-minutes and --resume to go on" if settings.steps == "auto"
                else "use --steps auto (the default) to run until it plateaus")
        console.print(f"[bold yellow]NOT CONVERGED[/]: {rec.convergence}; {hint}", highlight=False, soft_wrap=True)
    penalty = (rec.details or {}).get("spin_penalty")
    if penalty:
        console.print(f"⟨S²⟩ = {penalty['s2']:.3g} (spin penalty λ = {penalty['lambda']:g} Ha; "
                      f"⟨H + λS²⟩ = {penalty['energy_per_cell_penalized']:.8f} Ha/cell raw)", highlight=False)
    _compare_with_exact(store, geom, rec)
    console.print(f"wrote {path}  ({rec.provenance.wall_time_s:.1f} s, "
                  f"{rec.provenance.peak_memory_mb:.0f} MB peak)", highlight=False)


def _model_table(model: str, options: Optional[List[str]], alpha: Optional[float]) -> dict:
    """``--model NAME --model-opt K=V … [--alpha A]`` → ``{"kind": NAME, K: V, …}``."""
    from .errors import CatalogError
    from .nqs import models

    if model not in models.names():
        raise CatalogError(f"--model {model!r}: unknown model; available: {', '.join(models.names())}")
    fields = f"a field of model {model!r}: {', '.join(f for f in models.get(model).Settings.model_fields if f != 'kind')}"
    opts = _parse_sets(options, "--model-opt", fields)
    if "kind" in opts:
        raise CatalogError(f"--model-opt kind={opts['kind']}: the model is --model; give {fields}")
    table = {"kind": model, **opts}
    if alpha is not None:
        if model != "rbm":
            raise CatalogError(f"--alpha {alpha}: the RBM's hidden-unit density; --model {model} takes "
                               "--model-opt KEY=VALUE")
        table["alpha"] = alpha
    return table


def _init_setting(init: str) -> tuple[str, Optional[Path]]:
    """``--init``: auto, hf, random, or the parameters of an earlier run on the same geometry (its
    ``.params.msgpack`` or its record ``.json``) → (the ``init`` setting, the file or None)."""
    from .errors import CatalogError
    from .nqs.results import init_setting

    try:
        return init_setting(init)
    except FileNotFoundError as exc:
        raise CatalogError(f"--init {init!r}: {exc}; give auto, hf, random, or the .params.msgpack (or record "
                           ".json) of an earlier run on this geometry") from None


def _log_after(first: Optional[str]):
    """A run's log (stderr) that prints ``first`` before its first line: a note such as what
    ``--sampler auto`` picked waits until the run has passed its input checks (and logs its
    memory plan), so bad input stays one line. ``log(None)`` prints only the note."""
    pending = [first] if first else []

    def log(line: Optional[str]) -> None:
        while pending:
            err_console.print(pending.pop(), highlight=False, soft_wrap=True)
        if line is not None:
            err_console.print(line, highlight=False, soft_wrap=True)
    return log


def _resolve_sampler(sampler: str, geom, chain_options: bool = False) -> tuple[str, str]:
    """``--sampler auto`` → (exact or mcmc by the sector's size, why) (:func:`methods.nqs.auto_sampler`;
    mcmc when Markov-chain options are given); other values pass through with why = ""."""
    if sampler != "auto":
        return sampler, ""
    if chain_options:
        return "mcmc", "Markov-chain options given"
    from .methods.nqs import auto_sampler

    return auto_sampler(geom)


def _nqs_settings(model, sampler, init, steps, **kw):
    from pydantic import ValidationError

    from .errors import CatalogError
    from .methods.nqs import nqs_settings
    from .nqs import models

    if isinstance(steps, str) and steps != "auto":
        try:
            steps = int(steps)
        except ValueError:
            raise CatalogError(f"--steps {steps!r}: give 'auto' or a number of steps") from None
    if sampler not in ("exact", "mcmc"):
        raise CatalogError(f"--sampler {sampler!r}: choose 'exact', 'mcmc' or 'auto'")
    if isinstance(steps, int) and steps < 1:
        raise CatalogError(f"--steps {steps}: must be ≥ 1 (or auto)")
    given = [f for f, k in (("--samples", "samples"), ("--chains", "chains"), ("--beta", "beta")) if kw.get(k) is not None]
    given += ["--deterministic"] if kw.get("deterministic") else []
    if sampler == "exact" and given:
        raise CatalogError(f"{'/'.join(given)}: Markov-chain options; add --sampler mcmc or drop them")
    if isinstance(kw.get("beta"), str) and kw["beta"] != "auto":
        try:
            kw["beta"] = float(kw["beta"])
        except ValueError:
            raise CatalogError(f"--beta {kw['beta']!r}: give a number in (0, 1] or 'auto'") from None
    for flag, v in (("--lr", kw.get("lr")), ("--diag-shift", kw.get("diag_shift"))):
        if v is not None and v <= 0:
            raise CatalogError(f"{flag} {v}: must be > 0")
    for flag, v in (("--lr-final", kw.get("lr_final")), ("--max-norm", kw.get("max_norm"))):
        if v is not None and v < 0:
            raise CatalogError(f"{flag} {v}: must be ≥ 0 (0 switches it off)")
    try:
        models.settings(model)
    except ValidationError as exc:   # a model option: name it as given
        kind = model.get("kind", "rbm")
        err = exc.errors()[0]
        field = str(err["loc"][0])      # the option; the rest of loc names a union member (alpha: number|"auto")
        flag = "--alpha" if field == "alpha" and kind == "rbm" else f"--model-opt {field}"
        value = f" {err['input']}" if not isinstance(err.get("input"), dict) else ""
        raise CatalogError(f"{flag}{value}: {err['msg'].removeprefix('Value error, ')} (model {kind!r})") from None
    try:
        return nqs_settings(sampler, steps=steps, init=init, model=model, **kw)
    except ValidationError as exc:
        raise _settings_error("NQS setting", exc, _NQS_OPTIONS) from None


def _compare_with_exact(store, geom, rec) -> None:
    """Print the error against the exact record of the same geometry, when the cache has one."""
    from .gates import reference_energy
    from .store import read
    from .units import CHEMICAL_ACCURACY_MHA

    ref_path = store.path("exact", geom)
    if not ref_path.exists():
        return
    try:
        ref = read(ref_path)
    except NqsbenchError as exc:
        console.print(f"exact reference unreadable: {exc}", highlight=False)
        return
    target, what = reference_energy(rec, ref)
    if not ref.failed and target is not None:
        d = (rec.energy_per_cell - target) * 1e3
        note = "" if ref.input_hash == rec.input_hash else " [input hash differs from the reference]"
        console.print(f"vs {what} ({ref_path.name}): {d:+.3f} mHa/cell"
                      + (f" ± {rec.energy_error * 1e3:.3f}" if rec.energy_error else "")
                      + (" (within chemical accuracy)" if abs(d) <= CHEMICAL_ACCURACY_MHA else "") + note,
                      highlight=False)


@app.command("bands")
@user_errors
def bands_cmd(system: str, param: Optional[List[str]] = ParamOpt, kmesh: Optional[str] = KmeshOpt,
              sampler: str = typer.Option("auto", help="sampler of the NQS ground-state run to use (exact|mcmc|auto, "
                                          "as run --sampler)"),
              seed: int = typer.Option(0, help="seed of the NQS ground-state run (and of the Monte Carlo sampling)"),
              model: str = typer.Option("rbm", help="model of the NQS ground-state run to use"),
              model_opt: Optional[List[str]] = typer.Option(None, "--model-opt", help="model option KEY=VALUE "
                                                            "of the ground-state run when it must be made first"),
              steps: str = typer.Option("auto", help="steps of the ground-state run when it must be made first"),
              init: str = typer.Option("auto", help="start of the ground-state run (auto, hf, random or the parameters "
                                       "file it continued; see `run --init`)"),
              estimator: str = typer.Option("exact", help="exact (sum over the sectors) or mc (samples of |ψ|², jackknife error bars)"),
              method: Optional[str] = typer.Option(None, "--method", help="krylov (the paper's {c†_pk|Ψ⟩} extended "
                                                   "with H c†|Ψ⟩ … H^order c†|Ψ⟩; the default with the exact "
                                                   "estimator), subspace (the paper's; the default with mc) or "
                                                   "sector (an NQS optimized in each (N±1, K0±k) sector: its "
                                                   "lowest state and quasiparticle weight Z)"),
              order: Optional[int] = typer.Option(None, "--order", min=1, help="krylov: highest power of H "
                                                  "(default 8 with the exact estimator; mc: 1, the only one)"),
              samples: int = typer.Option(8192, "--samples", help="mc: samples of |ψ|²"),
              chains: int = typer.Option(32, "--chains", help="mc: Markov chains (the jackknife blocks)"),
              threshold: Optional[float] = typer.Option(None, "--threshold", help="drop S eigenvalues ≤ this (default 1e-3)"),
              control: bool = typer.Option(True, help="also build the subspace on the exact ground state"),
              plot: bool = typer.Option(True, help="write the band figure (PNG + SVG) beside the record"),
              spin_penalty: float = typer.Option(0.0, "--spin-penalty", help="sector: optimize H + λ S² (λ in Ha) in "
                                                 "each sector, so the lowest doublet is found, not a quartet below it"),
              gs_spin_penalty: Optional[float] = typer.Option(
                  None, "--gs-spin-penalty", min=0, help="λ (Ha) of the ground-state run's H + λ S² (see run "
                  "--spin-penalty): bands are defined on the singlet. Default: the run `nqsbench run` made with "
                  "these settings when there is one, else one made here with λ = 0.1"),
              jobs: int = typer.Option(1, "--jobs", min=1, help="sector: optimize this many sectors at once in "
                                       "worker processes (each with 1/jobs of the memory budget)"),
              results: Optional[Path] = ResultsOpt, references: Optional[Path] = ReferencesOpt,
              ) -> None:
    """Quasiparticle bands from the NQS ground state (excitation subspace) → a JSON BandRecord
    beside the NQS result, errors (meV) against exact, EOM-CCSD and HF bands, and a figure."""
    from pydantic import ValidationError

    from .errors import CatalogError
    from .methods import RunContext
    from .bandstructure import band_method_label
    from .methods.nqs_bands import GROUND_STATE_SPIN_PENALTY, bands_settings, check_control, default_band_method
    from .store import read
    from .units import HARTREE_TO_EV

    est = {"exact": "exact", "mc": "monte_carlo", "monte_carlo": "monte_carlo"}.get(estimator)
    if est is None:
        raise CatalogError(f"--estimator {estimator!r}: choose 'exact' or 'mc'")
    method = method or default_band_method(est)
    if method not in ("subspace", "krylov", "sector"):
        raise CatalogError(f"--method {method!r}: choose 'subspace', 'krylov' or 'sector'")
    if order is not None and method != "krylov":
        raise CatalogError(f"--order {order}: only --method krylov has an order")
    if method == "krylov" and est != "exact" and order not in (None, 1):
        raise CatalogError(f"--order {order}: the Monte Carlo krylov estimator has order 1 only (H² c†|Ψ⟩ is "
                           f"two nested connection sums per sample); use --order 1 or --estimator exact")
    if method == "sector" and est != "exact":
        raise CatalogError(f"--method sector: the exact estimator only (energies and Z by exact sums over each "
                           f"sector); drop --estimator {estimator}")
    if samples < 2 * chains or chains < 2:
        raise CatalogError(f"--samples {samples} / --chains {chains}: need chains ≥ 2 and samples ≥ 2·chains")
    if jobs > 1 and method != "sector":
        raise CatalogError(f"--jobs {jobs}: only --method sector has runs to share out (one per sector); drop --jobs")
    geom = _geometry(system, param, kmesh)
    store = _store(references, results)
    init, init_path = _init_setting(init)
    sampler, why = _resolve_sampler(sampler, geom)
    gs = _nqs_settings(_model_table(model, model_opt, None), sampler, init, steps, seed=seed,
                       spin_penalty=GROUND_STATE_SPIN_PENALTY if gs_spin_penalty is None else gs_spin_penalty)
    if gs_spin_penalty is None and store.path("nqs", geom, gs.model_copy(update={"spin_penalty": 0.0})).exists():
        gs = gs.model_copy(update={"spin_penalty": 0.0})   # the ground state `run` made: its bands

    def settings_for(gs):
        try:
            return bands_settings(gs, estimator=est, samples=samples, chains=chains, s_threshold=threshold,
                                  control=control, method=method, order=order, spin_penalty=spin_penalty)
        except ValidationError as exc:
            raise _settings_error("band setting", exc, _BAND_OPTIONS) from None

    check_control(geom, settings_for(gs))     # bad options: one line before anything runs
    log = _log_after(f"ground state's sampler auto → {sampler}: {why}" if why else None)
    gs_path = store.path("nqs", geom, gs)
    if gs_path.exists():       # the run already made (whatever its steps): its bands
        gs = read(gs_path).settings
    else:
        console.print(f"no NQS result at {gs_path}: running the ground state first", highlight=False)
        if init_path is not None:   # a dependency run has no options: make it here, from the file
            store.run("nqs", geom, gs, ctx=RunContext(progress=True, options={"init_params": init_path}))
    bs = settings_for(gs)
    res = store.run("nqs_bands", geom, bs, force=True, ctx=RunContext(
        progress=True, options={"figure": plot, "jobs": jobs},
        log=log))
    path, rec = res.path, res.record
    table = Table(title=f"{geom.spec.id} {geom.params} k-mesh {'x'.join(map(str, geom.kmesh))}: band errors (meV)")
    for col in ("comparison", "MAE", "max", "gap error", "n"):
        table.add_column(col, justify="right" if col != "comparison" else "left")
    fmt = lambda v: "—" if v is None else f"{v:.1f}"
    for name, e in rec.errors.items():
        table.add_row(name, fmt(e["mae_meV"]), fmt(e["max_meV"]), fmt(e["gap_error_meV"]), str(e["n"]))
    console.print(table)
    s2 = rec.ground_state.get("s2")
    if s2 is not None and s2 > 0.1:
        console.print(f"[yellow]warning:[/] the NQS state has ⟨S²⟩ = {s2:.3f}, not a singlet; its bands are "
                      "not those of the singlet ground state the references describe; --gs-spin-penalty "
                      f"{GROUND_STATE_SPIN_PENALTY:g} makes (or uses) a ground state of H + λ S², the lowest singlet",
                      highlight=False, soft_wrap=True)
    space = band_method_label(rec.band_method, rec.order)
    lam = getattr(rec.settings, "spin_penalty", 0.0)
    if lam:
        space += f" of H + {lam:g} S²"
    if rec.sectors:
        _sector_table(rec)
    console.print(f"gap {rec.gap * HARTREE_TO_EV:.3f} eV (NQS {space}, {est} estimator, S threshold "
                  f"{rec.s_threshold:g}, basis sizes {rec.ranks})", highlight=False)
    console.print(f"wrote {path}" + (f" and {rec.figure}.png/.svg" if rec.figure else ""), highlight=False)


def _sector_table(rec) -> None:
    """The sector method's runs: one row per (branch, k) sector."""
    table = Table(title="sectors: lowest state of each (N↑ ± 1, N↓, K0 ± k) sector")
    cols = ("branch", "k", "N↑", "N↓", "K", "steps", "converged", "S²", "Z", "exact Z", "vs exact (mHa)")
    for col in cols:
        table.add_column(col, justify="left" if col in ("branch", "converged") else "right")
    opt = lambda row, key, f: "—" if row.get(key) is None else format(row[key], f)  # noqa: E731
    for row in rec.sectors:
        table.add_row(row["branch"], str(row["k"]), str(row["n_up"]), str(row["n_dn"]), str(row["k_total"]),
                      str(row["n_steps"]), "yes" if row["converged"] else "NO", f"{row['s2']:.3f}",
                      f"{row['z']:.3f}", opt(row, "exact_z", ".3f"), opt(row, "error_mHa", "+.3f"))
    console.print(table)
    if not all(row["converged"] for row in rec.sectors):
        console.print("[yellow]warning:[/] some sector runs ended unconverged (record converged: false)",
                      highlight=False)


compare_app = typer.Typer(help="Side-by-side runs with peer codes on the same Hamiltonian (extra 'peers').")
app.add_typer(compare_app, name="compare")


@compare_app.command("netket")
@user_errors
def compare_netket_cmd(system: str, param: Optional[List[str]] = ParamOpt, kmesh: Optional[str] = KmeshOpt,
                       alpha: float = typer.Option(2.0, help="hidden-unit density of the RBM"),
                       batch: int = typer.Option(512, help="samples per local-energy batch"),
                       sr_samples: int = typer.Option(1024, "--sr-samples", help="samples of the SR step"),
                       chunk: Optional[int] = typer.Option(None, help="our local-energy chunk size "
                                                           "(default: the one a run plans from its memory budget)"),
                       netket_chunks: str = typer.Option("64,256", "--netket-chunks",
                                                         help="NetKet chunk sizes to try, best kept (0: whole batch)"),
                       repeat: int = typer.Option(3, help="timings are the best of this many calls"),
                       seed: int = typer.Option(0, help="seed of the RBM parameters and samples"),
                       exact_max: int = typer.Option(20_000, "--exact-max", help="largest sector for the exact ⟨H⟩"),
                       sr: bool = typer.Option(True, help="also time one SR step"),
                       ) -> None:
    """Same Hamiltonian, RBM parameters and samples in NetKet and here: energies and throughputs
    side by side, ratios ours ÷ NetKet (> 1: ours faster)."""
    from .errors import CatalogError
    from .peers.netket import require_netket

    try:
        nk_chunks = [int(c) for c in netket_chunks.split(",")]
    except ValueError:
        nk_chunks = [-1]
    if not nk_chunks or min(nk_chunks) < 0:
        raise CatalogError(f"--netket-chunks {netket_chunks!r}: give integers ≥ 0 separated by commas, e.g. 64,256")
    for name, v in (("--batch", batch), ("--sr-samples", sr_samples), ("--chunk", chunk), ("--repeat", repeat)):
        if v is not None and v < 1:
            raise CatalogError(f"{name} {v}: must be ≥ 1")
    if alpha <= 0:
        raise CatalogError(f"--alpha {alpha}: must be > 0")
    geom = _geometry(system, param, kmesh)
    spec = geom.spec
    require_netket()                     # before any build: one line naming the 'peers' extra

    from .build import get_hamiltonian
    from .peers.compare import compare_netket, table_rows

    ham = get_hamiltonian(geom)
    r = compare_netket(ham, label=spec.id, alpha=alpha, batch=batch, sr_samples=sr_samples, chunk=chunk,
                       netket_chunks=nk_chunks, repeat=repeat, seed=seed, exact_max=exact_max, sr=sr,
                       echo=lambda line: console.print("  " + line, highlight=False))
    console.print(f"{spec.id} {geom.params} k-mesh {'x'.join(map(str, geom.kmesh))}: {r.n_spin_orbitals} "
                  f"spin-orbitals, sector (N↑={r.n_up}, N↓={r.n_dn}, K={r.k_total}) {r.sector_dim:,} "
                  f"determinants, RBM alpha {alpha:g} ({r.n_parameters} parameters); netket "
                  f"{r.netket_version}, jax {r.jax_version}", highlight=False)
    table = Table()
    for col in ("quantity", "ours", "netket", "ours/netket"):
        table.add_column(col, justify="left" if col == "quantity" else "right")
    for row in table_rows(r):
        table.add_row(*row)
    console.print(table)
    line = (f"same samples: max |ΔE_loc| {r.eloc_max_diff:.1e} Ha (|E_loc| ≤ {r.eloc_scale:.1f}); NetKet "
            f"chunk {r.netket_chunk or 'all'}; NetKet operator {r.netket_build_s:.1f} s (first build, with "
            f"NetKet's compilation), ≤ {r.netket_max_conn} connections")
    if r.sr_max_diff is not None:
        line += f"; SR update max |δ_ours − δ_netket/2| {r.sr_max_diff:.1e} (|δ| ≤ {r.sr_scale:.2f})"
    console.print(line, highlight=False)


# ----------------------------------------------------------------------------- suites, gates, reports, tables
@app.command("suite")
@user_errors
def suite_cmd(name: str = typer.Argument(..., help="suite name (suites/NAME.toml) or path to a suite file"),
              jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="independent geometries run in this many processes"),
              executor: str = typer.Option("local", "--executor", help="where tasks run: local (this machine) or "
                                           "dask (dask.distributed, extra 'dask'; a LocalCluster of --jobs "
                                           "single-threaded workers unless --scheduler)"),
              scheduler: Optional[str] = typer.Option(None, "--scheduler", help="with --executor dask: the address "
                                                      "(tcp://HOST:8786) or scheduler file of a running cluster"),
              dry_run: bool = typer.Option(False, "--dry-run", help="list what would run and why; compute nothing"),
              as_json: bool = typer.Option(False, "--json", help="with --dry-run: the plan as one JSON document"),
              force: bool = typer.Option(False, "--force", help="recompute every record, fresh or not"),
              task_timeout: Optional[float] = typer.Option(
                  None, "--task-timeout", min=0, help="minutes a worker may take over one geometry before it "
                  "counts as stalled: its stack is printed and it is retried from its checkpoint (local with --jobs > 1: "
                  "its process killed; dask: its worker restarted); 0: no limit "
                  "[default: 4 × the estimate, at least 10]"),
              progress: bool = typer.Option(True, help="show the progress bar"),
              results: Optional[Path] = ResultsOpt, references: Optional[Path] = ReferencesOpt) -> None:
    """Compute every missing or stale record of a suite; fresh records are skipped (resumable)."""
    import time

    from .executors import make_executor
    from .suites import load_suite, plan, run_suite

    suite = load_suite(name)
    store = _store(references, results)
    ex = make_executor(executor, jobs, scheduler)
    if as_json and not dry_run:
        from .errors import CatalogError

        raise CatalogError("--json goes with --dry-run (a suite run prints progress, not a document)")
    if dry_run:
        pl = plan(suite, store, force)
        if as_json:
            _print_json({"suite": suite.name, "to_run": len(pl.todo), "fresh": len(pl.skipped), "jobs": [
                *({"job": job.label(), "path": str(job.path), "action": "run",
                   "reason": pl.reasons[job.path].error or pl.reasons[job.path].reason} for job in pl.todo),
                *({"job": job.label(), "path": str(job.path), "action": "fresh", "reason": ""}
                  for job, _ in pl.skipped)]})
            return
        for job, st in pl.skipped:
            console.print(f"fresh  {job.label()}", highlight=False)
        for job in pl.todo:
            st = pl.reasons[job.path]
            console.print(f"[bold]run[/]    {job.label()}  ({st.error or st.reason})", highlight=False)
        console.print(f"suite {suite.name}: {len(pl.todo)} to run, {len(pl.skipped)} fresh")
        return
    t0 = time.perf_counter()
    out = run_suite(suite, store, n_jobs=jobs, force=force, progress=progress, executor=ex,
                    task_timeout_minutes=task_timeout, echo=lambda line: console.print(line, highlight=False, soft_wrap=True))
    n = {s: sum(o.state == s for o in out) for s in ("done", "skipped", "failed")}
    wall = time.perf_counter() - t0
    console.print(f"suite {suite.name}: {len(out)} records ({n['done']} computed, {n['skipped']} fresh, "
                  f"{n['failed']} failed) in {wall:.0f} s with --executor {executor} --jobs {jobs}")
    if suite.budget_minutes and wall > 60 * suite.budget_minutes:
        console.print(f"[yellow]note:[/] over the suite's budget of {suite.budget_minutes:g} min "
                      "(a loaded machine, or a slower one?)", highlight=False)
    if n["failed"]:
        raise typer.Exit(1)


@app.command("check")
@user_errors
def check_cmd(name: str = typer.Argument(..., help="suite name or path"),
              show_all: bool = typer.Option(False, "--all", help="also list the fresh records one per row"),
              as_json: bool = typer.Option(False, "--json", help="print one JSON document (every row, "
                                           "fresh records included) instead of the table; exit status as without"),
              results: Optional[Path] = ResultsOpt, references: Optional[Path] = ReferencesOpt) -> None:
    """Every gate of a suite (chemical accuracy, band MAE, V-score, records present and fresh):
    a table, and exit status 1 on any failure."""
    from .suites import check, load_suite

    suite = load_suite(name)
    rows = check(suite, _store(references, results))
    if as_json:
        n_fail = sum(r.status == "FAIL" for r in rows)
        _print_json({"suite": suite.name, "passed": n_fail == 0,
                     "records": {"fresh": sum(r.gate == "fresh" and r.status == "PASS" for r in rows),
                                 "total": sum(r.gate == "fresh" for r in rows)},
                     "gates": {"pass": sum(r.gate != "fresh" and r.status == "PASS" for r in rows),
                               "total": sum(r.gate != "fresh" for r in rows)},
                     "failures": n_fail, "rows": [r.as_dict() for r in rows]})
        if n_fail:
            raise typer.Exit(1)
        return
    table = Table(title=f"nqsbench check {suite.name}")
    for col in ("gate", "system", "geometry", "k-mesh", "method", "value", "limit", "vs", "status", "detail"):
        table.add_column(col, overflow="fold")
    fresh = [r for r in rows if r.gate == "fresh"]
    for r in rows:
        if r.gate == "fresh" and r.status == "PASS" and not show_all:
            continue
        d = r.as_dict()
        color = {"PASS": "green", "FAIL": "bold red", "WARN": "yellow"}[r.status]
        table.add_row(d["gate"], d["system"], d["geometry"], d["kmesh"], d["method"], d["value"], d["limit"],
                      d["reference"], f"[{color}]{r.status}[/]", d["detail"] or (d["path"] if r.status != "PASS" else ""))
    console.print(table)
    n_fail = sum(r.status == "FAIL" for r in rows)
    n_gate = sum(r.gate != "fresh" for r in rows)
    console.print(f"{sum(r.status == 'PASS' for r in fresh)}/{len(fresh)} records present and fresh; "
                  f"{sum(r.status == 'PASS' for r in rows if r.gate != 'fresh')}/{n_gate} gates pass; "
                  + ("[bold red]FAILED[/]" if n_fail else "[green]all pass[/]"))
    if n_fail:
        raise typer.Exit(1)


@app.command("report")
@user_errors
def report_cmd(name: str = typer.Argument(..., help="suite name or path"),
               out: Optional[Path] = typer.Option(None, help="report folder (default: reports/NAME)"),
               results: Optional[Path] = ResultsOpt, references: Optional[Path] = ReferencesOpt) -> None:
    """Regenerate reports/NAME/index.md + index.html with tables and figures (PNG + SVG)."""
    from .config import reports_dir
    from .report import build_report
    from .suites import load_suite

    suite = load_suite(name)
    folder = out or reports_dir() / suite.name
    rep = build_report(suite, _store(references, results), folder)
    console.print(f"wrote {rep.folder}/index.md and index.html ({len(rep.figures)} figures, "
                  f"{rep.n_records} records, {len(rep.missing)} missing)", highlight=False)


@app.command("table")
@user_errors
def table_cmd(fmt: str = typer.Option("csv", "--format", "-f", help="csv | json | parquet | md"),
              as_json: bool = typer.Option(False, "--json", help="the same as --format json: one JSON document "
                                           "{columns, records}"),
              out: Optional[Path] = typer.Option(None, help="output file (default: stdout; parquet needs it)"),
              skip_invalid: bool = typer.Option(False, "--skip-invalid",
                                                help="list invalid record files on stderr and go on"),
              results: Optional[Path] = ResultsOpt, references: Optional[Path] = ReferencesOpt) -> None:
    """A tidy table of every record (references and NQS results), one row per record."""
    from .errors import RecordError
    from .table import records_table, write_table

    store = _store(references, results)
    df, errors = records_table([store.references, store.results])
    for e in errors:
        err_console.print(f"[bold red]invalid record:[/] {e}", highlight=False, soft_wrap=True)
    if errors and not skip_invalid:
        raise RecordError(f"{len(errors)} invalid record file(s) (listed above); fix or remove them, "
                          "or pass --skip-invalid")
    text = write_table(df, "json" if as_json else fmt, out)
    if text is not None:
        sys.stdout.write(text)
    else:
        console.print(f"wrote {out} ({len(df)} records)")


@app.command("export")
@user_errors
def export_cmd(system: str, param: Optional[List[str]] = ParamOpt, kmesh: Optional[str] = KmeshOpt,
               fmt: str = typer.Option("all", "--format", "-f", help="fcidump | hdf5 | all"),
               out: Path = typer.Option(..., "--out", "-o", help="output folder (FCIDUMP, instance.h5, manifest.json)"),
               results: Optional[Path] = ResultsOpt, references: Optional[Path] = ReferencesOpt) -> None:
    """Export an instance for other codes: FCIDUMP (real Γ supercell), HDF5 (complex k-resolved)
    and a manifest (sha256 of each file, instance hash, conventions, reference values)."""
    from .export import FORMATS, ExportError, export

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    geom = _geometry(system, param, kmesh)
    ex = export(geom, out, fmt, store=_store(references, results))
    m = ex.manifest
    table = Table(title=f"{geom.label()}: instance {m['instance_sha256']}")
    for col in ("file", "bytes", "sha256"):
        table.add_column(col)
    for name, entry in m["files"].items():
        table.add_row(str(ex.folder / name), f"{entry['bytes']:,}", entry["sha256"])
    table.add_row(str(ex.manifest_path), "", "(the manifest)")
    console.print(table)
    refs = m["references"]
    best = refs["best"]
    line = (f"best reference: {best} E = {refs['records'][best]['energy_per_cell']:.10f} Ha/cell (ewald)"
            if best else "no fresh converged reference (exact, dmrg, ccsd_t) in the store for this instance")
    c = m["conventions"]
    shift = next(x for x in c["sectors"] if x["sector"] == "N")["ewald_shift_per_cell"]
    console.print(f"{line}; raw → ewald per cell: {shift:+.10f} Ha "
                  f"(N = {m['sector']['n_active_electrons']} active electrons, N_k = {c['n_k']})", highlight=False)


@app.command("score")
@user_errors
def score_cmd(files: List[Path] = typer.Argument(..., help="submission JSON files (schemas/submission.schema.json)"),
              tolerance_mha: float = typer.Option(1.6, "--tolerance-mha", help="energy gate: |ΔE| per cell ≤ this + 2σ"),
              band_mae_mev: float = typer.Option(43.5, "--band-mae-mev", help="band gate: MAE ≤ this + 2σ (meV)"),
              results: Optional[Path] = ResultsOpt, references: Optional[Path] = ReferencesOpt) -> None:
    """Score results of other codes: validate each submission (exit 2 naming the field), check
    its instance hash, store it as an external record, gate it against the best reference
    (exact, DMRG, CCSD(T)); a table, exit status 1 when a gate fails."""
    from .errors import CatalogError
    from .score import score

    if tolerance_mha <= 0 or band_mae_mev <= 0:
        raise CatalogError("--tolerance-mha / --band-mae-mev: must be > 0")
    out = score(files, _store(references, results), tolerance_mha=tolerance_mha, band_mae_mev=band_mae_mev)
    table = Table(title="nqsbench score")
    for col in ("file", "method", "system", "geometry", "k-mesh", "E (Ha/cell, ewald)", "gate", "value", "limit",
                "vs", "status", "detail"):
        table.add_column(col)
    for s in out:
        for r in s.rows:
            d = r.as_dict()
            color = {"PASS": "green", "FAIL": "bold red", "WARN": "yellow"}[r.status]
            table.add_row(s.file.name, s.record.method, d["system"], d["geometry"], d["kmesh"],
                          f"{s.record.energy_per_cell:.10f}", d["gate"], d["value"], d["limit"], d["reference"],
                          f"[{color}]{r.status}[/]", d["detail"])
    console.print(table)
    for s in out:
        console.print(f"wrote {s.path}", highlight=False)
    n_fail = sum(not s.passed for s in out)
    console.print(f"{len(out) - n_fail}/{len(out)} submissions pass" + ("; [bold red]FAILED[/]" if n_fail else ""))
    if n_fail:
        raise typer.Exit(1)


@app.command()
@user_errors
def schema(out: Optional[Path] = typer.Option(None, help="folder for the JSON Schemas (default: schemas/ of the checkout)")) -> None:
    """Export the JSON Schemas of SystemSpec and the records."""
    from .config import source_root
    from .catalog import json_schema
    from .io import atomic_write_json
    from .methods.external import Submission
    from .records import BandRecord, ExternalRecord, ReferenceRecord, ResultRecord

    out = out or (source_root() or Path.cwd()) / "schemas"
    atomic_write_json(out / "system.schema.json", json_schema())
    atomic_write_json(out / "reference-record.schema.json", ReferenceRecord.model_json_schema())
    atomic_write_json(out / "result-record.schema.json", ResultRecord.model_json_schema())
    atomic_write_json(out / "band-record.schema.json", BandRecord.model_json_schema())
    atomic_write_json(out / "external-record.schema.json", ExternalRecord.model_json_schema())
    atomic_write_json(out / "submission.schema.json", Submission.json_schema())
    console.print(f"wrote {out}/system.schema.json, reference-record.schema.json, result-record.schema.json, "
                  "band-record.schema.json, external-record.schema.json, submission.schema.json", highlight=False)


@app.command()
@user_errors
def migrate(folders: Optional[List[Path]] = typer.Argument(None, help="folders of records (default: the reference cache and results)"),
            references: Optional[Path] = ReferencesOpt, results: Optional[Path] = ResultsOpt) -> None:
    """Rewrite every record under the folders in the current schema (atomically; contents kept,
    only the layout changes; a version-1 record made with other settings is marked stale)."""
    import json as _json

    from .records import RECORD_SCHEMA_VERSION
    from .store import read, record_paths, write

    store = _store(references, results)
    n = changed = 0
    for folder in folders or [store.references, store.results]:
        for p in record_paths(folder):
            n += 1
            if _json.loads(p.read_text()).get("schema_version", 1) < RECORD_SCHEMA_VERSION:
                write(read(p), p)
                changed += 1
    console.print(f"{changed} of {n} records rewritten in schema version {RECORD_SCHEMA_VERSION}")


@app.command()
def info() -> None:
    """Versions, git commit, folders (catalog, suites, references, results, reports, cache) and methods."""
    from .config import folders
    from .methods import methods
    from .records import git_commit, versions

    print(json.dumps({"versions": versions(), "git_commit": git_commit(), "folders": folders(),
                      "methods": {n: m.summary for n, m in methods().items()}}, indent=2, ensure_ascii=False))


def main() -> None:
    """The console entry point: the typer app, with a usage error (a bad option value, an unknown
    option, a missing argument) as one line on stderr and exit 2, as every other bad input."""
    import os

    # XLA's C++ log: constant-folding "slow operation" alarms (the enumerated sector of exact
    # sampling is a compile-time constant; graphene Γ's NNBF prints six lines of them) are not
    # errors of the run, whose real failures surface as Python exceptions. Set it to see them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:        # recent typer vendors click; older typer uses click itself
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
    except ImportError:  # pragma: no cover - older typer
        from click.exceptions import ClickException, NoArgsIsHelpError, UsageError
    try:
        rc = app(prog_name="nqsbench", standalone_mode=False)
    except NoArgsIsHelpError as exc:     # bare `nqsbench CMD`: its help, as typer shows it
        from typer import rich_utils
        rich_utils.rich_format_error(exc)
        sys.exit(exc.exit_code)
    except UsageError as exc:
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        print(f"error: {exc.format_message()}{where}", file=sys.stderr)
        sys.exit(2)
    except ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
