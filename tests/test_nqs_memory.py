"""Memory as a planned resource (issue 14): local energies that do not depend on the chunking,
the pre-flight estimate against the measured peak, and refusal before allocating."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from nqsbench.nqs import RBM, FermionHamiltonian, Sector, make_local_energy
from nqsbench.nqs import bruteforce as bf
from nqsbench.nqs import memory
from conftest import hchain

GB = 1024 ** 3


def random_rbm(sec, seed):
    model = RBM(sec.n_spin_orbitals, alpha=1.0, sigma=0.3)
    params = model.init(jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    n = model.n_visible
    params["a"] = params["a"] + 0.4 * (rng.normal(size=n) + 1j * rng.normal(size=n))
    return model, params


def random_configs(sec, n, seed):
    """n distinct random configurations of the sector (rejection from random spin strings)."""
    rng = np.random.default_rng(seed)
    m = sec.n_spatial
    out = []
    while len(out) < n:
        x = np.zeros(2 * m, np.int8)
        x[rng.choice(m, sec.n_up, replace=False)] = 1
        x[m + rng.choice(m, sec.n_dn, replace=False)] = 1
        if sec.contains(x):
            out.append(x)
    return np.array(out)


@pytest.mark.parametrize("nk", [4, 6])      # 16 and 24 spin-orbitals
def test_local_energy_equals_bruteforce_for_every_chunking(nk):
    ham = hchain(nk, d=2.6)
    sec = Sector.from_hamiltonian(ham)
    fham = FermionHamiltonian(ham, sec)
    model, params = random_rbm(sec, nk)
    xs = random_configs(sec, 9, nk)
    ref = bf.local_energy(ham, lambda x: model.log_psi(params, x), xs)
    got = {c: np.asarray(make_local_energy(fham, model, chunk_size=c)(params, xs)) for c in (1, 4, 9)}
    for c, e in got.items():
        np.testing.assert_allclose(e, ref, rtol=1e-10, atol=0, err_msg=f"chunk {c}")
        np.testing.assert_allclose(e, got[1], rtol=1e-13, atol=0, err_msg=f"chunk {c} vs 1")


@pytest.mark.parametrize("capacity", [None, 40, 90, 400])
def test_compacted_doubles_equal_bruteforce_with_and_without_overflow(capacity):
    """The real doubles compacted into ``capacity`` entries (40: every configuration overflows
    into the fallback; 90: some do; 400: none) give the brute-force local energy (1e-10
    relative) and the padded list's (1e-13), for every chunking."""
    from nqsbench.nqs.operator import make_connections

    ham = hchain(4, d=2.6)
    sec = Sector.from_hamiltonian(ham)
    fham = FermionHamiltonian(ham, sec)
    model, params = random_rbm(sec, 3)
    xs = random_configs(sec, 9, 3)
    real = np.asarray(jax.vmap(make_connections(fham))(xs.astype(np.int32))[8]).sum(1)
    if capacity == 90:
        assert real.min() <= 90 < real.max()          # both branches are taken in one batch
    ref = bf.local_energy(ham, lambda x: model.log_psi(params, x), xs)
    padded = np.asarray(make_local_energy(fham, model, chunk_size=4, capacity=None)(params, xs))
    for c in (1, 4):
        e = np.asarray(make_local_energy(fham, model, chunk_size=c, capacity=capacity)(params, xs))
        np.testing.assert_allclose(e, ref, rtol=1e-10, atol=0, err_msg=f"capacity {capacity}, chunk {c}")
        np.testing.assert_allclose(e, padded, rtol=1e-13, atol=0, err_msg=f"capacity {capacity}, chunk {c}")


def test_double_capacity_covers_the_probes_and_skips_short_lists():
    from nqsbench.nqs.operator import COMPACT_MIN, double_capacity, n_connections

    assert double_capacity(FermionHamiltonian(hchain(4, d=2.6), Sector.from_hamiltonian(hchain(4, d=2.6)))) is None
    ham = hchain(8, d=1.8)
    sec = Sector.from_hamiltonian(ham)
    _, padded = n_connections(sec.n_up, sec.n_dn, sec.n_spatial, sec.n_orb)
    cap = double_capacity(FermionHamiltonian(ham, sec))
    assert padded >= COMPACT_MIN and 712 * 1.1 <= cap < padded    # 712 real doubles at HF


