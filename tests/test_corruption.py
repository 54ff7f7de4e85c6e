"""Corrupted files (issue 13): a damaged Hamiltonian cache entry is rebuilt, a damaged newest
checkpoint falls back to the one before, damaged parameters and records are named by path in
one line (exit 2), and a record changed after it was written fails its content checksum and is
recomputed rather than used."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nqsbench.cli import app
from nqsbench.records import ResultRecord, read_record

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
GEOM = ["h-chain", "-k", "1,1,2", "-p", "d=2.2"]


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip(path: Path, at: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def refs(tmp_path):
    dest = tmp_path / "references" / "h-chain" / "d2.2_k1x1x2"
    shutil.copytree(ROOT / "references" / "h-chain" / "d2.2_k1x1x2", dest)
    return tmp_path / "references"


@pytest.mark.parametrize("damage", [truncate, flip])
def test_damaged_hamiltonian_cache_entry_is_rebuilt(tmp_path, monkeypatch, refs, damage):
    from nqsbench import catalog
    from nqsbench.build import cache_path, get_hamiltonian

    monkeypatch.setenv("NQSBENCH_CACHE", str(tmp_path / "cache"))
    geom = catalog.load("h-chain").geometry({"d": 2.2}, (1, 1, 2))
    e_hf = get_hamiltonian(geom).e_hf
    path = cache_path(geom)
    damage(path)
    res = invoke("reference", "hf", *GEOM, "--force", "--references", refs)
    assert res.exit_code == 0, res.output
    rec = read_record(refs / "h-chain" / "d2.2_k1x1x2" / "hf.json")
    assert abs(rec.e_hf_per_cell - e_hf) < 1e-8 and get_hamiltonian(geom).e_hf == pytest.approx(e_hf, abs=1e-8)


def test_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    full, part = tmp_path / "full.json", tmp_path / "part.json"
    assert invoke("run", *GEOM, "--steps", 6, "--out", full, "--no-progress").exit_code == 0
    res = invoke("run", *GEOM, "--steps", 4, "--checkpoint-every", 0, "--out", part, "--no-progress")
    assert res.exit_code == 0, res.output
    ckpts = sorted((tmp_path / "part.ckpt").glob("ckpt_*.npz"))
    assert [p.name for p in ckpts] == ["ckpt_000003.npz", "ckpt_000004.npz"]
    truncate(ckpts[-1])
    res = invoke("run", *GEOM, "--steps", 6, "--resume", "--out", part, "--no-progress")
    assert res.exit_code == 0, res.output
    a, b = read_record(full, ResultRecord), read_record(part, ResultRecord)
    assert b.n_steps == 6 and abs(a.energy_per_cell - b.energy_per_cell) < 1e-12   # resumed at step 3
    # every checkpoint damaged: one line naming the folder, exit 2, the record untouched
    for p in (tmp_path / "part.ckpt").glob("ckpt_*.npz"):
        flip(p, 0.3)
        truncate(p)
    before = part.read_bytes()
    res = invoke("run", *GEOM, "--steps", 8, "--resume", "--out", part, "--no-progress")
    assert res.exit_code == 2 and "no readable checkpoint" in res.output and "part.ckpt" in res.output
    assert "Traceback" not in res.output and part.read_bytes() == before


def test_damaged_parameters_are_named(tmp_path, refs):
    results = tmp_path / "results"
    args = ["--results", results, "--references", refs]
    assert invoke("run", *GEOM, "--steps", 3, "--no-progress", *args).exit_code == 0
    params = results / "h-chain" / "d2.2_k1x1x2" / "nqs-rbm-exact-s0.params.msgpack"
    truncate(params)
    res = invoke("bands", *GEOM, "--no-plot", *args)
    assert res.exit_code == 2 and str(params) in res.output.replace("\n", "") and "unreadable parameters" in res.output
    assert "Traceback" not in res.output and not list(results.rglob("*.bands-*.json"))


def test_record_with_invalid_utf8_is_named(refs):
    path = refs / "h-chain" / "d2.2_k1x1x2" / "exact.json"
    path.write_bytes(b'{"kind": "reference", "method": "ex\xff\xfeact"}')
    res = invoke("table", "--references", refs, "--results", refs.parent / "results")
    assert res.exit_code == 2 and str(path) in res.output and "Traceback" not in res.output


def test_edited_record_fails_its_checksum_and_is_recomputed(refs):
    path = refs / "h-chain" / "d2.2_k1x1x2" / "hf.json"
    true = read_record(path).energy_per_cell
    data = json.loads(path.read_text())
    data["energy_per_cell"] = true - 0.05                 # another valid number
    path.write_text(json.dumps(data))
    res = invoke("reference", "hf", *GEOM, "--references", refs)
    assert res.exit_code == 0 and "wrote" in res.output, res.output          # not "cached"
    assert read_record(path).energy_per_cell == pytest.approx(true, abs=1e-8)
    data = json.loads(path.read_text())
    data["energy_per_cell"] = true - 0.05
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="content checksum mismatch"):
        read_record(path)
