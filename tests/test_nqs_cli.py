"""``nqsbench run``: the real pipeline with tiny settings (H chain N_k = 2, a few steps)."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nqsbench.cli import app
from nqsbench.records import ResultRecord, read_record, trace_path

runner = CliRunner()
BASE = ["run", "h-chain", "--param", "d=1.8", "--kmesh", "1,1,2", "--no-progress"]


def invoke(*args):
    return runner.invoke(app, [*BASE, *map(str, args)])


def test_run_writes_valid_record_and_trace(tmp_path):
    out = tmp_path / "r.json"
    res = invoke("--steps", 4, "--seed", 3, "--out", out)
    assert res.exit_code == 0, res.output
    assert "E = " in res.output and "vs exact" in res.output and "mHa/cell" in res.output
    rec = read_record(out, ResultRecord)
    assert rec.kind == "nqs" and rec.method == "nqs-rbm" and rec.n_steps == 4 and rec.settings.seed == 3
    assert rec.kmesh == (1, 1, 2) and rec.params == {"d": 1.8}
    assert not rec.converged and "fewer than two windows" in rec.convergence and "NOT CONVERGED" in res.output
    assert rec.energy_error == 0.0 and rec.settings.sampler.kind == "exact"
    # the "auto" defaults of an 8-spin-orbital system: random start, α = 2 (20 configurations < 296
    # parameters at α = 4); the settings say auto, the details what it meant
    assert rec.settings.init == "auto" and rec.settings.model.alpha == "auto"
    assert rec.details["start"] == "random" and rec.details["model"]["alpha"] == 2.0
    n_el = rec.sector["n_up"] + rec.sector["n_dn"]
    # ewald convention = raw − m·N0/2 per cell (neutral sector)
    assert abs(rec.energy_per_cell - (rec.energy_per_cell_raw - rec.madelung * n_el / 2 / 2)) < 1e-10
    df = pd.read_csv(trace_path(out))
    assert rec.trace_file == trace_path(out).name
    assert list(df["step"]) == [0, 1, 2, 3] and np.isfinite(df["energy"]).all()
    assert (tmp_path / "r.ckpt").is_dir()
    json.loads(out.read_text())  # plain JSON


def test_resume_matches_uninterrupted(tmp_path):
    full, part = tmp_path / "full.json", tmp_path / "part.json"
    assert invoke("--steps", 5, "--out", full).exit_code == 0
    assert invoke("--steps", 3, "--out", part).exit_code == 0
    first = pd.read_csv(trace_path(part))
    res = invoke("--steps", 5, "--resume", "--out", part)
    assert res.exit_code == 0, res.output
    a, b = read_record(full, ResultRecord), read_record(part, ResultRecord)
    assert b.n_steps == 5 and abs(a.energy_per_cell - b.energy_per_cell) < 1e-12
    ta, tb = pd.read_csv(trace_path(full)), pd.read_csv(trace_path(part))
    np.testing.assert_array_equal(ta["energy"].to_numpy(), tb["energy"].to_numpy())
    # the run's wall time counts both processes: the resumed steps go on from the checkpoint's
    wall = tb["wall_s"].to_numpy()
    np.testing.assert_array_equal(wall[:3], first["wall_s"].to_numpy())
    assert wall[0] > 0 and (np.diff(wall) > 0).all()
    assert b.details["optimization_wall_s"] == pytest.approx(wall[-1], abs=1e-3)


def test_mcmc_run_has_error_bar(tmp_path):
    out = tmp_path / "m.json"
    res = invoke("--sampler", "mcmc", "--steps", 2, "--samples", 64, "--chains", 8, "--out", out)
    assert res.exit_code == 0, res.output
    rec = read_record(out, ResultRecord)
    assert rec.settings.sampler.kind == "mcmc" and rec.energy_error > 0 and "±" in res.output


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_divergence_exit_3_nothing_written(tmp_path):
    out = tmp_path / "d.json"
    res = invoke("--steps", 6, "--lr", 1e4, "--diag-shift", 1e-8, "--out", out)
    assert res.exit_code == 3, res.output
    assert "diverged" in res.output and not out.exists() and not trace_path(out).exists()


@pytest.mark.parametrize("args, match", [
    (["--sampler", "gibbs"], "--sampler"),
    (["--model", "mlp"], "--model"),
    (["--param", "q=1"], "unknown parameter"),
])
def test_input_errors_exit_2(tmp_path, args, match):
    res = invoke(*args, "--steps", 1, "--out", tmp_path / "x.json")
    assert res.exit_code == 2 and match in res.output and "Traceback" not in res.output


def test_resume_with_other_seed_refused(tmp_path):
    out = tmp_path / "r.json"
    assert invoke("--steps", 2, "--out", out).exit_code == 0
    res = invoke("--steps", 3, "--seed", 9, "--resume", "--out", out)
    assert res.exit_code == 2 and "seed" in res.output
