"""Exact-sampling SR steps: the pre-flight's seconds per step beside the measured ones (same process).

    python benchmarks/exact_step_time.py [--cases graphene:nnbf h-chain:d=1.8:1,1,4:rbm ...] [--steps 5]

A case is ``SYSTEM[:KEY=VALUE[,KEY=VALUE]][:KMESH]:MODEL`` (default k-mesh Γ). With exact sampling
the energies come from the sector's matrix, so the plan (:class:`nqsbench.nqs.memory.MemoryPlan`)
estimates a step by its SR solve alone (``sr_solve_flops`` at this process's GEMM rate); the
measured figure is the mean of ``--steps`` steps after two that compile and warm up. Wall time:
compare the ratio, measured in one process, not the seconds across machines.
"""
from __future__ import annotations

import argparse
import sys
import time

DEFAULT_CASES = ["graphene:nnbf", "graphene:rbm", "h-chain:d=1.8:1,1,4:nnbf", "h-chain:d=1.8:1,1,4:rbm",
                 "lih:nnbf", "lih:rbm"]


def parse_case(case: str) -> tuple[str, dict, tuple[int, ...], str]:
    parts = case.split(":")
    system, model, params, kmesh = parts[0], parts[-1], {}, (1, 1, 1)
    for part in parts[1:-1]:
        if "=" in part:
            params.update({k: float(v) for k, v in (kv.split("=") for kv in part.split(","))})
        else:
            kmesh = tuple(int(n) for n in part.split(","))
    return system, params, kmesh, model


def measure(case: str, steps: int) -> dict:
    from nqsbench import catalog
    from nqsbench.build import get_hamiltonian
    from nqsbench.methods.nqs import make_driver, nqs_settings

    system, params, kmesh, model = parse_case(case)
    ham = get_hamiltonian(catalog.load(system).geometry(params, kmesh))
    driver = make_driver(ham, nqs_settings(sampler="exact", model=model, steps=steps + 2))
    plan = driver.memory_plan
    ends = []                    # when each step's callback ran (the first two compile and warm up)
    driver.run(2 + steps, callbacks=[lambda driver, t, log: ends.append(time.perf_counter())])
    measured = (ends[-1] - ends[1]) / steps
    return {"case": case, "configurations": plan.n_samples, "parameters": plan.n_parameters,
            "estimate_s": plan.seconds_per_step, "measured_s": measured, "ratio": measured / plan.seconds_per_step}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=DEFAULT_CASES)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"{'case':32s} {'configs':>8s} {'params':>7s} {'estimate s':>10s} {'measured s':>10s} {'ratio':>6s}")
    for case in args.cases:
        r = measure(case, args.steps)
        print(f"{r['case']:32s} {r['configurations']:8d} {r['parameters']:7d} {r['estimate_s']:10.3f} "
              f"{r['measured_s']:10.3f} {r['ratio']:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
