"""Catalog: every shipped system validates; bad input fails with one clear line, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nqsbench import catalog
from nqsbench.cli import app
from nqsbench.errors import CatalogError

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_catalog_loads_every_system():
    names = catalog.available()
    assert {"h-chain", "lih", "graphene", "polyacetylene"} <= set(names)
    for name in names:
        spec = catalog.load(name)
        assert spec.id == name
        assert spec.n_electrons_cell % 2 == 0
        geom = spec.geometry()
        assert geom.nk == int(spec.kmesh[0] * spec.kmesh[1] * spec.kmesh[2])


def test_h_chain_geometry_follows_parameter():
    geom = catalog.load("h-chain").geometry({"d": 2.4}, (1, 1, 4))
    assert geom.lattice[2, 2] == pytest.approx(4.8)
    assert geom.coords[1, 2] == pytest.approx(2.4)
    assert geom.kmesh == (1, 1, 4)
    assert geom.tier == "exact"
    assert catalog.load("h-chain").geometry(kmesh=(1, 1, 8)).tier == "beyond"


def test_expressions_are_not_eval():
    spec = catalog.load("h-chain")
    with pytest.raises(CatalogError, match="unsupported syntax"):
        catalog._evaluate("__import__('os')", {"d": 1.0}, "x")
    with pytest.raises(CatalogError):
        catalog._evaluate("d.real", {"d": 1.0}, "x")
    assert catalog._evaluate("a*sqrt(3)/2", {"a": 2.0}, "x") == pytest.approx(3 ** 0.5)
    assert spec.geometry({"d": 1.0}).lattice[2, 2] == 2.0


def test_kmesh_on_vacuum_axis_is_rejected():
    with pytest.raises(CatalogError, match="non-periodic axis 0"):
        catalog.load("h-chain").geometry(kmesh=(2, 1, 1))


def test_schema_file_is_current():
    committed = json.loads((ROOT / "schemas" / "system.schema.json").read_text())
    assert committed == json.loads(json.dumps(catalog.json_schema())), \
        "run `nqsbench schema` and commit schemas/"


def _bad_file(tmp_path, mutate) -> Path:
    text = (ROOT / "systems" / "h-chain.toml").read_text()
    path = tmp_path / "bad.toml"
    path.write_text(mutate(text))
    return path


BAD_INPUTS = {
    "unknown key": (lambda t: t.replace('tier = "exact"', 'tier = "exact"\ncolour = "blue"'),
                    "field 'colour': unknown key"),
    "missing field": (lambda t: t.replace('basis = "sto-3g"\n', ""), "field 'basis': missing"),
    "overlapping atoms": (lambda t: t.replace('position = [0.0, 0.0, "d"]', 'position = [0.0, 0.0, 0.3]'),
                          "field 'atoms': atoms 0 (H) and 1 (H) are 0.300 bohr apart"),
    "odd electrons": (lambda t: t.replace('    { symbol = "H", position = [0.0, 0.0, "d"] },\n', ""),
                      "odd electron count per cell (1)"),
    "unknown basis": (lambda t: t.replace('basis = "sto-3g"', 'basis = "sto-42g"'),
                      "field 'basis': unknown basis 'sto-42g'"),
    "bad expression": (lambda t: t.replace('"2*d"', '"2*q"'), "lattice[2][2]: cannot evaluate '2*q'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_error_nothing_written(tmp_path, case):
    mutate, expected = BAD_INPUTS[case]
    path = _bad_file(tmp_path, mutate)
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["reference", "exact", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    msg = " ".join(result.output.split())      # rich may wrap; compare whitespace-normalised
    assert str(path.name) in msg and expected in msg, msg
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [path]


def test_sector_too_large_refused_before_any_work(tmp_path):
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["reference", "exact", "h-chain", "--kmesh", "1,1,8", "--out", str(out)])
    assert result.exit_code == 2
    msg = " ".join(result.output.split())
    assert "20,705,236 determinants" in msg and "beyond-tier runners" in msg
    assert not out.exists()


def test_unknown_system_and_bad_param():
    r = runner.invoke(app, ["show", "unobtainium"])
    assert r.exit_code == 2 and "unknown system 'unobtainium'" in r.output
    r = runner.invoke(app, ["show", "h-chain", "--param", "d"])
    assert r.exit_code == 2 and "expected NAME=NUMBER" in r.output


def test_sector_dims_match_string_enumeration(ham_factory):
    from nqsbench.exact import SectorBlock
    from nqsbench.sectors import sector_dims

    ham = ham_factory("h-chain", (1, 1, 3))
    na = ham.n_alpha
    for a in (na, na + 1, na - 1):
        dims = sector_dims(ham.kvec, ham.mesh, ham.n_orb, a, na)
        assert dims == [SectorBlock(ham, a, na, k).dim for k in range(ham.nk)]


def test_a_results_folder_named_like_a_system_does_not_shadow_it(tmp_path, monkeypatch):
    """Run from a results folder (it holds h-chain/): the id still names the catalog system."""
    (tmp_path / "h-chain").mkdir()
    monkeypatch.chdir(tmp_path)
    assert catalog.load("h-chain").id == "h-chain"
