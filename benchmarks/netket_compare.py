"""Local-energy throughput, ours vs NetKet, same Hamiltonian, same RBM parameters, same samples.

    python benchmarks/netket_compare.py [--nk 4 6] [--batch 512] [--alpha 2] [--chunk 64]
                                        [--nk-chunks 0 64 256] [--repeat 3]

H chain (d = 1.8 bohr) at kmesh (1, 1, nk). One batch of configurations of the HF (N_up, N_down, K)
sector is drawn by our Metropolis sampler from an HF-biased random RBM; the same parameters are
loaded into NetKet's complex ``nk.models.RBM`` and the same batch is fed to both. Ours:
``make_local_energy`` (momentum-grouped connections, RBM column updates). NetKet 3.23:
``ParticleNumberAndSpinConservingFermioperator2nd`` built from our integrals
(:func:`nqsbench.peers.netket.netket_operator`) with NetKet's ``local_value_kernel_jax``, timed at
each chunk size in ``--nk-chunks`` (0 = whole batch) and reported at its best. Every function is
jitted and run once before timing; best of ``--repeat``. Per-sample agreement is printed too.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _best(fn, args, repeat):
    fn(*args).block_until_ready()                  # compile + warm up
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nk", type=int, nargs="+", default=[4, 6])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--chunk", type=int, default=64, help="our chunk size")
    ap.add_argument("--nk-chunks", type=int, nargs="+", default=[0, 64, 256],
                    help="NetKet chunk sizes to try (0: whole batch)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)

    import jax
    import netket as nk

    from nqsbench.nqs import FermionHamiltonian, make_local_energy
    from nqsbench.nqs.workloads import hchain_workload
    from nqsbench.peers.netket import (netket_local_energy, netket_operator, netket_rbm,
                                       to_netket_params, to_netket_samples)

    print(f"jax {jax.__version__}, netket {nk.__version__} on {jax.devices()[0].platform}, "
          f"batch {a.batch}, RBM alpha={a.alpha}, best of {a.repeat}")
    print(f"{'nk':>3} {'2M':>4} {'params':>6} {'nk_conn':>7} {'nk_build_s':>10} "
          f"{'ours/s':>9} {'netket/s':>9} {'nk_chunk':>8} {'ratio':>6} {'max|dE|':>8}")
    for nkpt in a.nk:
        w = hchain_workload(nkpt, alpha=a.alpha, batch=a.batch)
        ham, sec, model, params, xs = w.ham, w.sector, w.model, w.params, w.samples
        eloc = make_local_energy(FermionHamiltonian(ham, sec), model, chunk_size=a.chunk)
        t_ours = _best(eloc, (params, xs), a.repeat)
        e_ours = np.asarray(eloc(params, xs))

        t0 = time.perf_counter()
        op = netket_operator(ham)
        t_build = time.perf_counter() - t0
        nk_model, nk_params, xnk = netket_rbm(model), to_netket_params(params), to_netket_samples(xs)
        t_nk, best_chunk, e_nk = np.inf, None, None
        for c in a.nk_chunks:
            f = netket_local_energy(op, nk_model, chunk_size=c or None)
            try:
                t = _best(f, (nk_params, xnk), a.repeat)
            except Exception as err:                        # e.g. out of memory, whole batch
                print(f"    netket chunk {c}: {type(err).__name__}: {str(err)[:80]}")
                continue
            print(f"    netket chunk {c or 'all'}: {len(xs) / t:9.1f} samples/s", flush=True)
            if t < t_nk:
                t_nk, best_chunk, e_nk = t, c, np.asarray(f(nk_params, xnk))
        n = len(xs)
        print(f"{nkpt:3d} {sec.n_spin_orbitals:4d} {model.n_parameters():6d} {op.max_conn_size:7d} "
              f"{t_build:10.1f} {n / t_ours:9.1f} {n / t_nk:9.1f} {best_chunk or 'all':>8} "
              f"{t_nk / t_ours:6.2f} {np.abs(e_ours - e_nk).max():8.1e}", flush=True)


if __name__ == "__main__":
    main()
