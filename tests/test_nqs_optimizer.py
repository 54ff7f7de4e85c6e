"""SR force = gradient of the exact energy; SR and MinSR (kernel) directions agree."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from nqsbench.nqs import NQS, RBM, force, jacobian, sr_direction
from nqsbench.nqs import bruteforce as bf
from conftest import hchain




def test_force_matches_finite_differences():
    ham = hchain(2)
    basis = bf.sector_basis(ham)
    h = bf.sector_matrix(ham, basis).toarray()
    model = RBM(2 * ham.n_spatial, alpha=1.0, sigma=0.3)
    mf = NQS(ham, model=model, init="random", seed=7)
    flat, unravel = ravel_pytree(mf.params)

    def energy(theta):
        psi = np.exp(np.asarray(model.log_psi(unravel(jnp.asarray(theta)), basis)))
        return float(np.real(np.vdot(psi, h @ psi) / np.vdot(psi, psi)))

    xs = jnp.asarray(basis, dtype=jnp.int32)
    psi = np.exp(np.asarray(model.log_psi(mf.params, xs)))
    w = jnp.asarray(np.abs(psi) ** 2 / np.sum(np.abs(psi) ** 2))
    el = jnp.asarray((h @ psi) / psi)
    f = np.asarray(force(jacobian(model, mf.params, xs), el, w))
    theta0 = np.asarray(flat)
    eps = 1e-5
    rng = np.random.default_rng(0)
    for k in rng.choice(len(theta0), size=8, replace=False):
        dk = np.zeros_like(theta0); dk[k] = eps
        du = (energy(theta0 + dk) - energy(theta0 - dk)) / (2 * eps)
        dv = (energy(theta0 + 1j * dk) - energy(theta0 - 1j * dk)) / (2 * eps)
        fd = 0.5 * (du + 1j * dv)          # ∂E/∂θ*
        assert abs(f[k] - fd) < 1e-7 + 1e-6 * abs(fd), (k, f[k], fd)


def test_sr_and_minsr_agree():
    rng = np.random.default_rng(1)
    ns, npar = 30, 50
    o = jnp.asarray(rng.normal(size=(ns, npar)) + 1j * rng.normal(size=(ns, npar)))
    el = jnp.asarray(rng.normal(size=ns) + 0.1j * rng.normal(size=ns))
    w = jnp.full(ns, 1.0 / ns)
    a = sr_direction(o, el, w, 1e-3, "sr")
    b = sr_direction(o, el, w, 1e-3, "minsr")
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-8, atol=1e-10)
    # and solves (S + eps) d = F
    sw = jnp.sqrt(w)
    ob = (o - (w[:, None] * o).sum(0)) * sw[:, None]
    s = jnp.conj(ob).T @ ob + 1e-3 * jnp.eye(npar)
    np.testing.assert_allclose(np.asarray(s @ a), np.asarray(force(o, el, w)), atol=1e-10)


@pytest.mark.parametrize("ns,npar", [(30, 50), (80, 40)])
def test_conjugate_gradients_agree_with_direct_solves(ns, npar):
    """The matrix-free solve (memory N_s × N_p only) gives the direct solves' δ."""
    rng = np.random.default_rng(ns)
    o = jnp.asarray(rng.normal(size=(ns, npar)) + 1j * rng.normal(size=(ns, npar)))
    el = jnp.asarray(rng.normal(size=ns) + 0.1j * rng.normal(size=ns))
    w = jnp.asarray(rng.uniform(0.5, 1.5, size=ns))
    w = w / w.sum()
    direct = sr_direction(o, el, w, 1e-2, "minsr" if ns < npar else "sr")
    cg = sr_direction(o, el, w, 1e-2, "cg")
    np.testing.assert_allclose(np.asarray(cg), np.asarray(direct), rtol=1e-8, atol=1e-10)


