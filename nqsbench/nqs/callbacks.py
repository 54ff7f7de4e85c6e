"""Driver callbacks: everything with side effects (progress, checkpoints, stopping) lives here.

A callback is ``cb(driver, step, log) -> bool | None`` (True asks the driver to stop), called
after each step in list order, with optional ``on_run_start(driver, n_steps)`` and
``on_result(driver)`` (after the final estimate, before ``on_run_end``; may raise to reject
it), ``on_run_end(driver)`` (normal end) and ``on_run_abort(driver)`` (an exception is
propagating). ``log`` holds the step's numbers (energy per cell etc.); ``driver.params`` are
already the updated parameters and ``driver.step`` = step + 1.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
import zipfile
import zlib
from pathlib import Path

import jax
import numpy as np

from ..errors import NqsbenchError
from ..io import atomic_write

log = logging.getLogger(__name__)


class DivergenceError(NqsbenchError):
    """The optimization produced NaN/inf or an energy far above the best one: nothing is saved."""


def _finite_tree(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree_util.tree_leaves(tree))


MIN_EFFECTIVE_FRACTION = 0.1
"""Below this share of effective samples (:func:`~nqsbench.nqs.stats.effective_sample_size`) a
divergence message names --beta auto (or 1) first."""


class DivergenceGuard:
    """Raise :class:`DivergenceError` on non-finite energy/parameters, an energy more than
    ``max_rise`` Ha per cell (plus ``n_sigma`` Monte Carlo error bars of the difference between
    the step and the best step, so that a noisy estimate from few samples is not taken for a
    collapse) above the lowest seen, or a
    collapse of the Markov chains. Put it before :class:`Checkpoint`.

    0.1 Ha/cell (60× chemical accuracy): the largest transient rise in the Markov-chain runs
    kept in the session-2 traces was 82 mHa/cell (constant lr 0.25, recovered); a collapse of
    an H chain N_k = 4, d = 2.6 run to +299 mHa/cell (acceptance 0.03) passed the old 1 Ha/cell.

    Markov-chain collapse (never checked with exact sampling, whose samples are the whole
    sector): a step that makes |ψ| huge on one configuration leaves every chain stuck there, and
    the estimate becomes that configuration's local energy with a variance and error bar of ~0.
    ``nqsbench run h-chain -k 1,1,4 --sampler mcmc --lr 50 --seed 1`` went from variance 1.9 Ha²
    to 2e56 at step 1, then acceptance < 2e-4 and variance ~1e-34 for every later step, and
    wrote a record 38 mHa/cell above exact with ± 0.000. Honest runs of the H chain (default
    settings, 40-60 steps; N_k = 4 at d = 1.8 with β = 0.5 and β = 1, and at d = 3.6; N_k = 2 at
    d = 1.8; measured for this guard) had acceptance ≥ 0.0125 (β = 1, near HF; ≥ 0.04 with the
    default β = 0.5), step-to-step variance jumps ≤ 205× the median of the preceding steps, and
    R̂ ≤ 1.39. Collapse is declared when:

    - the acceptance stays below ``min_acceptance`` (1e-3, 12× below the lowest honest value) for
      ``patience`` consecutive steps (10: one frozen step is noise, ten are stuck chains);
    - the supercell variance of the local energy jumps above ``spike_factor`` (1e6) times the
      median of the preceding ``patience`` steps (and above ``spike_factor`` × ``variance_floor``,
      so a nearly exact state's ~0 variance is no baseline);
    - the chains disagree, R̂ > ``max_r_hat``, for ``patience`` consecutive steps;
    - the final estimate (:meth:`on_result`) has a variance ≤ ``zero_variance`` × max(1, E²) while
      the last step's acceptance is below ``min_acceptance``: one configuration, not a result.
    """

    def __init__(self, max_rise: float = 0.1, n_sigma: float = 5.0, min_acceptance: float = 1e-3,
                 patience: int = 10, spike_factor: float = 1e6, variance_floor: float = 1e-3,
                 max_r_hat: float = 10.0, zero_variance: float = 1e-12):
        self.max_rise, self.n_sigma = max_rise, n_sigma
        self.min_acceptance, self.patience = min_acceptance, int(patience)
        self.spike_factor, self.variance_floor = spike_factor, variance_floor
        self.max_r_hat, self.zero_variance = max_r_hat, zero_variance
        self.best, self.best_error = math.inf, 0.0
        self._variances: list[float] = []
        self._frozen = self._split = 0
        self._last_acceptance = math.nan

    def on_run_start(self, driver, n_steps):
        self._variances, self._frozen, self._split = [], 0, 0

    def rewind(self, driver) -> None:
        """After the driver went back to an earlier state (:class:`Rollback`): the best energy is
        the lowest of the trace it kept, not one of the abandoned steps (against which the
        earlier, higher energies of the restored path would read as a divergence)."""
        e = np.asarray(driver.trace["energy"], dtype=float)
        err = np.asarray(driver.trace["error"], dtype=float)
        self.best, self.best_error = math.inf, 0.0
        if len(e):
            i = int(np.argmin(e))
            self.best, self.best_error = float(e[i]), (float(err[i]) if math.isfinite(err[i]) else 0.0)

    @staticmethod
    def markov_chain(driver) -> bool:
        """True when the driver samples with Markov chains (acceptance and R̂ mean something)."""
        return not getattr(driver, "_exact", False)

    def __call__(self, driver, step, log):
        e = log["energy"]
        if not math.isfinite(e) or not math.isfinite(log.get("variance", 0.0)):
            raise DivergenceError(f"step {step}: energy is {e} (NaN/inf); {self.remedy(driver)} "
                                  "or raise the diagonal shift")
        if not _finite_tree(driver.params):
            raise DivergenceError(f"step {step}: parameters became NaN/inf; {self.remedy(driver)} "
                                  "or raise the diagonal shift")
        if self.markov_chain(driver):      # first: the more specific diagnosis of a jump
            self._check_chains(step, log, self.remedy(driver))
        err = log.get("error") or 0.0
        err = err if math.isfinite(err) else 0.0
        # the rise is a difference of two estimates, each with its error bar (the best is the
        # lowest of many noisy steps, so often a low fluctuation): polyacetylene 1x1x2 at 0.03
        # Ha/cell per step rose 0.248 above such a best and went on descending at the next steps
        if e > self.best + self.max_rise + self.n_sigma * math.hypot(err, self.best_error):
            raise DivergenceError(f"step {step}: energy {e:.6f} Ha/cell rose {e - self.best:.3f} above "
                                  f"the best {self.best:.6f}; {self.remedy(driver)}")
        if e < self.best:
            self.best, self.best_error = e, err
        return False

    @staticmethod
    def remedy(driver) -> str:
        """What to change: the learning rate, and for a run without a trust region the cap on the
        update too (polyacetylene 1x1x2 and the H chain N_k = 6 at α = 4 diverged at the Markov-chain
        defaults within 110 steps and ran with max_norm = 1). When importance weights (β < 1) left
        fewer than :data:`MIN_EFFECTIVE_FRACTION` of the samples effective, sampling |ψ|² comes
        first: polyacetylene 1x1x2 from the hf start at lr 0.05 diverged at step 13 with β = 0.5
        (93 effective samples of 1024 at the start) and descended for 60 steps with β = 1."""
        opt = getattr(driver, "optimizer", None)
        fix = ("lower the learning rate (--lr) or cap the update norm (--max-norm 1)"
               if opt is not None and not getattr(opt, "max_norm", None) else "lower the learning rate (--lr)")
        ess = getattr(driver, "effective_samples", math.nan)
        n = getattr(getattr(driver, "sampler", None), "n_samples", None)
        if n and math.isfinite(ess) and ess < MIN_EFFECTIVE_FRACTION * n:
            adaptive = getattr(driver.sampler, "adaptive", False)
            beta = float(driver.trace["beta"][-1]) if adaptive else getattr(driver.sampler, "beta", 1.0)
            how = "--beta 1" if adaptive else "--beta auto (adapts β to the weights) or --beta 1"
            fix = (f"sample closer to |ψ|² with {how} (the importance weights of beta {beta:g} left {ess:.0f} "
                   f"effective samples of {n}), or {fix}")
        return fix

    def _check_chains(self, step, log, remedy: str) -> None:
        var = float(log.get("variance", math.nan))
        acc = float(log.get("acceptance", math.nan))
        r_hat = float(log.get("R_hat", math.nan))
        self._last_acceptance = acc
        recent = self._variances[-self.patience:]
        if recent and math.isfinite(var):
            base = max(float(np.median(recent)), self.variance_floor)
            if var > self.spike_factor * base:
                raise DivergenceError(
                    f"step {step}: Markov chains collapsed: the local-energy variance jumped to {var:.2e} "
                    f"Ha², {var / base:.1e}× its recent {base:.2e} (|ψ| blew up on a few configurations); "
                    + remedy)
        if math.isfinite(var):
            self._variances.append(var)
        self._frozen = self._frozen + 1 if acc < self.min_acceptance else 0
        if self._frozen >= self.patience:
            raise DivergenceError(
                f"step {step}: Markov chains collapsed: acceptance {acc:.1e} < {self.min_acceptance:g} for "
                f"{self._frozen} consecutive steps (every chain stuck on one configuration; variance "
                f"{var:.1e} Ha²); {remedy}")
        self._split = self._split + 1 if r_hat > self.max_r_hat else 0   # NaN compares False
        if self._split >= self.patience:
            raise DivergenceError(
                f"step {step}: Markov chains collapsed: R̂ = {r_hat:.3g} > {self.max_r_hat:g} for {self._split} "
                f"consecutive steps (the chains sample different states); {remedy}")

    def on_result(self, driver):
        """Called by the driver after its final estimate: a Markov-chain estimate with ~0 variance
        from chains that no longer move is one configuration's local energy, not a result."""
        if not self.markov_chain(driver) or driver.stats is None:
            return
        var, e_tot = float(driver.variance), float(driver.e_tot)
        trace = getattr(driver, "trace", {}).get("acceptance") or [self._last_acceptance]
        acc = float(trace[-1])
        if var <= self.zero_variance * max(1.0, e_tot * e_tot) and not acc >= self.min_acceptance:
            raise DivergenceError(
                f"step {driver.step}: Markov chains collapsed: the final estimate has variance {var:.1e} Ha² "
                f"(error bar ~0) with acceptance {acc:.1e} (every chain stuck on one configuration); "
                + self.remedy(driver))


class EarlyStopping:
    """Stop when the energy has not improved by ``min_delta`` (Ha/cell) for ``patience`` steps."""

    def __init__(self, patience: int = 50, min_delta: float = 1e-5):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.since = math.inf, 0

    def __call__(self, driver, step, log):
        if log["energy"] < self.best - self.min_delta:
            self.best, self.since = log["energy"], 0
        else:
            self.since += 1
        return self.since >= self.patience


class ProgressBar:
    """rich progress bar with the current energy per cell."""

    def __init__(self, description: str = "NQS"):
        self.description = description
        self._progress = None

    def on_run_start(self, driver, n_steps):
        from rich.progress import Progress

        self._progress = Progress(*Progress.get_default_columns(), "{task.fields[info]}", transient=False)
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=n_steps, completed=driver.step,
                                             info="")

    def __call__(self, driver, step, log):
        if self._progress is not None:
            self._progress.update(self._task, completed=step + 1,
                                  info=f"E={log['energy']:.6f} ± {log['error']:.1e} Ha/cell")
        return False

    def on_run_abort(self, driver):
        self.on_run_end(driver)

    def on_run_end(self, driver):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


