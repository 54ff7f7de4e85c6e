"""rbm: complex restricted Boltzmann machine, log ψ = a·x + Σ log cosh(b + W x) (Carleo & Troyer).

A plain pytree ({a, b, W}) rather than a flax module: three arrays, and the product-form amplitude
ratio (:meth:`RBM.ratio`, the fast path of the local energy) works on them directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_serializer

from ...records import ModelSettings
from .base import SMALL_SYSTEM_SPIN_ORBITALS, is_small

jax.config.update("jax_enable_x64", True)


DEFAULT_BIAS = 0.5


class Settings(ModelSettings):
    """``alpha``: hidden units per visible unit (n_hidden = alpha · 2M); ``bias``: the visible
    bias ±bias of the hf start. At 0.5 the H chain and graphene start fine; with more orbitals the
    HF determinant is a small part of that start: polyacetylene 1x1x2 (40 spin-orbitals) starts
    2.6 Ha/cell above HF at 0.5, 0.17 at 1.5, at HF at 2.5 (Markov-chain energy of the first steps)."""
    model_config = {"extra": "forbid"}
    kind: Literal["rbm"] = "rbm"
    alpha: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description=f"hidden-unit density of the RBM; auto: 4 up to {SMALL_SYSTEM_SPIN_ORBITALS} "
        "spin-orbitals where the sector has at least as many configurations as those parameters, else 2")
    bias: float = Field(DEFAULT_BIAS, gt=0, description="visible bias ±bias towards HF of the hf start (raise it for "
                        "many orbitals: polyacetylene 1x1x2 starts 2.6 Ha/cell above HF at 0.5, 0.17 at 1.5)")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # the default bias is left out, so records made before the option existed keep their hash
        data = handler(self)
        if isinstance(data, dict) and data.get("bias") == DEFAULT_BIAS:
            del data["bias"]
        return data


def auto_alpha(sector) -> float:
    """α of ``alpha = "auto"``: 4 for a small system (:data:`.base.SMALL_SYSTEM_SPIN_ORBITALS`)
    whose sector has at least as many configurations as that RBM has parameters, else 2.

    Measured with exact sampling and the random start: on the H chain N_k = 4 (1 236
    configurations, 1 104 parameters at α = 4) α = 2 stalls 1.6-3.6 mHa/cell above exact at
    d ≥ 2.6 where α = 4 is within 0.8 at every bond length; on LiH Γ (225 configurations; 636
    parameters at α = 4) α = 4 stalls 2.6 or 10.7 mHa/cell above exact on 5 of 5 seeds (α = 3:
    2 of 3), at any lr or diagonal shift tried, and α = 2 (324) is within 0.02 on 4 of 4."""
    return alpha_for_size(sector.n_spin_orbitals, sector.dim())


def alpha_for_size(n_spin_orbitals: int, sector_dim: int) -> float:
    """:func:`auto_alpha` from the sizes alone (spin-orbitals, configurations of the sector)."""
    n = int(n_spin_orbitals)
    return 4.0 if is_small(n) and RBM(n, alpha=4.0).n_parameters() <= sector_dim else 2.0


def resolve_auto(settings: Settings, n_spin_orbitals: int, sector_dim: int) -> Settings:
    """These settings with ``alpha = "auto"`` replaced by the α it means on a system of this size
    (model registry hook: freshness compares what runs, not what is written)."""
    if settings.alpha != "auto":
        return settings
    return settings.model_copy(update={"alpha": alpha_for_size(n_spin_orbitals, sector_dim)})


# Markov chains beyond 16 spin-orbitals: a trust region |δ| ≤ 1 on each SR step
# (``max_norm = "auto"``, :func:`.base.resolve_max_norm`). Without it the Monte Carlo S and F drive
# a step along a poorly sampled direction: `nqsbench run h-chain -p d=1.8 -k 1,1,6` (no flags since
# `--sampler auto`: chains, α = 2, hf start) rose 422 mHa/cell above its best at step 106 and was
# stopped. Not on small systems: LiH Γ (quick suite, 400 steps) stalls at +8.08 mHa/cell with the
# cap against +1.04 without. Exact sampling has no such noise and keeps no cap.
OPTIMIZER_DEFAULTS = {"mcmc": {"max_norm": "auto"}}


def build(settings: Settings, sector) -> "RBM":
    alpha = auto_alpha(sector) if settings.alpha == "auto" else float(settings.alpha)
    return RBM(sector.n_spin_orbitals, alpha=alpha, bias=float(settings.bias))


def log_cosh(z):
    """log cosh z for complex z, stable for large |Re z| (branch: any; only exp of it matters)."""
    s = jnp.where(jnp.real(z) < 0, -z, z)
    return s + jnp.log1p(jnp.exp(-2.0 * s)) - jnp.log(2.0)


@dataclass(frozen=True)
class RBM:
    """Complex restricted Boltzmann machine (Carleo & Troyer 2017; Choo et al. 2020).

    log ψ(x) = a·x + Σ_j log cosh(b_j + W_j·x), all parameters complex.

    Parameters
    ----------
    n_visible : number of visible units (2M spin-orbitals).
    alpha : hidden-unit density, n_hidden = alpha * n_visible.
    sigma : standard deviation of the real and imaginary parts of the random initial b, W.
    bias : magnitude of the initial visible bias towards ``reference`` in :meth:`init`.
    """

    n_visible: int
    alpha: float = 2.0
    sigma: float = 0.01
    bias: float = 0.5

    @property
    def n_hidden(self) -> int:
        return int(round(self.alpha * self.n_visible))

    def n_parameters(self) -> int:
        return self.n_visible + self.n_hidden + self.n_visible * self.n_hidden

    def describe(self) -> dict:
        return {"alpha": self.alpha, "sigma": self.sigma, "bias": self.bias}

    def init(self, key, reference=None) -> dict:
        """Random small (b, W); visible bias a = ±``bias`` on units that are 1/0 in
        ``reference`` (e.g. the HF determinant), or small random without one."""
        nv, nh = self.n_visible, self.n_hidden
        k = jax.random.split(key, 6)

        def cnormal(kr, ki, shape):
            return self.sigma * (jax.random.normal(kr, shape) + 1j * jax.random.normal(ki, shape))

        if reference is None:
            a = cnormal(k[0], k[1], (nv,))
        else:
            ref = jnp.asarray(reference, dtype=jnp.float64)
            a = (self.bias * (2.0 * ref - 1.0)).astype(jnp.complex128)
        return {"a": a.astype(jnp.complex128),
                "b": cnormal(k[2], k[3], (nh,)).astype(jnp.complex128),
                "W": cnormal(k[4], k[5], (nh, nv)).astype(jnp.complex128)}

    def theta(self, params, x):
        x = jnp.asarray(x).astype(jnp.complex128)
        return params["b"] + jnp.einsum("...v,hv->...h", x, params["W"])

    def log_psi(self, params, x):
        xc = jnp.asarray(x).astype(jnp.complex128)
        return xc @ params["a"] + log_cosh(self.theta(params, x)).sum(-1)

    def rephase(self, params, theta):
        """log ψ − i θ·x: the visible bias takes the orbital phases (:class:`~.base.Rephase`)."""
        return {**params, "a": params["a"] - 1j * jnp.asarray(theta)}

    def log_ratio(self, params, x, rem, add):
        theta = self.theta(params, x)                                    # (H,)
        w = params["W"]
        dtheta = w[:, add].sum(-1) - w[:, rem].sum(-1)                   # (H, C)
        da = params["a"][add].sum(-1) - params["a"][rem].sum(-1)         # (C,)
        lc = log_cosh(theta[:, None] + dtheta).sum(0) - log_cosh(theta).sum()
        return da + lc


    # ------------------------------------------------------------ product-form amplitude ratios
    def ratio_tables(self, params) -> dict:
        """Per-parameter-set tables for :meth:`ratio`: exp(±W) once, so no transcendental
        function is evaluated per connected configuration; stored (visible, hidden), so that a
        connection gathers contiguous rows."""
        w = params["W"]
        return {"a": params["a"], "b": params["b"], "W": w, "eWt": jnp.exp(w).T, "emWt": jnp.exp(-w).T}

    def ratio(self, tables, x, rem, add):
        """ψ(x')/ψ(x) for the connected x' of :meth:`log_ratio`, as a product over hidden units:
        cosh(θ+Δ)/cosh θ = ½(1 + tanh θ) e^Δ + ½(1 − tanh θ) e^{−Δ} with
        e^{±Δ} = Π_add e^{±W} Π_rem e^{∓W} (complex multiplies only; about 10× cheaper than
        log cosh on every connection). Laid out (connections, hidden) with e^{−Δ} gathered rather
        than divided: 1.44× faster than (hidden, connections) on graphene 2×2×1."""
        theta = tables["b"] + tables["W"] @ jnp.asarray(x).astype(jnp.complex128)   # (H,)
        t = jnp.tanh(theta)
        ew, emw = tables["eWt"], tables["emWt"]
        ep = jnp.prod(ew[add], -2) * jnp.prod(emw[rem], -2)                         # (C, H)
        em = jnp.prod(emw[add], -2) * jnp.prod(ew[rem], -2)
        factor = 0.5 * (1.0 + t) * ep + 0.5 * (1.0 - t) * em
        da = tables["a"][add].sum(-1) - tables["a"][rem].sum(-1)
        return jnp.exp(da) * jnp.prod(factor, axis=-1)


def count_parameters(params) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))
