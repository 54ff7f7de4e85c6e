"""nnbf: neural-network backflow, ψ(x) = det Φ(x)[occ(x)] with Φ(x) = Φ₀ + MLP(x) (Luo & Clark 2019).

Φ is a (2M × N) matrix of orbitals (rows: spin-orbitals in Jordan–Wigner order, columns:
electrons); ψ(x) is the determinant of its rows at the occupied spin-orbitals of x, taken in
ascending order (the order of c†_{i1} c†_{i2} … |0⟩ that the local energy's signs assume).
Φ₀ starts as the HF determinant (the unit columns of the occupied HF spin-orbitals: we work in
the HF orbital basis) and is trained; the MLP (complex weights, a holomorphic entire activation (``poly6``), ``layers`` hidden layers of
``width``·2M units) makes the orbitals depend on the whole configuration.

Start: the output layer of the MLP is drawn with standard deviation ``init_scale`` (bias 0), so
the hf start is the HF determinant plus O(init_scale); the random start (``init = "random"``, and
``"auto"`` on small systems) also spreads Φ₀ by :data:`RANDOM_ORBITAL_SCALE` about the HF orbitals,
which breaks the spin symmetry of the start (H chain N_k = 4, d = 1.0: the hf start stops at the
singlet, +3.4 mHa/cell; the random one goes on towards the triplet ground state of the sector). ``init_scale = 0`` starts exactly at the HF
determinant, but that is a stationary point stochastic reconfiguration cannot leave (Brillouin:
the singles' gradient vanishes in canonical HF orbitals; the doubles' amplitudes are second
order in the backflow; with only the HF configuration carrying weight, S = 0 and δ = 0).

Fast path (:class:`~.base.LogRatio`): on a connected x' only the first layer's pre-activation
changes by a few weight rows (a low-rank update, as the RBM's θ); the rest is batched over the
connections: one matmul for the backflow rows, one batched LU for the determinants (``linalg.log_det``,
in jax.numpy: LAPACK's batched LU can deadlock XLA's thread pool, see there).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from ...records import ModelSettings
from ..linalg import log_det
from .rbm import log_cosh

jax.config.update("jax_enable_x64", True)
CDTYPE = jnp.complex128


class Settings(ModelSettings):
    """Backflow MLP: ``layers`` hidden layers of ``width`` units per spin-orbital."""
    model_config = {"extra": "forbid"}
    kind: Literal["nnbf"] = "nnbf"
    width: float = Field(1.0, gt=0, description="hidden units per spin-orbital (hidden = width · 2M)")
    layers: int = Field(1, ge=1, le=4, description="hidden layers of the backflow MLP")
    init_scale: float = Field(0.01, ge=0, description="std of the initial output layer (0: exactly HF, "
                              "a stationary point SR cannot leave)")
    activation: Literal["poly6", "log_cosh", "tanh"] = Field("poly6", description="hidden-layer "
                                                             "activation (holomorphic; see ACTIVATIONS)")


# SR near the HF start: the backflow directions are barely populated, S is nearly singular and the
# RBM's lr 0.25 / shift 1e-3 overshoots at step 1 (H chain N_k = 4, d = 1.8, exact sampling:
# +40 → +72 mHa/cell, then a divergence). lr 0.1 with shift 1e-2 descends smoothly but diverged at
# step 271 (+0.9 Ha/cell in one step, with the tanh activation of the time: see ACTIVATIONS); with the trust
# region |δ| ≤ 0.5 as well it reached +0.083 mHa/cell at step 400 with no jump.
# Markov chains also sum the 128 most probable configurations exactly each step (the
# semistochastic set, ``deterministic``; nqs/driver.py). The NNBF's SR force on the stretched chain
# is carried by a few heavy configurations (H chain N_k = 4, d = 3.6: E|g|²/|F|² = 288 per sample,
# 2.5 with the set; benchmarks/sr_noise.py): plain chains plateau at +3.55 mHa/cell there, with the
# set +0.87 ± 0.05 (records/semistochastic/). It costs 128 more local energies per step (+12.5 %
# at 1024 samples). Not the RBM's default: its chains converge higher with it (H chain N_k = 6,
# d = 1.8, α = 2, seed 0: +4.99 ± 0.18 mHa/cell at 1 220 steps against +2.92 ± 0.15 plain;
# records/semistochastic/h-chain/d1.8_k1x1x6/).
OPTIMIZER_DEFAULTS = {"exact": {"lr": 0.1, "diag_shift": 1e-2, "max_norm": 0.5},
                      "mcmc": {"lr": 0.1, "diag_shift": 1e-2, "max_norm": 0.5, "deterministic": 128}}


def build(settings: Settings, sector) -> "NNBF":
    n = sector.n_spin_orbitals
    return NNBF(n_spin_orbitals=n, n_electrons=sector.n_electrons,
                reference=tuple(int(v) for v in np.asarray(sector.hf_config)),
                hidden=max(int(round(settings.width * n)), 1), layers=settings.layers,
                init_scale=float(settings.init_scale), activation=settings.activation)


# Holomorphic activations (the parameters are complex and SR differentiates holomorphically).
# tanh has poles at ±iπ/2, and training drives the first layer's pre-activations there: H chain
# N_k = 4, d = 3.15, exact sampling, |Im pre| reached 2.0 by step 22 and the energy jumped from
# +34 to +331 mHa/cell (lr 0.05: the same at step 52). log_cosh (∫tanh) is only logarithmically
# singular there and ran those 90 steps smoothly to +3.9 mHa/cell, but at d = 1.8 its parameters
# turned NaN at step 136 (log1p(−1) at Re z = 0, Im z = π/2). poly6, the Taylor series of log cosh
# to sixth order (as in complex deep NQS, Choo et al. 2019), is entire: the default; the same
# +3.9 at d = 3.15 after 90 steps, and d = 1.8 smoothly to +1.21 mHa/cell at step 200.
ACTIVATIONS = {"tanh": jnp.tanh, "log_cosh": log_cosh,
               "poly6": lambda z: z ** 2 / 2 - z ** 4 / 12 + z ** 6 / 45}


class Backflow(nn.Module):
    """Φ(x) = Φ₀ + MLP(x), the full (2M × N) matrix (the parameter layout; :class:`NNBF`
    evaluates only the occupied rows)."""
    n_spin_orbitals: int
    n_electrons: int
    reference: tuple[int, ...]
    hidden: int
    layers: int
    init_scale: float
    activation: str = "poly6"

    def orbitals0(self, key, shape, dtype=CDTYPE):
        occ = np.flatnonzero(np.asarray(self.reference))
        phi = np.zeros(shape, dtype=complex)
        phi[occ, np.arange(len(occ))] = 1.0
        return jnp.asarray(phi, dtype=dtype)

    @nn.compact
    def __call__(self, x):
        h = jnp.asarray(x).astype(CDTYPE)
        act = ACTIVATIONS[self.activation]
        for _ in range(self.layers):
            h = act(nn.Dense(self.hidden, dtype=CDTYPE, param_dtype=CDTYPE)(h))
        out = nn.Dense(self.n_spin_orbitals * self.n_electrons, dtype=CDTYPE, param_dtype=CDTYPE,
                       kernel_init=nn.initializers.normal(self.init_scale), bias_init=nn.initializers.zeros)(h)
        phi0 = self.param("orbitals", self.orbitals0, (self.n_spin_orbitals, self.n_electrons))
        return phi0 + out.reshape(out.shape[:-1] + (self.n_spin_orbitals, self.n_electrons))


# The random start's spread of Φ₀ about the HF orbitals.
RANDOM_ORBITAL_SCALE = 0.1


@dataclass(frozen=True)
class NNBF:
    """Neural-network backflow determinant (see the module docstring)."""

    n_spin_orbitals: int
    n_electrons: int
    reference: tuple[int, ...]
    hidden: int
    layers: int = 1
    init_scale: float = 0.01
    activation: str = "poly6"

    @property
    def module(self) -> Backflow:
        return Backflow(self.n_spin_orbitals, self.n_electrons, self.reference, self.hidden, self.layers,
                        self.init_scale, self.activation)

    def init(self, key, reference=None) -> dict:
        """Parameters (flax layout: {"params": {"Dense_0": …, "Dense_<layers>": …, "orbitals"}}).
        With a ``reference`` (the hf start) Φ₀ is this model's HF determinant; without one (the
        random start) Φ₀ is that plus complex noise of std :data:`RANDOM_ORBITAL_SCALE` in every
        entry, a start of mixed spin that a spin-symmetric one cannot reach (see there)."""
        params = self.module.init(key, jnp.zeros(self.n_spin_orbitals, CDTYPE))
        if reference is None:
            phi = params["params"]["orbitals"]
            kr, ki = jax.random.split(jax.random.fold_in(key, 1))
            noise = RANDOM_ORBITAL_SCALE * (jax.random.normal(kr, phi.shape) + 1j * jax.random.normal(ki, phi.shape))
            params = {**params, "params": {**params["params"], "orbitals": phi + noise.astype(CDTYPE)}}
        return params

    # ------------------------------------------------------------------ evaluation
    def _layers(self, params):
        p = params["params"]
        return [p[f"Dense_{i}"] for i in range(self.layers + 1)], p["orbitals"]

    def _hidden(self, dense, pre):
        """Activations of every hidden layer from the first layer's pre-activation."""
        act = ACTIVATIONS[self.activation]
        h = act(pre)
        for d in dense[1:-1]:
            h = act(h @ d["kernel"] + d["bias"])
        return h

    def _occupied_rows(self, dense, phi0, h, occ):
        """The occupied rows (…, N, N) of Φ for hidden activations h (…, H) and occupations occ (…, N)."""
        out = dense[-1]
        full = (h @ out["kernel"] + out["bias"]).reshape(h.shape[:-1] + (self.n_spin_orbitals, self.n_electrons))
        return jnp.take_along_axis(full, occ[..., :, None], axis=-2) + phi0[occ]

    def _log_det(self, dense, phi0, h, occ):
        """log det of the occupied rows (…, N) of Φ for hidden activations h (…, H)."""
        return log_det(self._occupied_rows(dense, phi0, h, occ))

    def _occupied(self, x):
        return jax.vmap(lambda v: jnp.nonzero(v, size=self.n_electrons)[0])(
            x.reshape(-1, self.n_spin_orbitals)).reshape(x.shape[:-1] + (self.n_electrons,))

    def rephase(self, params, theta):
        """log ψ − i θ·x: row i of Φ (its Φ₀ row and the output layer's units of that row)
        times e^{−iθ_i}, so the determinant of the occupied rows takes Π e^{−iθ_i}."""
        row = jnp.exp(-1j * jnp.asarray(theta))                          # (2M,)
        unit = jnp.repeat(row, self.n_electrons)                          # output i·N + j → row i
        p = dict(params["params"])
        out = f"Dense_{self.layers}"
        p[out] = {"kernel": p[out]["kernel"] * unit, "bias": p[out]["bias"] * unit}
        p["orbitals"] = p["orbitals"] * row[:, None]
        return {**params, "params": p}

    def log_psi(self, params, x):
        x = jnp.asarray(x)
        dense, phi0 = self._layers(params)
        pre = x.astype(CDTYPE) @ dense[0]["kernel"] + dense[0]["bias"]
        return self._log_det(dense, phi0, self._hidden(dense, pre), self._occupied(x))

    def log_ratio(self, params, x, rem, add):
        """log ψ(x') − log ψ(x) for x' = x − Σ rem + Σ add (rows of ``rem``/``add``, (C, r))."""
        x = jnp.asarray(x).astype(jnp.int32)
        dense, phi0 = self._layers(params)
        k1 = dense[0]["kernel"]                                            # (2M, H)
        pre = x.astype(CDTYPE) @ k1 + dense[0]["bias"]                     # (H,)
        pre_c = pre + k1[add].sum(-2) - k1[rem].sum(-2)                    # (C, H): low-rank update
        c = rem.shape[0]
        xc = (jnp.broadcast_to(x, (c,) + x.shape)
              .at[jnp.arange(c)[:, None], rem].add(-1).at[jnp.arange(c)[:, None], add].add(1))
        occ_c = self._occupied(xc)
        log_c = self._log_det(dense, phi0, self._hidden(dense, pre_c), occ_c)
        log_x = self._log_det(dense, phi0, self._hidden(dense, pre), self._occupied(x))
        return log_c - log_x

    def describe(self) -> dict:
        return {"hidden": self.hidden, "layers": self.layers, "init_scale": self.init_scale,
                "activation": self.activation}