_CKPT = re.compile(r"ckpt_(\d{6})\.npz$")


def latest_checkpoint(directory) -> Path | None:
    d = Path(directory)
    if not d.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in d.iterdir() if (m := _CKPT.search(p.name)))
    return found[-1][1] if found else None


def discard_checkpoints_after(directory, step: int) -> None:
    """Remove the ``ckpt_*.npz`` of ``directory`` written after ``step`` (those of a path a run
    went back from: :class:`Rollback`), so that a resume never continues it."""
    d = Path(directory)
    if not d.is_dir():
        return
    for p in d.iterdir():
        if (m := _CKPT.search(p.name)) and int(m.group(1)) > step:
            p.unlink(missing_ok=True)


class Checkpoint:
    """Write ``ckpt_{step:06d}.npz`` (npz, no pickle; atomic) every ``every_seconds`` of wall time
    and/or every ``every_steps`` steps, and at the end of the run; keep the newest ``keep``.
    Refuses (DivergenceError) to write non-finite parameters."""

    def __init__(self, directory, every_seconds: float | None = 60.0, every_steps: int | None = None,
                 keep: int = 2):
        self.directory = Path(directory)
        self.every_seconds, self.every_steps, self.keep = every_seconds, every_steps, keep
        self._last = time.monotonic()

    def on_run_start(self, driver, n_steps):
        self._last = time.monotonic()

    def __call__(self, driver, step, log):
        due = (bool(self.every_steps) and driver.step % self.every_steps == 0) or (
            self.every_seconds is not None and time.monotonic() - self._last >= self.every_seconds)
        if due:
            self.save(driver)
        return False

    def on_run_end(self, driver):
        self.save(driver)

    def save(self, driver) -> Path:
        if not _finite_tree(driver.params):
            raise DivergenceError("refusing to checkpoint non-finite parameters")
        arrays = driver.state_arrays()
        path = self.directory / f"ckpt_{driver.step:06d}.npz"

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        atomic_write(path, write)
        self._last = time.monotonic()
        olds = sorted(p for p in self.directory.iterdir() if _CKPT.search(p.name))
        for p in olds[:-self.keep] if self.keep else []:
            p.unlink(missing_ok=True)
        return path


