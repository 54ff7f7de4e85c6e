"""Issue 13, part A: hostile-but-honest input is refused with one line and exit status 2, and
nothing is written anywhere (path traversal through parameter names, unbounded expressions, bad
parameter values, absurd k-meshes, bad CLI values); files honour the umask.

Every CLI case runs with ``--results``, ``--references`` and ``NQSBENCH_CACHE`` pointed at empty
temporary folders, and checks that they (and the folder around them) stay empty.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nqsbench.cli import app

ROOT = Path(__file__).resolve().parent.parent
HCHAIN = (ROOT / "systems" / "h-chain.toml").read_text()
runner = CliRunner()


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Empty results, references and cache folders (inside ``tmp_path/work``) for one CLI call."""
    work = tmp_path / "work"
    d = {name: work / name for name in ("results", "references", "cache")}
    for p in d.values():
        p.mkdir(parents=True)
    monkeypatch.setenv("NQSBENCH_CACHE", str(d["cache"]))
    monkeypatch.setenv("NQSBENCH_RESULTS", str(d["results"]))
    monkeypatch.setenv("NQSBENCH_REFERENCES", str(d["references"]))
    return d


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _assert_nothing_written(folders, tmp_path, keep=()):
    for name, p in folders.items():
        assert _files(p) == [], f"{name} folder not empty: {_files(p)}"
    assert sorted(set(_files(tmp_path)) - {Path(k) for k in keep}) == [], _files(tmp_path)


def _one_line_error(result, *expected: str) -> str:
    """Exit 2, one line starting 'error:', no traceback; the line contains every ``expected``."""
    out = result.output.strip()
    assert result.exit_code == 2, (result.exit_code, out, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out
    line = " ".join(out.split())        # rich may fold a long line at the terminal width
    assert line.startswith("error: ") and line.count("error:") == 1, out
    for e in expected:
        assert e in line, (e, line)
    return line


def _invoke(args, folders):
    return runner.invoke(app, [*args, "--results", str(folders["results"]),
                               "--references", str(folders["references"])]
                         if args[0] in ("run", "bands") else
                         [*args, "--references", str(folders["references"])]
                         if args[0] == "reference" else list(args))


def _system_file(tmp_path, text: str, name: str = "sys.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- 1. path traversal
@pytest.mark.parametrize("name", ["/../../x/y", "a/../../y", "..", "d.e", "1d", "a b", "é"])
def test_parameter_name_must_be_an_identifier_nothing_written(tmp_path, folders, name):
    text = HCHAIN + f'\n[parameters."{name}"]\ndefault = 1.0\nunit = "bohr"\n'
    path = _system_file(tmp_path, text)
    r = _invoke(["reference", "hf", str(path)], folders)
    _one_line_error(r, path.name, "is not an identifier")
    _assert_nothing_written(folders, tmp_path, keep=[path])
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "y").exists()


def _forged_geometry(param_name: str):
    """A Geometry whose parameter name bypassed validation (model_construct): what the path
    builders must refuse on their own."""
    from nqsbench import catalog

    spec = catalog.load("h-chain")
    params = dict(spec.parameters)
    params[param_name] = catalog.Parameter(default=1.0, unit="bohr")
    forged = spec.model_construct(**{**dict(spec), "parameters": params})
    geom = spec.geometry({}, (1, 1, 2))
    return catalog.Geometry(forged, {**geom.params, param_name: 1.0}, geom.lattice, geom.symbols,
                            geom.coords, geom.kmesh)


@pytest.mark.parametrize("name", ["/../../x/y", "a/../../y", "../up"])
def test_path_builders_refuse_a_path_outside_their_root(tmp_path, folders, name):
    from nqsbench.build import cache_path
    from nqsbench.errors import UnsafePathError
    from nqsbench.store import Store, geometry_folder

    geom = _forged_geometry(name)
    store = Store(folders["references"], folders["results"])
    with pytest.raises(UnsafePathError, match="lies outside"):
        geometry_folder(geom, folders["references"])
    for method in ("hf", "exact", "nqs"):
        with pytest.raises(UnsafePathError, match="lies outside"):
            store.path(method, geom)
    with pytest.raises(UnsafePathError, match="lies outside"):
        cache_path(geom)
    with pytest.raises(UnsafePathError):
        store.run("hf", geom)
    _assert_nothing_written(folders, tmp_path)


def test_path_builders_accept_good_names_and_links(tmp_path):
    """The check is lexical: a root reached through a link, or a relative root, still works."""
    from nqsbench.io import inside

    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert inside(tmp_path / "link" / "h-chain" / "d1.8_k1x1x2", tmp_path / "link", "x")
    assert inside(Path("results") / "a" / "b.json", Path("results"), "x") == Path("results/a/b.json")
    for bad in (tmp_path / "link", tmp_path / "link" / ".." / "x", Path("/etc/passwd"), tmp_path / "linkx"):
        with pytest.raises(Exception, match="lies outside"):
            inside(bad, tmp_path / "link", "x")


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", ".", "/x", "H-chain"])
def test_system_ids_cannot_make_paths(tmp_path, folders, bad):
    text = HCHAIN.replace('id = "h-chain"', f'id = "{bad}"')
    path = _system_file(tmp_path, text)
    r = _invoke(["reference", "hf", str(path)], folders)
    _one_line_error(r, path.name, "field 'id'")
    _assert_nothing_written(folders, tmp_path, keep=[path])


@pytest.mark.parametrize("bad", ["../x", "a/b", "/x", ".."])
def test_suite_labels_cannot_make_paths(tmp_path, folders, bad):
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\ndescription = "x"\n\n[[tasks]]\nkind = "nqs"\nsystem = "h-chain"\n'
                     f'kmesh = [1, 1, 2]\nsteps = 2\nlabel = "{bad}"\n')
    r = runner.invoke(app, ["suite", str(suite), "--dry-run", "--results", str(folders["results"]),
                            "--references", str(folders["references"])])
    _one_line_error(r, "label")
    _assert_nothing_written(folders, tmp_path, keep=[suite])


