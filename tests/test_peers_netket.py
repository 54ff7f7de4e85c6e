"""NetKet peer harness: the same Hamiltonian, the same RBM parameters, the same samples."""
from __future__ import annotations

import numpy as np
import pytest

nk = pytest.importorskip("netket")

import jax  # noqa: E402

from nqsbench.nqs.bruteforce import sector_matrix  # noqa: E402
from nqsbench.nqs.hilbert import Sector  # noqa: E402
from nqsbench.nqs.models import RBM  # noqa: E402
from nqsbench.nqs.operator import FermionHamiltonian, make_local_energy  # noqa: E402
from nqsbench.peers.netket import (  # noqa: E402
    netket_local_energy, netket_log_psi, netket_operator, netket_rbm, to_netket_params,
    to_netket_samples,
)


@pytest.fixture(scope="module")
def setup(ham_factory):
    ham = ham_factory("h-chain", kmesh=(1, 1, 2))
    sec = Sector.from_hamiltonian(ham)
    xs = sec.enumerate()
    op = netket_operator(ham)
    return ham, sec, xs, op


def _netket_sector_matrix(op, xs):
    """mat[i, j] = ⟨x_i|H|x_j⟩ over the sector from NetKet's get_conn_padded."""
    xp, mel = (np.asarray(a) for a in op.get_conn_padded(to_netket_samples(xs)))
    pw = 1 << np.arange(xs.shape[1], dtype=np.int64)
    index = {int(c): i for i, c in enumerate(xs.astype(np.int64) @ pw)}
    mat = np.zeros((len(xs), len(xs)), dtype=complex)
    for row in range(len(xs)):
        for x, m in zip(xp[row], mel[row]):
            if m == 0:
                continue
            code = int(x.astype(np.int64) @ pw)
            assert code in index, "NetKet's H leaves the (N_up, N_dn, K) sector"
            # get_conn_padded(x) gives ⟨x|H|x'⟩: E_loc(x) = Σ mel ψ(x')/ψ(x)
            mat[row, index[code]] += m
    return mat


def test_operator_matches_bruteforce(setup):
    ham, sec, xs, op = setup
    ref = sector_matrix(ham, xs).toarray()
    ours_nk = _netket_sector_matrix(op, xs)
    assert np.abs(ours_nk - ref).max() < 1e-10


@pytest.mark.parametrize("seed", [0, 1])
def test_same_rbm_same_energies(setup, seed):
    ham, sec, xs, op = setup
    model = RBM(sec.n_spin_orbitals, alpha=2.0, sigma=0.3)
    params = model.init(jax.random.PRNGKey(seed))
    nk_model = netket_rbm(model)
    nk_params = to_netket_params(params)
    xnk = to_netket_samples(xs)

    lp_ours = np.asarray(model.log_psi(params, xs))
    lp_nk = np.asarray(netket_log_psi(nk_model)(nk_params, xnk))
    assert np.abs(lp_ours - lp_nk).max() < 1e-12

    e_ours = np.asarray(make_local_energy(FermionHamiltonian(ham, sec), model)(params, xs))
    e_nk = np.asarray(netket_local_energy(op, nk_model)(nk_params, xnk))
    # per sample (E_loc of a random RBM is O(10) Ha; agree to ~1e-11 relative)
    assert np.abs(e_ours - e_nk).max() < 1e-9 * max(1.0, np.abs(e_ours).max())

    # exact expectation over the sector: Σ |ψ|² E_loc / Σ |ψ|² (and ψ†Hψ/ψ†ψ from the brute force)
    w = np.exp(2.0 * (lp_ours.real - lp_ours.real.max()))
    w /= w.sum()
    energy_ours = float(np.real(w @ e_ours))
    energy_nk = float(np.real(w @ e_nk))
    psi = np.exp(lp_ours - lp_ours.real.max())
    h = sector_matrix(ham, xs)
    energy_bf = float(np.real(np.vdot(psi, h @ psi) / np.vdot(psi, psi)))
    assert abs(energy_nk - energy_ours) < 1e-10
    assert abs(energy_nk - energy_bf) < 1e-10


def test_array_path_equals_term_path(setup):
    # default operator (sparse integral arrays) vs every term listed and converted by NetKet
    ham, sec, xs, op = setup
    op_terms = netket_operator(ham, method="terms")
    model = RBM(sec.n_spin_orbitals, alpha=2.0, sigma=0.3)
    params = model.init(jax.random.PRNGKey(3))
    nk_model, nk_params, xnk = netket_rbm(model), to_netket_params(params), to_netket_samples(xs)
    e_arr = np.asarray(netket_local_energy(op, nk_model)(nk_params, xnk))
    e_trm = np.asarray(netket_local_energy(op_terms, nk_model)(nk_params, xnk))
    assert op.max_conn_size == op_terms.max_conn_size
    assert np.abs(e_arr - e_trm).max() < 1e-10 * max(1.0, np.abs(e_trm).max())
