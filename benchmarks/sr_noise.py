"""How noisy is the Monte Carlo SR force of a trained state? Exact, on an exact-tier sector.

Every configuration x of the state's (N↑, N↓, K) sector is enumerated; with p = |ψ|²/Σ|ψ|²,
O = ∂log ψ/∂θ − ⟨∂log ψ/∂θ⟩ and the local energy E_L, the force F = ⟨O* (E_L − E)⟩ is estimated
from samples of q_β ∝ |ψ|^(2β) (the Markov chains' ``--beta``) with weights w = p/q as the mean of
f(x) = w(x) O*(x) (E_L(x) − E). Its relative noise with N independent samples is
√(ratio / N) with ratio = E_q|f|² / |F|² (printed), so a step needs N ≈ 100·ratio samples for 10 %
noise on F (near the minimum F → 0 and the ratio grows without bound: compare states at the same
distance from it). "top-5 share" is the part of E_q|f|² that the five largest configurations carry and
"their |ψ|²/max" how rare they are: a share near 1 is a heavy tail (a few configurations carry the
variance, and a step that draws one gets a large kick), which more samples cure only slowly.
``--floors`` adds guiding distributions q ∝ max(|ψ|², ε·max|ψ|²), a remedy for a tail at the
smallest |ψ|: measured, it does not help the NNBF state below (its tail is at |ψ|²/max 10⁻⁴–10⁻²).
``--deterministic M,...`` scores a semistochastic estimator: a set D of configurations whose
share of F, Σ_D p f, is computed exactly each step (their amplitude ratios, O and E_L), the
samples falling in D counted only (g = Σ_D p f / Q_D there, Q_D = Σ_D q; g = f elsewhere: unbiased,
E_q g = F); per guide the ratio E_q|g|²/|F|² for D = the M configurations of largest |ψ|² (found
by any run as its most visited ones) and, as the ceiling, D = the M of largest q|f|² (an
oracle). The normalization of p/q is taken as known (a Markov chain estimates it; second order).

    python benchmarks/sr_noise.py RECORD.json [--betas 0.5,0.75,1] [--floors 1e-4,1e-3] [--deterministic 8,32,128]

Model, geometry and k-mesh come from the NQS record; its parameters lie beside it. The local
energies are the brute-force ones (`nqsbench.nqs.bruteforce`, an independent code path): H chain
N_k = 4, NNBF (1 236 configurations, 2 576 parameters): 1.5 min on one core of a quiet machine
(9–16 min beside two other runs), 2.9–5.5 GB peak RSS.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("record", type=Path, help="an NQS record (.json) with its .params.msgpack beside it")
    ap.add_argument("--betas", default="0.5,0.75,1")
    ap.add_argument("--floors", default="", help="also guiding distributions q ∝ max(|ψ|², ε·max|ψ|²) "
                    "for these ε (comma-separated)")
    ap.add_argument("--deterministic", default="", help="also the semistochastic estimator with these "
                    "sizes M of the exactly summed set (comma-separated)")
    a = ap.parse_args()

    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from nqsbench import catalog
    from nqsbench.build import get_hamiltonian
    from nqsbench.methods.nqs import make_driver
    from nqsbench.nqs import bruteforce
    from nqsbench.nqs.results import load_params, params_file
    from nqsbench.records import SamplerSettings
    from nqsbench.store import read

    from nqsbench.errors import NqsbenchError

    try:
        rec = read(a.record)
        params_file(a.record)
    except (NqsbenchError, FileNotFoundError) as exc:      # bad input: one line, exit 2
        print(f"sr_noise.py: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    system, params, kmesh = rec.system, rec.params, tuple(rec.kmesh)
    geom = catalog.load(system).geometry(params, kmesh)
    ham = get_hamiltonian(geom)
    kind = rec.settings.model.kind
    drv = make_driver(ham, rec.settings.model_copy(update={"sampler": SamplerSettings(kind="exact")}))
    p, _ = load_params(params_file(a.record), ham=ham, model=drv.model)
    drv.start_from(p)
    p = drv.params
    xs = drv.sector.enumerate()
    flat, unravel = ravel_pytree(p)
    logpsi = np.asarray(drv.model.log_psi(p, jnp.asarray(xs)))
    grad = jax.jit(jax.vmap(jax.grad(lambda f, x: drv.model.log_psi(unravel(f), x[None])[0], holomorphic=True),
                            in_axes=(None, 0)))
    o = np.concatenate([np.asarray(grad(flat.astype(complex), jnp.asarray(xs[i:i + 16])))
                        for i in range(0, len(xs), 16)])
    el = np.concatenate([bruteforce.local_energy(ham, lambda x: drv.model.log_psi(p, x), xs[i:i + 32])
                         for i in range(0, len(xs), 32)])
    a2 = np.exp(2 * (logpsi.real - logpsi.real.max()))
    prob = a2 / a2.sum()
    e = float((prob * el).sum().real)
    do = o - (prob[:, None] * o).sum(0)
    print(f"{system} {params} k{'x'.join(map(str, kmesh))} {kind}: {len(xs)} configurations, "
          f"{o.shape[1]} parameters, E = {e / geom.nk:.8f} Ha/cell, max |O|² = {np.abs(do).max() ** 2:.3g}")
    guides = [(f"beta {b:g}", a2 ** b) for b in map(float, a.betas.split(","))]
    guides += [(f"floor {eps:g}", np.maximum(a2, eps)) for eps in map(float, filter(None, a.floors.split(",")))]
    for name, q in guides:
        q = q / q.sum()
        w = prob / q
        f2 = w ** 2 * (np.abs(do) ** 2).sum(1) * np.abs(el - e) ** 2      # |f(x)|²
        force = np.linalg.norm((prob[:, None] * np.conj(do) * (el - e)[:, None]).sum(0))
        contrib = q * f2
        top = np.argsort(contrib)[::-1][:5]
        print(f"  {name}: effective samples {1 / (q * w * w).sum():.2f} of each, "
              f"ratio E|f|²/|F|² = {contrib.sum() / force ** 2:.1f}, top-5 share {contrib[top].sum() / contrib.sum():.2f}, "
              f"their |ψ|²/max {', '.join(f'{v:.1e}' for v in a2[top])}")
        for m in map(int, filter(None, a.deterministic.split(","))):
            parts = []
            for what, order in (("largest |ψ|²", np.argsort(a2)[::-1]), ("oracle", np.argsort(contrib)[::-1])):
                d = order[:m]
                rest = np.ones(len(q), bool)
                rest[d] = False
                share = np.linalg.norm((prob[d, None] * np.conj(do[d]) * (el[d] - e)[:, None]).sum(0))
                g2 = share ** 2 / q[d].sum() + contrib[rest].sum()        # E_q|g|²
                parts.append(f"{what} {g2 / force ** 2:.1f} (p in D {prob[d].sum():.3f})")
            print(f"    semistochastic, D of {m}: ratio " + ", ".join(parts))


if __name__ == "__main__":
    main()
