"""Continuing a run from its parameters (``run --init PATH``, a suite task's ``init = PATH``): the
start is the earlier run's state, the settings name the file by digest (another start is another
run, never the same record), and parameters that do not fit are one line, exit 2, nothing written."""
import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from nqsbench.cli import app
from nqsbench.methods.nqs import nqs_settings
from nqsbench.nqs.results import params_digest, params_path
from nqsbench.records import NQSSettings, ResultRecord, read_record, trace_path
from nqsbench.suites import jobs, load_suite

runner = CliRunner()


def invoke(*args, results):
    return runner.invoke(app, ["run", "h-chain", "-k", "1,1,2", *map(str, args), "--no-progress",
                               "--results", str(results)])


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """15 exact-sampling steps from the HF start: the run to continue."""
    results = tmp_path_factory.mktemp("results")
    res = invoke("--steps", "15", results=results)
    assert res.exit_code == 0, res.output
    return results, results / "h-chain" / "d1.8_k1x1x2" / "nqs-rbm-exact-s0.json"


def test_continuation_starts_where_the_run_ended(first, tmp_path):
    results, rec_path = first
    results = shutil.copytree(results, tmp_path / "r")
    rec_path = results / rec_path.relative_to(first[0])
    res = invoke("--steps", "5", "--lr", "0.05", "--init", rec_path, results=results)
    assert res.exit_code == 0, res.output
    digest = params_digest(params_path(rec_path))
    cont = rec_path.with_name(f"nqs-rbm-exact-s0-from-{digest[:8]}.json")
    rec, before = read_record(cont, ResultRecord), read_record(rec_path, ResultRecord)
    assert rec.settings.init == f"params:{digest}" and rec.n_steps == 5
    assert rec.details["init"]["steps_before"] == 15 and rec.details["init"]["digest"] == digest
    # exact sampling: the first step's energy is that of the earlier run's final parameters
    e0 = pd.read_csv(trace_path(cont))["energy"][0]
    assert abs(e0 - before.energy_per_cell_raw) < 1e-10
    assert rec.energy_per_cell_raw < before.energy_per_cell_raw          # and it goes on down
    # the run it continued is untouched
    assert read_record(rec_path, ResultRecord).provenance.created == before.provenance.created


@pytest.mark.parametrize("args, says", [
    (["--alpha", "1"], "another width"),
    (["--model", "nnbf"], "parameters of a RBM, this run's model is NNBF"),
    (["-p", "d=2.0"], "(another geometry, k-mesh or basis: the orbitals differ by more than phases"),
])
def test_parameters_that_do_not_fit_are_refused(first, tmp_path, args, says):
    results = shutil.copytree(first[0], tmp_path / "r")
    before = files(results)
    res = invoke("--steps", "3", *args, "--init", results / first[1].relative_to(first[0]), results=results)
    assert res.exit_code == 2, res.output
    assert says in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert files(results) == before                  # not even an empty geometry folder


def test_missing_file_is_refused_before_anything_runs(tmp_path):
    res = invoke("--init", tmp_path / "nope.json", results=tmp_path / "r")
    assert res.exit_code == 2 and "--init" in res.output and "nope.params.msgpack" in res.output
    assert not (tmp_path / "r").exists()


def test_the_digest_is_part_of_the_settings():
    a, b = nqs_settings(init="params:" + "0" * 16), nqs_settings(init="params:" + "1" * 16)
    assert a.settings_hash() != b.settings_hash() != nqs_settings().settings_hash()
    with pytest.raises(ValueError):
        NQSSettings.model_validate({**a.model_dump(), "init": "params:xyz"})


def test_suite_task_continues_from_a_file_beside_it(first, tmp_path):
    shutil.copy(params_path(first[1]), tmp_path / "start.params.msgpack")
    (tmp_path / "cont.toml").write_text("""
name = "cont"
description = "continue a run"
[[tasks]]
kind = "nqs"
system = "h-chain"
kmesh = [1, 1, 2]
params = { d = 1.8 }
steps = 4
lr = 0.05
init = "start.params.msgpack"
""")
    (job,) = jobs(load_suite(tmp_path / "cont.toml"))
    digest = params_digest(tmp_path / "start.params.msgpack")
    assert job.settings.init == f"params:{digest}" and job.init_params.samefile(tmp_path / "start.params.msgpack")
    res = runner.invoke(app, ["suite", str(tmp_path / "cont.toml"), "--no-progress", "--results",
                              str(tmp_path / "results"), "--references", str(tmp_path / "refs")])
    assert res.exit_code == 0, res.output
    (rec,) = (tmp_path / "results").rglob("nqs-*.json")
    assert json.loads(rec.read_text())["details"]["init"]["steps_before"] == 15
    (tmp_path / "cont.toml").write_text((tmp_path / "cont.toml").read_text().replace("start.", "missing."))
    res = runner.invoke(app, ["check", str(tmp_path / "cont.toml")])
    assert res.exit_code == 2 and "init" in res.output and "missing.params.msgpack" in res.output
