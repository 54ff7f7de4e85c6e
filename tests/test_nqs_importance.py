"""Importance-sampled Metropolis chains (|ψ|^{2β}, weights |ψ|^{2(1−β)}) estimate the same state."""

import numpy as np

from nqsbench.nqs import NQS, RBM, MetropolisSampler, Sector
from nqsbench.nqs import bruteforce as bf
from nqsbench.nqs.stats import importance_statistics
from conftest import hchain




def test_beta_half_within_four_error_bars_on_a_peaked_state():
    ham = hchain(3)
    sec = Sector.from_hamiltonian(ham)
    model = RBM(sec.n_spin_orbitals, alpha=1.0, sigma=0.1, bias=1.0)   # peaked near HF
    sampler = MetropolisSampler(sec, n_chains=32, n_samples=4096, n_discard_per_chain=16, beta=0.5)
    mf = NQS(ham, model=model, sampler=sampler, seed=5)
    basis = bf.sector_basis(ham)
    h = bf.sector_matrix(ham, basis)
    psi = np.exp(np.asarray(model.log_psi(mf.params, basis)))
    p = np.abs(psi) ** 2 / np.vdot(psi, psi).real
    ref = float(np.real(np.vdot(psi, h @ psi) / np.vdot(psi, psi)))
    el = (h @ psi) / psi
    var_ref = float(np.sum(p * np.abs(el - ref) ** 2))
    st = mf.evaluate()
    assert st.error_of_mean > 0
    assert abs(np.real(st.mean) - ref) < 4 * st.error_of_mean, (st, ref)
    assert abs(st.variance - var_ref) < 0.25 * var_ref
    assert mf.dump_flags()["sampler"]["beta"] == 0.5


def test_importance_statistics_uniform_weights_match_plain():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 500))
    w = np.full(x.shape, 1.0 / x.size)
    st = importance_statistics(x, w)
    assert abs(st.mean - x.mean()) < 1e-12 and abs(st.variance - x.var()) < 1e-12
    assert abs(st.error_of_mean - 1 / np.sqrt(x.size)) < 0.2 / np.sqrt(x.size)
