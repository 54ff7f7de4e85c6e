"""Effective sample size of the Markov-chain sampler's importance weights at the RBM's hf start,
per β: why the default β = 0.5 starves SR on the big systems.

    python benchmarks/effective_samples.py [--systems h-chain-k4 polyacetylene graphene-2x2x1 lih-2x2x2]
        [--beta 0.5 1] [--samples 1024]

For each system (the asv suite's labels, plus ``polyacetylene`` 1x1x2): the RBM (α = 2) of
``nqsbench run``'s hf start (seed 1), a MetropolisSampler of 32 chains, three calls (the chains
run on between them; the last is reported): Kish's 1/Σw² of its weights
(:func:`nqsbench.nqs.stats.effective_sample_size`), the acceptance, and how many of the HF
determinant's occupied spin-orbitals a sample has emptied.
"""
from __future__ import annotations

import argparse


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", nargs="+", default=["h-chain-k4", "polyacetylene", "graphene-2x2x1", "lih-2x2x2"])
    ap.add_argument("--beta", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--samples", type=int, default=1024)
    a = ap.parse_args(argv)

    import jax
    import numpy as np

    from benchmarks.common import SYSTEMS, geometry      # the asv suite's systems (this folder)
    from nqsbench import catalog
    from nqsbench.build import get_hamiltonian
    from nqsbench.nqs import RBM, MetropolisSampler, Sector
    from nqsbench.nqs.stats import effective_sample_size

    bad = [s for s in a.systems if s not in SYSTEMS and s != "polyacetylene"]
    if bad:
        ap.error(f"--systems: unknown {bad}; choose from {list(SYSTEMS) + ['polyacetylene']}")
    print(f"{'system':>15} {'N':>3} {'beta':>4} {'ESS':>7} {'of':>5} {'acceptance':>10} {'holes':>5}")
    for label in a.systems:
        geom = catalog.load("polyacetylene").geometry(kmesh=(1, 1, 2)) if label == "polyacetylene" else geometry(label)
        sec = Sector.from_hamiltonian(get_hamiltonian(geom))
        model = RBM(sec.n_spin_orbitals, alpha=2.0)
        params = model.init(jax.random.PRNGKey(1), reference=sec.hf_config)
        occupied = sec.hf_config.astype(bool)
        for beta in a.beta:
            sampler = MetropolisSampler(sec, n_chains=32, n_samples=a.samples, beta=beta)
            state = sampler.init_state(model, params, jax.random.PRNGKey(2))
            for call in range(3):
                xs, w, state, info = sampler.sample(model, params, state, jax.random.PRNGKey(3 + call))
            flat = np.asarray(xs).reshape(-1, sec.n_spin_orbitals)
            ess = len(flat) if w is None else effective_sample_size(w)
            holes = (flat[:, occupied] == 0).sum(1).mean()
            print(f"{label:>15} {sec.n_electrons:3d} {beta:4g} {ess:7.1f} {len(flat):5d} "
                  f"{float(info['acceptance']):10.3f} {holes:5.2f}", flush=True)


if __name__ == "__main__":
    main()
