"""Executors and record claims (issue 18): a suite on Dask writes the same records as on the
local process pool; a worker killed mid-task is retried; two suites on one results folder never
compute a record twice; claims are taken over only when stale; resource hints reach Dask.

The tiny suite: H chain N_k = 2 (d = 2.2: NQS; d = 3.0: NQS + bands), references copied from the
committed cache into a temporary folder (cache hits), a few dozen to a hundred SR steps.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nqsbench.records import read_record

ROOT = Path(__file__).resolve().parent.parent
distributed = pytest.importorskip("distributed", reason="extra 'dask' not installed")

SUITE = """
name = "tiny"
description = "tiny executor test suite"
[[tasks]]
kind = "reference"
system = "h-chain"
kmesh = [1, 1, 2]
params = { d = [2.2, 3.0] }
methods = ["exact", "hf"]
[[tasks]]
kind = "nqs"
system = "h-chain"
kmesh = [1, 1, 2]
params = { d = 2.2 }
steps = 110
gates = [{ kind = "energy", against = ["exact"] }]
[[tasks]]
kind = "bands"
system = "h-chain"
kmesh = [1, 1, 2]
params = { d = 3.0 }
steps = 120
gates = [{ kind = "energy", against = ["exact"] }]
"""
RESULTS = ["h-chain/d2.2_k1x1x2/nqs-rbm-exact-s0.json", "h-chain/d3_k1x1x2/nqs-rbm-exact-s0.json",
           "h-chain/d3_k1x1x2/nqs-rbm-exact-s0.bands-krylov8-exact.json"]


def make_base(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    (base / "tiny.toml").write_text(SUITE)
    for g in ("d2.2_k1x1x2", "d3_k1x1x2"):
        shutil.copytree(ROOT / "references" / "h-chain" / g, base / "references" / "h-chain" / g)
    return base


def cli(base: Path, *args, wait=True):
    cmd = [sys.executable, "-m", "nqsbench.cli", *map(str, args), "--results", str(base / "results"),
           "--references", str(base / "references")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, COLUMNS="250"), start_new_session=True)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def suite(base: Path, *extra, wait=True):
    return cli(base, "suite", base / "tiny.toml", "--no-progress", *extra, wait=wait)


def assert_clean(base: Path):
    """Every record whole, nothing half-written, no claim left behind."""
    assert not list(base.rglob("*.tmp")), list(base.rglob("*.tmp"))
    assert not list(base.rglob("*.lock")), list(base.rglob("*.lock"))
    for p in (base / "results").rglob("*.json"):
        json.loads(p.read_text())


def energies(base: Path) -> dict[str, float]:
    out = {}
    for rel in RESULTS:
        data = json.loads((base / "results" / rel).read_text())
        out[rel] = data["energy_per_cell"]
        for b in data.get("bands") or []:
            out[f"{rel} band {b['k']}"] = tuple(b["electron"] + b["hole"])
    return out


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The tiny suite on the local process pool (--jobs 2: one XLA/BLAS thread per worker)."""
    base = make_base(tmp_path_factory.mktemp("local"))
    rc, out = suite(base, "--executor", "local", "--jobs", 2)
    assert rc == 0 and "3 computed, 4 fresh" in out, out
    return base


# ----------------------------------------------------------------------------- Dask == local
# The three suite runs below take ~45 s each on 2 loaded cores (a cluster start, JIT, ~100 SR
# steps): marked slow, run with `pytest -m slow tests/test_executors.py`.
@pytest.mark.slow
def test_dask_writes_the_same_records_as_local(local_run, tmp_path):
    base = make_base(tmp_path / "dask")
    rc, out = suite(base, "--executor", "dask", "--jobs", 2)
    assert rc == 0 and "3 computed, 4 fresh" in out and "--executor dask" in out, out
    a, b = energies(local_run), energies(base)
    assert a.keys() == b.keys() and len(a) > 3
    for k in a:          # the seeded NQS on single-threaded workers: bit for bit
        assert a[k] == b[k], (k, a[k], b[k])
    for rel in RESULTS:  # and the same settings and inputs
        ra, rb = read_record(local_run / "results" / rel), read_record(base / "results" / rel)
        assert (ra.settings_hash, ra.input_hash) == (rb.settings_hash, rb.input_hash)
    rc, out = cli(base, "check", base / "tiny.toml")
    assert rc == 0 and "7/7 records present and fresh" in out and "2/2 gates pass" in out, out
    assert_clean(base)


