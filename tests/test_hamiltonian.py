"""The built Hamiltonian: HF identity, integral symmetries, momentum conservation, cache."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nqsbench import catalog
from nqsbench.hamiltonian import Hamiltonian

SYSTEMS = ["h-chain", "lih", "graphene", "polyacetylene"]


@pytest.mark.parametrize("system", SYSTEMS)
def test_hf_energy_from_integrals_equals_krhf(ham_factory, system):
    """⟨HF|H|HF⟩/N_k from our integrals = PySCF's KRHF (exxdiv=None) energy, to 1e-8 Ha."""
    ham = ham_factory(system)
    assert abs(ham.hf_energy() - ham.e_hf) < 1e-8
    # Madelung bookkeeping reproduces PySCF's own exxdiv='ewald' KRHF energy.
    n0 = 2 * ham.n_alpha
    e_ewald = ham.e_hf + ham.ewald_shift(n0) / ham.nk
    assert abs(e_ewald - ham.meta["e_hf_ewald_pyscf"]) < 1e-8


@pytest.mark.parametrize("system,kmesh", [("h-chain", (1, 1, 3)), ("lih", (2, 1, 1))])
def test_integral_symmetries_and_momentum(ham_factory, system, kmesh):
    ham = ham_factory(system, kmesh)
    nk = ham.nk
    for k in range(nk):
        assert np.abs(ham.h1[k] - ham.h1[k].conj().T).max() < 1e-12
    kc = ham.kconserv
    for k1 in range(nk):
        for k2 in range(nk):
            for k3 in range(nk):
                k4 = kc[k1, k2, k3]
                # k4 from kconserv is the integer momentum balance k1 - k2 + k3
                assert k4 == ham.k_index(ham.kvec[k1] - ham.kvec[k2] + ham.kvec[k3])
                blk = ham.eri[k1, k2, k3]
                # (pq|rs) = (qp|sr)*   and   (pq|rs) = (rs|pq)
                assert np.abs(blk - ham.eri[k2, k1, k4].transpose(1, 0, 3, 2).conj()).max() < 1e-12
                assert np.abs(blk - ham.eri[k3, k4, k1].transpose(2, 3, 0, 1)).max() < 1e-12
    # Forbidden blocks are absent: only N_k^3 blocks are stored, and the dense view is exactly
    # zero wherever k1 - k2 + k3 - k4 != 0.
    assert ham.eri.shape[:3] == (nk, nk, nk)
    h, eri = ham.dense()
    korb = ham.orbital_k
    kv = ham.kvec[korb]
    bal = np.mod(kv[:, None, None, None] - kv[None, :, None, None] + kv[None, None, :, None]
                 - kv[None, None, None, :], ham.mesh).any(axis=-1)
    assert bal.any()
    assert np.all(eri[bal] == 0)
    assert np.all(h[korb[:, None] != korb[None, :]] == 0)


def test_vacuum_does_not_change_1d_results(ham_factory):
    """inf_vacuum treatment: H chain energies independent of the vacuum size (1e-6 Ha)."""
    from nqsbench.build import build_hamiltonian
    from nqsbench.exact import ExactDiagonalization

    e = []
    for vac in (10.0, 16.0):
        geom = catalog.load("h-chain").geometry(kmesh=(1, 1, 2))
        geom.lattice[0, 0] = geom.lattice[1, 1] = vac
        ham = build_hamiltonian(geom)
        ed = ExactDiagonalization(ham, bands=False).run()
        e.append((ham.e_hf, ed.summary()["energy_per_cell"]))
    assert abs(e[0][0] - e[1][0]) < 1e-6 and abs(e[0][1] - e[1][1]) < 1e-6


def test_cache_roundtrip_and_hit_skips_pyscf(tmp_path, monkeypatch):
    from nqsbench import build

    monkeypatch.setenv("NQSBENCH_CACHE", str(tmp_path))
    geom = catalog.load("h-chain").geometry(kmesh=(1, 1, 2))
    ham = build.get_hamiltonian(geom)
    path = build.cache_path(geom)
    assert path.exists() and path.parent == tmp_path / "hamiltonians"
    assert not list(path.parent.glob("*.tmp"))

    def boom(*a, **k):
        raise AssertionError("cache hit must not rebuild")
    monkeypatch.setattr(build, "build_hamiltonian", boom)
    again = build.get_hamiltonian(geom)
    assert again.hash == ham.hash and again.e_hf == ham.e_hf
    # A different geometry is a different key.
    assert build.cache_path(catalog.load("h-chain").geometry({"d": 2.0}, (1, 1, 2))) != path
    # The solver side loads and diagonalizes it with PySCF unimportable.
    code = ("import sys; sys.modules['pyscf'] = None\n"
            "from nqsbench.hamiltonian import Hamiltonian\nfrom nqsbench.exact import ExactDiagonalization\n"
            f"h = Hamiltonian.load({str(path)!r})\n"
            "print(ExactDiagonalization(h, bands=False).run().e_ground)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert np.isfinite(float(out.stdout.strip().splitlines()[-1]))


def test_hamiltonian_load_rejects_other_format(tmp_path, ham_factory):
    ham = ham_factory("h-chain", (1, 1, 2))
    p = ham.save(tmp_path / "h.npz")
    assert Hamiltonian.load(p).hash == ham.hash
    with np.load(p) as z:
        arrays = dict(z)
    arrays["header"] = np.array(str(arrays["header"]).replace('"format_version": 2', '"format_version": 99'))
    np.savez(tmp_path / "old.npz", **arrays)
    with pytest.raises(ValueError, match="format 99"):
        Hamiltonian.load(tmp_path / "old.npz")
