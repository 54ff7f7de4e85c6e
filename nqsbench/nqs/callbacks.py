"""Driver callbacks: everything with side effects (progress, checkpoints, stopping) lives here.

A callback is ``cb(driver, step, log) -> bool | None`` (True asks the driver to stop), called
after each step in list order, with optional ``on_run_start(driver, n_steps)`` and
``on_run_end(driver)`` (normal end) and ``on_run_abort(driver)`` (an exception is propagating). ``log`` holds the step's numbers (energy per cell etc.); ``driver.params``
are already the updated parameters and ``driver.step`` = step + 1.
"""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import jax
import numpy as np

from ..errors import NqsbenchError
from ..io import atomic_write


class DivergenceError(NqsbenchError):
    """The optimization produced NaN/inf or an energy far above the best one: nothing is saved."""


def _finite_tree(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree_util.tree_leaves(tree))


class DivergenceGuard:
    """Raise :class:`DivergenceError` on non-finite energy/parameters, or an energy more than
    ``max_rise`` Ha per cell (plus ``n_sigma`` Monte Carlo error bars of the step, so that a
    noisy estimate from few samples is not taken for a collapse) above the lowest seen. Put it
    before :class:`Checkpoint`.

    0.1 Ha/cell (60× chemical accuracy): the largest transient rise in the Markov-chain runs
    kept in the session-2 traces was 82 mHa/cell (constant lr 0.25, recovered); a collapse of
    an H chain N_k = 4, d = 2.6 run to +299 mHa/cell (acceptance 0.03) passed the old 1 Ha/cell."""

    def __init__(self, max_rise: float = 0.1, n_sigma: float = 5.0):
        self.max_rise, self.n_sigma = max_rise, n_sigma
        self.best = math.inf

    def __call__(self, driver, step, log):
        e = log["energy"]
        if not math.isfinite(e) or not math.isfinite(log.get("variance", 0.0)):
            raise DivergenceError(f"step {step}: energy is {e} (NaN/inf); lower the learning rate "
                                  "or raise the diagonal shift")
        if not _finite_tree(driver.params):
            raise DivergenceError(f"step {step}: parameters became NaN/inf; lower the learning rate "
                                  "or raise the diagonal shift")
        err = log.get("error") or 0.0
        if e > self.best + self.max_rise + self.n_sigma * (err if math.isfinite(err) else 0.0):
            raise DivergenceError(f"step {step}: energy {e:.6f} Ha/cell rose {e - self.best:.3f} above "
                                  f"the best {self.best:.6f}; lower the learning rate")
        self.best = min(self.best, e)
        return False


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


class Checkpoint:
    """Write ``ckpt_{step:06d}.npz`` (npz, no pickle; atomic) every ``every_seconds`` of wall time
    and/or every ``every_steps`` steps, and at the end of the run; keep the newest ``keep``.
    Refuses (DivergenceError) to write non-finite parameters."""

    def __init__(self, directory, every_seconds: float | None = 600.0, every_steps: int | None = None,
                 keep: int = 2):
        self.directory = Path(directory)
        self.every_seconds, self.every_steps, self.keep = every_seconds, every_steps, keep
        self._last = time.monotonic()

    def on_run_start(self, driver, n_steps):
        self._last = time.monotonic()

    def __call__(self, driver, step, log):
        due = (self.every_steps is not None and driver.step % self.every_steps == 0) or (
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


def load_checkpoint(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out
