"""Memory as a planned resource for an NQS run: estimate the peak before allocating anything,
choose the local-energy chunk from a budget, refuse what cannot fit.

The numbers come from XLA itself, not from a hand-written cost model: the compiled step's
``memory_analysis()`` (arguments + outputs + temporaries of the whole SR step: sampling, local
energies, Jacobian, SR solve) on top of the process's resident set at planning time. The local
energy's chunk is sized from one probe compile at chunk 1 (its temporaries are almost all per
configuration: connections × amplitude-ratio work), so that the chunk's working set stays within
:data:`WORKING_SET` (speed) and :data:`ELOC_SHARE` of the budget (memory).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp

from ..errors import MemoryBudgetError

ELOC_SHARE = 0.25
"""Fraction of the budget a local-energy chunk may use (the rest: Jacobian, SR, the process)."""

MAX_CHUNK = 256
"""Larger chunks buy no throughput on CPU and only cost memory. (On an accelerator neither this
nor :data:`WORKING_SET` applies: there wide batches are the speed, and its own memory the bound.)"""

WORKING_SET = 32 * 1024 ** 2
"""Bytes a local-energy chunk should stay under for speed: beyond ~100 MB a configuration costs
up to 4× more (one core, RBM α = 2, ms per configuration at chunk 1 / 8 / 64 / 256: H chain
N_k = 8 1.39 / 1.42 / 1.71 / 6.22; graphene 2×2×1 95 / 394 at chunk 1 / 8; LiH 2×2×2 217 / 892)."""

GB = 1024 ** 3


def peak_rss_bytes() -> int:
    """The peak resident set size of this process so far."""
    from ..records import peak_memory_mb

    return int(peak_memory_mb() * 1024 ** 2)


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; the peak so far elsewhere)."""
    from ..records import resident_memory_mb

    return int(resident_memory_mb() * 1024 ** 2)


def available_bytes() -> int | None:
    """Memory the kernel says is available (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@lru_cache(maxsize=1)
def accelerator_bytes() -> int | None:
    """Memory of the device JAX computes on when that is not the host (a GPU: its allocator's
    limit, ``memory_stats()['bytes_limit']``), else None: on the CPU backend the arrays are the
    process's own and the host budget plans them."""
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return None
    try:
        limit = (dev.memory_stats() or {}).get("bytes_limit")
    except Exception:          # a backend without memory statistics
        limit = None
    return int(limit) if limit else None


def compiled_bytes(compiled) -> int:
    """Device bytes a compiled XLA executable needs: arguments + outputs + temporaries."""
    ma = compiled.memory_analysis()
    if ma is None:                                   # backends without the analysis
        return 0
    return int(ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes)


def probe_local_energy(make_eloc, params, x, n_probe: int = 8) -> tuple[int, float]:
    """(bytes, seconds) of the local energy of one configuration: ``make_eloc(chunk)`` compiled
    at chunk 1 over ``n_probe`` copies of ``x`` (2M,); its XLA temporaries (an upper bound per
    configuration: they include the chunk-independent part) and the time per configuration of
    the second call (the first may still warm up; one call alone would mostly time its fixed
    cost: 5.2 ms against 1.3 ms per configuration on the H chain N_k = 8)."""
    compiled = make_eloc(1).lower(params, _copies(x, n_probe)).compile()
    ma = compiled.memory_analysis()
    return (int(ma.temp_size_in_bytes) if ma is not None else 0), seconds_per_config(compiled, params, x, n_probe)


def _copies(x, n):
    return jnp.repeat(jnp.asarray(x, dtype=jnp.int8)[None], n, axis=0)


def seconds_per_config(eloc, params, x, n: int) -> float:
    """Seconds per configuration of ``eloc`` over ``n`` copies of ``x``: the second call (the
    first may still warm up)."""
    import time

    xs = _copies(x, n)
    jax.block_until_ready(eloc(params, xs))
    t0 = time.perf_counter()
    jax.block_until_ready(eloc(params, xs))
    return (time.perf_counter() - t0) / n


def complex_gemm_rate(n: int | None = None) -> float:
    """Real flops per second of a complex128 matrix product in this process (the SR solve's
    kernel; best of three after a warm-up, ~0.1 s with the compilation, measured once per process
    and size): with :func:`~nqsbench.nqs.optimizer.sr_solve_flops`, the solve's share of the time
    estimate. ``n``: 256 on CPU, 2048 on an accelerator (a small product there times the launch,
    not the rate)."""
    return _gemm_rate(n or (256 if accelerator_bytes() is None else 2048))