def test_cosine_decay_and_trust_region():
    from nqsbench.nqs.optimizer import SR, CosineDecay

    s = CosineDecay(0.25, 0.02, 100)
    assert abs(float(s(0)) - 0.25) < 1e-15 and abs(float(s(100)) - 0.02) < 1e-15
    assert abs(float(s(50)) - 0.135) < 1e-15 and abs(float(s(500)) - 0.02) < 1e-15   # midpoint, held
    ham = hchain(2)
    mf = NQS(ham, init="random", seed=3)
    xs, w, _, _ = mf.sampler.sample(mf.model, mf.params, {}, None)     # the sector, weights |ψ|²
    xs, w = xs[0], w[0]
    o = jacobian(mf.model, mf.params, xs)
    eloc = mf._eloc(mf.params, xs)
    flat0, _ = ravel_pytree(mf.params)
    for max_norm in (None, 1e-3):
        opt = SR(learning_rate=0.5, diag_shift=1e-3, max_norm=max_norm)
        new, _, dnorm = opt.update(o, eloc, w, mf.params, opt.init(mf.params))
        step = float(jnp.linalg.norm(ravel_pytree(new)[0] - flat0))
        if max_norm is None:
            assert abs(step - 0.5 * float(dnorm)) < 1e-10 and float(dnorm) > 1e-3
        else:
            assert abs(step - 0.5 * max_norm) < 1e-12      # δ rescaled to |δ| = max_norm, then × lr


def test_solve_cost_model_follows_the_solver_auto_picks():
    """The pre-flight's SR-solve flops: the Gram matrix of the smaller side (MinSR when samples
    < parameters), its Cholesky and the two products; CG per assumed iteration; and the
    pre-flight line names the solve's share."""
    from nqsbench.nqs.memory import MemoryPlan
    from nqsbench.nqs.optimizer import CG_ITERATIONS_TYPICAL, DIRECT_LIMIT, solver_mode, sr_solve_flops

    assert solver_mode("auto", 100, 1000) == "minsr" and solver_mode("auto", 1000, 100) == "sr"
    assert solver_mode("auto", DIRECT_LIMIT + 1, DIRECT_LIMIT + 1) == "cg" and solver_mode("sr", 10, 20) == "sr"
    assert sr_solve_flops("auto", 100, 1000) == 8 * 100 ** 2 * 1000 + 8 / 3 * 100 ** 3 + 16 * 100 * 1000
    assert sr_solve_flops("auto", 1000, 100) == sr_solve_flops("auto", 100, 1000)   # the same work transposed
    assert sr_solve_flops("cg", 10, 20) == 16 * 10 * 20 * (CG_ITERATIONS_TYPICAL + 1)
    plan = MemoryPlan(budget=8 << 30, process=1 << 30, process_peak=1 << 30, step=1 << 20, chunk_size=4,
                      eloc_per_config=1 << 20, n_samples=1000, n_parameters=500, seconds_per_config=1e-3,
                      solve_seconds=0.5)
    assert plan.seconds_per_step == pytest.approx(1.5) and "SR solve ≈ 0.5 s" in plan.summary()
    exact = MemoryPlan(budget=8 << 30, process=1 << 30, process_peak=1 << 30, step=1 << 20, chunk_size=0,
                       eloc_per_config=0, n_samples=1000, n_parameters=500, solve_seconds=0.5)
    assert exact.seconds_per_step == 0.5 and "0.5 s per step (the SR solve" in exact.summary()
    assert MemoryPlan(**{**exact.__dict__, "solve_seconds": None}).seconds_per_step is None


def test_exact_sampling_plans_the_time_of_its_sr_solve():
    """An exact-sampling run's pre-flight has a time per step: its SR solve over every
    configuration of the sector (no local energies to time), from the same cost model."""
    from nqsbench.nqs import memory
    from nqsbench.nqs.optimizer import sr_solve_flops

    plan = NQS(hchain(2), sampler="exact").memory_plan
    assert plan.seconds_per_config is None and plan.solve_seconds > 0
    flops = sr_solve_flops("auto", plan.n_samples, plan.n_parameters)
    assert plan.seconds_per_step == pytest.approx(flops / memory.complex_gemm_rate())   # measured once per process
    assert "time: ≈" in plan.summary()
