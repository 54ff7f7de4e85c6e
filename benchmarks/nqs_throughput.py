"""Local-energy throughput (configurations per second) of the NQS core on the H chain.

    python benchmarks/nqs_throughput.py [--nk 4 6] [--batch 512] [--alpha 2] [--chunk 64] [--model nnbf]

Random configurations of the HF (N_up, N_down, K) sector drawn by Metropolis; the generic
connection-enumerating local energy (no sector matrix), jitted, timed after compilation, with
excitations enumerated by momentum ('grouped', the default) or masked from all spin-allowed
combinations ('masked', the first scheme), and RBM amplitude ratios as products of precomputed
exp(±W) columns ('product', the default) or through log cosh ('logcosh'), all in the same run.
``--model NAME`` times another registered model (its defaults, output layer σ = 0.1 for nnbf) on
the grouped connections with its own amplitude-ratio path instead; for nnbf both determinant
kernels, the jax.numpy LU ('nnbf-lu') and LAPACK's batched LU ('nnbf-lapack'), which the model
picks by whether LAPACK can deadlock XLA's pool here (``nqsbench.nqs.linalg``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nk", type=int, nargs="+", default=[4, 6])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="rbm", help="a registered model (default rbm: all three schemes)")
    a = ap.parse_args(argv)

    import jax

    from nqsbench.nqs import FermionHamiltonian, make_local_energy
    from nqsbench.nqs.operator import _double_tables, _grouped_double_tables
    from nqsbench.nqs.workloads import hchain_workload

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, batch {a.batch}, RBM alpha={a.alpha}")
    print(f"{'nk':>3} {'2M':>4} {'N':>3} {'params':>7} {'doubles':>13} {'ratios':>8} {'samples/s':>10} {'ms/sample':>9}")
    for nk in a.nk:
        table = None if a.model == "rbm" else {"kind": a.model, **({"init_scale": 0.1} if a.model == "nnbf" else {})}
        w = hchain_workload(nk, alpha=a.alpha, batch=a.batch, model=table)
        ham, sec, model, params, xs = w.ham, w.sector, w.model, w.params, w.samples
        fham = FermionHamiltonian(ham, sec)
        n_doubles = {"masked": len(_double_tables(sec)), "grouped": len(_grouped_double_tables(sec))}
        schemes = ((("masked", "logcosh"), ("grouped", "logcosh"), ("grouped", "product")) if table is None
                   else (("grouped", "nnbf-lu"), ("grouped", "nnbf-lapack")) if a.model == "nnbf"
                   else (("grouped", a.model),))
        for scheme, ratio in schemes:
            if ratio.startswith("nnbf-"):
                model = _nnbf_with(w.model, lapack=ratio == "nnbf-lapack")
            eloc = make_local_energy(fham, model, chunk_size=a.chunk, grouped=scheme == "grouped",
                                     product_ratios=ratio == "product" if table is None else None)
            eloc(params, xs).block_until_ready()
            best = np.inf
            for _ in range(a.repeat):
                t = time.perf_counter()
                eloc(params, xs).block_until_ready()
                best = min(best, time.perf_counter() - t)
            from nqsbench.nqs.models import count_parameters

            print(f"{nk:3d} {sec.n_spin_orbitals:4d} {sec.n_electrons:3d} {count_parameters(params):7d} "
                  f"{scheme:>7} {n_doubles[scheme]:5d} {ratio:>8} {len(xs) / best:10.1f} {1e3 * best / len(xs):9.3f}",
                  flush=True)


def _nnbf_with(model, lapack: bool):
    """The same NNBF with its determinants through LAPACK (``slogdet``) or the jax.numpy LU."""
    import dataclasses

    from nqsbench.nqs.linalg import log_det
    from nqsbench.nqs.models.nnbf import NNBF

    class Variant(NNBF):
        def _log_det(self, dense, phi0, h, occ):
            return log_det(self._occupied_rows(dense, phi0, h, occ), lapack=lapack)

    return Variant(**{f.name: getattr(model, f.name) for f in dataclasses.fields(model)})


if __name__ == "__main__":
    main()
