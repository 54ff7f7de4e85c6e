"""Local energy, sector and Tr H/dim of the NQS core against an independent brute-force H."""

import jax
import numpy as np
import pytest

from nqsbench.nqs import RBM, FermionHamiltonian, Sector, make_local_energy
from nqsbench.nqs import bruteforce as bf
from nqsbench.nqs.operator import sector_matrix_coo
from conftest import hchain




def random_params(model, seed):
    params = model.init(jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    params["a"] = params["a"] + 0.4 * (rng.normal(size=model.n_visible) + 1j * rng.normal(size=model.n_visible))
    return params


class LogPsiOnly:
    """The RBM seen through log_psi alone (the generic amplitude-ratio path)."""

    def __init__(self, rbm):
        self.rbm = rbm

    def log_psi(self, params, x):
        return self.rbm.log_psi(params, x)


@pytest.mark.parametrize("nk,product", [(2, True), (3, True), (3, False), (2, "log_psi")])
def test_local_energy_matches_bruteforce(nk, product):
    """Every amplitude-ratio form: RBM products of exp(±W) columns, log cosh, plain log_psi."""
    ham = hchain(nk)
    sec = Sector.from_hamiltonian(ham)
    basis = bf.sector_basis(ham)
    h = bf.sector_matrix(ham, basis)
    model = RBM(sec.n_spin_orbitals, alpha=1.0, sigma=0.3)
    seen = LogPsiOnly(model) if product == "log_psi" else model
    eloc = make_local_energy(FermionHamiltonian(ham, sec), seen, chunk_size=16,
                             product_ratios=None if product == "log_psi" else product)
    rng = np.random.default_rng(nk)
    for seed in (0, 1):
        params = random_params(model, seed)
        psi = np.exp(np.asarray(model.log_psi(params, basis)))
        ref = (h @ psi) / psi
        pick = rng.choice(len(basis), size=min(len(basis), 40), replace=False)
        got = np.asarray(eloc(params, basis[pick]))
        np.testing.assert_allclose(got, ref[pick], rtol=1e-10, atol=0)


def test_sector_enumeration_and_matrix():
    ham = hchain(3)
    sec = Sector.from_hamiltonian(ham)
    mine = sec.enumerate()
    ref = bf.sector_basis(ham)
    assert {bytes(r) for r in mine} == {bytes(r) for r in ref} and len(mine) == len(ref)
    assert sec.contains(mine).all() and sec.contains(sec.hf_config)
    rows, cols, vals = sector_matrix_coo(FermionHamiltonian(ham, sec), mine)
    import scipy.sparse as sp
    a = sp.coo_matrix((vals, (rows, cols)), shape=(len(mine),) * 2).toarray()
    # reorder the brute-force matrix into my basis order
    idx = {bytes(r): i for i, r in enumerate(ref)}
    perm = np.array([idx[bytes(r)] for r in mine])
    b = bf.sector_matrix(ham, ref).toarray()[np.ix_(perm, perm)]
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_hf_diagonal_and_e_inf():
    ham = hchain(2)
    sec = Sector.from_hamiltonian(ham)
    fh = FermionHamiltonian(ham, sec)
    x = sec.hf_config.astype(float)
    e_hf = fh.t_diag @ x + 0.5 * x @ fh.d_mat @ x + fh.constant
    assert abs(e_hf / ham.nk - ham.hf_energy()) < 1e-10
    # Tr H / dim over all K of the (N_up, N_dn) sector, brute force
    diags = []
    for k in range(ham.nk):
        basis = bf.sector_basis(ham, k_total=k)
        diags.append(np.real(bf.sector_matrix(ham, basis).diagonal()))
    e_inf_bf = np.concatenate(diags).mean()
    assert abs(fh.e_inf() - e_inf_bf) < 1e-10


def test_sector_dimension_nk4():
    assert Sector.from_hamiltonian(hchain(4)).dim() == 1236
