"""Stochastic reconfiguration (natural gradient) for holomorphic complex parameters.

With O_k(x) = ∂ log ψ(x)/∂θ_k (holomorphic), weights p(x) (exact) or 1/N_s (Monte Carlo):

    F_k  = ⟨O_k* E_loc⟩ − ⟨O_k*⟩⟨E_loc⟩      (= ∂E/∂θ_k* = ½(∂E/∂Re θ_k + i ∂E/∂Im θ_k))
    S_kl = ⟨O_k* O_l⟩ − ⟨O_k*⟩⟨O_l⟩
    (S + ε I) δ = F,   θ ← θ − η δ   (η from an optax schedule)

With ``max_norm`` the step is a trust region: δ is rescaled to |δ| ≤ max_norm before η is
applied (off by default). Monte Carlo S and F are noisy and a large δ along a poorly sampled
direction can wreck a run: H chain N_k = 4, d = 2.6, α = 4, seed 5, Markov chains with the
default lr decay collapsed at step 278 (+332 mHa/cell, stopped by DivergenceGuard); with
max_norm = 1 the same run reached +1.12 mHa/cell (92% of its steps clipped, so it descends
slower).

With Ō = √p (O − ⟨O⟩) (N_s × N_p) and e = √p (E_loc − ⟨E_loc⟩): S = Ō†Ō, F = Ō†e. When
N_s < N_p the kernel (MinSR) form δ = Ō† (ŌŌ† + ε I)^{-1} e is used: the same δ, an
N_s × N_s solve. With ``mode="cg"`` neither matrix is formed: conjugate gradients on
(Ō†Ō + ε I) δ = Ō†e with products Ō†(Ō v), so the step's memory is the Jacobian's N_s × N_p and
nothing quadratic ("auto" picks it when both N_s and N_p exceed :data:`DIRECT_LIMIT`).

Not done, measured: clipping the local energies in F to the median ± 5 mean absolute deviations
(FermiNet's and PsiFormer's guard against the tail near the nodes of ψ). In second quantization
the tail is the signal: a configuration of small ψ(x) next to the dominant ones has a large E_loc,
and that is what tells SR to grow ψ(x). NNBF, H chain N_k = 4, d = 3.6, Markov chains, seed 0:
+58.5 mHa/cell after 300 steps clipped against +6.1 unclipped, still falling apart from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

jax.config.update("jax_enable_x64", True)


def jacobian(model, params, xs):
    """(N_s, N_p) holomorphic O_k(x) = ∂ log ψ(x)/∂θ_k, parameters in ravel_pytree order."""
    flat, unravel = ravel_pytree(params)

    def f(theta, x):
        return model.log_psi(unravel(theta), x)

    return jax.vmap(jax.grad(f, holomorphic=True), in_axes=(None, 0))(flat, xs)


def force(o, eloc, w):
    """F = ⟨O* E_loc⟩ − ⟨O*⟩⟨E_loc⟩ with weights w (summing to 1)."""
    e = jnp.sum(w * eloc)
    o_mean = jnp.sum(w[:, None] * o, 0)
    return jnp.conj(o - o_mean).T @ (w * (eloc - e))


DIRECT_LIMIT = 8192
"""Above this many samples and parameters both, ``mode="auto"`` solves by conjugate gradients
(a direct solve would hold a ≥ 1 GB complex matrix)."""

CG_TOL = 1e-10
"""Relative residual of the conjugate-gradient solve (far below the Monte Carlo noise of F)."""


CG_ITERATIONS_TYPICAL = 100
"""Conjugate-gradient iterations the pre-flight time estimate assumes (the real count depends on
the conditioning of S; the estimate says so)."""


def solver_mode(mode: str, n_samples: int, n_parameters: int) -> str:
    """The SR solve ``mode='auto'`` picks: CG above :data:`DIRECT_LIMIT` samples and parameters,
    else the smaller of the samples² (MinSR) and parameters² (SR) systems."""
    if mode != "auto":
        return mode
    return "cg" if min(n_samples, n_parameters) > DIRECT_LIMIT else "minsr" if n_samples < n_parameters else "sr"


def sr_solve_flops(mode: str, n_samples: int, n_parameters: int) -> float:
    """Real floating-point operations of one SR solve (complex: 8 per multiply-add): the Gram
    matrix, its Cholesky factorization and the products with the force (CG: the matrix-vector
    products of :data:`CG_ITERATIONS_TYPICAL` iterations)."""
    ns, npar = n_samples, n_parameters
    mode = solver_mode(mode, ns, npar)
    if mode == "cg":
        return 16.0 * ns * npar * (CG_ITERATIONS_TYPICAL + 1)
    n_gram, n_other = (ns, npar) if mode == "minsr" else (npar, ns)
    return 8.0 * n_gram ** 2 * n_other + 8.0 / 3.0 * n_gram ** 3 + 16.0 * ns * npar


def sr_direction(o, eloc, w, diag_shift, mode="auto"):
    """δ solving (S + ε I) δ = F; ``mode`` 'sr' (N_p × N_p), 'minsr' (N_s × N_s), 'cg'
    (matrix-free conjugate gradients) or 'auto'."""
    ns, npar = o.shape
    sw = jnp.sqrt(w)
    e = jnp.sum(w * eloc)
    o_mean = jnp.sum(w[:, None] * o, 0)
    ob = (o - o_mean) * sw[:, None]
    eps = sw * (eloc - e)
    mode = solver_mode(mode, ns, npar)
    if mode == "cg":
        def matvec(v):
            return jnp.conj(ob).T @ (ob @ v) + diag_shift * v
        f = jnp.conj(ob).T @ eps
        delta, _ = jax.scipy.sparse.linalg.cg(matvec, f, tol=CG_TOL, maxiter=10 * min(ns, npar) + 100)
        return delta
    if mode == "sr":
        s = jnp.conj(ob).T @ ob + diag_shift * jnp.eye(npar)
        f = jnp.conj(ob).T @ eps
        c = jax.scipy.linalg.cho_factor(s, lower=True)
        return jax.scipy.linalg.cho_solve(c, f)
    t = ob @ jnp.conj(ob).T + diag_shift * jnp.eye(ns)
    c = jax.scipy.linalg.cho_factor(t, lower=True)
    return jnp.conj(ob).T @ jax.scipy.linalg.cho_solve(c, eps)


@dataclass(frozen=True)
class CosineDecay:
    """Learning rate η(t): cosine decay from ``init`` to ``final`` over ``steps`` steps, then
    ``final``. With Monte Carlo gradients the energy an SR run settles at sits above the
    minimum by an amount that grows with η (the noise floor); decaying η lowers that floor
    while the early large steps keep the descent fast."""

    init: float
    final: float
    steps: int

    def __call__(self, count):
        return optax.cosine_decay_schedule(self.init, max(int(self.steps), 1),
                                           alpha=self.final / self.init)(count)

    def to_dict(self) -> dict:
        return {"schedule": "cosine", "init": self.init, "final": self.final, "steps": self.steps}


@dataclass(frozen=True)
class SR:
    """SR with diagonal shift ``diag_shift``, learning rate (float or optax schedule) and an
    optional trust region ``max_norm`` on |δ|."""

    learning_rate: float | Callable[[Any], Any] = 0.1
    diag_shift: float = 0.01
    mode: str = "auto"
    max_norm: float | None = None

    def transform(self) -> optax.GradientTransformation:
        sgd = optax.sgd(self.learning_rate)
        return sgd if self.max_norm is None else optax.chain(optax.clip_by_global_norm(self.max_norm), sgd)

    def init(self, params):
        return self.transform().init(params)

    def update(self, o, eloc, w, params, opt_state, lr_scale=1.0):
        """Returns (new params, new optimizer state, |δ|); ``lr_scale`` multiplies the step
        (reduce-on-plateau: :class:`nqsbench.nqs.convergence.AutoSteps`)."""
        flat, unravel = ravel_pytree(params)
        delta = sr_direction(o, eloc, w, self.diag_shift, self.mode)
        updates, opt_state = self.transform().update(unravel(delta), opt_state, params)
        updates = jax.tree_util.tree_map(lambda u: u * lr_scale, updates)
        return optax.apply_updates(params, updates), opt_state, jnp.linalg.norm(delta)
