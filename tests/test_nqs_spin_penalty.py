"""A ground state of H + λ S² (`run --spin-penalty`, and the ground state `bands` makes itself):
the lowest singlet where a triplet lies below it. H chain N_k = 2, d = 1.4: the (N↑, N↓, K) sector's
lowest state is a triplet 10.9 mHa/cell below the lowest singlet, which the bands are defined on."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import hchain
from nqsbench.cli import app
from nqsbench.exact import ExactDiagonalization
from nqsbench.methods.nqs import nqs_settings
from nqsbench.methods.nqs_bands import ground_state_model
from nqsbench.nqs.excitations import nqs_vector
from nqsbench.nqs.results import params_path
from nqsbench.records import BandRecord, ResultRecord, read_record

runner = CliRunner()
GEOM = ["h-chain", "-p", "d=1.4", "-k", "1,1,2"]


@pytest.fixture(scope="module")
def exact():
    ham = hchain(2, 1.4)
    ed = ExactDiagonalization(ham, n_roots=2, bands=False).run()
    # what makes the test mean something: the sector's lowest state is not the singlet
    assert (ed.e_singlet - ed.e_ground) / ham.nk > 5e-3
    return ham, ed


def test_no_penalty_dumps_and_hashes_as_before():
    """λ = 0 leaves the settings' dump (and so every committed record's hash) as it was."""
    assert "spin_penalty" not in nqs_settings().model_dump()
    assert nqs_settings(spin_penalty=0.1).model_dump()["spin_penalty"] == 0.1
    assert nqs_settings(spin_penalty=0.1).settings_hash() != nqs_settings().settings_hash()


def test_penalized_run_is_the_singlet_and_records_h(tmp_path, exact):
    """The record's energy is ⟨H⟩ of the lowest singlet (within 0.1 mHa/cell; measured +0.000),
    ⟨S²⟩ ~ 0. After one step (a state of mixed spin) its ⟨S²⟩ = (⟨H + λS²⟩ − ⟨H⟩)/λ equals S² of
    the same state by exact diagonalization's own operator (1e-8): the penalized integrals, the
    plain re-evaluation and the spin operator agree."""
    ham, ed = exact
    res = runner.invoke(app, ["run", *GEOM, "--spin-penalty", "0.1", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "vs exact lowest singlet" in res.output
    (path,) = tmp_path.rglob("nqs-rbm-exact-s0-s2pen0.1.json")
    rec = read_record(path, ResultRecord)
    pen = rec.details["spin_penalty"]
    assert rec.settings.spin_penalty == pen["lambda"] == 0.1 and rec.hamiltonian_hash == ham.hash
    assert abs(rec.energy_per_cell_raw - (ed.e_singlet + ham.constant) / ham.nk) < 1e-4
    assert pen["s2"] < 1e-3
    # the table measures it against the lowest singlet too (against the lowest state: +10.9)
    res = runner.invoke(app, ["table", "--json", "--results", str(tmp_path)])
    rows = [r for r in json.loads(res.output)["records"] if r["kind"] == "nqs" and r["geometry"] == "d=1.4"]
    assert len(rows) == 1 and rows[0]["spin_penalty"] == 0.1 and abs(rows[0]["delta_vs_exact_mha"]) < 0.1
    res = runner.invoke(app, ["run", *GEOM, "--spin-penalty", "0.1", "--steps", "1", "--seed", "1",
                              "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (path,) = tmp_path.rglob("nqs-rbm-exact-s1-s2pen0.1.json")
    rec = read_record(path, ResultRecord)
    model, sector, params = ground_state_model(ham, rec, params_path(path))
    psi, ed_sector = nqs_vector(ham, model, params, sector)
    s2 = rec.details["spin_penalty"]["s2"]
    assert s2 > 1e-3 and abs(ed_sector.s_squared(psi) - s2) < 1e-8
    np.testing.assert_allclose(rec.energy_per_cell_raw * ham.nk, np.vdot(psi, ed_sector.matvec(psi)).real + ham.constant,
                               rtol=0, atol=1e-8)


def test_bands_default_to_the_singlet(tmp_path):
    """No flags: `bands` makes its ground state of H + 0.1 S² and its bands are exact's; on the
    plain run's state (--gs-spin-penalty 0: the triplet) they are off by eV and it says so."""
    res = runner.invoke(app, ["bands", *GEOM, "--no-plot", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (path,) = tmp_path.rglob("nqs-rbm-exact-s0-s2pen0.1.bands-*.json")
    assert read_record(path, BandRecord).errors["nqs_vs_exact"]["mae_meV"] < 5
    res = runner.invoke(app, ["bands", *GEOM, "--no-plot", "--gs-spin-penalty", "0", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "not a singlet" in res.output and "--gs-spin-penalty 0.1" in res.output
    (path,) = tmp_path.rglob("nqs-rbm-exact-s0.bands-*.json")
    assert read_record(path, BandRecord).errors["nqs_vs_exact"]["mae_meV"] > 500
    # with the plain run present, no flags use it (the run `nqsbench run` made) and warn
    res = runner.invoke(app, ["bands", *GEOM, "--no-plot", "--results", str(tmp_path)])
    assert res.exit_code == 0 and "not a singlet" in res.output, res.output


def test_negative_penalty_is_refused(tmp_path):
    res = runner.invoke(app, ["run", *GEOM, "--spin-penalty", "-1", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "--spin-penalty" in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not list(tmp_path.iterdir())


def test_gates_and_suites_measure_a_penalized_run_against_the_singlet():
    """The energy gate's target (gates.reference_energy): exact's lowest singlet for a run of
    H + λ S², exact's lowest state otherwise, and a reference without a singlet energy as it is;
    a suite task's gs_spin_penalty reaches the settings and the record name."""
    from types import SimpleNamespace as NS

    from nqsbench.gates import reference_energy
    from nqsbench.methods.nqs import NQSMethod
    from nqsbench.suites import NQSTask

    ref = NS(energy_per_cell=-1.0, details={"energy_per_cell_singlet": -0.99})
    assert reference_energy(NS(settings=nqs_settings(spin_penalty=0.1)), ref) == (-0.99, "exact lowest singlet")
    assert reference_energy(NS(settings=nqs_settings()), ref) == (-1.0, "exact")
    assert reference_energy(NS(settings=nqs_settings(spin_penalty=0.1)), NS(energy_per_cell=-1.0, details={}),
                            "dmrg") == (-1.0, "dmrg")
    task = NQSTask.model_validate({"kind": "nqs", "system": "h-chain", "gs_spin_penalty": 0.1})
    assert task.settings().spin_penalty == 0.1
    assert NQSMethod().record_name(task.settings()) == "nqs-rbm-exact-s0-s2pen0.1"


def test_exact_target_is_one_rule():
    """The singlet target applies to penalized runs where exact knows the singlet, nowhere else
    (pandas' NaN counts as missing, as None does)."""
    from nqsbench.records import exact_target

    nan = float("nan")
    assert exact_target(0.1, -1.0, -0.9) == -0.9
    assert exact_target(0.0, -1.0, -0.9) == -1.0
    assert exact_target(None, -1.0, -0.9) == -1.0
    assert exact_target(nan, -1.0, -0.9) == -1.0
    assert exact_target(0.1, -1.0, None) == -1.0
    assert exact_target(0.1, -1.0, nan) == -1.0