@lru_cache(maxsize=None)
def _gemm_rate(n: int) -> float:
    import time

    import numpy as np

    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)) * (1 + 1j))
    f = jax.jit(lambda m: m @ m)
    jax.block_until_ready(f(a))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        best = min(best, time.perf_counter() - t0)
    return 8.0 * n ** 3 / max(best, 1e-9)


def run_estimate(seconds: float, n_samples: int, n_blocks: int) -> str:
    """"~N min" (from two minutes up) or "~N s": a Monte Carlo band estimator's whole run,
    ``seconds`` per sample and (k, branch) block times samples times blocks (its pre-flight line)."""
    total = seconds * n_samples * n_blocks
    return f"~{total / 60:.0f} min" if total >= 120 else f"~{total:.0f} s"


def block_done(name: str, create: bool, k: int, n_samples: int, elapsed: float, n_done: int, n_total: int) -> str:
    """A Monte Carlo band estimator's progress line after its ``n_done``-th of ``n_total`` (k, branch)
    blocks, ``elapsed`` seconds in, with the time left at that pace."""
    left = n_total - n_done
    return (f"{name}: {'electron' if create else 'hole'} k={k} done ({n_samples} samples, {elapsed:.0f} s so far; "
            f"~{elapsed / n_done * left:.0f} s for the {left} (k, branch) blocks left)")


