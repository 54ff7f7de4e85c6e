"""The models' log-determinant (nqsbench.nqs.linalg): the jax.numpy LU against LAPACK, its
holomorphic derivative, no LAPACK call where LAPACK can deadlock XLA's pool, and the NNBF local
energy through either kernel against brute force."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqsbench.nqs import FermionHamiltonian, make_local_energy
from nqsbench.nqs import bruteforce as bf
from nqsbench.nqs import linalg
from nqsbench.nqs.linalg import log_det, lu_log_det
from conftest import hchain
from test_models import nnbf_for


def _slogdet(a):
    sign, logabs = np.linalg.slogdet(a)
    return np.log(sign) + logabs


@pytest.mark.parametrize("n", [1, 2, 3, 8, 16])
def test_lu_log_det_equals_lapack_modulo_2pi_i(n):
    rng = np.random.default_rng(n)
    a = rng.normal(size=(7, 3, n, n)) + 1j * rng.normal(size=(7, 3, n, n))
    if n > 1:
        a[0, :, 0, 0] = 0.0                        # column 0's largest entry is off the diagonal
        a[1] = a[1][..., ::-1, :]                  # row-reversed: a swap at every step
    got = np.asarray(jax.jit(lu_log_det)(a))
    assert got.shape == (7, 3)
    d = got - _slogdet(a)
    np.testing.assert_allclose(d.real, 0.0, atol=1e-12)
    np.testing.assert_allclose(np.exp(1j * d.imag), 1.0, atol=1e-12)   # phase modulo 2π


def test_lu_log_det_of_permutations_and_a_near_zero_pivot():
    """det of a permutation is its sign (the swap count enters as iπ); a matrix whose leading
    entry is 1e-14 needs the pivoting to stay accurate; a singular one gives exp(log det) = 0."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = np.eye(6)[rng.permutation(6)]
        assert abs(np.exp(complex(lu_log_det(perm.astype(complex)))) - np.linalg.det(perm)) < 1e-14
    a = rng.normal(size=(5, 5)) + 0j
    a[0, 0] = 1e-14
    assert abs(np.exp(complex(lu_log_det(a)) - _slogdet(a)) - 1) < 1e-12
    a[2] = 0.0                                     # a zero row: ψ = 0 exactly, not NaN
    assert np.exp(complex(lu_log_det(a))) == 0


def test_lu_log_det_derivative_is_the_inverse_transpose():
    """d log det A / dA = A^{-T}, holomorphically (what stochastic reconfiguration takes)."""
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.normal(size=(6, 6)) + 1j * rng.normal(size=(6, 6)))
    g = jax.grad(lu_log_det, holomorphic=True)(a)
    np.testing.assert_allclose(np.asarray(g), np.linalg.inv(np.asarray(a)).T, atol=1e-12)


def test_no_lapack_call_where_lapack_can_deadlock(monkeypatch):
    """On CPU with a pool of several threads the determinant is not a LAPACK custom call (two of
    them at once deadlocked XLA's pool); on a pool of one it is (the faster kernel)."""
    a = jnp.zeros((4, 5, 5), complex)
    lower = lambda: jax.jit(lambda m: log_det(m)).lower(a).as_text()  # noqa: E731  (a new trace each time)
    monkeypatch.setattr(linalg, "lapack_is_safe", lambda: False)
    assert "getrf" not in lower()
    monkeypatch.setattr(linalg, "lapack_is_safe", lambda: True)
    assert "getrf" in lower()


def test_lapack_is_safe_follows_the_cpu_affinity(monkeypatch):
    if jax.default_backend() != "cpu":
        pytest.skip("the policy reads the CPU affinity on the CPU backend only")
    monkeypatch.setattr(linalg.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert linalg.lapack_is_safe.__wrapped__() is False
    monkeypatch.setattr(linalg.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert linalg.lapack_is_safe.__wrapped__() is True


@pytest.mark.parametrize("lapack", [False, True])
def test_nnbf_local_energy_through_either_kernel_matches_bruteforce(monkeypatch, lapack):
    monkeypatch.setattr(linalg, "lapack_is_safe", lambda: lapack)
    ham = hchain(3)
    sec, model, params = nnbf_for(ham, seed=3)
    basis = bf.sector_basis(ham)
    psi = np.exp(np.asarray(model.log_psi(params, basis)))
    ref = (bf.sector_matrix(ham, basis) @ psi) / psi
    eloc = make_local_energy(FermionHamiltonian(ham, sec), model, chunk_size=16)
    pick = np.random.default_rng(0).choice(len(basis), size=40, replace=False)
    np.testing.assert_allclose(np.asarray(eloc(params, basis[pick])), ref[pick], rtol=1e-10, atol=0)
