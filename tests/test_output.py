"""Output people read when piped, and ``--json`` for scripts (issue 13).

The CLI runs in a subprocess with stdout piped and ``$COLUMNS`` unset, as ``nqsbench list | cat``
does: rich used to render at 80 columns and cut cells (``polyacet…``, ``20,70…``)."""
import io
import json
import os
import subprocess
import sys
from math import comb
from pathlib import Path


from nqsbench import catalog


def nqsbench(*args, env=None):
    script = Path(sys.executable).with_name("nqsbench")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "nqsbench.cli"]
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_TERMINAL", "TTY_COMPATIBLE")}
    e.update(env or {})
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=e, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_list_piped_is_complete():
    r = nqsbench("list")
    assert r.returncode == 0, r.stderr
    assert "polyacetylene" in r.stdout and "…" not in r.stdout
    assert "c=2.46 angstrom, s=1.185 angstrom, h=0.668 angstrom" in r.stdout   # the widest cell, whole


def test_show_piped_is_complete():
    r = nqsbench("show", "h-chain", "-k", "1,1,8")
    assert r.returncode == 0, r.stderr
    assert "20,705,236" in r.stdout and "K=(0, 0, 7)" in r.stdout and "…" not in r.stdout


def test_check_piped_is_complete(tmp_path):
    """Every method name and detail of the gate table, whole (empty results: many FAIL rows)."""
    r = nqsbench("check", "quick", "--results", tmp_path)
    assert r.returncode == 1, r.stderr
    assert "…" not in r.stdout
    doc = json.loads(nqsbench("check", "quick", "--results", tmp_path, "--json").stdout)
    shown = [row for row in doc["rows"] if not (row["gate"] == "fresh" and row["status"] == "PASS")]
    assert shown
    lines = r.stdout.splitlines()
    for row in shown:   # each row of the table on one line, cells uncut
        assert any(row["method"] in ln and row["detail"] in ln and row["system"] in ln for ln in lines), row


def column(text, i):
    """Column ``i`` of a rich table, its folded pieces joined."""
    return "".join(ln.split("│")[i + 1].strip() for ln in text.splitlines() if ln.startswith("│"))


def test_explicit_columns_still_honoured():
    """$COLUMNS set: rich's width; cells fold onto more lines, never an ellipsis."""
    r = nqsbench("list", env={"COLUMNS": "60"})
    assert r.returncode == 0 and "…" not in r.stdout
    assert max(len(ln) for ln in r.stdout.splitlines()) <= 60
    assert column(r.stdout, 0) == "".join(catalog.available())       # every id whole, folded


def test_table_folds_in_a_narrow_console():
    """Every table of the CLI (list, show, check, bands, compare netket) is cli.Table: it folds."""
    from rich.console import Console

    from nqsbench.cli import Table

    t = Table(title="t")
    t.add_column("a")
    t.add_column("b")
    t.add_row("polyacetylene-and-more", "20,705,236")
    buf = io.StringIO()
    Console(file=buf, width=20).print(t)
    out = buf.getvalue()
    assert "…" not in out and max(len(ln) for ln in out.splitlines()) <= 20
    assert column(out, 0) == "polyacetylene-and-more" and column(out, 1) == "20,705,236"


def test_piped_console_width():
    from nqsbench.cli import PIPE_WIDTH, _Console

    assert _Console(file=io.StringIO()).width == PIPE_WIDTH
    assert _Console(file=io.StringIO(), width=70).width == 70


# ----------------------------------------------------------------------------- --json
def test_list_json():
    r = nqsbench("list", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["catalog"] and [s["id"] for s in doc["systems"]] == catalog.available()
    poly = next(s for s in doc["systems"] if s["id"] == "polyacetylene")
    assert set(poly) == {"id", "description", "dimension", "basis", "atoms", "kmesh", "tier", "frozen_core",
                         "parameters"}
    assert poly["atoms"] == ["C", "C", "H", "H"] and poly["parameters"]["c"] == {"default": 2.46,
                                                                                  "unit": "angstrom", "scan": [2.46]}


def test_show_json_sector_sizes():
    """Σ_K dim(N↑, N↓, K) = C(M, N↑)·C(M, N↓): the sector sizes of the JSON add up."""
    r = nqsbench("show", "h-chain", "-k", "1,1,4", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["nk"] == 4 and doc["spatial_orbitals"] == 8 and doc["spin_orbitals"] == 16 and doc["n_up"] == 4
    m = doc["spatial_orbitals"]
    for nu, nd in ((4, 4), (5, 4), (3, 4)):
        dims = [s["dim"] for s in doc["sectors"] if (s["n_up"], s["n_dn"]) == (nu, nd)]
        assert len(dims) == 4 and sum(dims) == comb(m, nu) * comb(m, nd)
    big = json.loads(nqsbench("show", "h-chain", "-k", "1,1,8", "--json").stdout)
    assert 20_705_236 in [s["dim"] for s in big["sectors"]]


def test_check_json(tmp_path):
    r = nqsbench("check", "quick", "--results", tmp_path, "--json")
    assert r.returncode == 1          # the same exit status as the table: records are missing
    doc = json.loads(r.stdout)
    assert doc["suite"] == "quick" and doc["passed"] is False and doc["failures"] > 0
    assert doc["records"]["total"] == sum(row["gate"] == "fresh" for row in doc["rows"])
    assert set(doc["rows"][0]) == {"gate", "system", "geometry", "kmesh", "method", "value", "limit", "reference",
                                   "status", "detail", "path"}
    assert "[" not in r.stdout.split('"rows"')[0].replace('"rows"', "")  # no rich markup before the rows


def test_table_json_matches_csv(tmp_path):
    import pandas as pd

    csv = nqsbench("table", "--skip-invalid", "--results", tmp_path)
    js = nqsbench("table", "--json", "--skip-invalid", "--results", tmp_path)
    fmt = nqsbench("table", "--format", "json", "--skip-invalid", "--results", tmp_path)
    assert csv.returncode == js.returncode == fmt.returncode == 0, js.stderr
    assert js.stdout == fmt.stdout
    doc = json.loads(js.stdout)
    df = pd.read_csv(io.StringIO(csv.stdout))
    assert doc["columns"] == list(df.columns) and len(doc["records"]) == len(df) > 0
    for rec in doc["records"]:
        assert list(rec) == doc["columns"]
    exact = [r for r in doc["records"] if r["method"] == "exact"]
    assert exact and all(r["delta_vs_exact_mha"] == 0.0 for r in exact if r["converged"])
    assert any(v is None for r in doc["records"] for v in r.values())   # NaN → null, valid JSON


def test_suite_dry_run_json(tmp_path):
    r = nqsbench("suite", "quick", "--dry-run", "--json", "--results", tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["suite"] == "quick" and doc["to_run"] == sum(j["action"] == "run" for j in doc["jobs"]) > 0
    assert doc["fresh"] == sum(j["action"] == "fresh" for j in doc["jobs"])
    assert all(j["reason"] for j in doc["jobs"] if j["action"] == "run")
    bad = nqsbench("suite", "quick", "--json", "--results", tmp_path)
    assert bad.returncode == 2 and "--dry-run" in bad.stderr and not list(tmp_path.iterdir())
