"""Suites, gates, reports and the records table, on a tiny suite (H chain N_k = 2, few steps).

Results and references go to temporary folders ($NQSBENCH_RESULTS / $NQSBENCH_REFERENCES): the
references needed are copied from the committed cache, so they are cache hits; nothing is written
into the repository.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nqsbench.cli import app
from nqsbench.records import ResultRecord, read_record

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

TINY = """
name = "{name}"
description = "tiny test suite"
[[tasks]]
kind = "reference"
system = "h-chain"
kmesh = [1, 1, 2]
params = {{ d = [2.2, 3.0] }}
methods = ["exact", "hf"]
[[tasks]]
kind = "nqs"
system = "h-chain"
kmesh = [1, 1, 2]
params = {{ d = 2.2 }}
steps = {steps1}
init = "hf"
gates = [{{ kind = "energy", against = ["exact"] }}]
[[tasks]]
kind = "bands"
system = "h-chain"
kmesh = [1, 1, 2]
params = {{ d = 3.0 }}
steps = {steps2}
gates = [{{ kind = "energy" }}, {{ kind = "bands", against = ["exact_state_subspace"], max_mae_mev = 43.5 }},
         {{ kind = "v_score", max = 0.1 }}]
"""


# The d = 2.2 task starts at hf: the gate tests shift its energy by ±2 mHa and need it near exact
# after 120 steps (hf: +0.07 mHa/cell; the random start of init = "auto": +0.37 and +0.83 on two builds,
# its trajectory depends on the build's orbital phases).
def write_suite(folder: Path, name="tiny", steps1=120, steps2=200, text=None) -> Path:
    p = folder / f"{name}.toml"
    p.write_text(text if text is not None else TINY.format(name=name, steps1=steps1, steps2=steps2))
    return p


def copy_references(dest: Path, geoms=("d2.2_k1x1x2", "d3_k1x1x2")) -> Path:
    for g in geoms:
        shutil.copytree(ROOT / "references" / "h-chain" / g, dest / "h-chain" / g, dirs_exist_ok=True)
    return dest


def roots_args(base: Path) -> list[str]:
    return ["--results", str(base / "results"), "--references", str(base / "references")]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny suite run once (sequentially, in-process): base folder with suite, references, results."""
    base = tmp_path_factory.mktemp("suite")
    write_suite(base)
    copy_references(base / "references")
    res = invoke("suite", base / "tiny.toml", "--no-progress", *roots_args(base))
    assert res.exit_code == 0, res.output
    assert "3 computed" in res.output and "4 fresh" in res.output, res.output
    return base


def resign(path: Path, data: dict) -> None:
    """Write changed record contents as a method that produced those numbers would have (content
    checksum recomputed); a hand edit without it is refused as a changed record."""
    from nqsbench.records import content_checksum

    path.write_text(json.dumps(dict(data, checksum=content_checksum(data))))


def clone(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest)
    return dest


# ----------------------------------------------------------------------------- suite files
def test_shipped_suites_validate_and_agree():
    """quick, paper, full and nqs-accuracy load; a record asked for by two suites has the same
    settings in both (else each suite would recompute the other's record forever)."""
    from nqsbench.store import Store
    from nqsbench.suites import jobs, load_suite

    roots = Store(Path("/refs"), Path("/res"))
    seen: dict = {}
    counts = {}
    for name in ("quick", "paper", "full", "nqs-accuracy", "models"):
        suite = load_suite(name)
        js = jobs(suite, roots)
        counts[name] = len(js)
        for j in js:
            old = seen.setdefault(j.path, (name, j.settings))
            assert old[1] == j.settings, f"{j.label()}: {old[0]} and {name} disagree"
    assert counts["quick"] < counts["paper"] < counts["full"]
    quick = load_suite("quick")
    gated = [j for j in jobs(quick, roots) if j.gates]
    assert {j.system for j in gated} == {"h-chain", "lih", "graphene"}
    assert {j.kmesh for j in gated if j.system == "h-chain"} == {(1, 1, 2), (1, 1, 4)}


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace('description = "tiny test suite"', 'description = "x"\ncolour = "red"'), "colour"),
    (lambda t: t.replace("steps = 120", "steps = -3", 1), "tasks[1].steps"),
    (lambda t: t.replace('kind = "nqs"', 'kind = "nqsx"'), "tasks[1].kind"),
    (lambda t: t.replace('against = ["exact"] }]', 'against = ["exact"], tol = 2 }]'), "tasks[1].gates[0].tol"),
    (lambda t: t.replace('{ kind = "energy" }', '{ kind = "speed" }'), "tasks[2].gates[0]"),
    (lambda t: t.replace('params = { d = 2.2 }', 'params = { q = 2.2 }'), "tasks[1]"),
    (lambda t: t.replace('name = "tiny"', 'name = "other"'), "name"),
])
def test_bad_suite_is_one_line_exit_2(tmp_path, edit, field):
    p = write_suite(tmp_path, text=edit(TINY.format(name="tiny", steps1=120, steps2=200)))
    res = invoke("check", p, *roots_args(tmp_path))
    assert res.exit_code == 2, res.output
    assert str(p) in res.output and f"'{field}" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "results").exists()


