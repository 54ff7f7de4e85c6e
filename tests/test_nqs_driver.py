"""Driver: determinism, kill + resume, divergence handling, early stopping, accuracy on H2 chain."""
import functools
import json

import numpy as np
import pytest

from nqsbench.nqs import (NQS, SR, Checkpoint, CosineDecay, DivergenceError, DivergenceGuard,
                          EarlyStopping, MetropolisSampler, ProgressBar, Sector, latest_checkpoint)
from nqsbench.nqs import bruteforce as bf
from conftest import Kill, hchain




def metropolis_run(ham, optimizer=None, **kw):
    sampler = MetropolisSampler(Sector.from_hamiltonian(ham), n_chains=8, n_samples=128,
                                n_discard_per_chain=2)
    return NQS(ham, sampler=sampler, optimizer=optimizer or SR(0.05, 1e-2), seed=11, **kw)


def test_same_seed_same_energy():
    ham = hchain(2)
    a = NQS(ham, seed=4).run(6)
    b = NQS(ham, seed=4).run(6)
    assert abs(a.energy - b.energy) < 1e-12
    assert NQS(ham, seed=5).run(6).energy != a.energy


@pytest.mark.parametrize("optimizer", [None, SR(CosineDecay(0.25, 0.02, 7), 1e-2, max_norm=0.5)],
                         ids=["constant-lr", "cosine-lr-trust-region"])
def test_kill_and_resume_matches_uninterrupted(tmp_path, optimizer):
    """The resumed run continues the lr schedule where it stopped (its count is optimizer state)."""
    ham = hchain(2)
    n = 7
    metropolis_run = functools.partial(globals()["metropolis_run"], optimizer=optimizer)
    ref = metropolis_run(ham).run(n)
    e_ref, trace_ref = ref.energy, ref.trace_arrays["energy"]
    ref.reset().run(n)                                  # same seed, fresh state → same numbers
    assert abs(ref.energy - e_ref) < 1e-12 and np.array_equal(ref.trace_arrays["energy"], trace_ref)
    with pytest.raises(KeyboardInterrupt):
        metropolis_run(ham).run(n, callbacks=[DivergenceGuard(), Checkpoint(tmp_path, every_steps=1), Kill(3)])
    assert latest_checkpoint(tmp_path).name == "ckpt_000004.npz"
    resumed = metropolis_run(ham).run(n, callbacks=[Checkpoint(tmp_path, every_steps=1)], resume=tmp_path)
    assert resumed.step == n
    assert abs(resumed.energy - ref.energy) < 1e-12
    np.testing.assert_array_equal(resumed.trace_arrays["energy"], ref.trace_arrays["energy"])
    # a checkpoint from another seed is refused
    with pytest.raises(ValueError, match="seed"):
        NQS(ham, sampler=metropolis_run(ham).sampler, seed=12).run(n, resume=tmp_path)


def test_the_wall_time_of_a_resumed_run_counts_its_earlier_processes(tmp_path):
    """The trace's wall_s goes on from the checkpoint's last value (the record's
    optimization_wall_s is its end); unknown (NaN) after a checkpoint of code that kept none."""
    ham = hchain(2)
    first = NQS(ham, seed=4).run(3)
    assert (np.diff(first.trace_arrays["wall_s"]) > 0).all()
    first.trace["wall_s"][-1] = 1000.0                 # as if the first process had run 1000 s
    Checkpoint(tmp_path / "a").save(first)
    wall = NQS(ham, seed=4).run(5, resume=tmp_path / "a").trace_arrays["wall_s"]
    assert wall[2] == 1000.0 and (wall[3:] > 1000.0).all() and wall[4] > wall[3]
    older = {k: v for k, v in first.state_arrays().items() if k != "trace/wall_s"}
    (tmp_path / "b").mkdir()
    np.savez(tmp_path / "b" / "ckpt_000003.npz", **older)
    assert np.isnan(NQS(ham, seed=4).run(5, resume=tmp_path / "b").trace_arrays["wall_s"]).all()


def test_max_minutes_is_a_budget_for_the_whole_run(tmp_path):
    """steps = auto's max_minutes counts a resumed run's earlier processes (the trace's wall_s),
    as max_steps counts their steps: resumed after 1000 s, a 10-minute budget stops at the first
    step, a 20-minute one does not; after a checkpoint that kept no wall_s, this process's clock."""
    from nqsbench.nqs.convergence import AutoSteps

    def auto(minutes):   # a tolerance no trace meets: only the budget can stop it
        return AutoSteps(window=5, tol_mha=0.0, sigmas=0.0, max_minutes=minutes, check_every=1)

    ham = hchain(2)
    first = NQS(ham, seed=4).run(3)
    first.trace["wall_s"][-1] = 1000.0
    Checkpoint(tmp_path / "a").save(first)
    spent = auto(10.0)
    resumed = NQS(ham, seed=4).run(8, callbacks=[spent], resume=tmp_path / "a")
    assert resumed.step == 4 and resumed.stopped_early and spent.stop_reason == "max_minutes 10 reached"
    left = auto(20.0)
    assert NQS(ham, seed=4).run(8, callbacks=[left], resume=tmp_path / "a").step == 8 and left.stop_reason is None
    older = {k: v for k, v in first.state_arrays().items() if k != "trace/wall_s"}
    (tmp_path / "b").mkdir()
    np.savez(tmp_path / "b" / "ckpt_000003.npz", **older)
    assert NQS(ham, seed=4).run(8, callbacks=[auto(10.0)], resume=tmp_path / "b").step == 8


