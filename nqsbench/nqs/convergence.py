"""When an optimization has converged: a plateau criterion on the energy trace, and the
callbacks of ``steps = "auto"`` runs (reduce the learning rate on a plateau; stop on a plateau at
the final rate, or at a step or time budget).

The criterion (:func:`plateau`) looks at the last two windows of ``window`` steps of the per-step
energies E_t (per cell):

- **flat**: |mean(last window) − mean(window before)| ≤ tol + sigmas · σ_Δ, with σ_Δ the error of
  that difference from the scatter of the steps in each window (Monte Carlo noise and the
  optimizer's own jitter; for exact sampling it is ~0 and the tolerance decides);
- **no downward trend**: a least-squares line through both windows falls by no more than
  tol + sigmas · σ_fall over one window (σ_fall from the fit's residuals).

Both must hold. A run of fewer than two windows is never converged.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Verdict:
    converged: bool
    reason: str
    drift_mha: float = math.nan          # mean(last window) − mean(window before), mHa/cell
    limit_mha: float = math.nan          # what |drift| had to stay within
    fall_mha: float = math.nan           # fitted fall over one window (positive = still falling)


def plateau(energies, window: int = 50, tol_mha: float = 0.05, sigmas: float = 2.0) -> Verdict:
    """The plateau criterion (module docstring) on per-step energies (Ha per cell)."""
    e = np.asarray(energies, dtype=float) * 1e3            # mHa/cell from here on
    w = int(window)
    if len(e) < 2 * w:
        return Verdict(False, f"{len(e)} steps, fewer than two windows of {w}")
    if not np.all(np.isfinite(e[-2 * w:])):
        return Verdict(False, "non-finite energies in the last two windows")
    a, b = e[-2 * w:-w], e[-w:]
    drift = float(b.mean() - a.mean())
    sigma = math.sqrt(a.var(ddof=1) / w + b.var(ddof=1) / w)
    limit = tol_mha + sigmas * sigma
    t = np.arange(2 * w, dtype=float)
    y = e[-2 * w:]
    slope, icpt = np.polyfit(t, y, 1)
    resid = y - (slope * t + icpt)
    s_slope = math.sqrt(max(resid.var(ddof=2), 0.0) / ((t - t.mean()) ** 2).sum())
    fall = float(-slope * w)
    fall_limit = tol_mha + sigmas * s_slope * w
    flat = abs(drift) <= limit
    no_trend = fall <= fall_limit
    if flat and no_trend:
        reason = (f"plateau: last window {drift:+.3f} mHa/cell from the one before (limit ±{limit:.3f}), "
                  f"fitted fall {fall:+.3f} per {w} steps (limit {fall_limit:.3f})")
    elif not flat:
        reason = (f"energy still moving: last window {drift:+.3f} mHa/cell from the one before "
                  f"(limit ±{limit:.3f})")
    else:
        reason = f"downward trend: fitted fall {fall:.3f} mHa/cell per {w} steps (limit {fall_limit:.3f})"
    return Verdict(flat and no_trend, reason, drift, limit, fall)


def segment_since_lr_change(trace: dict) -> np.ndarray:
    """Energies of the steps run at the latest learning rate (the whole trace when the trace has
    no learning rates)."""
    e = np.asarray(trace["energy"], dtype=float)
    lr = np.asarray(trace.get("lr", []), dtype=float)
    if len(lr) != len(e) or not len(e):
        return e
    changed = np.flatnonzero(~np.isclose(lr, lr[-1], rtol=1e-9, atol=0.0))
    return e[changed[-1] + 1:] if len(changed) else e


class AutoSteps:
    """The driver callback of ``steps = "auto"``: at a plateau (at the current learning rate) with
    the rate above ``lr_final``, multiply the rate by ``decay`` (not below ``lr_final``) and go on;
    at a plateau at ``lr_final`` (or with ``lr_final`` = 0: no decay) stop, converged. Stops
    unconverged after ``max_minutes`` of optimization over the whole run (the step log's
    ``wall_s``, which counts a resumed run's earlier processes, as ``--max-steps`` counts their
    steps; this process's clock where a checkpoint older than that column left it NaN). Stateless
    but for the clock: the learning rate lives in the driver (checkpointed) and the segment in the
    trace, so a resumed run decides as an uninterrupted one would."""

    def __init__(self, window: int, tol_mha: float, sigmas: float, decay: float = 0.5,
                 lr_final: float = 0.0, max_minutes: float | None = None, check_every: int = 5):
        self.window, self.tol_mha, self.sigmas, self.decay = window, tol_mha, sigmas, decay
        self.lr_final, self.max_minutes, self.check_every = lr_final, max_minutes, check_every
        self.verdict: Verdict | None = None
        self.stop_reason: str | None = None
        self._t0 = None

    def on_run_start(self, driver, n_steps):
        self._t0 = time.monotonic()

    def __call__(self, driver, step, log):
        elapsed = log.get("wall_s", math.nan)
        if not math.isfinite(elapsed):
            elapsed = time.monotonic() - self._t0
        if self.max_minutes is not None and elapsed > 60.0 * self.max_minutes:
            self.stop_reason = f"max_minutes {self.max_minutes:g} reached"
            return True
        if (step + 1) % self.check_every:
            return False
        v = plateau(segment_since_lr_change(driver.trace), self.window, self.tol_mha, self.sigmas)
        if not v.converged:
            return False
        lr = driver.learning_rate
        if self.lr_final > 0 and lr > self.lr_final * (1 + 1e-9):
            driver.lr_scale *= max(self.decay, self.lr_final / lr)
            return False
        self.verdict = v
        return True