def choose_chunk(per_config: int, n_configs: int, budget_bytes: int, device_bytes: int | None = None) -> int:
    """Configurations per local-energy batch: as many as :data:`WORKING_SET` (or, when smaller,
    :data:`ELOC_SHARE` of the budget) holds, at least 1, at most the batch and :data:`MAX_CHUNK`.
    On an accelerator (``device_bytes``: its memory, default :func:`accelerator_bytes`) as many
    as :data:`ELOC_SHARE` of that memory holds, at most the batch."""
    device_bytes = accelerator_bytes() if device_bytes is None else device_bytes
    if device_bytes:
        fit, cap = int(ELOC_SHARE * device_bytes // max(per_config, 1)), n_configs
    else:
        fit, cap = int(min(ELOC_SHARE * budget_bytes, WORKING_SET) // max(per_config, 1)), MAX_CHUNK
    return max(1, min(fit, cap, max(n_configs, 1)))


def plan_local_energy(fham, model, params, n_configs: int, budget_bytes: int,
                      chunk_size: int | None = None):
    """``(eloc, chunk, bytes_per_config, seconds_per_config)``: the jitted local energy of
    :func:`nqsbench.nqs.operator.make_local_energy` at the chunk :func:`choose_chunk` picks
    from a probe (or at ``chunk_size``), for runs and benchmarks alike."""
    from .operator import double_capacity, make_local_energy

    capacity = double_capacity(fham)           # once for the probe and the run

    def make(c):
        return make_local_energy(fham, model, chunk_size=c, capacity=capacity)

    x = fham.sector.hf_config
    per, seconds = probe_local_energy(make, params, x)
    chunk = int(chunk_size) if chunk_size is not None else choose_chunk(per, n_configs, budget_bytes)
    eloc = make(chunk)
    if accelerator_bytes() is not None and chunk > 1:
        # an accelerator's time per configuration at chunk 1 is its launch latency: time the chunk
        seconds = seconds_per_config(eloc, params, x, chunk)
    return eloc, chunk, per, seconds


@dataclass(frozen=True)
class MemoryPlan:
    """The pre-flight estimate of one run (bytes). ``peak`` = ``process`` (resident when the
    plan was made: Python, PySCF, JAX, the Hamiltonian, the sector tables) + ``step`` (the
    compiled SR step's arguments, outputs and temporaries, of which ``eloc_chunk`` is the
    local-energy batch of ``chunk_size`` configurations), or the process's peak so far
    (``process_peak``: a Hamiltonian built in this process can have needed more) if larger.
    On an accelerator (``device_limit``: its memory, :func:`accelerator_bytes`) the step lives in
    the device's memory and is checked against that; ``peak`` is then the host's alone."""

    budget: int
    process: int
    process_peak: int
    step: int
    chunk_size: int
    eloc_per_config: int
    n_samples: int
    n_parameters: int
    available: int | None = None
    seconds_per_config: float | None = None
    solve_seconds: float | None = None      # the SR solve: its flops at this machine's GEMM rate
    device_limit: int | None = None         # an accelerator's memory (None: the step is on the host)
    n_deterministic: int = 0                # semistochastic set: local energies and rows beside the samples

    @property
    def eloc_seconds(self) -> float | None:
        """Local energies of one step's samples (and semistochastic set) at the probe's rate."""
        return (None if self.seconds_per_config is None
                else self.seconds_per_config * (self.n_samples + self.n_deterministic))

    @property
    def seconds_per_step(self) -> float | None:
        """Local energies + SR solve (sampling and the Jacobian are not counted: measured on the
        H chain N_k = 4 and 8 they are the smaller part; see the README's memory section). With
        exact sampling the energies come from the sector's matrix (not timed): the solve alone."""
        if self.eloc_seconds is None and self.solve_seconds is None:
            return None
        return (self.eloc_seconds or 0.0) + (self.solve_seconds or 0.0)

    @property
    def eloc_chunk(self) -> int:
        return self.chunk_size * self.eloc_per_config

    @property
    def peak(self) -> int:
        """Host bytes at the peak."""
        on_host = self.step if self.device_limit is None else 0
        return max(self.process + on_host, self.process_peak)

    def to_dict(self) -> dict:
        return {**asdict(self), "peak": self.peak, "eloc_chunk": self.eloc_chunk,
                "eloc_seconds": self.eloc_seconds, "seconds_per_step": self.seconds_per_step}

    def summary(self) -> str:
        """One line for terminals and logs."""
        gb = lambda b: f"{b / GB:.2f} GB"                           # noqa: E731
        chunks = (f" with local energies in chunks of {self.chunk_size} × "
                  f"{self.eloc_per_config / 1024 ** 2:.1f} MB" if self.chunk_size else "")
        solve = "" if self.solve_seconds is None else f", SR solve ≈ {self.solve_seconds:.3g} s"
        if self.seconds_per_step is None:
            time = ""
        elif self.seconds_per_config is None:
            time = f"; time: ≈ {self.seconds_per_step:.3g} s per step (the SR solve; energies from the sector's matrix)"
        else:
            time = (f"; time: ≈ {self.seconds_per_step:.3g} s per step ({self.seconds_per_config * 1e3:.3g} ms "
                    f"per local energy{solve})")
        where = "" if self.device_limit is None else f" on the {gb(self.device_limit)} accelerator"
        det = f" + {self.n_deterministic} summed exactly" if self.n_deterministic else ""
        return (f"memory: estimated peak {gb(self.peak)} of a {gb(self.budget)} budget "
                f"(process {gb(self.process)}, SR step {gb(self.step)}{where}{chunks}, "
                f"{self.n_samples} samples{det} × {self.n_parameters} parameters){time}")

    def check(self) -> "MemoryPlan":
        """Raise :class:`MemoryBudgetError` (one line naming the setting) when the estimate does not
        fit the budget or the memory the machine has available."""
        gb = lambda b: f"{b / GB:.1f} GB"                           # noqa: E731
        if self.peak > self.budget:
            raise MemoryBudgetError(
                f"memory: estimated peak {gb(self.peak)} exceeds the {gb(self.budget)} budget (process "
                f"{gb(self.process)}, SR step {gb(self.step)} for {self.n_samples} samples × "
                f"{self.n_parameters} parameters, local-energy chunk {gb(self.eloc_chunk)}); lower "
                f"--samples or raise --memory-gb ($NQSBENCH_MEMORY_GB)")
        if self.device_limit is not None:
            if self.step > self.device_limit:
                raise MemoryBudgetError(
                    f"memory: the SR step needs {gb(self.step)} but the accelerator has "
                    f"{gb(self.device_limit)} (local-energy chunk {gb(self.eloc_chunk)}); lower --samples")
            return self
        if self.available is not None and self.step > self.available:
            raise MemoryBudgetError(
                f"memory: the SR step needs {gb(self.step)} but the machine has {gb(self.available)} "
                f"available; lower --samples or free memory")
        return self