# ----------------------------------------------------------------------------- 2. unbounded expressions
EXPRESSIONS = {
    "tower of powers (hang)": ("10**10**10", "exponent"),
    "four-level tower (hang)": ("9**9**9**9", "exponent"),
    "large exponent (OverflowError)": ("10**400", "exponent 400 is larger than 64"),
    "overflow": ("1e300**2", "too large"),
    "finite but huge": ("2*" + "9" * 190, "field 'lattice': a vector of 2e+190 bohr"),
    "infinite product": ("1e308*10", "not a finite"),
    "infinite constant": ("1e999", "not a finite"),
    "complex power": ("(-8)**(1/3)", "not a finite real"),
    "100 000 unary minuses": ("-" * 100_000 + "1", "100001 characters"),
    "200 000-term sum": ("+".join(["1"] * 200_000), "characters"),
    "many terms": ("+".join(["d"] * 99), "terms"),
}


@pytest.mark.parametrize("case", sorted(EXPRESSIONS))
def test_unbounded_expressions_refused_fast(tmp_path, folders, case):
    expr, expected = EXPRESSIONS[case]
    path = _system_file(tmp_path, HCHAIN.replace('"2*d"', f'"{expr}"'))
    # a subprocess: a regression that hangs in C (integer powers) is stopped by the timeout
    env = dict(os.environ, COLUMNS="400")
    p = subprocess.run([sys.executable, "-m", "nqsbench.cli", "reference", "hf", str(path),
                        "--references", str(folders["references"])],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    out = " ".join((p.stdout + p.stderr).split())
    assert p.returncode == 2, out[-2000:]
    assert "Traceback" not in out and out.count("error:") == 1, out[-2000:]
    assert out.startswith("error: ") and path.name in out and "lattice" in out and expected in out, out[:600]
    _assert_nothing_written(folders, tmp_path, keep=[path])


def test_small_expressions_still_evaluate():
    from nqsbench.catalog import _evaluate

    assert _evaluate("a*sqrt(3)/2", {"a": 2.0}, "x") == pytest.approx(3 ** 0.5)
    assert _evaluate("2**-3 + d**2", {"d": 3.0}, "x") == pytest.approx(9.125)
    assert _evaluate("-(-d)", {"d": 1.5}, "x") == 1.5


# ----------------------------------------------------------------------------- 3. bad parameter values
@pytest.mark.parametrize("value,expected", [
    ("nan", "not a finite number"), ("inf", "not a finite number"), ("-inf", "not a finite number"),
    ("-1", "below the minimum 0.8 bohr"), ("0", "below the minimum"), ("1e6", "above the maximum 8 bohr"),
])
@pytest.mark.parametrize("command", [["reference", "hf"], ["run"], ["show"]])
def test_bad_parameter_values_refused_before_pyscf(tmp_path, folders, monkeypatch, value, expected, command):
    import nqsbench.build as build

    monkeypatch.setattr(build, "make_cell", lambda *a, **k: pytest.fail("PySCF was called"))
    r = _invoke([*command, "h-chain", "-k", "1,1,2", "-p", f"d={value}"], folders)
    _one_line_error(r, "d", expected)
    _assert_nothing_written(folders, tmp_path)


@pytest.mark.parametrize("field,expected", [
    ("default = nan", "finite number"), ("default = inf", "finite number"), ("default = -inf", "finite number"),
    ("scan = [1.0, nan]", "finite number"), ("scan = [1.0, inf]", "finite number"),
    ("default = 0.5", "default 0.5 is below the minimum 0.8"), ("scan = [1.0, 9.0]", "scan value 9 is above"),
    ("min = 9.0", "min 9 ≥ max 8"),
])
def test_bad_parameter_values_in_the_file(tmp_path, folders, field, expected):
    key = field.split(" =")[0]          # replace that key of [parameters.d] (the file's only table)
    lines = [ln for ln in HCHAIN.splitlines() if not ln.startswith(f"{key} =")]
    i = lines.index("[parameters.d]")
    lines.insert(i + 1, field)
    path = _system_file(tmp_path, "\n".join(lines) + "\n")
    r = _invoke(["reference", "hf", str(path)], folders)
    _one_line_error(r, path.name, "parameters.d", expected)
    _assert_nothing_written(folders, tmp_path, keep=[path])


def test_non_finite_lattice_number_in_the_file(tmp_path, folders):
    path = _system_file(tmp_path, HCHAIN.replace("[10.0, 0.0, 0.0]", "[inf, 0.0, 0.0]"))
    r = _invoke(["reference", "hf", str(path)], folders)
    _one_line_error(r, path.name, "lattice", "finite")
    _assert_nothing_written(folders, tmp_path, keep=[path])


def test_left_handed_lattice_refused(tmp_path, folders):
    path = _system_file(tmp_path, HCHAIN.replace("[0.0, 10.0, 0.0]", "[0.0, -10.0, 0.0]"))
    r = _invoke(["reference", "hf", str(path)], folders)
    _one_line_error(r, path.name, "field 'lattice'", "left-handed")
    _assert_nothing_written(folders, tmp_path, keep=[path])


def test_handedness_is_checked_as_pyscf_takes_the_vectors(tmp_path, folders):
    """A chain along y: PySCF gets the periodic vector first, (a2, a1, a3), which is left-handed
    for a right-handed (a1, a2, a3); flipping a vacuum vector makes it right."""
    text = (HCHAIN.replace("[0.0, 10.0, 0.0]", '[0.0, "2*d", 0.0]').replace('[0.0, 0.0, "2*d"]', "[0.0, 0.0, 10.0]")
            .replace("periodic_axes = [2]", "periodic_axes = [1]").replace('[0.0, 0.0, "d"]', '[0.0, "d", 0.0]')
            .replace("kmesh = [1, 1, 4]", "kmesh = [1, 2, 1]")).split("[kmeshes]")[0]
    path = _system_file(tmp_path, text)
    r = _invoke(["reference", "hf", str(path)], folders)
    _one_line_error(r, path.name, "field 'lattice'", "order [1, 0, 2]", "left-handed")
    _assert_nothing_written(folders, tmp_path, keep=[path])
    flipped = _system_file(tmp_path, text.replace("[10.0, 0.0, 0.0]", "[-10.0, 0.0, 0.0]"), "flipped.toml")
    r = runner.invoke(app, ["show", str(flipped)])
    assert r.exit_code == 0, r.output


def test_oversized_geometry_refused_without_bounds(tmp_path, folders):
    """A file that declares no bounds still cannot ask for a cell of 2·10⁶ bohr (PySCF: 31 GiB)."""
    text = HCHAIN.replace("min = 0.8", "").replace("max = 8.0", "")
    path = _system_file(tmp_path, text)
    r = _invoke(["reference", "hf", str(path), "-p", "d=1e6"], folders)
    _one_line_error(r, "field 'lattice'", "longer than nqsbench's limit")
    _assert_nothing_written(folders, tmp_path, keep=[path])


def test_suite_values_out_of_bounds_refused(tmp_path, folders):
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\ndescription = "x"\n\n[[tasks]]\nkind = "reference"\nsystem = "h-chain"\n'
                     'kmesh = [1, 1, 2]\nparams = { d = [1.8, -1.0] }\nmethods = ["hf"]\n')
    r = runner.invoke(app, ["suite", str(suite), "--dry-run", "--results", str(folders["results"]),
                            "--references", str(folders["references"])])
    _one_line_error(r, "below the minimum")
    _assert_nothing_written(folders, tmp_path, keep=[suite])