def test_chunks_follow_the_working_set_and_the_budget():
    mb = 1024 ** 2
    assert memory.choose_chunk(mb // 100, 1024, 8 * GB) == memory.MAX_CHUNK
    assert memory.choose_chunk(mb, 1024, 8 * GB) == memory.WORKING_SET // mb
    assert memory.choose_chunk(mb, 1024, 64 * mb) == int(memory.ELOC_SHARE * 64)      # budget binds
    assert memory.choose_chunk(300 * mb, 1024, 8 * GB) == 1                          # never below one
    assert memory.choose_chunk(mb // 100, 16, 8 * GB) == 16                          # never above the batch


def test_on_an_accelerator_its_memory_sizes_the_chunk_and_holds_the_step():
    """A GPU is fast on wide batches: no CPU working-set or MAX_CHUNK cap, a quarter of its memory
    instead (LiH 2x2x2: 295 MB per configuration, chunk 1 on CPU, 13 on a 16 GB device); the SR
    step is checked against the device, the host budget against the process alone."""
    from nqsbench.errors import MemoryBudgetError
    from nqsbench.nqs.memory import MemoryPlan

    mb = 1024 ** 2
    assert memory.choose_chunk(295 * mb, 1024, 8 * GB, device_bytes=16 * GB) == int(0.25 * 16 * 1024 / 295)
    assert memory.choose_chunk(mb // 100, 1024, 8 * GB, device_bytes=16 * GB) == 1024    # the whole batch
    assert memory.choose_chunk(mb // 100, 1024, 8 * GB) == memory.MAX_CHUNK              # CPU unchanged
    assert memory.accelerator_bytes() is None                                           # the CPU backend
    kw = dict(budget=8 * GB, process=1 * GB, process_peak=1 * GB, chunk_size=13, eloc_per_config=295 * mb,
              n_samples=1024, n_parameters=18720)
    on_gpu = MemoryPlan(step=12 * GB, device_limit=16 * GB, **kw).check()        # > host budget: fine
    assert on_gpu.peak == 1 * GB and "SR step 12.00 GB on the 16.00 GB accelerator" in on_gpu.summary()
    with pytest.raises(MemoryBudgetError, match="accelerator has 16.0 GB.*lower --samples"):
        MemoryPlan(step=17 * GB, device_limit=16 * GB, **kw).check()
    with pytest.raises(MemoryBudgetError, match="exceeds the 8.0 GB budget"):
        MemoryPlan(step=12 * GB, **kw).check()                                    # the same step on CPU


def test_driver_chunking_does_not_change_the_numbers():
    """The planned chunk and chunks of one: the same Markov-chain steps, the same energies."""
    from nqsbench.nqs.defaults import make_driver

    ham = hchain(4)
    runs = [make_driver(ham, sampler="mcmc", n_samples=128, n_chains=16, seed=3, n_steps=2, chunk_size=c)
            for c in (None, 1)]
    assert [r.chunk_size for r in runs] == [128, 1]
    for r in runs:
        plan = r.memory_plan
        assert plan.peak == max(plan.process + plan.step, plan.process_peak)
        assert plan.step > 0 and plan.eloc_per_config > 0
        r.run(2)
    np.testing.assert_allclose(runs[0].trace["energy"], runs[1].trace["energy"], rtol=1e-12, atol=0)


def _run(tmp_path, *args):
    """``nqsbench run`` in its own process (its own peak resident set)."""
    return subprocess.run([sys.executable, "-c", "from nqsbench.cli import app; app()", "run", *args, "--no-progress",
                           "--results", str(tmp_path)], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("system,kmesh,params,args", [
    ("h-chain", (1, 1, 2), {"d": 1.8}, ["--samples", "256"]),
    ("h-chain", (1, 1, 4), {"d": 1.8}, ["--samples", "4096", "--alpha", "4"]),
    ("lih", (1, 1, 1), {}, ["--samples", "16384", "--chains", "64"]),
])
def test_memory_estimate_within_factor_two_of_measured_peak(tmp_path, ham_factory, system, kmesh, params, args):
    ham_factory(system, kmesh, **params)          # in the shared cache: the run itself is measured
    p = _run(tmp_path, system, "-k", ",".join(map(str, kmesh)), *[f"-p{k}={v}" for k, v in params.items()],
             "--sampler", "mcmc", *args, "--steps", "2", "--seed", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "memory: estimated peak" in p.stderr
    rec = json.loads(next(tmp_path.rglob("nqs-*.json")).read_text())
    plan = rec["details"]["memory"]
    est, peak = plan["peak"] / 1024 ** 2, rec["provenance"]["peak_memory_mb"]
    print(f"estimate {est:.0f} MB (process {plan['process'] / 1024 ** 2:.0f}, step {plan['step'] / 1024 ** 2:.0f}), "
          f"measured peak {peak:.0f} MB")
    assert 0.5 < est / peak < 2.0, (est, peak, plan)


def test_oversized_request_refused_before_allocating(tmp_path):
    """10⁶ samples: the SR step alone would need tens of GB; one line, exit 2, nothing written."""
    p = _run(tmp_path, "h-chain", "-p", "d=1.8", "-k", "1,1,4", "--sampler", "mcmc",
             "--samples", "1000000", "--steps", "1")
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "exceeds the 8.0 GB budget" in lines[0] and "--samples" in lines[0], lines
    assert not list(tmp_path.rglob("*.json"))


def test_budget_too_small_names_the_option(tmp_path):
    p = _run(tmp_path, "h-chain", "-p", "d=1.8", "-k", "1,1,2", "--sampler", "mcmc", "--memory-gb", "0.1",
             "--steps", "1")
    assert p.returncode == 2
    assert "--memory-gb" in p.stderr and not list(tmp_path.rglob("*.json"))
