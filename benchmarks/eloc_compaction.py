"""Local energy per configuration with the padded doubles list and with the real doubles compacted
(`nqsbench.nqs.operator.make_local_energy(capacity=None | "auto")`), same samples, same process,
interleaved best-of-3; and the largest relative difference (summation order only).

    python benchmarks/eloc_compaction.py graphene 2,2,1 [--model rbm] [--samples 8] [--chunk 1]

One core (`OMP_NUM_THREADS=1 taskset -c 0`) and ratios from one run, not absolute times.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from nqsbench import catalog
from nqsbench.build import get_hamiltonian
from nqsbench.nqs import models
from nqsbench.nqs.hilbert import Sector
from nqsbench.nqs.operator import FermionHamiltonian, make_local_energy
from nqsbench.nqs.samplers import MetropolisSampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system")
    ap.add_argument("kmesh", help="e.g. 2,2,1")
    ap.add_argument("-p", "--param", action="append", default=[], help="NAME=VALUE")
    ap.add_argument("--model", default="rbm")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=1)
    a = ap.parse_args()
    params_geom = {k: float(v) for k, v in (p.split("=") for p in a.param)}
    geom = catalog.load(a.system).geometry(params_geom, kmesh=tuple(int(k) for k in a.kmesh.split(",")))
    ham = get_hamiltonian(geom)
    sec = Sector.from_hamiltonian(ham)
    model = models.build(models.settings({"kind": a.model}), sec)
    params = model.init(jax.random.PRNGKey(0), reference=sec.hf_config)
    params = jax.tree_util.tree_map(     # away from the start, so that every amplitude matters
        lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(1), p.shape, dtype=p.dtype), params)
    smp = MetropolisSampler(sec, n_chains=min(8, a.samples), n_samples=a.samples, beta=0.5)
    xs, *_ = smp.sample(model, params, smp.init_state(model, params, jax.random.PRNGKey(2)), jax.random.PRNGKey(3))
    xs = xs.reshape(-1, xs.shape[-1])
    fham = FermionHamiltonian(ham, sec)
    fs = {"padded": make_local_energy(fham, model, chunk_size=a.chunk, capacity=None),
          "compacted": make_local_energy(fham, model, chunk_size=a.chunk)}
    out = {k: jax.block_until_ready(f(params, xs)) for k, f in fs.items()}
    best = dict.fromkeys(fs, float("inf"))
    for _ in range(3):
        for k, f in fs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(params, xs))
            best[k] = min(best[k], time.perf_counter() - t0)
    diff = float(jnp.abs(out["padded"] - out["compacted"]).max() / jnp.abs(out["padded"]).max())
    n = xs.shape[0]
    print(f"{geom.label()} {a.model}, chunk {a.chunk}, {n} configurations, capacity "
          f"{fs['compacted'].capacity}: padded {best['padded'] / n * 1e3:.3f} ms, compacted "
          f"{best['compacted'] / n * 1e3:.3f} ms per configuration ({best['padded'] / best['compacted']:.2f}×); "
          f"max relative difference {diff:.1e}")


if __name__ == "__main__":
    main()
