"""Importance-sampled Metropolis chains (|ψ|^{2β}, weights |ψ|^{2(1−β)}) estimate the same state."""

import jax
import numpy as np
import pytest

from nqsbench.nqs import NQS, RBM, MetropolisSampler, Sector
from nqsbench.nqs import bruteforce as bf
from nqsbench.nqs.stats import importance_statistics
from conftest import Kill, hchain




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


def test_adaptive_beta_backs_off_on_uneven_weights_and_creeps_to_its_floor_on_even_ones():
    sec = Sector.from_hamiltonian(hchain(2))
    s = MetropolisSampler(sec, n_chains=4, n_samples=64, beta=0.5, target_ess=0.25)
    even = np.full(64, 1 / 64)
    uneven = np.r_[np.full(4, 0.2), np.full(60, 0.2 / 60)]          # 1/Σw² = 5.9 of 64
    assert abs(float(s.next_beta(0.5, even)) - 0.5) < 1e-15          # at the floor already
    assert abs(float(s.next_beta(0.8, even)) - 0.79) < 1e-12         # 1 − β grows by BETA_STEP
    assert abs(float(s.next_beta(0.8, uneven)) - 0.9) < 1e-12        # 1 − β halves
    assert abs(float(s.next_beta(1.0, even)) - 0.99) < 1e-12         # β = 1 is left again
    with pytest.raises(ValueError, match="target_ess"):
        MetropolisSampler(sec, target_ess=1.5)


def test_adaptive_beta_estimates_the_state_and_rises_where_weights_are_uneven():
    """Same peaked state as above; a target no fixed β = 0.5 meets makes β climb, and the
    estimate with the adapted β (any β gives an unbiased estimate) is within four error bars."""
    ham = hchain(3)
    sec = Sector.from_hamiltonian(ham)
    model = RBM(sec.n_spin_orbitals, alpha=1.0, sigma=0.1, bias=1.0)
    sampler = MetropolisSampler(sec, n_chains=32, n_samples=4096, n_discard_per_chain=16, beta=0.5,
                                target_ess=0.95)
    mf = NQS(ham, model=model, sampler=sampler, seed=5)
    basis = bf.sector_basis(ham)
    h = bf.sector_matrix(ham, basis)
    psi = np.exp(np.asarray(model.log_psi(mf.params, basis)))
    ref = float(np.real(np.vdot(psi, h @ psi) / np.vdot(psi, psi)))
    beta = 0.5
    for b in range(4):
        xs, w, mf.sampler_state, info = sampler.sample(model, mf.params, mf.sampler_state,
                                                       jax.random.PRNGKey(b))
        assert abs(float(info["beta"]) - beta) < 1e-15       # the β these samples were drawn at
        frac = 1 / float(np.sum(np.asarray(w) ** 2)) / w.size
        beta = 1 - (1 - beta) / 2 if frac < 0.95 else max(beta - 0.01, 0.5)
        assert abs(float(mf.sampler_state["beta"]) - beta) < 1e-12
    assert beta >= 0.75                                  # at β = 0.5 the weights are uneven
    st = mf.evaluate(4)
    assert abs(np.real(st.mean) - ref) < 4 * st.error_of_mean, (st, ref)
    assert mf.dump_flags()["sampler"]["target_ess"] == 0.95


def test_adaptive_beta_is_checkpointed_and_resumes_exactly(tmp_path):
    from nqsbench.nqs import SR, Checkpoint, DivergenceGuard

    ham = hchain(2)

    def run():
        smp = MetropolisSampler(Sector.from_hamiltonian(ham), n_chains=8, n_samples=128,
                                n_discard_per_chain=2, beta=0.5, target_ess=0.9)
        return NQS(ham, sampler=smp, optimizer=SR(0.05, 1e-2), seed=11)

    ref = run().run(7)
    assert len(set(ref.trace["beta"])) > 1                # it did adapt
    with pytest.raises(KeyboardInterrupt):
        run().run(7, callbacks=[DivergenceGuard(), Checkpoint(tmp_path, every_steps=1), Kill(3)])
    resumed = run().run(7, callbacks=[Checkpoint(tmp_path, every_steps=1)], resume=tmp_path)
    for k in ("energy", "beta", "effective_samples"):
        np.testing.assert_array_equal(resumed.trace_arrays[k], ref.trace_arrays[k])
