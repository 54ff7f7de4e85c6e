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

import jax
import jax.numpy as jnp

from ..errors import MemoryBudgetError

ELOC_SHARE = 0.25
"""Fraction of the budget a local-energy chunk may use (the rest: Jacobian, SR, the process)."""

MAX_CHUNK = 256
"""Larger chunks buy no throughput on CPU and only cost memory."""

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
    import time

    xs = jnp.repeat(jnp.asarray(x, dtype=jnp.int8)[None], n_probe, axis=0)
    compiled = make_eloc(1).lower(params, xs).compile()
    ma = compiled.memory_analysis()
    jax.block_until_ready(compiled(params, xs))
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params, xs))
    seconds = (time.perf_counter() - t0) / n_probe
    return (int(ma.temp_size_in_bytes) if ma is not None else 0), seconds


def complex_gemm_rate(n: int = 256) -> float:
    """Real flops per second of a complex128 matrix product here and now (the SR solve's kernel;
    best of three after a warm-up, ~10 ms): with :func:`~nqsbench.nqs.optimizer.sr_solve_flops`,
    the solve's share of the time estimate."""
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


def choose_chunk(per_config: int, n_configs: int, budget_bytes: int) -> int:
    """Configurations per local-energy batch: as many as :data:`WORKING_SET` (or, when smaller,
    :data:`ELOC_SHARE` of the budget) holds, at least 1, at most the batch and :data:`MAX_CHUNK`."""
    fit = int(min(ELOC_SHARE * budget_bytes, WORKING_SET) // max(per_config, 1))
    return max(1, min(fit, MAX_CHUNK, max(n_configs, 1)))


def plan_local_energy(fham, model, params, n_configs: int, budget_bytes: int,
                      chunk_size: int | None = None):
    """``(eloc, chunk, bytes_per_config, seconds_per_config)``: the jitted local energy of
    :func:`nqsbench.nqs.operator.make_local_energy` at the chunk :func:`choose_chunk` picks
    from a probe (or at ``chunk_size``), for runs and benchmarks alike."""
    from .operator import double_capacity, make_local_energy

    capacity = double_capacity(fham)           # once for the probe and the run

    def make(c):
        return make_local_energy(fham, model, chunk_size=c, capacity=capacity)

    per, seconds = probe_local_energy(make, params, fham.sector.hf_config)
    chunk = int(chunk_size) if chunk_size is not None else choose_chunk(per, n_configs, budget_bytes)
    return make(chunk), chunk, per, seconds


@dataclass(frozen=True)
class MemoryPlan:
    """The pre-flight estimate of one run (bytes). ``peak`` = ``process`` (resident when the
    plan was made: Python, PySCF, JAX, the Hamiltonian, the sector tables) + ``step`` (the
    compiled SR step's arguments, outputs and temporaries, of which ``eloc_chunk`` is the
    local-energy batch of ``chunk_size`` configurations), or the process's peak so far
    (``process_peak``: a Hamiltonian built in this process can have needed more) if larger."""

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

    @property
    def eloc_seconds(self) -> float | None:
        """Local energies of one step's samples at the probe's rate."""
        return None if self.seconds_per_config is None else self.seconds_per_config * self.n_samples

    @property
    def seconds_per_step(self) -> float | None:
        """Local energies + SR solve (sampling and the Jacobian are not counted: measured on the
        H chain N_k = 4 and 8 they are the smaller part; see the README's memory section)."""
        if self.eloc_seconds is None:
            return None
        return self.eloc_seconds + (self.solve_seconds or 0.0)

    @property
    def eloc_chunk(self) -> int:
        return self.chunk_size * self.eloc_per_config

    @property
    def peak(self) -> int:
        return max(self.process + self.step, self.process_peak)

    def to_dict(self) -> dict:
        return {**asdict(self), "peak": self.peak, "eloc_chunk": self.eloc_chunk,
                "eloc_seconds": self.eloc_seconds, "seconds_per_step": self.seconds_per_step}

    def summary(self) -> str:
        """One line for terminals and logs."""
        gb = lambda b: f"{b / GB:.2f} GB"                           # noqa: E731
        chunks = (f" with local energies in chunks of {self.chunk_size} × "
                  f"{self.eloc_per_config / 1024 ** 2:.1f} MB" if self.chunk_size else "")
        solve = "" if self.solve_seconds is None else f", SR solve ≈ {self.solve_seconds:.3g} s"
        time = ("" if self.seconds_per_step is None else
                f"; time: ≈ {self.seconds_per_step:.3g} s per step ({self.seconds_per_config * 1e3:.3g} ms "
                f"per local energy{solve})")
        return (f"memory: estimated peak {gb(self.peak)} of a {gb(self.budget)} budget "
                f"(process {gb(self.process)}, SR step {gb(self.step)}{chunks}, "
                f"{self.n_samples} samples × {self.n_parameters} parameters){time}")

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
        if self.available is not None and self.step > self.available:
            raise MemoryBudgetError(
                f"memory: the SR step needs {gb(self.step)} but the machine has {gb(self.available)} "
                f"available; lower --samples or free memory")
        return self
