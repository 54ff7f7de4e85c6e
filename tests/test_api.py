"""The public API of the README's Python section: load, build, run any method, the NQS driver."""
from __future__ import annotations

import pytest

import nqsbench


def test_readme_api_on_h_chain():
    geom = nqsbench.load_system("h-chain").geometry({"d": 1.8}, (1, 1, 2))
    ham = nqsbench.build_hamiltonian(geom)
    exact = nqsbench.run("exact", geom, ham=ham)
    hf = nqsbench.run("hf", geom, ham=ham)
    nqs = nqsbench.NQS(ham, sampler="exact").run(60)
    assert exact.converged and exact.settings.method == "exact"
    # variational: HF and the NQS lie above the exact ground state of the same Hamiltonian
    assert hf.energy_per_cell > exact.energy_per_cell
    assert nqs.energy_ewald >= exact.energy_per_cell - 1e-8
    assert nqs.energy_ewald < hf.energy_per_cell
    # keyword settings set fields of the method's typed settings model
    cc = nqsbench.run("ccsd", geom, ham=ham, max_cycle=120)
    assert cc.settings.max_cycle == 120 and cc.settings_hash == cc.settings.settings_hash()
    assert "ccsd" in nqsbench.methods.names("reference") and "nqs" in nqsbench.methods.names()


def test_unknown_method_is_one_line():
    from nqsbench.errors import NqsbenchError

    with pytest.raises(NqsbenchError, match="unknown method 'cisd'; available: exact, hf"):
        nqsbench.run("cisd", None)