def test_catalog_bounds_hold_the_catalog_scans():
    """The four catalog files declare bounds, and their defaults and scans lie inside them."""
    from nqsbench import catalog

    for name in catalog.available():
        spec = catalog.load(name)
        for pname, p in spec.parameters.items():
            assert p.min is not None and p.max is not None, (name, pname)
            assert all(p.min <= v <= p.max for v in (p.default, *p.scan)), (name, pname)


# ----------------------------------------------------------------------------- 4. absurd k-meshes
def test_show_absurd_kmesh_one_line_fast(tmp_path, folders):
    import time

    t0 = time.perf_counter()
    r = _invoke(["show", "h-chain", "-k", "1,1,1000"], folders)
    _one_line_error(r, "1x1x1000", "1000 k-points", "smaller mesh")
    assert time.perf_counter() - t0 < 10
    r = _invoke(["show", "h-chain", "-k", "1,1,1000000000"], folders)
    _one_line_error(r, "k-points", "smaller mesh")
    _assert_nothing_written(folders, tmp_path)


def test_sector_counts_fast_and_exact_for_sensible_meshes():
    import time
    from math import comb

    from nqsbench.sectors import kmesh_grid, sector_dims

    # N_k = 1: one sector of C(n, a)·C(n, b) determinants
    assert sector_dims(kmesh_grid((1, 1, 1)), (1, 1, 1), 6, 2, 2) == [comb(6, 2) ** 2]
    # the sum over momenta is the whole (N↑, N↓) space, for any mesh
    t0 = time.perf_counter()
    for mesh, n_orb, na in [((1, 1, 64), 2, 64), ((4, 4, 4), 6, 128), ((3, 2, 1), 5, 15)]:
        nk = int(np.prod(mesh))
        dims = sector_dims(kmesh_grid(mesh), mesh, n_orb, na, na - 1)
        assert sum(dims) == comb(n_orb * nk, na) * comb(n_orb * nk, na - 1)
    assert time.perf_counter() - t0 < 20
    r = runner.invoke(app, ["show", "h-chain", "-k", "1,1,8"])
    assert r.exit_code == 0 and "20,705,236" in "".join(r.output.split())


