"""NQS solver core (JAX): models, samplers, local energy, SR optimizer, driver, callbacks.

    from nqsbench.nqs import NQS, SR
    mf = NQS(ham, sampler="exact", optimizer=SR(learning_rate=0.25, diag_shift=0.01)).run(200)
    mf.energy, mf.energy_error, mf.energy_ewald, mf.v_score, mf.trace

Knows nothing of PySCF: takes a :class:`nqsbench.hamiltonian.Hamiltonian`.
"""
from .callbacks import (Checkpoint, CheckpointError, DivergenceError, DivergenceGuard, EarlyStopping,
                        ProgressBar, Rollback, latest_checkpoint, load_checkpoint, load_latest_checkpoint)
from .driver import NQS
from .hilbert import Sector
from . import models
from .models import RBM
from .operator import FermionHamiltonian, make_local_energy, v_score
from .optimizer import SR, CosineDecay, force, jacobian, sr_direction
from .samplers import ExactSampler, MetropolisSampler
from .stats import Stats, importance_statistics, statistics

__all__ = ["NQS", "RBM", "models", "SR", "CosineDecay", "Sector", "ExactSampler", "MetropolisSampler",
           "FermionHamiltonian", "make_local_energy", "v_score", "force", "jacobian", "sr_direction", "Stats", "statistics",
           "importance_statistics",
           "Checkpoint", "DivergenceError", "DivergenceGuard", "EarlyStopping", "ProgressBar", "Rollback",
           "latest_checkpoint", "load_checkpoint", "load_latest_checkpoint", "CheckpointError"]
