"""Default settings per sampler (what ``nqsbench run`` uses), chosen on the H chain N_k = 4.

``exact``: full enumeration, SR lr 0.25, diagonal shift 1e-3 (design.md: 1.6 mHa/cell at step
~177 for d = 1.8). ``mcmc``: Metropolis chains; see DEFAULTS["mcmc"] for the measured settings.
"""
from __future__ import annotations

from .driver import NQS
from .optimizer import SR, CosineDecay

DEFAULTS = {
    "exact": {"lr": 0.25, "diag_shift": 1e-3},
    # beta < 1: chains sample |ψ|^(2β) with importance weights |ψ|^(2(1-β)) (see MetropolisSampler);
    # with plain |ψ|² sampling (beta = 1) the near-HF state keeps ~99% of proposals rejected and SR
    # stalls ~30 mHa/cell above exact on the H chain N_k = 4 (d = 1.8, 1024 samples).
    # lr_final: cosine decay 0.25 → 0.02 over the run. At constant lr 0.25 the Markov-chain runs
    # jump tens of mHa/cell and settle at a noise floor (d = 2.6, α = 2, seed 0, 400 steps, mean
    # of the last 100 steps: +11.4 mHa/cell at lr 0.25, +4.2 at lr 0.1, +2.4 with the decay;
    # α = 4, 1500 steps: +1.0). No trust region by default (see optimizer.py for when it helps).
    # beta = "auto" (AUTO_BETA): β adapts per step. A fixed 0.5 leaves 93 / 27 / 10 effective
    # samples of 1024 at the hf start of polyacetylene 1x1x2 / graphene 2x2x1 / LiH 2x2x2 and SR
    # diverges there within 40 steps; β = 1 freezes the chains on the HF determinant once the state
    # gets there (polyacetylene: acceptance 6e-4, step 118). On the H chain the weights of β = 0.5
    # keep 27-40 % of the samples, so "auto" stays at or near 0.5 there.
    "mcmc": {"lr": 0.25, "lr_final": 0.02, "diag_shift": 1e-3, "n_samples": 1024, "n_chains": 32,
             "beta": "auto"},
}


# beta = "auto": β adapts per step (MetropolisSampler.target_ess): from the floor 0.5 (the former
# fixed default) towards 1 while the importance weights leave fewer effective samples than this
# fraction of the samples, back towards the floor while they leave more.
AUTO_BETA = {"beta": 0.5, "target_ess": 0.25}


def metropolis_beta(beta) -> dict:
    """MetropolisSampler keywords of a ``beta`` setting: a number, or "auto" (:data:`AUTO_BETA`)."""
    return dict(AUTO_BETA) if beta == "auto" else {"beta": float(beta)}


def _max_norm(v):
    return v if v == "auto" else max(float(v), 0.0)


def resolve_settings(sampler: str, lr: float | None = None, lr_final: float | None = None,
                     max_norm: float | None = None, diag_shift: float | None = None,
                     n_samples: int | None = None, n_chains: int | None = None,
                     beta: float | None = None, deterministic: int | None = None,
                     overrides: dict | None = None) -> dict:
    """The per-sampler defaults filled in where an argument is None (``overrides``: defaults of
    a model's own that replace these, e.g. the NNBF's lr and semistochastic set). ``lr_final``,
    ``max_norm`` and ``deterministic`` are 0 when off (given as 0, or no default), so resolving a
    resolved dict again changes nothing; the Markov-chain keys only for ``sampler='mcmc'``."""
    d = {**DEFAULTS[sampler], **(overrides or {})}

    def pick(given, key, off=None):
        return d.get(key, off) if given is None else given

    out = {"lr": pick(lr, "lr"), "lr_final": max(pick(lr_final, "lr_final", 0.0), 0.0),
           "max_norm": _max_norm(pick(max_norm, "max_norm", 0.0)),
           "diag_shift": pick(diag_shift, "diag_shift")}
    if sampler == "mcmc":
        out.update(n_samples=pick(n_samples, "n_samples"), n_chains=pick(n_chains, "n_chains"),
                   beta=pick(beta, "beta"), deterministic=int(pick(deterministic, "deterministic", 0)))
    return out


def make_driver(ham, sampler: str = "exact", alpha: float = 2.0, seed: int = 0, lr: float | None = None,
                diag_shift: float | None = None, n_samples: int | None = None,
                n_chains: int | None = None, beta: float | None = None, lr_final: float | None = None,
                max_norm: float | None = None, n_steps: int | None = None, sr_solver: str = "auto",
                **kw) -> NQS:
    """An :class:`NQS` with the per-sampler defaults (:func:`resolve_settings`; None means the
    default). ``lr_final`` > 0 decays the learning rate from ``lr`` to ``lr_final`` over
    ``n_steps`` (the run's total steps; :class:`CosineDecay`); ``max_norm`` > 0 caps |δ| per SR
    step; 0 switches either off."""
    r = resolve_settings(sampler, lr=lr, lr_final=lr_final, max_norm=max_norm, diag_shift=diag_shift,
                         n_samples=n_samples, n_chains=n_chains, beta=beta)
    from .models.base import resolve_max_norm

    r["max_norm"] = resolve_max_norm(r["max_norm"], 2 * ham.n_spatial)
    lr = r["lr"]
    if r["lr_final"] > 0:
        if n_steps is None:
            raise ValueError("lr_final needs n_steps (the length of the decay)")
        lr = CosineDecay(lr, r["lr_final"], int(n_steps))
    opt = SR(learning_rate=lr, diag_shift=r["diag_shift"], max_norm=r["max_norm"] or None, mode=sr_solver)
    if sampler == "exact":
        return NQS(ham, sampler="exact", optimizer=opt, alpha=alpha, seed=seed, **kw)
    from .hilbert import Sector
    from .samplers import MetropolisSampler

    sector = kw.pop("sector", None) or Sector.from_hamiltonian(ham)
    smp = MetropolisSampler(sector, n_samples=r["n_samples"], n_chains=r["n_chains"], **metropolis_beta(r["beta"]))
    return NQS(ham, sampler=smp, optimizer=opt, alpha=alpha, seed=seed, sector=sector, **kw)
