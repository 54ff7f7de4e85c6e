"""Monte Carlo estimator of the order-1 Krylov excitation space (issue 17): with every
configuration weighted by |ψ|² and the move averaged over all moves it is the exact estimator
(another code path: JAX connections two levels deep against string-space sector matvecs);
with sampled configurations and one random move it agrees within its jackknife error bars."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import hchain
from nqsbench.nqs.excitations import nqs_vector, subspace_exact
from nqsbench.nqs.hilbert import Sector
from nqsbench.nqs.krylov_mc import krylov_monte_carlo, krylov_ritz
from nqsbench.nqs.models.rbm import RBM


@pytest.fixture(scope="module")
def state():
    """A correlated random RBM on the H chain N_k = 2 (far from an eigenstate: the Krylov step
    moves E(N) by 0.6 Ha), its exact order-1 Krylov bands and |ψ|² over the sector."""
    ham = hchain(2, 1.8)
    sec = Sector.from_hamiltonian(ham)
    model = RBM(sec.n_spin_orbitals, alpha=1, sigma=0.3, bias=0.5)
    params = model.init(jax.random.PRNGKey(3), reference=sec.hf_config)
    psi, _ = nqs_vector(ham, model, params, sec)
    exact = subspace_exact(ham, psi, order=1, s_threshold=1e-3)
    configs = sec.enumerate()
    lp = np.asarray(model.log_psi(params, configs))
    p = np.exp(2 * (lp.real - lp.real.max()))
    return ham, sec, model, params, exact, configs, p / p.sum()


def test_all_moves_with_exact_weights_equal_the_exact_estimator(state):
    """E(N±1) Ritz energies and spectral weights to 1e-9 Ha, E(N) = ⟨Ψ|H|Ψ⟩: an identity (the
    sums run over ~C² terms of size |E|³ ~ 10⁵ Ha³, hence not 1e-12)."""
    ham, sec, model, params, exact, configs, p = state
    mc = krylov_monte_carlo(ham, model, params, configs[None], weights=p[None], sector=sec, n_blocks=4,
                            hops="all")
    assert abs(mc.e_ground - exact.meta["e_state"]) < 1e-9 and mc.meta["e_state"] == mc.e_ground
    assert len(mc.electron) == len(exact.electron) == 2 and len(mc.hole) == len(exact.hole) == 2
    for a, b in zip(exact.electron + exact.hole, mc.electron + mc.hole):
        assert (a.k, a.create, a.rank) == (b.k, b.create, b.rank) and a.rank == 2 * ham.n_orb
        ia, ib = np.argsort(a.e_total), np.argsort(b.e_total)
        np.testing.assert_allclose(b.e_total[ib], a.e_total[ia], atol=1e-9, rtol=0)
        np.testing.assert_allclose(b.weights[ib], a.weights[ia], atol=1e-9, rtol=0)
        np.testing.assert_allclose(b.eps, b.e_total - mc.e_ground if b.create else mc.e_ground - b.e_total)


def test_sampled_estimate_agrees_within_its_error_bars(state):
    """i.i.d. samples of |ψ|² (32 blocks × 32) and one random move per draw: E(N) and the
    E(N±1) of every branch's largest-weight roots within 4 jackknife standard errors of the
    exact estimator's."""
    ham, sec, model, params, exact, configs, p = state
    xs = configs[np.random.default_rng(1).choice(len(p), size=(32, 32), p=p)]
    said = []
    mc = krylov_monte_carlo(ham, model, params, xs, sector=sec, seed=2, log=said.append)
    # the pre-flight line (one sample timed), then one line per (k, branch) block
    assert said[0].startswith("krylov mc: ") and "per sample and (k, branch) block" in said[0], said
    assert len(said) == 1 + 2 * ham.nk
    assert mc.n_samples == 1024 and mc.n_blocks == 32 and mc.meta["order"] == 1
    assert 0 < mc.e_ground_error and abs(mc.e_ground - exact.meta["e_state"]) < 4 * mc.e_ground_error
    n = 0
    for a, b in zip(mc.electron + mc.hole, exact.electron + exact.hole):
        for j in np.argsort(a.weights)[::-1][:2]:
            i = np.argmin(np.abs(b.e_total - a.e_total[j]))
            err = a.eps_error[j]
            assert 0 < err < 0.2 and abs(a.e_total[j] - b.e_total[i]) < 4 * err, (a, b)
            assert abs(a.weights[j] - b.weights[i]) < 0.2
            n += 1
    assert n == 8


def test_lanczos_step_sample_values_are_the_sector_vectors(state):
    """The per-sample span{Ψ, HΨ} values of make_ground_sample — E_loc(x) and (H²Ψ)(x)/Ψ(x), two
    connection levels deep — equal HΨ and H²Ψ from the exact sector matvec, read at x."""
    import jax.numpy as jnp

    from nqsbench.nqs.krylov_mc import make_ground_sample

    ham, sec, model, params, exact, configs, p = state
    psi, eds = nqs_vector(ham, model, params, sec)
    hpsi = eds.matvec(psi)
    vecs = [psi, hpsi, eds.matvec(hpsi)]
    m = ham.n_spatial
    pw = np.int64(1) << np.arange(m, dtype=np.int64)
    xs = configs[::7]
    at = [eds.to_full(v)[eds.alpha.index(xs[:, :m].astype(np.int64) @ pw),
                         eds.beta.index(xs[:, m:].astype(np.int64) @ pw)] for v in vecs]
    smp = make_ground_sample(ham, sec, model)
    tables = smp.prepare(params)
    for j, x in enumerate(xs):
        g, t = (np.asarray(a) for a in smp(tables, jnp.asarray(x, dtype=jnp.int32)))
        e_loc, h2 = at[1][j] / at[0][j], at[2][j] / at[0][j]
        np.testing.assert_allclose([g[0, 1], t[0, 0], t[0, 1]], [e_loc, e_loc, h2], rtol=1e-10)


def test_ritz_in_gram_coordinates_equals_vectors():
    """krylov_ritz on G = V†V, T = V†HV of v = (φ, Hφ) equals Rayleigh–Ritz on the vectors."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 12)) + 1j * rng.normal(size=(12, 12))
    h = a + a.conj().T
    phi = rng.normal(size=(12, 2)) + 1j * rng.normal(size=(12, 2))
    v = np.concatenate([phi, h @ phi], axis=1)
    e, z, _, r = krylov_ritz(v.conj().T @ v, v.conj().T @ h @ v, 2, 1e-3)
    q, _ = np.linalg.qr(v)
    e_ref = np.linalg.eigvalsh(q.conj().T @ h @ q)
    assert r == 4
    np.testing.assert_allclose(e, e_ref, atol=1e-10)


def test_a_sample_that_does_not_fit_the_budget_is_refused_before_the_run(state):
    """The pre-flight reads one sample's XLA temporaries: a budget below them is refused with
    one line naming the way out, before any branch runs."""
    from nqsbench.errors import MemoryBudgetError

    ham, sec, model, params, exact, configs, p = state
    said = []
    with pytest.raises(MemoryBudgetError, match=r"krylov mc: one sample's two-level connection sums need .* GB"):
        krylov_monte_carlo(ham, model, params, configs[None, :8], sector=sec, memory_gb=1e-6, log=said.append)
    assert not said
