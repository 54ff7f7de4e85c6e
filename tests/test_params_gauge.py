"""Saved parameters travel between builds of the same integrals (Bloch-orbital phases are
arbitrary: another thread count gives other ones) by the models' ``rephase``."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from conftest import hchain
from nqsbench.nqs import NQS, Sector, models
from nqsbench.nqs.bruteforce import sector_basis, sector_matrix
from nqsbench.nqs.results import gauge_phases, load_params, params_path, save_params


def rephased_build(ham, theta):
    """``ham`` in orbitals |B_kp⟩ = e^{iθ_kp}|A_kp⟩: what another build of it may be."""
    ph = np.exp(1j * theta)                                    # (N_k, n_orb)
    h1 = ph.conj()[:, :, None] * ham.h1 * ph[:, None, :]
    nk = ham.nk
    eri = ham.eri.copy()
    for k1 in range(nk):
        for k2 in range(nk):
            for k3 in range(nk):
                k4 = ham.kconserv[k1, k2, k3]
                eri[k1, k2, k3] *= np.einsum("p,q,r,s->pqrs", ph[k1].conj(), ph[k2], ph[k3].conj(), ph[k4])
    c = ham.mo_coeff.copy()
    c[:, :, ham.n_core:ham.n_core + ham.n_orb] *= ph[:, None, :]
    return dataclasses.replace(ham, h1=h1, eri=eri, mo_coeff=c)


def energy(ham, model, params):
    basis = sector_basis(ham)
    psi = np.exp(np.asarray(model.log_psi(params, basis)))
    return (np.vdot(psi, sector_matrix(ham, basis) @ psi) / np.vdot(psi, psi)).real


@pytest.mark.parametrize("kind", [{"kind": "rbm", "alpha": 1.0}, {"kind": "nnbf", "width": 1.0}])
def test_saved_parameters_are_carried_to_another_build(tmp_path, kind):
    """A state trained on one build has the same energy (1e-10 Ha) on a build whose orbitals
    differ by phases once its parameters are rephased, and not without (the test can fail)."""
    a = hchain(2, 1.8)
    theta = np.random.default_rng(3).uniform(-np.pi, np.pi, (a.nk, a.n_orb))
    b = rephased_build(a, theta)
    assert a.hash != b.hash
    sector = Sector.from_hamiltonian(a)
    mf = NQS(a, model=models.build(kind, sector), sampler="exact", seed=2)
    leaves, tree = jax.tree_util.tree_flatten(mf.params)       # a correlated state, not HF
    rng = np.random.default_rng(5)
    mf.params = tree.unflatten([x + 0.2 * (rng.normal(size=x.shape) + 1j * rng.normal(size=x.shape))
                                for x in leaves])
    mf.run(1)
    path = save_params(mf, params_path(tmp_path / "nqs.json"))

    e_a = energy(a, mf.model, mf.params)
    assert abs(e_a - mf.e_tot) < 1e-9
    moved, meta = load_params(path, b, template=mf.params, model=mf.model)
    assert abs(energy(b, mf.model, moved) - e_a) < 1e-10
    assert meta["rephased"] > 0.1
    assert abs(energy(b, mf.model, mf.params) - e_a) > 1e-4          # the phases matter
    same, _ = load_params(path, a, template=mf.params, model=mf.model)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(same),
                                                       jax.tree_util.tree_leaves(mf.params)))


def test_other_orbitals_are_refused(tmp_path):
    """Orbitals that differ by more than phases (a rotation among them, another geometry) are
    not carried over: one line naming the reason and what to do."""
    a = hchain(2, 1.8)
    mf = NQS(a, model=models.build("rbm", Sector.from_hamiltonian(a)), sampler="exact", seed=2).run(2)
    path = save_params(mf, params_path(tmp_path / "nqs.json"))
    np.testing.assert_allclose(gauge_phases(a.mo_coeff[:, :, a.n_core:a.n_core + a.n_orb], a), 0,
                               atol=1e-12)
    other = hchain(2, 2.2)
    with pytest.raises(ValueError, match="differ by more than phases.*rerun `nqsbench run`"):
        load_params(path, other, template=mf.params, model=mf.model)

    class NoRephase:
        pass
    b = rephased_build(a, np.full((a.nk, a.n_orb), 0.3))
    with pytest.raises(ValueError, match="cannot take other orbital phases"):
        load_params(path, b, template=mf.params, model=NoRephase())


def test_a_checkpoint_resumes_on_another_build(tmp_path):
    """Killed at step 3 on one build, resumed on a build whose orbitals differ by phases: the
    energy trace is the uninterrupted run's (1e-10; SR is gauge covariant once the parameters are
    rephased). A checkpoint without orbitals, or of other integrals, is refused with the reason."""
    from nqsbench.nqs import Checkpoint, load_latest_checkpoint

    a = hchain(2, 1.8)
    b = rephased_build(a, np.random.default_rng(4).uniform(-np.pi, np.pi, (a.nk, a.n_orb)))
    full = NQS(a, sampler="exact", seed=2).run(6)
    NQS(a, sampler="exact", seed=2).run(3, callbacks=[Checkpoint(tmp_path / "ck", every_seconds=None)])
    resumed = NQS(b, sampler="exact", seed=2)
    assert resumed.checkpoint_mismatch(load_latest_checkpoint(tmp_path / "ck")[1]) is None
    resumed.run(6, resume=tmp_path / "ck")
    assert resumed.rephased > 0.1
    np.testing.assert_allclose(resumed.trace["energy"], full.trace["energy"], rtol=0, atol=1e-10)
    assert abs(resumed.energy - full.energy) < 1e-10

    path, data = load_latest_checkpoint(tmp_path / "ck")
    bare = {k: v for k, v in data.items() if k != "gauge/mo_coeff"}
    with pytest.raises(ValueError, match="cannot be carried over: the file has no orbital coefficients"):
        NQS(b, sampler="exact", seed=2).load_state_arrays(bare)
    with pytest.raises(ValueError, match="cannot be carried over: .*"):
        NQS(hchain(2, 2.2), sampler="exact", seed=2).load_state_arrays(data)
    NQS(a, sampler="exact", seed=2).load_state_arrays(bare)     # the same build needs no orbitals