@pytest.mark.slow
def test_dask_worker_killed_mid_task_is_retried(local_run, tmp_path):
    """SIGKILL the worker computing the d = 3.0 ground state (found by its claim's pid): the
    task is rescheduled, the suite finishes, and the records equal the undisturbed run's."""
    base = make_base(tmp_path / "kill")
    target = base / "results" / "h-chain" / "d3_k1x1x2" / "nqs-rbm-exact-s0.json"
    lock = target.with_name(target.name + ".lock")
    proc = suite(base, "--executor", "dask", "--jobs", 2, wait=False)
    t0 = time.time()
    holder = None
    while holder is None:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < 300, "the claim never appeared"
        try:
            holder = json.loads(lock.read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
    assert holder["pid"] != proc.pid
    os.kill(holder["pid"], signal.SIGKILL)
    assert not target.exists(), "the record was written before the kill: the test proves nothing"
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "3 computed, 4 fresh, 0 failed" in out, out
    assert energies(base) == energies(local_run)
    assert_clean(base)
    rc, out = cli(base, "check", base / "tiny.toml")
    assert rc == 0, out


# ----------------------------------------------------------------------------- two suites at once
@pytest.mark.slow
def test_two_suites_at_once_compute_each_record_once(local_run, tmp_path):
    """A local and a Dask suite started together on one folder: every record is computed by
    exactly one of them (the other reports it claimed, then fresh), none is corrupt."""
    base = make_base(tmp_path / "both")
    p1 = suite(base, "--executor", "local", wait=False)
    p2 = suite(base, "--executor", "dask", "--jobs", 1, wait=False)
    outs = [p.communicate(timeout=600)[0] for p in (p1, p2)]
    assert p1.returncode == 0 and p2.returncode == 0, outs
    both = "\n".join(outs)
    for name in ("d=2.2 k1x1x2 nqs-rbm-exact-s0 ", "d=3 k1x1x2 nqs-rbm-exact-s0 ",
                 "d=3 k1x1x2 nqs-rbm-exact-s0.bands-krylov8-exact"):
        computed = [ln for ln in both.splitlines() if ln.startswith("done") and name in ln]
        assert len(computed) == 1, (name, outs)
    assert "claimed by pid" in both or "written by another run" in both, \
        f"the two suites never overlapped: the test proves nothing\n{both}"
    assert energies(base) == energies(local_run)
    assert_clean(base)


# ----------------------------------------------------------------------------- claims
def test_claim_is_exclusive_and_released(tmp_path):
    from nqsbench.store import RecordClaimedError, claim

    rec = tmp_path / "g" / "exact.json"
    with claim(rec) as lock:
        holder = json.loads(lock.read_text())
        assert lock.name == "exact.json.lock" and holder["pid"] == os.getpid()
        with pytest.raises(RecordClaimedError, match=f"claimed by pid {os.getpid()}"):
            with claim(rec):
                pass
        assert lock.exists()
    assert not lock.exists()


def test_claim_heartbeat_refreshes_the_lock(tmp_path):
    from nqsbench.store import claim

    rec = tmp_path / "exact.json"
    with claim(rec, heartbeat_s=0.05) as lock:
        os.utime(lock, (time.time() - 1000, time.time() - 1000))
        time.sleep(0.3)
        assert time.time() - lock.stat().st_mtime < 5


def test_stale_claims_are_taken_over(tmp_path):
    from nqsbench.store import claim, claim_path, claim_stale

    rec = tmp_path / "exact.json"
    lock = claim_path(rec)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "time": 0, "token": "a"}))
    assert "dead" in claim_stale(lock)
    with claim(rec) as got:
        assert json.loads(got.read_text())["pid"] == os.getpid()
    # another host's claim: alive until it is not refreshed for the stale time
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "time": 0, "token": "b"}))
    assert claim_stale(lock) is None
    assert claim_stale(lock, stale_after_s=3600) is None
    os.utime(lock, (time.time() - 7200, time.time() - 7200))
    assert "not refreshed" in claim_stale(lock, stale_after_s=3600)
    with claim(rec, stale_after_s=3600):
        pass
    assert not lock.exists()


