"""The DMRG sweeps themselves, on a block2 driver: one implementation for the serial runner and
for the MPI ranks (:mod:`nqsbench.runners.dmrg`).

This file imports numpy and block2 only, so ``mpirun -n N PYTHON dmrg_core.py IN.npz OUT.json``
runs it in an environment that has block2's MPI build (``block2-mpi`` and ``mpi4py``, extra
``dmrg-mpi``) and nothing else of nqsbench. Rank 0 writes OUT.json (temporary file + rename).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np


def sweeps(driver, h, eri, n_elec: int, ecore: float, cfg: dict) -> dict:
    """Fiedler ordering, the forward schedule with noise, then the reverse schedule; the points
    (discarded weight, energy) for the extrapolation (see :mod:`nqsbench.runners.dmrg`)."""
    n = h.shape[0]
    idx = driver.orbital_reordering(h, eri)
    h_o, eri_o = h[idx][:, idx], eri[idx][:, idx][:, :, idx][:, :, :, idx]
    driver.initialize_system(n_sites=n, n_elec=n_elec, spin=0, orb_sym=[0] * n)
    mpo = driver.get_qc_mpo(h1e=h_o, g2e=eri_o, ecore=ecore, iprint=0)
    ket = driver.get_random_mps(tag="KET", bond_dim=cfg["schedule"][0][0], nroots=1)
    bond_dims, noises = [], []
    for m, n_sweeps, noise in cfg["schedule"]:
        bond_dims += [m] * n_sweeps
        noises += [noise] * n_sweeps
    e_var = float(driver.dmrg(mpo, ket, n_sweeps=len(bond_dims), bond_dims=bond_dims, noises=noises,
                              thrds=[1e-10] * len(bond_dims), tol=cfg["sweep_tol"], iprint=0))
    _, dws, _ = driver.get_dmrg_results()
    dw_max = float(np.max(dws[-1:])) if len(dws) else 0.0
    # Reverse schedule: two noiseless sweeps per M, last-sweep energy and discarded weight.
    points = [(dw_max, e_var)]
    for m in cfg["reverse_bond_dims"]:
        e_m = float(driver.dmrg(mpo, ket, n_sweeps=2, bond_dims=[m, m], noises=[0.0, 0.0],
                                thrds=[1e-10, 1e-10], tol=0.0, iprint=0))
        _, dws_m, _ = driver.get_dmrg_results()
        points.append((float(np.max(dws_m[-1:])), e_m))
    return {"ordering": [int(i) for i in idx], "e_var": e_var, "dw_max": dw_max,
            "points": [[float(a), float(b)] for a, b in points]}


def _main(inp: str, out: str) -> int:
    """One MPI rank: read the Hamiltonian and settings, sweep, rank 0 writes the result."""
    import block2
    from pyblock2.driver.core import DMRGDriver, SymmetryTypes

    if not hasattr(block2.su2, "MPICommunicator"):
        print(f"NQSBENCH-MPI: the block2 of {sys.executable} has no MPI build; install block2-mpi "
              "(extra dmrg-mpi)", file=sys.stderr)
        return 3
    data = np.load(inp)
    cfg = json.loads(str(data["cfg"]))
    driver = DMRGDriver(scratch=str(data["scratch"]), symm_type=SymmetryTypes.SU2, n_threads=cfg["n_threads"],
                        stack_mem=int(cfg.get("stack_mem", 2e9)), mpi=True)
    res = sweeps(driver, data["h"], data["eri"], int(data["n_elec"]), float(data["ecore"]), cfg)
    if driver.mpi.rank == 0:
        res["mpi_ranks"] = int(driver.mpi.size)
        tmp = f"{out}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(res, fh)
        os.replace(tmp, out)
    driver.mpi.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:3]))
