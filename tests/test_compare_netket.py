"""`nqsbench compare netket`: same Hamiltonian, RBM parameters and samples in NetKet and here.
The NetKet runs need the optional 'peers' extra (skipped without it); the error paths always run."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from nqsbench.cli import app

runner = CliRunner()
SMALL = ["--batch", "64", "--sr-samples", "64", "--repeat", "1", "--netket-chunks", "32"]


def test_without_netket_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "netket", None)          # `import netket` raises ImportError
    res = runner.invoke(app, ["compare", "netket", "h-chain", "-k", "1,1,2"])
    assert res.exit_code == 2, res.output
    assert "pip install -e '.[peers]'" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args, match", [
    (["--netket-chunks", "64,x"], "--netket-chunks"),
    (["--batch", "0"], "--batch"),
    (["--alpha", "-1"], "--alpha"),
    (["-k", "1,1"], "kmesh"),
    (["-p", "q=1"], "q"),
])
def test_bad_input_exit_2(args, match):
    res = runner.invoke(app, ["compare", "netket", "h-chain", *args])
    assert res.exit_code == 2 and match in res.output and "Traceback" not in res.output, res.output


@pytest.fixture(scope="module")
def comparison(ham_factory):
    pytest.importorskip("netket")
    from nqsbench.peers.compare import compare_netket

    ham = ham_factory("h-chain", kmesh=(1, 1, 2))
    return compare_netket(ham, label="h-chain", batch=64, sr_samples=64, netket_chunks=(32,), repeat=1)


def test_same_parameters_same_exact_energy(comparison):
    r = comparison
    assert r.exact_ours is not None and r.sector_dim > 0
    assert abs(r.exact_ours - r.exact_netket) < 1e-10


def test_same_samples_same_local_energies(comparison):
    r = comparison
    assert np.isfinite(r.eloc_max_diff) and r.eloc_max_diff < 1e-9 * max(1.0, r.eloc_scale)


def test_same_sr_update(comparison):
    # NetKet's gradient of a holomorphic ansatz is 2F, so its update is 2δ; compared as δ_nk/2
    r = comparison
    assert r.sr_max_diff is not None and r.sr_max_diff < 1e-9 * max(1.0, r.sr_scale)
    assert r.sr_ratio > 0 and r.eloc_ratio > 0


def test_exact_skipped_above_exact_max(ham_factory):
    pytest.importorskip("netket")
    from nqsbench.peers.compare import compare_netket

    ham = ham_factory("h-chain", kmesh=(1, 1, 2))
    r = compare_netket(ham, batch=32, repeat=1, netket_chunks=(0,), exact_max=1, sr=False)
    assert r.exact_ours is None and "exact_max" in r.exact_note and r.sr_ratio is None
    assert r.netket_chunk is None and r.eloc_max_diff < 1e-9 * max(1.0, r.eloc_scale)


def test_cli_prints_side_by_side():
    pytest.importorskip("netket")
    res = runner.invoke(app, ["compare", "netket", "h-chain", "-k", "1,1,2", *SMALL])
    assert res.exit_code == 0, res.output
    for word in ("ours/netket", "local energies / s", "SR steps / s", "exact ⟨H⟩", "max |ΔE_loc|"):
        assert word in res.output, res.output