# ----------------------------------------------------------------------------- 5. CLI values
RUN_CASES = {
    "alpha 0": (["--alpha", "0"], "--alpha 0"),
    "alpha -1": (["--alpha", "-1"], "--alpha -1"),
    "beta 0": (["--sampler", "mcmc", "--beta", "0"], "--beta 0"),
    "beta 1.5": (["--sampler", "mcmc", "--beta", "1.5"], "--beta 1.5"),
    "beta word": (["--sampler", "mcmc", "--beta", "adaptive"], "--beta 'adaptive'"),
    "beta exact": (["--sampler", "exact", "--beta", "auto"], "--beta: Markov-chain options; add --sampler mcmc"),
    "samples exact": (["--sampler", "exact", "--samples", "64", "--chains", "4"], "--samples/--chains: Markov-chain options"),
    "chains 0": (["--sampler", "mcmc", "--chains", "0"], "--chains 0"),
    "samples 16 chains 64": (["--sampler", "mcmc", "--samples", "16", "--chains", "64"], "two samples per chain"),
    "samples 0": (["--sampler", "mcmc", "--samples", "0"], "--samples 0"),
    "seed -1": (["--seed", "-1"], "--seed -1"),
    "steps 0": (["--steps", "0"], "--steps 0"),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_run_values_one_line_naming_the_option(tmp_path, folders, case):
    args, expected = RUN_CASES[case]
    r = _invoke(["run", "h-chain", "-k", "1,1,2", "--no-progress", *args], folders)
    line = _one_line_error(r, expected)
    assert "--resume" not in line
    _assert_nothing_written(folders, tmp_path)


def test_bands_threshold_one_line_before_any_run(tmp_path, folders):
    r = _invoke(["bands", "h-chain", "-k", "1,1,2", "--threshold", "-1", "--no-plot"], folders)
    _one_line_error(r, "--threshold -1")
    assert "running the ground state" not in r.output
    _assert_nothing_written(folders, tmp_path)


def test_sampler_settings_need_two_samples_per_chain():
    """In the settings model, so suites get the same refusal as `nqsbench run`."""
    from pydantic import ValidationError

    from nqsbench.methods.nqs import nqs_settings
    from nqsbench.records import SamplerSettings

    with pytest.raises(ValidationError, match="two samples per chain"):
        SamplerSettings(kind="mcmc", n_samples=16, n_chains=64, beta=0.5)
    assert SamplerSettings(kind="mcmc", n_samples=128, n_chains=64, beta=0.5).n_samples == 128
    with pytest.raises(ValidationError, match="two samples per chain"):
        nqs_settings("mcmc", samples=16, chains=64)


# ----------------------------------------------------------------------------- 6. file modes
@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, mask, mode):
    from nqsbench.io import atomic_write, atomic_write_json, umask

    old = os.umask(mask)
    try:
        assert umask() == mask and umask() == mask      # read, not changed
        rec = atomic_write_json(tmp_path / "r" / "record.json", {"a": 1})
        npz = atomic_write(tmp_path / "r" / "ckpt.npz", lambda p: np.savez(open(p, "wb"), x=np.zeros(2)))
        for p in (rec, npz):
            assert stat.S_IMODE(p.stat().st_mode) == mode, (oct(p.stat().st_mode), oct(mode))
        assert [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")] == []
    finally:
        os.umask(old)


def test_records_and_caches_from_a_run_honour_the_umask(tmp_path, folders):
    """A real reference run: the record and the cached Hamiltonian get 0666 & ~umask."""
    old = os.umask(0o002)
    try:
        r = _invoke(["reference", "hf", "h-chain", "-k", "1,1,2"], folders)
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    files = _files(folders["references"]) + _files(folders["cache"])
    assert any(p.suffix == ".json" for p in files) and any(p.suffix == ".npz" for p in files), files
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o664, (p, oct(p.stat().st_mode))


# ----------------------------------------------------------------------------- memory of exact diagonalization
def test_exact_that_cannot_fit_the_memory_budget_is_refused_before_pyscf(tmp_path, folders, monkeypatch):
    """H chain N_k = 6: the band search holds 400 vectors of 121 968 determinants (0.8 GB): with a
    0.5 GB budget it is refused in one line naming the setting, before any SCF, nothing written;
    without bands only the Davidson vectors of the N sector count (0.38 GB)."""
    import nqsbench.build as build
    from nqsbench import catalog
    from nqsbench.methods.exact import check_exact_feasible

    monkeypatch.setenv("NQSBENCH_MEMORY_GB", "0.5")
    monkeypatch.setattr(build, "get_hamiltonian", lambda *a, **k: pytest.fail("the Hamiltonian was built"))
    r = _invoke(["reference", "exact", "h-chain", "-k", "1,1,6"], folders)
    _one_line_error(r, "estimated peak", "0.5 GB budget", "400 vectors of 121,968 determinants",
                    "NQSBENCH_MEMORY_GB", "bands=false")
    _assert_nothing_written(folders, tmp_path)
    from nqsbench.records import resident_memory_mb

    geom = catalog.load("h-chain").geometry(kmesh=(1, 1, 6))
    vectors = check_exact_feasible(geom, 3_000_000, bands=False, memory_gb=64) - resident_memory_mb() * 1024 ** 2
    assert vectors == 16 * 142_376 * (4 * 40 + 8)        # the Davidson vectors of the N sector


# ----------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize("argv, says", [
    (["suite", "tiny", "--task-timeout", "-1"], "Invalid value for '--task-timeout'"),
    (["run", "h-chain", "--no-such-option"], "No such option: --no-such-option"),
    (["suite"], "Missing argument 'name'"),
    (["list", "systems"], "unexpected extra argument"),
])
def test_usage_errors_are_one_line_and_exit_2(argv, says, monkeypatch, capsys):
    """Errors typer finds (an option's range, an unknown option, a missing argument) read as the
    project's own: one line on stderr naming the option and where the options are listed, exit 2
    (typer alone prints a box of several lines)."""
    from nqsbench.cli import main
    monkeypatch.setattr(sys, "argv", ["nqsbench", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and not out, (exc.value.code, out)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], err
    assert f"(see nqsbench {argv[0]} --help)" in lines[0], err


def test_the_console_script_is_the_one_line_entry_point():
    from importlib.metadata import entry_points
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "nqsbench"]
    assert ep.value == "nqsbench.cli:main"