class Rollback:
    """Keep the driver's state (:meth:`NQS.state_arrays`, in memory) at the run's start and every
    ``every_steps`` steps, the newest two, so that a run the :class:`DivergenceGuard` stops can go
    back to before the divergence (:meth:`fallback`: the older of the two, 10–20 steps before the
    step that tripped the guard, which may already be climbing) and on at a lower learning rate
    (``nqsbench.methods.nqs.run_with_rollback``). Put it after the guard: a state the guard
    rejects is never kept."""

    def __init__(self, every_steps: int = 10):
        self.every_steps = int(every_steps)
        self._states: list[dict] = []

    def on_run_start(self, driver, n_steps):
        if not self._states:            # the start, fresh or resumed, is the first fallback
            self._keep(driver)

    def __call__(self, driver, step, log):
        if driver.step % self.every_steps == 0:
            self._keep(driver)
        return False

    def _keep(self, driver) -> None:
        state = driver.state_arrays()
        state["meta"] = json.loads(str(state["meta"]))      # as load_checkpoint returns it
        self._states = (self._states + [state])[-2:]

    def fallback(self) -> dict | None:
        """The state to go back to (None before the run started); from then on the only one kept."""
        if not self._states:
            return None
        self._states = self._states[:1]
        return self._states[0]


class CheckpointError(NqsbenchError):
    """Checkpoints exist but none can be read."""


# what a checkpoint cut short by a kill or damaged on disk raises when read (np.load reads every
# array, so the zip CRC of each member is checked)
UNREADABLE = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError)


def load_checkpoint(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out


def load_latest_checkpoint(directory) -> tuple[Path, dict] | None:
    """The newest readable ``ckpt_*.npz`` of ``directory`` and its contents, falling back to the
    one before when the newest is unreadable (logged); None when there is none.
    Raises :class:`CheckpointError` naming the files when every checkpoint is unreadable."""
    d = Path(directory)
    if not d.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in d.iterdir() if (m := _CKPT.search(p.name))), reverse=True)
    bad = []
    for _, path in found:
        try:
            return path, load_checkpoint(path)
        except UNREADABLE as exc:
            log.warning("checkpoint %s is unreadable (%s: %s); trying the one before", path, type(exc).__name__, exc)
            bad.append(path.name)
    if bad:
        raise CheckpointError(f"{d}: no readable checkpoint ({', '.join(bad)} unreadable); start afresh "
                              "without --resume, or delete the folder")
    return None