def test_the_guard_rewound_to_a_kept_trace_forgets_the_abandoned_steps():
    """After a rollback the guard's best is the kept trace's lowest energy, so the restored path's
    earlier (higher) energies do not read as a divergence against the abandoned steps' best."""
    mf = NQS(hchain(2), seed=1).run(5)
    guard = DivergenceGuard()
    guard.best = min(mf.trace["energy"]) - 1.0          # as if abandoned steps had gone 1 Ha/cell lower
    with pytest.raises(DivergenceError, match="rose"):
        guard(mf, 5, {"energy": mf.trace["energy"][-1], "variance": 0.1})
    guard.rewind(mf)
    assert guard.best == min(mf.trace["energy"])
    assert guard(mf, 5, {"energy": mf.trace["energy"][-1], "variance": 0.1}) is False


class Poison:
    def __call__(self, driver, step, log):
        if step == 2:
            driver.params = {k: v * np.nan for k, v in driver.params.items()}


def test_divergence_raises_and_never_saves(tmp_path):
    ham = hchain(2)
    mf = NQS(ham, seed=1)
    with pytest.raises(DivergenceError, match="NaN"):
        mf.run(10, callbacks=[Poison(), DivergenceGuard(), Checkpoint(tmp_path, every_steps=1)])
    for p in tmp_path.iterdir():
        with np.load(p) as z:
            assert all(np.isfinite(z[k]).all() for k in z.files if k.startswith("params/"))
    # energy explosion
    guard = DivergenceGuard(max_rise=0.5)
    mf2 = NQS(ham, seed=1).reset()
    guard.best = -10.0
    with pytest.raises(DivergenceError, match="rose"):
        guard(mf2, 0, {"energy": -1.0, "variance": 0.1})
    # default: 0.1 Ha/cell plus 5 Monte Carlo error bars of the step
    guard = DivergenceGuard()
    guard.best = -2.0
    assert guard(mf2, 0, {"energy": -1.85, "error": 0.02, "variance": 0.1}) is False
    with pytest.raises(DivergenceError, match="rose"):
        guard(mf2, 1, {"energy": -1.85, "error": 0.005, "variance": 0.1})
    # the best step's own error bar counts too (polyacetylene 1x1x2: a best of -97.249 ± 0.028,
    # then -97.001 ± 0.033, a rise of 0.248 within 0.1 + 5·hypot(0.033, 0.028) = 0.316)
    guard = DivergenceGuard()
    assert guard(mf2, 0, {"energy": -97.249, "error": 0.028, "variance": 1.1}) is False
    assert guard(mf2, 1, {"energy": -97.001, "error": 0.033, "variance": 1.3}) is False
    assert (guard.best, guard.best_error) == (-97.249, 0.028)
    with pytest.raises(DivergenceError, match="rose 0.329 above the best -97.249000"):
        guard(mf2, 2, {"energy": -96.92, "error": 0.033, "variance": 1.3})


def test_early_stopping_and_flags():
    ham = hchain(2)
    mf = NQS(ham, seed=2).run(500, callbacks=[EarlyStopping(patience=3, min_delta=1e-2), ProgressBar()])
    assert mf.stopped_early and mf.step < 500
    json.dumps(mf.result_dict())


def test_exact_sr_reaches_chemical_accuracy_nk2():
    ham = hchain(2)
    basis = bf.sector_basis(ham)
    e_exact = bf.ground_energy(bf.sector_matrix(ham, basis)) / ham.nk
    # measured: 58 mHa/cell (HF) -> 1.78 (100 steps) -> 1.455 (200 steps, plateau ~1.45)
    mf = NQS(ham, seed=0, optimizer=SR(0.25, 1e-3)).run(200)
    assert mf.energy < ham.hf_energy() - 1e-3
    assert mf.energy > e_exact - 1e-9                     # variational
    assert mf.energy - e_exact < 1.6e-3, (mf.energy, e_exact)
    assert 0 <= mf.v_score < 1


@pytest.mark.slow
def test_exact_sr_chemical_accuracy_nk4():
    ham = hchain(4)
    e_exact = bf.ground_energy(bf.sector_matrix(ham, bf.sector_basis(ham))) / ham.nk
    mf = NQS(ham, seed=0, optimizer=SR(0.25, 1e-3)).run(150)
    assert mf.energy - e_exact < 1.6e-3, (mf.energy, e_exact)
