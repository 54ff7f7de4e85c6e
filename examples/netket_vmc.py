"""NetKet VMC on an exported nqsbench instance, written as a submission for ``nqsbench score``.

    nqsbench export h-chain -p d=2.2 -k 1,1,2 -o inst
    python examples/netket_vmc.py inst --steps 300 -o netket.json
    nqsbench score netket.json

Reads ``inst/instance.h5`` (the complex k-resolved Hamiltonian, :func:`nqsbench.export.read_hdf5`)
and ``inst/manifest.json`` (system, geometry, k-mesh, instance hash), builds the operator as
``nqsbench compare netket`` does (:func:`nqsbench.peers.netket.netket_operator`: NetKet's
``from_pyscf_molecule`` is wrong for periodic cells), optimizes NetKet's complex RBM with SR in
the (N↑, N↓) sector, and writes the final energy per cell in the raw convention (the operator's
constant is the exported one, so ⟨H⟩/N_k is the raw number the manifest defines).
Needs the optional extra ``peers`` (``pip install -e '.[peers]'``).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instance", type=Path, help="folder written by `nqsbench export` (instance.h5, manifest.json)")
    ap.add_argument("-o", "--out", type=Path, default=Path("netket-submission.json"))
    ap.add_argument("--method", default="netket-rbm-vmc", help="method name in the submission")
    ap.add_argument("--sampler", choices=["exact", "mcmc"], default="exact",
                    help="exact: NetKet's ExactSampler and the final energy summed over the sector "
                         "(small sectors); mcmc: MetropolisFermionHop chains")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--diag-shift", type=float, default=0.01)
    ap.add_argument("--samples", type=int, default=2048, help="mcmc: samples per step")
    ap.add_argument("--chains", type=int, default=16, help="mcmc: Markov chains")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import netket as nk
    import numpy as np

    from nqsbench.export import HDF5_FILE, MANIFEST_FILE, read_hdf5
    from nqsbench.peers.netket import netket_hilbert, netket_operator

    manifest = json.loads((args.instance / MANIFEST_FILE).read_text())
    ham = read_hdf5(args.instance / HDF5_FILE)
    hi = netket_hilbert(ham)
    op = netket_operator(ham)
    model = nk.models.RBM(alpha=args.alpha, param_dtype=complex)
    if args.sampler == "exact":
        sampler = nk.sampler.ExactSampler(hi)
    else:
        n = ham.n_spatial
        graph = nk.graph.Graph(edges=[(i, j) for i in range(n) for j in range(i + 1, n)])
        sampler = nk.sampler.MetropolisFermionHop(hi, graph=graph, n_chains=args.chains)
    vs = nk.vqs.MCState(sampler, model, n_samples=args.samples, seed=args.seed, sampler_seed=args.seed)
    driver = nk.VMC(op, nk.optimizer.Sgd(learning_rate=args.lr), variational_state=vs,
                    preconditioner=nk.optimizer.SR(diag_shift=args.diag_shift, holomorphic=True))
    t0 = time.perf_counter()
    driver.run(n_iter=args.steps, out=nk.logging.RuntimeLog(), show_progress=False)
    if args.sampler == "exact":                    # the final energy summed over the whole sector
        psi = np.asarray(vs.to_array(normalize=True))
        e, err = float(np.real(np.vdot(psi, op.to_sparse() @ psi))), 0.0
    else:                                          # the final estimate from 4x the samples
        vs.n_samples = 4 * args.samples
        vs.sample()
        stats = vs.expect(op)
        e, err = float(np.real(stats.mean)), float(np.real(stats.error_of_mean))
        err = err if math.isfinite(err) else 0.0
    wall = time.perf_counter() - t0
    nk_cells = ham.nk
    submission = {
        "method": args.method, "system": manifest["system"], "params": manifest["params"],
        "kmesh": manifest["kmesh"], "energy_per_cell": e / nk_cells, "energy_error": err / nk_cells,
        "convention": "raw", "instance_sha256": manifest["instance_sha256"], "code": "netket",
        "version": nk.__version__, "hardware": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "wall_seconds": round(wall, 3),
        "notes": f"RBM alpha={args.alpha}, SR diag_shift={args.diag_shift}, lr={args.lr}, {args.steps} steps, "
                 f"sampler={args.sampler}, seed={args.seed}",
    }
    args.out.write_text(json.dumps(submission, indent=2) + "\n")
    print(f"E = {e / nk_cells:.10f} Ha/cell (raw) ± {err / nk_cells:.1e}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
