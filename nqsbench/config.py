"""Every nqsbench setting and folder, read here and nowhere else.

Environment variables (``NQSBENCH_*``) override the defaults; ``nqsbench info`` prints the
resolved values. Read afresh on every call (cheap), so tests and subprocesses that change the
environment see their own folders.

| variable               | what                                   | default                                       |
|------------------------|----------------------------------------|-----------------------------------------------|
| NQSBENCH_SYSTEMS       | the system catalog (``*.toml``)        | the packaged catalog (``systems/`` in a checkout) |
| NQSBENCH_SUITES        | suite files                            | the packaged suites (``suites/``)             |
| NQSBENCH_REFERENCES    | the reference record cache             | the packaged cache (``references/``)          |
| NQSBENCH_RESULTS       | NQS results (records, traces, params)  | ``results/`` of the checkout, else ``./results`` |
| NQSBENCH_REPORTS       | generated reports                      | ``reports/`` of the checkout, else ``./reports`` |
| NQSBENCH_CACHE         | Hamiltonian cache                      | ``~/.cache/nqsbench``                         |
| NQSBENCH_MPIRUN        | MPI launcher of ``dmrg --mpi N``       | ``mpirun``                                    |
| NQSBENCH_MPI_PYTHON    | Python with block2's MPI build         | this Python (``sys.executable``)              |
| NQSBENCH_MEMORY_GB     | memory budget of one NQS run (GB)      | 8 (two runs and the system fit 24 GiB)        |

The catalog, the suites and the committed reference cache ship inside the package
(``nqsbench/data/``, found through :mod:`importlib.resources`); in a source checkout those are
links to the top-level ``systems/``, ``suites/`` and ``references/``.
"""
from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The ``NQSBENCH_*`` environment, validated (a folder is a path or unset)."""
    model_config = SettingsConfigDict(env_prefix="NQSBENCH_", frozen=True, extra="ignore", env_ignore_empty=True)

    systems: Path | None = None
    suites: Path | None = None
    references: Path | None = None
    results: Path | None = None
    reports: Path | None = None
    cache: Path | None = None
    mpirun: str | None = None
    mpi_python: Path | None = None
    memory_gb: float | None = Field(None, gt=0)


DEFAULT_MEMORY_GB = 8.0
"""Budget of one NQS run: a 24 GiB machine holds two runs (``suite --jobs 2``) and the system."""


def settings() -> Settings:
    return Settings()


@lru_cache(maxsize=1)
def source_root() -> Path | None:
    """The repository root when nqsbench runs from a source checkout, else None (wheel)."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        return root if 'name = "nqsbench"' in pyproject.read_text() else None
    except OSError:
        return None


def data_dir() -> Path:
    """The package's data folder (catalog, suites, reference cache)."""
    return Path(str(resources.files("nqsbench") / "data"))


def _work_dir(name: str) -> Path:
    root = source_root()
    return (root if root is not None else Path.cwd()) / name


def _packaged(name: str) -> Path:
    return (data_dir() / name).resolve()   # through the checkout's links to the top-level folders


def systems_dir() -> Path:
    return settings().systems or _packaged("systems")


def suites_dir() -> Path:
    return settings().suites or _packaged("suites")


def references_dir() -> Path:
    return settings().references or _packaged("references")


def results_dir() -> Path:
    return settings().results or _work_dir("results")


def reports_dir() -> Path:
    return settings().reports or _work_dir("reports")


def cache_dir() -> Path:
    return settings().cache or Path.home() / ".cache" / "nqsbench"


def mpirun() -> str:
    """The MPI launcher (a command, split on spaces: e.g. ``srun --mpi=pmix`` or ``mpirun``)."""
    return settings().mpirun or "mpirun"


def mpi_python() -> str:
    """The Python the MPI ranks run (it needs block2's MPI build, extra ``dmrg-mpi``)."""
    import sys

    return str(settings().mpi_python or sys.executable)


def memory_gb() -> float:
    """Memory budget of one NQS run in GB (:mod:`nqsbench.nqs.memory` plans within it)."""
    gb = settings().memory_gb
    return DEFAULT_MEMORY_GB if gb is None else gb


def folders() -> dict[str, str]:
    """Every resolved folder (``nqsbench info``)."""
    return {"systems": str(systems_dir()), "suites": str(suites_dir()), "references": str(references_dir()),
            "results": str(results_dir()), "reports": str(reports_dir()), "cache": str(cache_dir())}


# ----------------------------------------------------------------------------- worker processes
def single_thread_env() -> dict[str, str]:
    """One BLAS/OpenMP/XLA thread: N single-threaded workers on N cores, no oversubscription."""
    env = {var: "1" for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def worker_init() -> None:
    """Process-pool initializer (suite executors, parallel sector runs): :func:`single_thread_env`,
    set before JAX or BLAS are loaded."""
    os.environ.update(single_thread_env())


def pin_to_one_cpu(slot: int) -> None:
    """Run this process on one CPU (slot i of the pool on the i-th allowed CPU), before JAX
    starts. XLA's intra-op pool has a thread per allowed CPU, and its LAPACK kernels (NNBF's
    batched LU, ``lapack_zgetrf_ffi``) wait in ``ParallelBatchMap`` for work they queue on that
    same pool: two of them at once on a pool of two deadlocked a quick-suite worker (every
    thread in a futex, 0 % CPU; native stacks, 2026-11-26). A pool of one cannot."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):       # not Linux: nothing to pin
        return
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[slot % len(cpus)]})
