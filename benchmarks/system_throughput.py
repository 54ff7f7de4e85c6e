"""Local energies per second and seconds per SR step on catalog systems, on JAX's default backend
(CPU, or a GPU where one is installed): the figures the beyond tier needs, as a run plans them.

    python benchmarks/system_throughput.py [--systems h-chain-k8 graphene-2x2x1 lih-2x2x2]
        [--batch 1024] [--sr-samples 1024] [--sr-steps 3] [--model rbm|nnbf] [--json FILE]

Systems are the asv suite's labels (``benchmarks/benchmarks/common.py``). Per system: the
Hamiltonian from the cache (built with PySCF on a miss), the HF-biased random model and Metropolis
samples of :func:`nqsbench.nqs.workloads.make_workload`; the local energy at the chunk
:func:`nqsbench.nqs.memory.plan_local_energy` plans (on an accelerator: from its memory), timed
after compilation (best of ``--repeat``); then a Markov-chain driver (``--sr-samples``, the
``nqsbench run`` defaults otherwise) whose pre-flight estimate is printed beside the measured
seconds per step (mean of ``--sr-steps`` after one compiling step). Seconds are wall time, so
compare figures from one run on one machine.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def measure(label: str, batch: int, sr_samples: int, sr_steps: int, repeat: int, model: str) -> dict:
    import jax
    import jax.numpy as jnp

    from benchmarks.common import geometry      # the asv suite's systems (this script's folder)
    from nqsbench import config
    from nqsbench.build import get_hamiltonian
    from nqsbench.nqs import NQS, FermionHamiltonian, memory, models
    from nqsbench.nqs.models import count_parameters
    from nqsbench.nqs.workloads import make_workload
    from nqsbench.records import peak_memory_mb

    ham = get_hamiltonian(geometry(label))
    table = None if model == "rbm" else {"kind": model}
    w = make_workload(ham, batch=batch, model=table)
    budget = int(config.memory_gb() * memory.GB)
    eloc, chunk, per, _ = memory.plan_local_energy(FermionHamiltonian(ham, w.sector), w.model, w.params,
                                                   batch, budget)
    xs = jnp.asarray(w.samples)
    jax.block_until_ready(eloc(w.params, xs))                      # compile
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(eloc(w.params, xs))
        best = min(best, time.perf_counter() - t0)
    out = {"system": label, "spin_orbitals": w.sector.n_spin_orbitals, "electrons": w.sector.n_electrons,
           "parameters": count_parameters(w.params), "batch": batch, "chunk": chunk,
           "eloc_mb_per_config": per / 1024 ** 2, "local_energies_per_s": batch / best}
    if sr_steps:
        nqs = NQS(ham, model=models.build(table or {"kind": "rbm"}, w.sector), sampler="mcmc",
                  n_samples=sr_samples, seed=1, eval_batches=1)
        plan = nqs.memory_plan
        ends = []                    # when each step's callback ran (the first step compiles)
        nqs.run(1 + sr_steps, callbacks=[lambda driver, t, log: ends.append(time.perf_counter())])
        out.update(sr_samples=sr_samples, sr_chunk=nqs.chunk_size,
                   sr_seconds_per_step=(ends[-1] - ends[0]) / sr_steps,
                   estimated_seconds_per_step=plan.seconds_per_step, estimated_step_gb=plan.step / memory.GB,
                   energy_per_cell=float(nqs.trace["energy"][-1]))
    out["peak_rss_gb"] = peak_memory_mb() / 1024
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", nargs="+", default=["h-chain-k8", "graphene-2x2x1", "lih-2x2x2"])
    ap.add_argument("--batch", type=int, default=1024, help="configurations per local-energy call")
    ap.add_argument("--sr-samples", type=int, default=1024)
    ap.add_argument("--sr-steps", type=int, default=3, help="timed SR steps (0: none)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="rbm", help="a registered model at its defaults")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args(argv)

    import jax

    from benchmarks.common import SYSTEMS

    bad = [s for s in a.systems if s not in SYSTEMS]
    if bad:
        ap.error(f"--systems: unknown {bad}; choose from {list(SYSTEMS)}")
    dev = jax.devices()[0]
    head = {"jax": jax.__version__, "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
            "cpus": len(os.sched_getaffinity(0)), "model": a.model}
    print(" ".join(f"{k} {v}" for k, v in head.items()), flush=True)
    print(f"{'system':>15} {'2M':>4} {'N':>3} {'params':>7} {'chunk':>5} {'E_loc/s':>9} "
          f"{'s/step':>8} {'est s/step':>10} {'step GB':>7} {'RSS GB':>6}", flush=True)
    rows = []
    for label in a.systems:
        r = measure(label, a.batch, a.sr_samples, a.sr_steps, a.repeat, a.model)
        rows.append(r)
        print(f"{label:>15} {r['spin_orbitals']:4d} {r['electrons']:3d} {r['parameters']:7d} {r['chunk']:5d} "
              f"{r['local_energies_per_s']:9.1f} {r.get('sr_seconds_per_step', float('nan')):8.3f} "
              f"{r.get('estimated_seconds_per_step') or float('nan'):10.3f} "
              f"{r.get('estimated_step_gb', float('nan')):7.2f} {r['peak_rss_gb']:6.2f}", flush=True)
        if a.json:                      # after every system: a stopped run keeps what it measured
            tmp = a.json.with_suffix(".tmp")
            tmp.write_text(json.dumps({**head, "rows": rows}, indent=1))
            tmp.replace(a.json)


if __name__ == "__main__":
    main()