def test_a_dead_writers_temporaries_go_with_its_claim(tmp_path):
    """A worker killed mid-write (a stalled one, stopped by the watchdog) leaves its temporary
    files: they go when its claim is released or taken over; another record's stay."""
    import socket

    from nqsbench.store import claim, claim_path, release_stale_claim

    rec = tmp_path / "nqs-rbm-exact-s0.json"
    mine = [tmp_path / ".nqs-rbm-exact-s0.json.ab12.tmp", tmp_path / ".nqs-rbm-exact-s0.params.msgpack.cd34.tmp",
            tmp_path / "nqs-rbm-exact-s0.ckpt" / ".ckpt_001650.npz.ef56.tmp"]
    other = tmp_path / ".nqs-rbm-exact-s0.bands-sector-exact.json.gh78.tmp"    # another record's writer
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for release in (lambda: release_stale_claim(rec), lambda: claim(rec).__enter__()):
        for p in (*mine, other):
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(b"half")
        claim_path(rec).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "time": 0, "token": "a"}))
        release()
        assert not any(p.exists() for p in mine) and other.exists()
    # a live holder's files are not touched
    for p in mine:
        p.write_bytes(b"half")
    claim_path(rec).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "token": "b"}))
    assert release_stale_claim(rec) is False and all(p.exists() for p in mine)


def test_store_run_refuses_a_record_claimed_by_a_live_process(tmp_path):
    from nqsbench import catalog
    from nqsbench.store import RecordClaimedError, Store

    make_base(tmp_path)
    store = Store(tmp_path / "references", tmp_path / "results")
    geom = catalog.load("h-chain").geometry({"d": 2.2}, (1, 1, 2))
    path = store.path("hf", geom)
    before = path.read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        path.with_name(path.name + ".lock").write_text(
            json.dumps({"pid": holder.pid, "host": socket.gethostname(), "time": time.time(), "token": "x"}))
        assert store.run("hf", geom).skipped                    # fresh: no claim needed to read it
        with pytest.raises(RecordClaimedError, match=f"pid {holder.pid}"):
            store.run("hf", geom, force=True)
        assert path.read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    res = store.run("hf", geom, force=True)                     # its holder died: taken over
    assert not res.skipped and not path.with_name(path.name + ".lock").exists()


def test_claimed_jobs_are_rechecked_not_recomputed(tmp_path):
    """run_suite with a record claimed by a 'live' process: reported claimed, waited for, and
    reused once the other process has written it (the fake other process is a thread here)."""
    from nqsbench import catalog
    from nqsbench.store import Store, claim
    from nqsbench.suites import load_suite, run_suite

    base = make_base(tmp_path)
    (base / "tiny.toml").write_text(SUITE.replace("steps = 110", "steps = 5").split("[[tasks]]\nkind = \"bands\"")[0])
    store = Store(base / "references", base / "results")
    s = load_suite(base / "tiny.toml")
    target = base / "results" / "h-chain" / "d2.2_k1x1x2" / "nqs-rbm-exact-s0.json"
    geom = catalog.load("h-chain").geometry({"d": 2.2}, (1, 1, 2))
    ready = threading.Event()

    def other():                     # claims the record, computes it elsewhere, then writes it
        with claim(target):
            ready.set()
            src = Store(base / "references", base / "other").run("nqs", geom, s.tasks[1].settings()).path
            time.sleep(0.5)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target.with_name(".x.tmp"))
            os.replace(target.with_name(".x.tmp"), target)
    t = threading.Thread(target=other)
    t.start()
    ready.wait()
    lines = []
    out = run_suite(s, store, progress=False, echo=lines.append, claim_poll_s=0.1)
    t.join()
    states = {o.job.name: o.state for o in out if o.job.kind == "nqs"}
    assert states == {"nqs-rbm-exact-s0": "skipped"}, lines
    assert any(ln.startswith("claimed") for ln in lines) and any("another run" in ln for ln in lines), lines
    assert not any(ln.startswith("done") and "nqs-rbm" in ln for ln in lines), lines


