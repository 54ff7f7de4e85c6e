"""The semistochastic Markov-chain estimator (``deterministic`` = M): the M most probable
configurations seen are summed exactly each step and the samples among them replaced by that sum.

Checked: with the whole sector in the set it is exact sampling (energy, variance and SR update
to 1e-12);
with a partial set its energy is unbiased (within error bars of the exact one at fixed
parameters); the set is the M most probable distinct configurations among the last set and the
step's samples; a killed run resumes to the uninterrupted trace; plain sampling's settings
hash is unchanged; the option is refused for exact sampling; the NNBF's chains use a set of 128
by default, the RBM's none.
"""
from pathlib import Path

import numpy as np
import jax.numpy as jnp
import pytest
from jax.flatten_util import ravel_pytree

from nqsbench.nqs import NQS, SR, Checkpoint, DivergenceGuard, MetropolisSampler, Sector, latest_checkpoint
from nqsbench.nqs import bruteforce as bf
from conftest import Kill, hchain

RECORDS = Path(__file__).resolve().parent.parent / "records"     # committed records (read only)


def chains(ham, deterministic, **kw):
    sampler = MetropolisSampler(Sector.from_hamiltonian(ham), n_chains=8, n_samples=64, n_discard_per_chain=2,
                                beta=0.5, target_ess=0.25)
    return NQS(ham, sampler=sampler, optimizer=SR(0.05, 1e-2), seed=3, init="random",
               deterministic=deterministic, **kw)


def test_the_whole_sector_in_the_set_is_exact_sampling():
    ham = hchain(2)
    exact = NQS(ham, sampler="exact", optimizer=SR(0.05, 1e-2), seed=3, init="random")
    configs = exact.sampler.configs
    mc = chains(ham, deterministic=len(configs))
    state = mc.sampler_state
    mc.sampler_state = {**state, "det_x": jnp.asarray(configs, dtype=state["det_x"].dtype),
                        "det_ok": jnp.ones(len(configs), bool)}
    mc.run(1)
    exact.run(1)
    assert abs(mc.trace["energy"][0] - exact.trace["energy"][0]) < 1e-12
    assert np.abs(ravel_pytree(mc.params)[0] - ravel_pytree(exact.params)[0]).max() < 1e-12
    assert mc.trace["error"][0] < 1e-12                    # nothing left to sample
    # the variance is Var H (V-score, divergence checks), not that of the per-sample means over D
    assert abs(mc.trace["variance"][0] - exact.trace["variance"][0]) < 1e-10 * exact.trace["variance"][0]


def test_a_partial_set_leaves_the_energy_unbiased_and_keeps_the_most_probable():
    ham = hchain(2)
    trained = NQS(ham, sampler="exact", seed=3, init="hf").run(30)     # peaked on a few configurations
    mc = chains(ham, deterministic=5).start_from(trained.params)
    basis = bf.sector_basis(ham)
    psi = np.asarray(np.exp(mc.model.log_psi(mc.params, jnp.asarray(basis))))
    h = bf.sector_matrix(ham, basis).toarray()
    e_exact = float(np.real(np.vdot(psi, h @ psi) / np.vdot(psi, psi))) / ham.nk
    st = mc.evaluate(n_batches=200)              # no update: the set fills, then is summed exactly
    assert abs(np.real(st.mean) / ham.nk - e_exact) < 4 * st.error_of_mean / ham.nk + 1e-12
    x = np.asarray(mc.sampler_state["det_x"])
    assert not bool(np.asarray(mc.sampler_state["det_ok"]).any())     # evaluate() does not keep its state
    mc.run(2)
    x, ok = np.asarray(mc.sampler_state["det_x"]), np.asarray(mc.sampler_state["det_ok"])
    assert ok.all() and len({tuple(r) for r in x}) == 5
    a2 = np.abs(np.exp(np.asarray(mc.model.log_psi(mc.params, jnp.asarray(x))))) ** 2
    assert np.all(np.diff(a2) <= 1e-15 * a2.max())      # largest |ψ|² first


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    ham = hchain(2)
    ref = chains(ham, deterministic=6).run(6)
    with pytest.raises(KeyboardInterrupt):
        chains(ham, deterministic=6).run(6, callbacks=[DivergenceGuard(), Checkpoint(tmp_path, every_steps=1), Kill(3)])
    assert latest_checkpoint(tmp_path).name == "ckpt_000004.npz"
    resumed = chains(ham, deterministic=6).run(6, resume=tmp_path)
    np.testing.assert_array_equal(resumed.trace_arrays["energy"], ref.trace_arrays["energy"])
    assert abs(resumed.energy - ref.energy) < 1e-12