def test_unknown_suite_names_the_available_ones():
    res = invoke("check", "nosuchsuite")
    assert res.exit_code == 2 and "quick" in res.output and "paper" in res.output


def test_suite_named_like_a_folder_is_the_suite(monkeypatch):
    """`nqsbench suite references` from the checkout, where references/ is also a folder."""
    monkeypatch.chdir(ROOT)
    res = runner.invoke(app, ["suite", "references", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["suite"] == "references"


def test_record_clash_between_tasks_is_refused(tmp_path):
    text = TINY.format(name="tiny", steps1=120, steps2=150).replace("params = { d = 3.0 }", "params = { d = 2.2 }")
    res = invoke("suite", write_suite(tmp_path, text=text), "--dry-run", *roots_args(tmp_path))
    assert res.exit_code == 2 and "label" in res.output


def test_task_kind_registry_plugs_in_a_new_kind(tmp_path):
    from typing import Literal

    from nqsbench import suites

    class EchoTask(suites.TaskBase):
        kind: Literal["echo"]

    suites.register_task_kind("echo", EchoTask, lambda task, i, geom, roots: [])
    try:
        p = write_suite(tmp_path, text='name = "tiny"\ndescription = "x"\n[[tasks]]\nkind = "echo"\nsystem = "h-chain"\n')
        assert suites.jobs(suites.load_suite(p)) == []
    finally:
        suites.TASK_KINDS.pop("echo")
        suites._EXPANDERS.pop("echo")


# ----------------------------------------------------------------------------- gates
def test_honest_records_pass_every_gate(tiny):
    res = invoke("check", tiny / "tiny.toml", *roots_args(tiny))
    assert res.exit_code == 0, res.output
    assert "7/7 records present and fresh" in res.output and "4/4 gates pass" in res.output


@pytest.mark.parametrize("shift_mha", [+2.0, -2.0])
def test_gate_fails_on_2_mha_perturbation(tiny, tmp_path, shift_mha):
    base = clone(tiny, tmp_path / "c")
    path = base / "results" / "h-chain" / "d2.2_k1x1x2" / "nqs-rbm-exact-s0.json"
    data = json.loads(path.read_text())
    data["energy_per_cell"] += shift_mha * 1e-3
    resign(path, data)
    res = runner.invoke(app, ["check", str(base / "tiny.toml"), *roots_args(base)], env={"COLUMNS": "250"})
    assert res.exit_code == 1, res.output
    fail = [ln for ln in res.output.splitlines() if "FAIL" in ln and ln.startswith("│")]
    assert len(fail) == 1 and "energy" in fail[0] and "d=2.2" in fail[0] and "nqs-rbm-exact-s0" in fail[0], res.output


def test_energy_gate_widens_with_the_monte_carlo_error_bar(tiny):
    """|ΔE| ≤ 1.6 + 2σ: a 2 mHa deviation passes with σ = 0.3 mHa, fails with σ = 0.1 mHa."""
    from nqsbench.gates import EnergyGate
    from nqsbench.store import Store
    from nqsbench.suites import jobs, load_suite, read

    roots = Store(tiny / "references", tiny / "results")
    job = next(j for j in jobs(load_suite(tiny / "tiny.toml"), roots) if j.kind == "nqs" and j.gates)
    rec = read(job)
    exact = read_record(tiny / "references" / "h-chain" / "d2.2_k1x1x2" / "exact.json")
    gate = EnergyGate(kind="energy")
    for sigma, ok in ((0.3e-3, "PASS"), (0.1e-3, "FAIL")):
        fake = rec.model_copy(update={"energy_per_cell": exact.energy_per_cell + 2e-3, "energy_error": sigma})
        assert gate.evaluate(job, fake, roots).status == ok
    # the best available reference: exact missing → the next one in 'against' is used
    row = EnergyGate(kind="energy", against=["dmrg", "exact"]).evaluate(job, rec, roots)
    assert row.status == "PASS" and row.reference == "exact"
    row = EnergyGate(kind="energy", against=["dmrg"]).evaluate(job, rec, roots)
    assert row.status == "FAIL" and "dmrg: missing" in row.detail


def test_band_and_vscore_gates_fail_when_perturbed(tiny, tmp_path):
    base = clone(tiny, tmp_path / "c")
    folder = base / "results" / "h-chain" / "d3_k1x1x2"
    bpath = folder / "nqs-rbm-exact-s0.bands-krylov8-exact.json"
    data = json.loads(bpath.read_text())
    for b in data["bands"]:
        b["electron"] = [e + 0.01 for e in b["electron"]]      # +272 meV on every electron band
    resign(bpath, data)
    rpath = folder / "nqs-rbm-exact-s0.json"
    data = json.loads(rpath.read_text())
    data["v_score"] = 0.5
    resign(rpath, data)
    res = runner.invoke(app, ["check", str(base / "tiny.toml"), *roots_args(base)], env={"COLUMNS": "250"})
    assert res.exit_code == 1
    fails = [ln for ln in res.output.splitlines() if "FAIL" in ln and ln.startswith("│")]
    assert any(ln.split()[1] == "bands" for ln in fails) and any("v_score" in ln for ln in fails), res.output


def test_stale_records_fail_the_freshness_gate(tiny, tmp_path):
    base = clone(tiny, tmp_path / "c")
    # the suite now asks for more steps: the record no longer matches the suite's settings
    write_suite(base, steps1=130)
    path = base / "results" / "h-chain" / "d3_k1x1x2" / "nqs-rbm-exact-s0.json"
    data = json.loads(path.read_text())
    data["input_hash"] = "0" * 16                              # as if built from other inputs
    resign(path, data)
    res = runner.invoke(app, ["check", str(base / "tiny.toml"), *roots_args(base)], env={"COLUMNS": "300"})
    assert res.exit_code == 1
    assert "settings differ: steps 120 ≠ 130" in res.output and "input hash 0000000000000000" in res.output
    # and the bands computed from that run are stale with it
    dry = invoke("suite", base / "tiny.toml", "--dry-run", *roots_args(base))
    assert "3 to run" in dry.output, dry.output


def test_a_budget_the_run_never_reached_keeps_its_record_fresh(tmp_path):
    """An auto-steps record made with max_minutes = 30 that converged in 15 minutes is what the
    same settings without that budget compute; a budget that would have stopped it sooner, any
    other setting, or a run that did not converge make it stale."""
    from nqsbench import catalog
    from nqsbench.methods.registry import get as get_method
    from nqsbench.store import Store

    src = ROOT / "records" / "defaults-auto" / "h-chain" / "d3_k1x1x4" / "nqs-nnbf-exact-s0-defaults.json"
    made = read_record(src)
    assert made.settings.max_minutes == 30 and made.converged and made.provenance.wall_time_s < 20 * 60
    store = Store(tmp_path / "references", tmp_path / "results")
    geom = catalog.load("h-chain").geometry({"d": 3.0}, (1, 1, 4))
    m = get_method("nqs")
    folder = store.path(m, geom, made.settings).parent
    folder.mkdir(parents=True)
    shutil.copy(src, folder / src.name)

    def status(**changes):
        return store.status(m, geom, made.settings.model_copy(update=changes), folder / src.name)

    st = status(max_minutes=None)
    assert st.fresh and "max_minutes 30.0" in st.reason and "600 steps" in st.reason, st.reason
    assert status(max_minutes=None, max_steps=600).fresh
    assert not status(max_minutes=10.0).fresh                      # would have stopped it at 10 min
    assert not status(max_minutes=None, max_steps=599).fresh
    assert not status(max_minutes=None, seed=1).fresh
    lr = made.settings.optimizer.model_copy(update={"lr": 0.05})
    assert "settings differ" in status(max_minutes=None, optimizer=lr).reason
    data = json.loads(src.read_text())
    data["converged"] = False
    resign(folder / src.name, data)
    assert not status(max_minutes=None).fresh                     # its budget may have stopped it


def test_auto_settings_are_compared_as_they_resolve_on_the_system(tmp_path):
    """Freshness compares what runs: a record written as alpha 4 / init random is what alpha =
    "auto" / init = "auto" computes on the H chain N_k = 4 (16 spin-orbitals, 1 236 configurations
    ≥ the 1 104 parameters of α = 4), and a record written as "auto" that ran another value than
    auto means today is stale; what it ran is read from its details (today's rule where they are
    silent)."""
    from nqsbench import catalog
    from nqsbench.methods.nqs import ran_settings, resolve_autos, sector_size
    from nqsbench.methods.registry import get as get_method
    from nqsbench.store import Store

    src = ROOT / "records" / "defaults-auto" / "h-chain" / "d1.8_k1x1x4" / "nqs-rbm-exact-s0-defaults.json"
    made = read_record(src)
    assert made.settings.model.alpha == 4.0 and made.settings.init == "random"
    geom = catalog.load("h-chain").geometry({"d": 1.8}, (1, 1, 4))
    assert sector_size(geom, made.sector) == (16, 1236)
    m = get_method("nqs")
    auto = m.settings_from(model={"kind": "rbm"})               # alpha = init = "auto"
    assert auto.model.alpha == "auto" and auto.init == "auto"
    assert resolve_autos(auto, 16, 1236).model.alpha == 4.0 and resolve_autos(auto, 16, 1104).model.alpha == 4.0
    assert resolve_autos(auto, 16, 1103).model.alpha == 2.0 and resolve_autos(auto, 24, 10**6).init == "hf"
    store = Store(tmp_path / "references", tmp_path / "results")
    folder = store.path(m, geom, auto).parent
    folder.mkdir(parents=True)
    path = folder / src.name
    shutil.copy(src, path)

    def status(want):
        return store.status(m, geom, want, path)

    st = status(auto)
    assert st.fresh and "the same on this system" in st.reason, st.reason
    assert status(made.settings).fresh and status(made.settings).reason == "fresh"
    assert "settings differ" in status(auto.model_copy(update={"init": "hf"})).reason
    two = auto.model_copy(update={"model": auto.model.model_copy(update={"alpha": 2.0})})
    assert "settings differ" in status(two).reason
    # written as "auto", ran α = 2 (what auto meant under another rule): stale, and says why
    data = json.loads(src.read_text())
    data["settings"].update(init="auto", model={"kind": "rbm", "alpha": "auto"})
    data["settings_hash"] = auto.settings_hash()
    data["details"]["model"]["alpha"] = 2.0
    resign(path, data)
    ran = ran_settings(read_record(path), 16, 1236)
    assert ran.model.alpha == 2.0 and ran.init == "random"      # no "start" in these details: today's rule
    st = status(auto)
    assert not st.fresh and "what they mean on this system" in st.reason and "model.alpha 2.0 ≠ 4.0" in st.reason, st.reason
    data["details"]["model"]["alpha"] = 4.0
    data["details"]["start"] = "hf"
    resign(path, data)
    assert "init 'hf' ≠ 'random'" in status(auto).reason
    data["details"]["start"] = "random"
    resign(path, data)
    assert status(auto).fresh and status(auto).reason == "fresh"
    assert status(made.settings).fresh                           # written 4 / random, ran 4 / random
    # N_k = 6 (24 spin-orbitals): the Markov-chain record written as "auto" ran α = 2, the hf start
    # and the trust region |δ| ≤ 1 (max_norm), within a budget it never reached
    src = ROOT / "records" / "defaults-auto" / "h-chain" / "d1.8_k1x1x6" / "nqs-rbm-mcmc-s0-defaults.json"
    made = read_record(src)
    assert made.settings.optimizer.max_norm == "auto" and made.settings.max_minutes == 30 and made.converged
    geom = catalog.load("h-chain").geometry({"d": 1.8}, (1, 1, 6))
    want = m.settings_from(sampler="mcmc", model={"kind": "rbm", "alpha": 2.0}, init="hf", max_norm=1.0)
    path = store.path(m, geom, want)
    path.parent.mkdir(parents=True)
    shutil.copy(src, path)
    st = store.status(m, geom, want, path)
    assert st.fresh and "within the budgets" in st.reason and "the same on this system" in st.reason, st.reason
    assert not store.status(m, geom, want.model_copy(update={"init": "random"}), path).fresh


def test_corrupt_records_are_reported_by_path(tiny, tmp_path):
    base = clone(tiny, tmp_path / "c")
    bad = base / "results" / "h-chain" / "d2.2_k1x1x2" / "nqs-rbm-exact-s0.json"
    bad.write_text('{"kind": "nqs", "method": "nqs-rbm"')                   # cut short
    invalid = base / "references" / "h-chain" / "d3_k1x1x2" / "hf.json"
    data = json.loads(invalid.read_text())
    data["energy_per_cell"] = "low"                                         # schema-invalid
    invalid.write_text(json.dumps(data))
    env = {"COLUMNS": "400"}
    res = runner.invoke(app, ["check", str(base / "tiny.toml"), *roots_args(base)], env=env)
    out = re.sub(r"[\s│]+", "", res.output)       # the table may fold long paths
    assert res.exit_code == 1 and str(bad).replace(" ", "") in out
    assert str(invalid).replace(" ", "") in out and "energy_per_cell" in out
    res = runner.invoke(app, ["table", *roots_args(base)], env=env)
    assert res.exit_code == 2 and str(bad) in res.output and str(invalid) in res.output
    assert "2 invalid record file(s)" in res.output
    res = runner.invoke(app, ["table", "--skip-invalid", *roots_args(base)], env=env)
    assert res.exit_code == 0 and str(bad) in res.output
    res = runner.invoke(app, ["report", str(base / "tiny.toml"), "--out", str(base / "rep"), *roots_args(base)], env=env)
    assert res.exit_code == 2 and "invalid record" in res.output and not (base / "rep").exists()
    # the suite recomputes them, and says so with the path
    res = runner.invoke(app, ["suite", str(base / "tiny.toml"), "--dry-run", *roots_args(base)], env=env)
    assert str(bad) in res.output.replace("\n", "")


# ----------------------------------------------------------------------------- resumability
def test_suite_killed_midway_resumes_without_recomputing(tmp_path):
    """Kill `nqsbench suite` (SIGKILL) once the first NQS record exists; the rerun keeps that
    record (same mtime and provenance), finishes the rest, and no half-written file remains."""
    write_suite(tmp_path, steps1=20, steps2=2000)
    copy_references(tmp_path / "references")
    first = tmp_path / "results" / "h-chain" / "d2.2_k1x1x2" / "nqs-rbm-exact-s0.json"
    second = tmp_path / "results" / "h-chain" / "d3_k1x1x2" / "nqs-rbm-exact-s0.json"
    cmd = [sys.executable, "-m", "nqsbench.cli", "suite", str(tmp_path / "tiny.toml"), "--no-progress",
           *roots_args(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=dict(os.environ))
    t0 = time.time()
    while not first.exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() - t0 < 240, "first record never appeared"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not second.exists(), "the suite finished before the kill: the test proves nothing"
    stamp, created = first.stat().st_mtime_ns, read_record(first, ResultRecord).provenance.created
    res = invoke("suite", tmp_path / "tiny.toml", "--no-progress", *roots_args(tmp_path))
    assert res.exit_code == 0, res.output
    assert "2 computed" in res.output and "5 fresh" in res.output, res.output
    assert first.stat().st_mtime_ns == stamp
    assert read_record(first, ResultRecord).provenance.created == created
    assert read_record(second, ResultRecord).n_steps == 2000
    assert not list(tmp_path.rglob("*.tmp"))
    for p in (tmp_path / "results").rglob("*.json"):
        json.loads(p.read_text())                                  # every record is whole


def test_parallel_jobs_match_sequential(tiny, tmp_path):
    """--jobs 2 (spawned processes) writes the same records as the sequential run."""
    base = tmp_path / "p"
    base.mkdir()
    write_suite(base)
    copy_references(base / "references")
    res = invoke("suite", base / "tiny.toml", "--jobs", 2, "--no-progress", *roots_args(base))
    assert res.exit_code == 0 and "3 computed" in res.output, res.output
    for rel in ("h-chain/d2.2_k1x1x2/nqs-rbm-exact-s0.json", "h-chain/d3_k1x1x2/nqs-rbm-exact-s0.json"):
        a = read_record(tiny / "results" / rel, ResultRecord)
        b = read_record(base / "results" / rel, ResultRecord)
        assert abs(a.energy_per_cell - b.energy_per_cell) < 1e-9


# ----------------------------------------------------------------------------- report and table
class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href"):
                self.links.append(v)


def test_report_references_existing_figures(tiny, tmp_path):
    out = tmp_path / "rep"
    res = invoke("report", tiny / "tiny.toml", "--out", out, *roots_args(tiny))
    assert res.exit_code == 0, res.output
    html = (out / "index.html").read_text()
    parser = _Links()
    parser.feed(html)
    assert parser.links and all(not Path(u).is_absolute() and (out / u).is_file() for u in parser.links)
    md_links = re.findall(r"\]\(([^)]+)\)", (out / "index.md").read_text())
    assert md_links and all((out / u).is_file() for u in md_links)
    stems = {p.stem for p in (out / "figures").iterdir()}
    for stem in ("energy_h-chain_k1x1x2", "nqs_traces", "vscore_vs_error", "bands_h-chain_d3_k1x1x2"):
        assert stem in stems and (out / "figures" / f"{stem}.png").is_file() and (out / "figures" / f"{stem}.svg").is_file()
    assert "all gates pass" in html
    # regenerated, not edited: a second run replaces the folder (a stray file disappears)
    (out / "stray.txt").write_text("x")
    assert invoke("report", tiny / "tiny.toml", "--out", out, *roots_args(tiny)).exit_code == 0
    assert not (out / "stray.txt").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless chromium on this machine")
def test_report_renders_in_headless_chromium(tiny, tmp_path):
    """Load the HTML in a real browser and check every image decoded (naturalWidth > 0)."""
    out = tmp_path / "rep"
    assert invoke("report", tiny / "tiny.toml", "--out", out, *roots_args(tiny)).exit_code == 0
    probe = out / "probe.html"
    probe.write_text((out / "index.html").read_text().replace(
        "</body>", "<script>window.onload=()=>{const b=[...document.images].filter(i=>!i.naturalWidth);"
        "document.title='IMAGES '+document.images.length+' BROKEN '+b.length;}</script></body>"))
    res = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    m = re.search(r"<title>IMAGES (\d+) BROKEN (\d+)</title>", res.stdout)
    assert m, res.stderr[-2000:]
    assert int(m.group(1)) >= 4 and m.group(2) == "0"


def test_table_formats(tiny, tmp_path):
    import pandas as pd

    n = len([p for p in (tiny / "references").rglob("*.json")] + [p for p in (tiny / "results").rglob("*.json")])
    res = invoke("table", "--format", "csv", *roots_args(tiny))
    assert res.exit_code == 0
    from io import StringIO

    df = pd.read_csv(StringIO(res.stdout))
    assert len(df) == n and {"system", "geometry", "kmesh", "method", "energy_per_cell", "delta_vs_exact_mha",
                             "v_score", "git_commit"} <= set(df.columns)
    nqs = df[(df["kind"] == "nqs") & (df["geometry"] == "d=2.2")]
    assert len(nqs) == 1 and abs(nqs["delta_vs_exact_mha"].iloc[0]) < 1.6
    pq = tmp_path / "t.parquet"
    assert invoke("table", "--format", "parquet", "--out", pq, *roots_args(tiny)).exit_code == 0
    assert len(pd.read_parquet(pq)) == n
    res = invoke("table", "--format", "md", *roots_args(tiny))
    assert res.exit_code == 0 and res.stdout.startswith("| kind")
    res = invoke("table", "--format", "xls", *roots_args(tiny))
    assert res.exit_code == 2 and "--format" in res.output


def test_lr_schedule_and_trust_region_settings_round_trip(tmp_path):
    """A record made with a decaying lr and a trust region reads back as the task that asked for
    it (so the freshness gate sees it as current), and as a different one without them."""
    from nqsbench import catalog
    from nqsbench.store import Store
    from nqsbench.suites import NQSTask

    task = NQSTask(kind="nqs", system="h-chain", kmesh=[1, 1, 2], params={"d": 2.2}, steps=3,
                   lr=0.2, lr_final=0.05, max_norm=2.0)
    geom = catalog.load("h-chain").geometry({"d": 2.2}, (1, 1, 2))
    store = Store(tmp_path / "references", tmp_path / "results")
    path = store.run("nqs", geom, task.settings()).path
    rec = read_record(path, ResultRecord)
    assert rec.details["optimizer"]["learning_rate"] == {"schedule": "cosine", "init": 0.2, "final": 0.05, "steps": 3}
    assert rec.settings == task.settings()
    assert rec.settings != task.model_copy(update={"lr_final": 0.0}).settings()
    assert rec.settings != task.model_copy(update={"max_norm": None}).settings()
    assert store.status("nqs", geom, task.settings()).fresh
    assert not store.status("nqs", geom, task.model_copy(update={"lr_final": 0.0}).settings(), path).fresh


# ----------------------------------------------------------------------------- per-task reference settings
SETTINGS_SUITE = """
name = "tiny"
description = "reference settings per task"
[[tasks]]
kind = "reference"
system = "h-chain"
kmesh = [1, 1, 2]
params = { d = 2.2 }
methods = ["exact", "hf"]
settings = { exact = { n_roots = 3, bands = false } }
[[tasks]]
kind = "nqs"
system = "h-chain"
kmesh = [1, 1, 2]
params = { d = 2.2 }
steps = 5
gates = [{ kind = "energy", against = ["exact"] }]
"""


def test_reference_task_settings_reach_the_record_and_the_gates(tmp_path):
    """A reference task's ``settings`` table is what its record is computed with, and what the
    gates of the same geometry look the reference up with (the defaults would call it stale)."""
    from dataclasses import replace

    from nqsbench import gates
    from nqsbench.store import Store
    from nqsbench.suites import jobs, load_suite

    store = Store(tmp_path / "references", tmp_path / "results")
    js = jobs(load_suite(write_suite(tmp_path, text=SETTINGS_SUITE)), store)
    ex = next(j for j in js if j.method == "exact")
    assert ex.settings.n_roots == 3 and ex.settings.bands is False
    assert next(j for j in js if j.method == "hf").reference_settings == (("exact", ex.settings),)
    nqs = next(j for j in js if j.method == "nqs")
    assert dict(nqs.reference_settings)["exact"] == ex.settings
    store.run("exact", ex.geom, ex.settings, path=ex.path)
    m, rec, _ = gates._reference(nqs, ["exact"], store)
    assert m == "exact" and rec.settings.n_roots == 3
    m, rec, why = gates._reference(replace(nqs, reference_settings=()), ["exact"], store)
    assert rec is None and "settings differ" in why and "n_roots" in why


@pytest.mark.parametrize("table, words", [
    ("{ mp2 = {} }", ["settings.mp2", "not among this task's methods"]),
    ("{ exact = { n_roots = 0 } }", ["settings.exact.n_roots", "greater than or equal to 1"]),
    ("{ exact = { colour = 1 } }", ["settings.exact.colour"]),
])
def test_bad_reference_settings_are_one_line_exit_2(tmp_path, table, words):
    text = SETTINGS_SUITE.replace("{ exact = { n_roots = 3, bands = false } }", table)
    p = write_suite(tmp_path, text=text)
    res = invoke("check", p, *roots_args(tmp_path))
    assert res.exit_code == 2, res.output
    assert all(w in res.output for w in words) and "Traceback" not in res.output, res.output
    assert not (tmp_path / "results").exists()
