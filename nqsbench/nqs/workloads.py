"""Reproducible workloads for throughput benchmarks (the scripts in ``benchmarks/``, the asv suite
and ``nqsbench compare``): a Hamiltonian, its sector, an HF-biased random RBM and a batch of
Metropolis samples from it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Workload:
    ham: object
    sector: object
    model: object
    params: object
    samples: np.ndarray      # (batch, 2M) occupations


def make_workload(ham, alpha: float = 2.0, batch: int = 512, seed: int = 0, model: dict | None = None) -> Workload:
    """Workload on ``ham``'s HF (N_up, N_down, K) sector; the same inputs give the same samples.
    ``model``: a registered model's settings table (default: the RBM of ``alpha`` with σ = 0.1)."""
    import jax

    from . import models
    from .hilbert import Sector
    from .models import RBM
    from .samplers import MetropolisSampler

    sec = Sector.from_hamiltonian(ham)
    model = RBM(sec.n_spin_orbitals, alpha=alpha, sigma=0.1) if model is None else models.build(model, sec)
    params = model.init(jax.random.PRNGKey(seed), reference=sec.hf_config)
    sampler = MetropolisSampler(sec, n_chains=32, n_samples=batch, n_discard_per_chain=4)
    state = sampler.init_state(model, params, jax.random.PRNGKey(seed + 1))
    xs, _, _, _ = jax.jit(lambda p, s, k: sampler.sample(model, p, s, k))(params, state, jax.random.PRNGKey(seed + 2))
    return Workload(ham, sec, model, params, np.asarray(xs).reshape(-1, sec.n_spin_orbitals)[:batch])


def hchain_workload(nk: int, alpha: float = 2.0, batch: int = 512, d: float = 1.8, seed: int = 0,
                    model: dict | None = None) -> Workload:
    from .. import catalog
    from ..build import get_hamiltonian

    ham = get_hamiltonian(catalog.load("h-chain").geometry(params={"d": d}, kmesh=(1, 1, nk)))
    return make_workload(ham, alpha=alpha, batch=batch, seed=seed, model=model)
