"""Exact enumeration and Metropolis chains give the right energy; Stats behaves."""

import jax
import numpy as np

from nqsbench.nqs import NQS, RBM, MetropolisSampler, Sector, statistics
from nqsbench.nqs import bruteforce as bf
from conftest import hchain




def rayleigh(ham, model, params):
    basis = bf.sector_basis(ham)
    h = bf.sector_matrix(ham, basis)
    psi = np.exp(np.asarray(model.log_psi(params, basis)))
    return float(np.real(np.vdot(psi, h @ psi) / np.vdot(psi, psi)))


def test_exact_sampling_energy_equals_rayleigh_quotient():
    ham = hchain(3)
    for exact_matrix in (True, False):
        mf = NQS(ham, model=RBM(2 * ham.n_spatial, alpha=1.0, sigma=0.2), init="random", seed=3,
                 exact_matrix=exact_matrix)
        st = mf.evaluate()
        ref = rayleigh(ham, mf.model, mf.params)
        assert abs(np.real(st.mean) - ref) < 1e-10 * abs(ref)
        assert abs(np.imag(st.mean)) < 1e-10


def test_metropolis_within_four_error_bars():
    ham = hchain(3)
    sec = Sector.from_hamiltonian(ham)
    model = RBM(sec.n_spin_orbitals, alpha=1.0, sigma=0.2)
    sampler = MetropolisSampler(sec, n_chains=32, n_samples=4096, n_discard_per_chain=16)
    mf = NQS(ham, model=model, sampler=sampler, seed=5)
    ref = rayleigh(ham, model, mf.params)
    st = mf.evaluate()
    assert st.error_of_mean > 0
    assert abs(np.real(st.mean) - ref) < 4 * st.error_of_mean, (st, ref)
    assert st.R_hat < 1.1
    # chains stay in the sector
    xs, _, _, info = sampler.sample(model, mf.params, mf.sampler_state, jax.random.PRNGKey(0))
    assert sec.contains(np.asarray(xs).reshape(-1, sec.n_spin_orbitals)).all()
    assert 0.02 < float(info["acceptance"]) < 1.0


def test_stats_iid_and_weighted():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 2000))
    st = statistics(x)
    assert st.tau_corr < 0.2 and abs(st.R_hat - 1) < 0.01
    assert abs(st.error_of_mean - 1 / np.sqrt(x.size)) < 0.2 / np.sqrt(x.size)
    # AR(1) with phi = 0.8: tau_corr = phi/(1-phi) = 4
    y = np.zeros((8, 20000))
    for t in range(1, y.shape[1]):
        y[:, t] = 0.8 * y[:, t - 1] + rng.normal(size=8)
    assert 3.0 < statistics(y).tau_corr < 5.0
    w = np.array([0.25, 0.75])
    sw = statistics(np.array([1.0, 3.0]), w)
    assert abs(sw.mean - 2.5) < 1e-14 and abs(sw.variance - 0.75) < 1e-14 and sw.error_of_mean == 0


def test_exact_sampler_refuses_huge_sectors():
    import pytest

    from nqsbench.errors import SectorTooLargeError
    from nqsbench.nqs import ExactSampler
    with pytest.raises(SectorTooLargeError, match="metropolis"):
        ExactSampler(Sector.from_hamiltonian(hchain(3)), max_dim=10)


def test_pooled_final_estimate_matches_the_concatenated_samples():
    """stats.pool of B equal batches = statistics of all samples (i.i.d. data: mean exactly,
    error to the sampling accuracy of an error bar); a driver's final Markov-chain estimate
    pools eval_batches sampler calls and shrinks its error bar ~1/√B."""
    from nqsbench.nqs.stats import pool

    rng = np.random.default_rng(0)
    data = rng.normal(1.0, 2.0, size=(16, 32, 64))           # 16 batches × 32 chains × 64
    pooled = pool([statistics(b) for b in data])
    whole = statistics(data.transpose(1, 0, 2).reshape(32, -1))
    assert abs(pooled.mean - whole.mean) < 1e-12
    assert abs(pooled.error_of_mean / whole.error_of_mean - 1) < 0.25
    assert pooled.n_samples == data.size

    ham = hchain(2)
    smp = MetropolisSampler(Sector.from_hamiltonian(ham), n_chains=16, n_samples=256)
    one = NQS(ham, sampler=smp, seed=2, eval_batches=1).run(0)
    many = NQS(ham, sampler=smp, seed=2, eval_batches=16).run(0)
    assert many.stats.n_samples == 16 * one.stats.n_samples
    assert many.energy_error < 0.5 * one.energy_error
    assert abs(many.energy - one.energy) < 4 * one.energy_error
