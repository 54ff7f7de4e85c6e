"""Issue 16: instances exported for other codes, submissions scored, the leaderboard.

- export → import: instance.h5 rebuilds the Hamiltonian (same hash, instance hash, ⟨HF|H|HF⟩ to
  1e-12); the manifest's sha256 match the files (and stop matching when a file changes);
- pyscf.fci on the exported FCIDUMP reproduces the exact ground state to 1e-8 Ha (H chain N_k = 3
  against exact diagonalization of the same Hamiltonian; LiH Γ against the committed record);
- block2 DMRG on the FCIDUMP, submitted and scored (extra 'dmrg');
- nqsbench score: exact + 1.0 mHa/cell passes, + 3.0 fails (exit 1), a malformed submission
  exits 2 naming the field, a wrong instance_sha256 is refused; raw and ewald conventions agree;
  bands are gated and converted;
- the leaderboard (nqsbench report) lists an external method next to ours; nqsbench table lists it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import get_ham
from nqsbench import catalog
from nqsbench.cli import app
from nqsbench.export import (FCIDUMP_FILE, HDF5_FILE, MANIFEST_FILE, export, file_sha256, instance_sha256,
                             read_hdf5, verify)
from nqsbench.methods.external import Submission
from nqsbench.store import Store, read

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
GEOM = "d1.8_k1x1x2"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def hchain_geom(nk=2, d=1.8):
    return catalog.load("h-chain").geometry({"d": d}, (1, 1, nk))


@pytest.fixture()
def base(tmp_path):
    """tmp folder with a copy of the committed H-chain N_k = 2, d = 1.8 references and empty results."""
    shutil.copytree(ROOT / "references" / "h-chain" / GEOM, tmp_path / "references" / "h-chain" / GEOM)
    (tmp_path / "results").mkdir()
    return tmp_path


def roots(base):
    return ["--references", base / "references", "--results", base / "results"]


def store_of(base) -> Store:
    return Store(base / "references", base / "results")


def fci_energy(fcidump_path) -> float:
    """Lowest M_s = 0 eigenvalue of the FCIDUMP Hamiltonian (core energy included) by pyscf.fci."""
    from pyscf import fci
    from pyscf.tools import fcidump

    d = fcidump.read(str(fcidump_path), verbose=False)
    na = d["NELEC"] // 2
    e, _ = fci.direct_spin1.kernel(d["H1"], d["H2"], d["NORB"], (na, d["NELEC"] - na), ecore=d["ECORE"],
                                   conv_tol=1e-12, max_cycle=200)
    return float(e)


# ----------------------------------------------------------------------------- export, import
@pytest.fixture()
def exported(base):
    geom = hchain_geom()
    ex = export(geom, base / "inst", "all", store=store_of(base), ham=get_ham("h-chain", (1, 1, 2), d=1.8))
    return base, geom, ex


def test_export_import_round_trip(exported):
    base, geom, ex = exported
    ham = get_ham("h-chain", (1, 1, 2), d=1.8)
    back = read_hdf5(ex.folder / HDF5_FILE)
    assert back.hash == ham.hash
    assert instance_sha256(back) == instance_sha256(ham) == ex.manifest["instance_sha256"]
    assert abs(back.hf_energy() - ham.hf_energy()) < 1e-12
    assert abs(back.hf_energy() - ham.e_hf) < 1e-8           # and it is the KRHF energy
    for name in ("mo_energy", "mo_occ", "mo_coeff", "ovlp", "kvec", "mesh"):
        assert np.array_equal(getattr(back, name), getattr(ham, name)), name
    assert (back.madelung, back.n_core, back.n_elec_cell) == (ham.madelung, ham.n_core, ham.n_elec_cell)
    h_a, eri_a = back.real_supercell()                       # the rebuilt H rotates like the original
    h_b, eri_b = ham.real_supercell()
    assert np.abs(h_a - h_b).max() < 1e-12 and np.abs(eri_a - eri_b).max() < 1e-12


def test_manifest_checksums_and_contents(exported):
    base, geom, ex = exported
    m = json.loads((ex.folder / MANIFEST_FILE).read_text())
    assert set(m["files"]) == {HDF5_FILE, FCIDUMP_FILE}
    for name, entry in m["files"].items():
        assert file_sha256(ex.folder / name) == entry["sha256"]
        assert (ex.folder / name).stat().st_size == entry["bytes"]
    assert verify(ex.folder) == []
    # the committed exact record is the best reference, with its provenance
    exact = read(base / "references" / "h-chain" / GEOM / "exact.json")
    refs = m["references"]
    assert refs["best"] == "exact" and refs["records"]["exact"]["fresh"]
    assert refs["records"]["exact"]["energy_per_cell"] == exact.energy_per_cell
    assert refs["records"]["exact"]["provenance"]["git_commit"] == exact.provenance.git_commit
    assert "dmrg" not in refs["records"]                      # not in the cache for this geometry
    # conventions: raw + the N-sector shift per cell = ewald (the exact record holds both)
    n_sector = next(s for s in m["conventions"]["sectors"] if s["sector"] == "N")
    assert abs(exact.energy_per_cell_raw + n_sector["ewald_shift_per_cell"] - exact.energy_per_cell) < 1e-10
    assert m["sector"] == {"n_alpha": 2, "n_beta": 2, "k_total": 0, "n_spatial_orbitals": 4,
                           "n_spin_orbitals": 8, "n_active_electrons": 4}
    # a changed file no longer matches its checksum
    with open(ex.folder / FCIDUMP_FILE, "a") as fh:
        fh.write(" ")
    assert verify(ex.folder) == [f"{FCIDUMP_FILE}: sha256 differs from the manifest"]


def test_damaged_instance_is_refused(exported):
    import h5py

    from nqsbench.errors import RecordError

    base, geom, ex = exported
    with h5py.File(ex.folder / HDF5_FILE, "r+") as f:
        f["hamiltonian/h1"][0, 0, 0] += 1e-6
    with pytest.raises(RecordError, match="instance_sha256"):
        read_hdf5(ex.folder / HDF5_FILE)


def test_export_cli(base):
    res = invoke("export", "h-chain", "-p", "d=1.8", "-k", "1,1,2", "--format", "fcidump", "-o", base / "out",
                 *roots(base))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (base / "out").iterdir()) == [FCIDUMP_FILE, MANIFEST_FILE]
    assert "best reference: exact" in res.output
    res = invoke("export", "h-chain", "-k", "1,1,2", "--format", "xyz", "-o", base / "out2", *roots(base))
    assert res.exit_code == 2 and "--format" in res.output and not (base / "out2").exists()


# ----------------------------------------------------------------------------- real external codes
def test_pyscf_fci_on_fcidump_hchain_nk3(tmp_path):
    """pyscf.fci (direct_spin1, M_s = 0, every K) on the FCIDUMP = the exact record's ground state
    (the lowest over all K sectors) of the same Hamiltonian, to 1e-8 Ha."""
    import nqsbench

    geom = hchain_geom(nk=3)
    ham = get_ham("h-chain", (1, 1, 3), d=1.8)
    ex = export(geom, tmp_path, "all", store=Store(tmp_path / "refs", tmp_path / "res"), ham=ham)
    e = fci_energy(tmp_path / FCIDUMP_FILE)
    rec = nqsbench.run("exact", geom, ham=ham, bands=False)
    assert abs(e / 3 - rec.energy_per_cell_raw) < 1e-8
    shift = next(s for s in ex.manifest["conventions"]["sectors"] if s["sector"] == "N")["ewald_shift_per_cell"]
    assert abs(e / 3 + shift - rec.energy_per_cell) < 1e-8


def test_pyscf_fci_on_fcidump_lih_gamma(tmp_path):
    """LiH Γ: FCI on the exported FCIDUMP reproduces the committed exact record to 1e-8 Ha."""
    geom = catalog.load("lih").geometry({}, (1, 1, 1))
    refs = tmp_path / "references"
    shutil.copytree(ROOT / "references" / "lih" / "a4.08_k1x1x1", refs / "lih" / "a4.08_k1x1x1")
    ex = export(geom, tmp_path / "inst", "fcidump", store=Store(refs, tmp_path / "res"), ham=get_ham("lih", (1, 1, 1)))
    exact = ex.manifest["references"]["records"]["exact"]
    assert exact["fresh"]
    e = fci_energy(tmp_path / "inst" / FCIDUMP_FILE)
    assert abs(e - exact["energy_per_cell_raw"]) < 1e-8
    shift = next(s for s in ex.manifest["conventions"]["sectors"] if s["sector"] == "N")["ewald_shift_per_cell"]
    assert abs(e + shift - exact["energy_per_cell"]) < 1e-8


def test_block2_dmrg_submitted_and_scored(exported):
    """block2 (extra 'dmrg') reads the exported FCIDUMP itself; its energy, submitted in the raw
    convention, is scored against the committed exact record and passes."""
    pytest.importorskip("pyblock2")
    import tempfile

    from pyblock2.driver.core import DMRGDriver, SymmetryTypes

    base, geom, ex = exported
    scratch = tempfile.mkdtemp(prefix="nqsbench-test-dmrg-")
    try:
        driver = DMRGDriver(scratch=scratch, symm_type=SymmetryTypes.SZ, n_threads=1)
        driver.read_fcidump(filename=str(ex.folder / FCIDUMP_FILE), pg="d2h")
        driver.initialize_system(n_sites=driver.n_sites, n_elec=driver.n_elec, spin=driver.spin)
        mpo = driver.get_qc_mpo(h1e=driver.h1e, g2e=driver.g2e, ecore=driver.ecore, iprint=0)
        ket = driver.get_random_mps(tag="KET", bond_dim=64, nroots=1)
        e = float(driver.dmrg(mpo, ket, n_sweeps=10, bond_dims=[64] * 10, noises=[1e-5] * 4 + [0] * 6,
                              thrds=[1e-12] * 10, iprint=0))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    nk = ex.manifest["conventions"]["n_k"]
    exact = ex.manifest["references"]["records"]["exact"]
    assert abs(e / nk - exact["energy_per_cell_raw"]) < 1e-8        # 4 orbitals: M = 64 is exact
    sub = {"method": "block2-dmrg", "system": "h-chain", "params": {"d": 1.8}, "kmesh": [1, 1, 2],
           "energy_per_cell": e / nk, "energy_error": None, "convention": "raw",
           "instance_sha256": ex.manifest["instance_sha256"], "code": "block2", "notes": "SZ, M = 64"}
    (base / "dmrg.json").write_text(json.dumps(sub))
    res = invoke("score", base / "dmrg.json", *roots(base))
    assert res.exit_code == 0, res.output
    rec = read(base / "results" / "h-chain" / GEOM / "external-block2-dmrg.json")
    assert rec.kind == "external" and rec.method == "external:block2-dmrg" and rec.details["instance_checked"]
    assert abs(rec.energy_per_cell - exact["energy_per_cell"]) < 1e-8


# ----------------------------------------------------------------------------- score
def exact_record(base):
    return read(base / "references" / "h-chain" / GEOM / "exact.json")


def submission(base, name="sub.json", delta_mha=0.0, convention="ewald", **over) -> Path:
    ex = exact_record(base)
    e = (ex.energy_per_cell if convention == "ewald" else ex.energy_per_cell_raw) + delta_mha * 1e-3
    data = {"method": "mycode", "system": "h-chain", "params": {"d": 1.8}, "kmesh": [1, 1, 2],
            "energy_per_cell": e, "energy_error": None, "convention": convention, "code": "mycode",
            "version": "1.0", "wall_seconds": 12.5}
    data.update(over)
    data = {k: v for k, v in data.items() if v is not ...}
    p = base / name
    p.write_text(json.dumps(data))
    return p


def test_score_passes_at_one_mha_and_fails_at_three(base):
    res = invoke("score", submission(base, delta_mha=1.0), *roots(base))
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and "+1.000" in res.output
    path = base / "results" / "h-chain" / GEOM / "external-mycode.json"
    rec = read(path)
    assert abs(rec.energy_per_cell - exact_record(base).energy_per_cell - 1e-3) < 1e-12
    assert rec.submission["code"] == "mycode" and rec.wall_seconds == 12.5
    res = invoke("score", submission(base, delta_mha=3.0), *roots(base))
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output and "+3.000" in res.output
    res = invoke("score", submission(base, delta_mha=-3.0), *roots(base))      # non-variational: fails too
    assert res.exit_code == 1


def test_raw_and_ewald_submissions_agree(base):
    invoke("score", submission(base, delta_mha=0.5, convention="raw", method="raw-one"), *roots(base))
    invoke("score", submission(base, delta_mha=0.5, convention="ewald", method="ewald-one"), *roots(base))
    folder = base / "results" / "h-chain" / GEOM
    a, b = read(folder / "external-raw-one.json"), read(folder / "external-ewald-one.json")
    assert abs(a.energy_per_cell - b.energy_per_cell) < 1e-12
    assert abs(a.energy_per_cell_raw - b.energy_per_cell_raw) < 1e-12
    assert abs(a.energy_per_cell - exact_record(base).energy_per_cell - 0.5e-3) < 1e-12


@pytest.mark.parametrize("over, field", [
    ({"convention": ...}, "convention"),
    ({"convention": "hartree"}, "convention"),
    ({"energy_per_cell": "low"}, "energy_per_cell"),
    ({"kmesh": [1, 2]}, "kmesh"),
    ({"method": "my code/1"}, "method"),
    ({"energy_error": -1.0}, "energy_error"),
    ({"colour": "red"}, "colour"),
    ({"system": "unobtainium"}, "system"),
    ({"params": {"q": 1.0}}, "params"),
])
def test_malformed_submission_exits_2_naming_the_field(base, over, field):
    res = invoke("score", submission(base, **over), *roots(base))
    assert res.exit_code == 2, res.output
    assert f"field '{field}" in res.output and "sub.json" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not any((base / "results").rglob("*.json"))                       # nothing written


def test_wrong_instance_hash_is_refused(base):
    ham = get_ham("h-chain", (1, 1, 2), d=1.8)
    good = submission(base, name="good.json", method="good", instance_sha256=instance_sha256(ham))
    bad = submission(base, name="bad.json", method="bad", instance_sha256="0" * 64)
    res = invoke("score", good, bad, *roots(base))           # all files checked before anything is stored
    assert res.exit_code == 2 and "field 'instance_sha256'" in res.output and "bad.json" in res.output
    assert not any((base / "results").rglob("*.json"))
    res = invoke("score", good, *roots(base))
    assert res.exit_code == 0, res.output
    assert read(base / "results" / "h-chain" / GEOM / "external-good.json").details["instance_checked"]


def test_bands_are_converted_and_gated(base):
    ex = exact_record(base)
    ham = get_ham("h-chain", (1, 1, 2), d=1.8)
    n0 = ham.n_alpha + ham.n_beta
    d_el, d_ho = ham.ewald_shift(n0 + 1) - ham.ewald_shift(n0), ham.ewald_shift(n0) - ham.ewald_shift(n0 - 1)
    raw_bands = [dict(b.model_dump(), electron=[e - d_el for e in b.electron], hole=[e - d_ho for e in b.hole])
                 for b in ex.bands]
    res = invoke("score", submission(base, convention="raw", bands=raw_bands), *roots(base))
    assert res.exit_code == 0, res.output
    assert "bands" in res.output and "MAE 0.0" in res.output
    rec = read(base / "results" / "h-chain" / GEOM / "external-mycode.json")
    assert abs(rec.gap - ex.gap) < 1e-10
    shifted = [dict(b.model_dump(), electron=[e + 0.01 for e in b.electron]) for b in ex.bands]   # +272 meV
    res = invoke("score", submission(base, bands=shifted), *roots(base))
    assert res.exit_code == 1 and "FAIL" in res.output


# ----------------------------------------------------------------------------- table, leaderboard
LEADER_SUITE = """
name = "leader"
description = "leaderboard test"
[[tasks]]
kind = "reference"
system = "h-chain"
kmesh = [1, 1, 2]
params = { d = 1.8 }
methods = ["exact", "hf", "ccsd"]
"""


def test_leaderboard_lists_external_next_to_ours(base):
    from nqsbench import leaderboard
    from nqsbench.table import records_table

    assert invoke("score", submission(base, delta_mha=0.7, method="theirs"), *roots(base)).exit_code == 0
    df, errors = records_table([base / "references", base / "results"])
    assert not errors
    assert "external:theirs" in set(df["method"])                # nqsbench table reads external records
    lb = leaderboard.leaderboard(df)
    s = leaderboard.summary(lb)
    assert {"external:theirs", "hf", "ccsd", "ccsd_t"} <= set(s["method"])
    assert set(lb["reference"]) == {"exact"} and "exact" not in set(lb["method"])
    row = lb[lb["method"] == "external:theirs"].iloc[0]
    assert row["origin"] == "external" and abs(row["error_mha"] - 0.7) < 1e-9
    hf = lb[lb["method"] == "hf"].iloc[0]
    exact = exact_record(base)
    assert abs(hf["error_mha"] - (read(base / "references" / "h-chain" / GEOM / "hf.json").energy_per_cell
                                  - exact.energy_per_cell) * 1e3) < 1e-9
    assert s["method"].tolist().index("external:theirs") < s["method"].tolist().index("hf")   # ranked
    # nqsbench report: the leaderboard table and figure
    (base / "leader.toml").write_text(LEADER_SUITE)
    res = invoke("report", base / "leader.toml", "--out", base / "report", *roots(base))
    assert res.exit_code == 0, res.output
    md = (base / "report" / "index.md").read_text()
    section = md[md.index("## Leaderboard (mHa"):]
    assert "external:theirs" in section and "| hf " in section and "ccsd" in section
    assert (base / "report" / "figures" / "leaderboard.png").exists()
    res = invoke("table", "-f", "csv", *roots(base))
    assert res.exit_code == 0 and "external:theirs" in res.output


def test_submission_schema_is_current():
    schema = json.loads((ROOT / "schemas" / "submission.schema.json").read_text())
    assert schema == json.loads(json.dumps(Submission.json_schema()))
    assert set(schema["required"]) == {"method", "system", "params", "kmesh", "energy_per_cell", "energy_error",
                                       "convention"}


# ----------------------------------------------------------------------------- NetKet (extra 'peers')
@pytest.mark.peers
def test_netket_example_writes_a_scored_submission(exported):
    pytest.importorskip("netket")
    import importlib.util

    base, geom, ex = exported
    spec = importlib.util.spec_from_file_location("netket_vmc", ROOT / "examples" / "netket_vmc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = base / "netket.json"
    assert mod.main([str(ex.folder), "--steps", "150", "-o", str(out)]) == 0
    sub = json.loads(out.read_text())
    assert sub["instance_sha256"] == ex.manifest["instance_sha256"] and sub["code"] == "netket"
    res = invoke("score", out, *roots(base))
    assert res.exit_code in (0, 1), res.output                      # scored (gate verdict in the table)
    rec = read(base / "results" / "h-chain" / GEOM / "external-netket-rbm-vmc.json")
    exact = ex.manifest["references"]["records"]["exact"]
    assert rec.energy_per_cell >= exact["energy_per_cell"] - 1e-8   # variational
    assert rec.details["instance_checked"]
