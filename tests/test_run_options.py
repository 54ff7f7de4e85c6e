"""Checkpoints every N steps, relocated reference caches, ``reference exact --force`` (issue 13)."""
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from nqsbench import catalog
from nqsbench.cli import app
from nqsbench.config import references_dir
from nqsbench.methods import RunContext
from nqsbench.methods.nqs import nqs_settings
from nqsbench.records import ResultRecord, read_record, trace_path
from nqsbench.store import Store

runner = CliRunner()
RUN = ["run", "h-chain", "-p", "d=1.8", "-k", "1,1,2", "--no-progress"]


def ckpts(out):
    return sorted(p.name for p in out.with_name(out.stem + ".ckpt").glob("ckpt_*.npz"))


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_every_50_steps_by_default(tmp_path):
    """A run of 53 steps with the time interval out of reach leaves the step-50 checkpoint (and
    the final one); --checkpoint-steps 0 leaves only the final one."""
    out = tmp_path / "r.json"
    res = runner.invoke(app, [*RUN, "--steps", "53", "--checkpoint-every", "1e9", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert ckpts(out) == ["ckpt_000050.npz", "ckpt_000053.npz"]
    out0 = tmp_path / "r0.json"
    res = runner.invoke(app, [*RUN, "--steps", "53", "--checkpoint-every", "1e9", "--checkpoint-steps", "0",
                              "--out", str(out0)])
    assert res.exit_code == 0, res.output
    assert ckpts(out0) == ["ckpt_000053.npz"]
    res = runner.invoke(app, [*RUN, "--steps", "3", "--checkpoint-steps", "-1", "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_killed_run_resumes_from_the_step_checkpoint(tmp_path):
    """Killed at step 52 (before any time-based checkpoint): the step-50 checkpoint is there, and
    --resume finishes the run with the trace of an uninterrupted one."""
    geom = catalog.load("h-chain").geometry({"d": 1.8}, (1, 1, 2))
    store = Store.default(tmp_path / "refs", tmp_path / "res")
    out = tmp_path / "k.json"

    def kill(step, total):
        if step == 52:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        store.run("nqs", geom, nqs_settings("exact", steps=53), path=out, force=True,
                  ctx=RunContext(resume=False, checkpoint_every=1e9, on_step=kill))
    assert ckpts(out) == ["ckpt_000050.npz"] and not out.exists()
    res = runner.invoke(app, [*RUN, "--steps", "53", "--resume", "--out", str(out)])
    assert res.exit_code == 0, res.output
    full = tmp_path / "full.json"
    assert runner.invoke(app, [*RUN, "--steps", "53", "--out", str(full)]).exit_code == 0
    assert read_record(out, ResultRecord).n_steps == 53
    a, b = pd.read_csv(trace_path(out)), pd.read_csv(trace_path(full))
    assert len(a) == 53 and (a["energy"].to_numpy() == b["energy"].to_numpy()).all()


def test_a_diverged_run_goes_back_and_on_at_half_the_rate(tmp_path):
    """The divergence guard's error at step 33 (raised here by a callback): the run goes back to the
    state kept at step 20 (the older of the two kept, 10 and 20 steps apart), halves the learning
    rate, drops the checkpoint of the abandoned path and finishes; its first 20 steps are an
    uninterrupted run's, the record says where it went back. Diverging again and again, it gives up
    after two rollbacks and writes nothing."""
    from nqsbench.nqs import DivergenceError

    geom = catalog.load("h-chain").geometry({"d": 1.8}, (1, 1, 2))
    store = Store.default(tmp_path / "refs", tmp_path / "res")
    notes = []

    def diverge_once(step, total, done=[]):
        if step == 34 and not done:
            done.append(step)
            raise DivergenceError("step 33: energy rose (simulated)")

    out = tmp_path / "r.json"
    ctx = RunContext(resume=False, checkpoint_every=1e9, checkpoint_steps=10, on_step=diverge_once, log=notes.append)
    store.run("nqs", geom, nqs_settings("exact", steps=53), path=out, force=True, ctx=ctx)
    rec = read_record(out, ResultRecord)
    assert rec.n_steps == 53 and rec.details["rollbacks"] == [
        {"step": 33, "back_to_step": 20, "lr_scale": 0.5, "reason": "step 33: energy rose (simulated)"}]
    assert any("back to step 20" in n for n in notes)
    full = tmp_path / "full.json"
    store.run("nqs", geom, nqs_settings("exact", steps=53), path=full, force=True,
              ctx=RunContext(resume=False, checkpoint_every=1e9))
    assert "rollbacks" not in read_record(full, ResultRecord).details
    a, b = pd.read_csv(trace_path(out)), pd.read_csv(trace_path(full))
    assert len(a) == 53 and (a["energy"][:20].to_numpy() == b["energy"][:20].to_numpy()).all()
    assert (a["lr"][20:] == b["lr"][20:] / 2).all() and (a["energy"][20:].to_numpy() != b["energy"][20:].to_numpy()).any()
    assert ckpts(out) == ["ckpt_000050.npz", "ckpt_000053.npz"]
    assert (a["wall_s"].diff()[1:] > 0).all()

    def diverge_always(step, total):
        if step >= 5:
            raise DivergenceError(f"step {step - 1}: energy rose (simulated)")

    bad = tmp_path / "bad.json"
    with pytest.raises(DivergenceError, match=r"after 2 rollbacks, down to 0.25× the learning rate"):
        store.run("nqs", geom, nqs_settings("exact", steps=53), path=bad, force=True,
                  ctx=RunContext(resume=False, checkpoint_every=1e9, on_step=diverge_always))
    assert not bad.exists()


# ----------------------------------------------------------------------------- reference caches
def test_reference_honours_references_option_and_env(tmp_path, monkeypatch):
    packaged = references_dir() / "h-chain" / "d1.8_k1x1x2" / "hf.json"
    before = packaged.stat().st_mtime_ns if packaged.exists() else None
    x = tmp_path / "x"
    res = runner.invoke(app, ["reference", "hf", "h-chain", "-k", "1,1,2", "--references", str(x)])
    assert res.exit_code == 0, res.output
    assert (x / "h-chain" / "d1.8_k1x1x2" / "hf.json").is_file()
    y = tmp_path / "y"
    monkeypatch.setenv("NQSBENCH_REFERENCES", str(y))
    res = runner.invoke(app, ["reference", "hf", "h-chain", "-k", "1,1,2"])
    assert res.exit_code == 0, res.output
    assert (y / "h-chain" / "d1.8_k1x1x2" / "hf.json").is_file() and str(y) in res.output
    z = tmp_path / "z"          # given before the method, it applies to it (it was silently ignored)
    res = runner.invoke(app, ["reference", "--references", str(z), "hf", "h-chain", "-k", "1,1,2"])
    assert res.exit_code == 0, res.output
    assert (z / "h-chain" / "d1.8_k1x1x2" / "hf.json").is_file()
    res = runner.invoke(app, ["reference", "--references", str(z), "--force", "hf", "h-chain", "-k", "1,1,2"])
    assert res.exit_code == 0 and "wrote" in res.output and "cached" not in res.output, res.output
    res = runner.invoke(app, ["reference", "--suite", "references", "hf", "h-chain", "-k", "1,1,2"])
    assert res.exit_code == 2 and "--suite references" in res.output
    after = packaged.stat().st_mtime_ns if packaged.exists() else None
    assert after == before                       # the packaged cache was not written


def test_reference_exact_force_and_run_vs_exact_from_relocated_cache(tmp_path, monkeypatch):
    refs = tmp_path / "refs"
    monkeypatch.setenv("NQSBENCH_REFERENCES", str(tmp_path / "empty"))
    # the packaged cache holds this exact record, but a relocated empty cache has none
    res = runner.invoke(app, [*RUN, "--steps", "2", "--out", str(tmp_path / "a.json")])
    assert res.exit_code == 0, res.output
    assert "vs exact" not in res.output
    monkeypatch.setenv("NQSBENCH_REFERENCES", str(refs))
    ref = ["reference", "exact", "h-chain", "-k", "1,1,2"]
    first = runner.invoke(app, ref)
    assert first.exit_code == 0 and first.output.count("wrote ") == 1, first.output
    again = runner.invoke(app, ref)
    assert again.exit_code == 0 and "cached, input hash matches" in again.output, again.output
    forced = runner.invoke(app, [*ref, "--force"])
    assert forced.exit_code == 0 and "wrote " in forced.output and "cached" not in forced.output, forced.output
    res = runner.invoke(app, [*RUN, "--steps", "2", "--out", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    assert "vs exact (exact.json)" in res.output and "input hash differs" not in res.output


# ----------------------------------------------------------------------------- sampler = auto
def test_largest_sector_dim_counts_what_the_sampler_enumerates():
    """The count behind ``--sampler auto`` (from the catalog geometry, no SCF) is the largest of
    the (N↑ = N↓, K) sectors the solver enumerates, at N_k = 2 and 4."""
    from conftest import hchain
    from nqsbench.methods.nqs import largest_sector_dim
    from nqsbench.nqs.hilbert import Sector

    for nk in (2, 4):
        ham = hchain(nk)
        dims = [Sector.from_hamiltonian(ham, k_total=k).dim() for k in range(nk)]
        geom = catalog.load("h-chain").geometry({"d": 1.8}, (1, 1, nk))
        assert largest_sector_dim(geom) == max(dims)


def test_sampler_auto_by_sector_size(tmp_path):
    """No --sampler: exact sampling at N_k = 2 (20 configurations), Markov chains at N_k = 6
    (142,376 > 50,000, where exact sampling is refused) and whenever a Markov-chain option is given;
    the record says which."""
    res = runner.invoke(app, ["run", "h-chain", "-k", "1,1,6", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "sampler auto → mcmc: the sector has 142,376 configurations" in res.output
    res = runner.invoke(app, ["show", "h-chain", "-k", "1,1,6", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["nqs_sampler"]["auto"] == "mcmc", res.output
    res = runner.invoke(app, ["run", "h-chain", "-k", "1,1,6", "--sampler", "exact", "--dry-run"])
    assert res.exit_code == 2 and "exceeds max_dim=50000" in res.output
    for flags, kind in (([], "exact"), (["--samples", "64", "--chains", "8"], "mcmc")):
        out = tmp_path / f"{kind}.json"
        res = runner.invoke(app, [*RUN, "--steps", "2", *flags, "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert f"sampler auto → {kind}" in res.output
        assert read_record(out, ResultRecord).settings.sampler.kind == kind
    res = runner.invoke(app, [*RUN, "--sampler", "gibbs", "--steps", "2", "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "choose 'exact', 'mcmc' or 'auto'" in res.output


def test_rbm_markov_chains_cap_the_step_above_16_spin_orbitals():
    """max_norm = "auto" (the RBM's Markov-chain default): no trust region up to 16 spin-orbitals
    (LiH Γ would stall under it), |δ| ≤ 1 above (the no-flag H chain N_k = 6 diverged without it);
    a number is kept as given, and exact sampling has no cap."""
    from conftest import hchain
    from nqsbench.methods.nqs import make_driver
    from nqsbench.nqs.models.base import resolve_max_norm

    assert (resolve_max_norm("auto", 16), resolve_max_norm("auto", 24), resolve_max_norm(0.5, 24)) == (0.0, 1.0, 0.5)
    s = nqs_settings("mcmc")
    assert s.optimizer.max_norm == "auto" and nqs_settings("exact").optimizer.max_norm == 0.0
    assert make_driver(hchain(2), s).optimizer.max_norm is None          # 8 spin-orbitals
    assert make_driver(hchain(6), s).optimizer.max_norm == 1.0           # 24 spin-orbitals
    assert make_driver(hchain(6), nqs_settings("mcmc", max_norm=0)).optimizer.max_norm is None
