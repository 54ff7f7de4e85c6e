"""What a variational model is to the solver: two required methods and optional fast paths.

A model is an immutable object over 0/1 occupation vectors x of shape (..., 2M):

- ``init(key, reference=None) -> params``: a pytree of complex128 arrays (any nesting: dicts of
  dicts from flax, plain dicts); ``reference`` is the HF configuration the model may start near.
- ``log_psi(params, x) -> complex`` of shape x.shape[:-1]; holomorphic in the parameters
  (stochastic reconfiguration differentiates it with ``holomorphic=True``).

Fast paths, found by these Protocols (``isinstance`` checks the methods exist), used by the
local energy and the band estimators on every connected configuration
x' = x − Σ_rem e_u + Σ_add e_u (a unit both removed and added cancels):

- :class:`ProductRatio` — ``ratio_tables(params)`` once per parameter set and
  ``ratio(tables, x, rem, add) -> (C,)`` ψ(x')/ψ(x) without transcendental functions (RBM);
- :class:`LogRatio` — ``log_ratio(params, x, rem, add) -> (C,)`` log ψ(x') − log ψ(x) sharing the
  work of x (RBM: θ' = θ + ΔW columns; NNBF: the first layer as a low-rank update);
- neither: ``log_psi`` on every x' (:func:`nqsbench.nqs.operator.make_amplitude_ratio`).

And one optional transform, :class:`Rephase` — ``rephase(params, theta) -> params`` with
log ψ'(x) = log ψ(x) − i θ·x exactly: the same state in Bloch orbitals whose phases differ by θ
(per spin-orbital). Parameters saved on one machine's Hamiltonian are carried with it to another
build of the same integrals (:func:`nqsbench.nqs.results.load_params`); without it they are refused.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

# Systems up to this many spin-orbitals (the exact tier: H chain N_k = 4, LiH Γ, graphene Γ; their
# sectors hold ≤ 4 900 configurations) get the "auto" defaults of small systems: a random start
# (``init = "auto"``) and the RBM's α = 4 where the sector is no smaller than its parameters
# (:func:`.rbm.auto_alpha`). On the H chain N_k = 4 with exact sampling the hf start finds the
# singlet at d = 1.0 (+3.3 mHa/cell; the ground state of that sector is a triplet) where the
# random start finds the triplet, and α = 2 stalls above chemical accuracy at d ≥ 2.6 (README,
# "Defaults by system size"). Larger systems keep α = 2 and the hf start, the settings their
# Markov-chain runs were measured with (a random start there is far above HF).
SMALL_SYSTEM_SPIN_ORBITALS = 16


def is_small(n_spin_orbitals: int) -> bool:
    return int(n_spin_orbitals) <= SMALL_SYSTEM_SPIN_ORBITALS


def resolve_init(init: str, n_spin_orbitals: int) -> str:
    """The start that ``init = "auto"`` means for a system of this size: "random" for small
    systems, "hf" otherwise (:data:`SMALL_SYSTEM_SPIN_ORBITALS`); other values unchanged."""
    if init != "auto":
        return init
    return "random" if is_small(n_spin_orbitals) else "hf"


def resolve_max_norm(max_norm, n_spin_orbitals: int) -> float:
    """The SR trust region that ``max_norm = "auto"`` means for a system of this size: none (0)
    for small systems, |δ| ≤ 1 above (:data:`SMALL_SYSTEM_SPIN_ORBITALS`; the RBM's Markov-chain
    default, :data:`.rbm.OPTIMIZER_DEFAULTS`); numbers unchanged."""
    if max_norm != "auto":
        return float(max_norm)
    return 0.0 if is_small(n_spin_orbitals) else 1.0


@runtime_checkable
class Model(Protocol):
    def init(self, key, reference=None) -> Any: ...

    def log_psi(self, params, x): ...


@runtime_checkable
class ProductRatio(Protocol):
    def ratio_tables(self, params) -> Any: ...

    def ratio(self, tables, x, rem, add): ...


@runtime_checkable
class LogRatio(Protocol):
    def log_ratio(self, params, x, rem, add): ...


@runtime_checkable
class Rephase(Protocol):
    def rephase(self, params, theta): ...