def test_settings_hash_of_plain_sampling_is_unchanged_and_exact_sampling_refuses_it():
    from nqsbench.methods.nqs import nqs_settings

    plain = nqs_settings(sampler="mcmc")
    assert "deterministic" not in plain.model_dump()["sampler"]
    assert nqs_settings(sampler="mcmc", deterministic=128).settings_hash() != plain.settings_hash()
    with pytest.raises(ValueError, match="mcmc"):
        nqs_settings(sampler="exact", deterministic=8)
    with pytest.raises(ValueError, match="Markov chains"):
        NQS(hchain(2), sampler="exact", deterministic=8)


def test_the_nnbf_chains_use_the_set_by_default_and_the_rbm_chains_do_not():
    from nqsbench.methods.nqs import nqs_settings
    from nqsbench.records import ResultRecord, read_record
    from nqsbench.suites import NQSTask

    assert nqs_settings(sampler="mcmc", model="nnbf").sampler.deterministic == 128
    assert nqs_settings(sampler="mcmc", model="nnbf", deterministic=0).sampler.deterministic == 0
    assert nqs_settings(sampler="mcmc", model="nnbf", deterministic=16).sampler.deterministic == 16
    assert nqs_settings(sampler="exact", model="nnbf").sampler.deterministic == 0
    # the RBM's chains keep plain sampling, and with it the settings hash of their committed records
    committed = read_record(RECORDS / "defaults-auto" / "h-chain" / "d1.8_k1x1x6"
                            / "nqs-rbm-mcmc-s0-defaults.json", ResultRecord)
    assert nqs_settings(sampler="mcmc", model="rbm", max_minutes=30).settings_hash() == committed.settings_hash
    assert "deterministic" not in nqs_settings(sampler="mcmc", model="rbm").model_dump()["sampler"]
    task = dict(kind="nqs", system="h-chain", kmesh=[1, 1, 4], model="nnbf", sampler="mcmc")
    assert NQSTask(**task).settings().sampler.deterministic == 128
    assert NQSTask(**task, deterministic=0).settings().sampler.deterministic == 0


def test_the_table_tells_chains_with_a_set_from_plain_chains():
    from nqsbench.table import records_table

    df, errors = records_table([RECORDS / "defaults-auto" / "h-chain" / "d3.6_k1x1x4",
                                RECORDS / "nnbf-mcmc-plain" / "h-chain" / "d3.6_k1x1x4"])
    assert not errors
    chains = df[(df["model"] == "nnbf") & (df["sampler"] == "mcmc")].set_index("path")["deterministic"]
    assert len(chains) == 2
    assert {p.split("/records/")[1].split("/")[0]: (0 if v != v else v) for p, v in chains.items()} == {
        "defaults-auto": 128, "nnbf-mcmc-plain": 0}


def test_the_plan_counts_the_set_beside_the_samples():
    mc = chains(hchain(2), deterministic=5)
    plan = mc.memory_plan
    assert plan.n_deterministic == 5 and plan.n_samples == 64
    assert plan.eloc_seconds == plan.seconds_per_config * 69
    assert "64 samples + 5 summed exactly" in plan.summary()