def test_stalled_workers_are_retried_then_failed_with_no_claim_left(tmp_path):
    """--task-timeout (3 s) far shorter than the tasks (the tiny suite at 2,000,000 steps: a
    quiet machine runs its 110 steps and the JAX start in ~5 s, within the timeout and the 2 s
    grace for the stack dump, so the usual step counts would make this a race; at 20,000 steps a
    fast quiet machine finished the bands task's ground state within it and wrote its record,
    CI 2026-11-27): every task is
    stopped with its stacks printed, retried twice, then reported failed; exit 1, nothing
    written, no claim left behind (the stacks are of the real code, not of a toy)."""
    base = make_base(tmp_path)
    (base / "tiny.toml").write_text(SUITE.replace("steps = 110", "steps = 2000000").replace("steps = 120", "steps = 2000000"))
    rc, out = suite(base, "--jobs", 2, "--task-timeout", 0.05)
    assert rc == 1 and "0 computed, 4 fresh, 3 failed" in out, out
    assert out.count("no result after 0.1 min (stacks above); retrying (2 of 2") == 2, out
    assert "(most recent call first)" in out, out          # faulthandler's dump of the stalled worker
    assert not list((base / "results").rglob("*.json")), list((base / "results").rglob("*"))
    assert_clean(base)


# ----------------------------------------------------------------------------- options, resources
def test_executor_options_are_checked(tmp_path):
    from typer.testing import CliRunner

    from nqsbench.cli import app

    base = make_base(tmp_path)
    r = CliRunner().invoke(app, ["suite", str(base / "tiny.toml"), "--executor", "slurm", "--dry-run"])
    assert r.exit_code == 2 and "--executor 'slurm'" in r.output and "dask" in r.output
    r = CliRunner().invoke(app, ["suite", str(base / "tiny.toml"), "--scheduler", "tcp://x:1", "--dry-run"])
    assert r.exit_code == 2 and "--executor dask" in r.output


def test_resources_are_validated_and_reach_the_jobs(tmp_path):
    from nqsbench.store import Store
    from nqsbench.suites import _task_resources, jobs, load_suite

    base = make_base(tmp_path)
    text = SUITE.replace('steps = 120\n', 'steps = 120\nresources = { cores = 4, memory_gb = 8.5, expected_hours = 0.5 }\n')
    (base / "tiny.toml").write_text(text)
    js = [j for j in jobs(load_suite(base / "tiny.toml"), Store(base / "references", base / "results"))
          if j.params == (("d", 3.0),) and j.kind != "reference"]
    assert len(js) == 2 and all(j.resources.cores == 4 for j in js)
    assert _task_resources(js) == {"cores": 4.0, "memory_gb": 8.5}
    (base / "tiny.toml").write_text(text.replace("cores = 4", "cpus = 4"))
    from typer.testing import CliRunner

    from nqsbench.cli import app

    r = CliRunner().invoke(app, ["check", str(base / "tiny.toml")])
    assert r.exit_code == 2 and "tasks[2].resources.cpus" in r.output


def test_beyond_suite_carries_resource_hints():
    from nqsbench.store import Store
    from nqsbench.suites import jobs, load_suite

    s = load_suite("beyond")
    js = jobs(s, Store(Path("/refs"), Path("/res")))
    heavy = [j for j in js if j.method in ("dmrg", "nqs")]
    assert heavy and all(j.resources and j.resources.cores and j.resources.memory_gb and
                         j.resources.expected_hours for j in heavy)
    assert {j.system for j in heavy if j.method == "dmrg"} == {"h-chain", "graphene", "lih", "polyacetylene"}
    # the records it shares with `full` have the same settings there (else each suite would
    # recompute the other's records forever)
    full = {j.path: j.settings for j in jobs(load_suite("full"), Store(Path("/refs"), Path("/res")))}
    shared = [j for j in js if j.path in full]
    assert len(shared) >= len([j for j in js if j.method == "nqs"])
    assert all(full[j.path] == j.settings for j in shared)


def _identity(items, hooks=None):
    return list(items)


def test_dask_passes_resources_to_a_cluster_that_declares_them():
    """An existing cluster (--scheduler): a task fitting the workers' declared resources runs, a
    task asking for more than any worker has is reported failed with the reason, not hung."""
    from distributed import LocalCluster

    from nqsbench.executors import DaskExecutor, Task

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      resources={"cores": 2, "memory_gb": 4}) as cluster:
        done, died, said = {}, {}, []
        ex = DaskExecutor(1, scheduler=cluster.scheduler_address)
        ex.run([Task("fits", [1, 2], {"cores": 2, "memory_gb": 4}), Task("big", [3], {"cores": 8}),
                Task("plain", [4], {})], _identity, None,
               lambda t, r: done.__setitem__(t.key, r), lambda t, why: died.__setitem__(t.key, why), said.append)
    assert done == {"fits": [1, 2], "plain": [4]}
    assert set(died) == {"big"} and "cores" in died["big"]
    assert any("dashboard" in s for s in said)
