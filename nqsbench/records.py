"""Schema-checked result records with provenance, written atomically.

Every number nqsbench produces ends in one of these frozen pydantic models (unknown fields are
rejected) carrying versions, git commit, host, wall time, peak memory and the Hamiltonian hash.
"""
from __future__ import annotations

import json
import platform
import resource
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import RecordError
from .io import atomic_write_json

RECORD_SCHEMA_VERSION = 1


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    versions: dict[str, str]
    git_commit: str
    host: str
    created: str
    wall_time_s: float
    peak_memory_mb: float


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("nqsbench", "numpy", "scipy", "pyscf", "jax"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def peak_memory_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class Timer:
    """Wall time of a block, for the provenance of the record it produces."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self.start


def provenance(wall_time_s: float) -> Provenance:
    return Provenance(versions=versions(), git_commit=git_commit(), host=socket.gethostname(),
                      created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      wall_time_s=round(wall_time_s, 3), peak_memory_mb=round(peak_memory_mb(), 1))


class Band(BaseModel):
    """Quasiparticle energies at one k (Hartree, ewald convention) with spectral weights."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int
    kvec: tuple[int, int, int]
    electron: list[float]
    hole: list[float]
    electron_weight: list[float] = []
    hole_weight: list[float] = []
    electron_error: list[float] = Field([], description="Monte Carlo standard errors (jackknife), Ha")
    hole_error: list[float] = Field([], description="Monte Carlo standard errors (jackknife), Ha")


class CellRecord(BaseModel):
    """Fields every record shares: what was solved (system, geometry, k-mesh, Hamiltonian hash),
    the headline and raw energies per cell, and provenance."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = RECORD_SCHEMA_VERSION
    method: str
    system: str
    params: dict[str, float]
    kmesh: tuple[int, int, int]
    basis: str
    frozen_core: int
    exxdiv: Literal[None] = None
    converged: bool
    failure: str | None = None
    energy_per_cell: float | None = Field(None, description="Hartree per cell, ewald convention")
    energy_per_cell_raw: float | None = Field(None, description="Hartree per cell, exxdiv=None H")
    madelung: float
    hamiltonian_hash: str
    input_hash: str
    provenance: Provenance


def geometry_folder(geom, root: Path) -> Path:
    """<root>/<system>/<params>_k<mesh>: where every record of one geometry lives."""
    params = "_".join(f"{k}{v:g}" for k, v in sorted(geom.params.items()))
    return Path(root) / geom.spec.id / f"{params}_k{'x'.join(map(str, geom.kmesh))}"


class ReferenceRecord(CellRecord):
    """A reference calculation (exact, HF, CCSD, ...) on one system, geometry and k-mesh."""

    kind: Literal["reference"] = "reference"
    settings: dict[str, Any] = {}
    e_hf_per_cell: float
    sectors: list[dict[str, Any]] = []
    bands: list[Band] = []
    gap: float | None = None
    e_corr_per_cell: float | None = Field(None, description="correlation energy per cell (Hartree), "
                                          "same in both conventions")
    energy_error: float | None = Field(None, description="error estimate of energy_per_cell (Hartree), "
                                       "e.g. DMRG extrapolation")


def write_record(record: BaseModel, path: str | Path) -> Path:
    return atomic_write_json(path, json.loads(record.model_dump_json()))


def read_record(path: str | Path, model: type[BaseModel] = ReferenceRecord) -> BaseModel:
    path = Path(path)
    try:
        return model.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: record not found") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise RecordError(f"{path}: invalid record: field '{loc}': {err['msg']}") from None


# ---------------------------------------------------------------------------- NQS results
RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


class ResultRecord(CellRecord):
    """A neural-network quantum state run on one system, geometry and k-mesh.

    The optimization trace (one row per step) lives in a CSV beside the JSON (``trace_file``,
    relative to the record). Energies are per primitive cell; ``energy_per_cell`` is in the ewald
    convention, ``energy_per_cell_raw`` that of the exxdiv=None Hamiltonian (design.md).
    """
    kind: Literal["nqs"] = "nqs"
    method: str = Field("nqs-rbm", description="nqs-<model>")
    model: dict[str, Any] = Field(description="model settings (kind, alpha, n_parameters, ...)")
    sampler: dict[str, Any] = Field(description="sampler settings (kind, n_samples, n_chains, ...)")
    optimizer: dict[str, Any] = Field(description="optimizer settings (SR learning rate, diag shift, ...)")
    sector: dict[str, Any] = {}
    init: str = "hf"
    seed: int
    n_steps: int = Field(description="optimization steps done (resumed steps included)")
    converged: bool = Field(description="the run finished its steps (or stopped early) without diverging")
    stopped_early: bool = False
    energy_error: float | None = Field(None, description="Monte Carlo error of the mean (Hartree per "
                                       "cell); 0 for exact sampling")
    variance: float | None = Field(None, description="Var(E_loc) of the simulation cell (Ha²)")
    e_inf: float | None = Field(None, description="Tr H / dim in the (N↑, N↓) sector, simulation cell")
    v_score: float | None = Field(None, description="N·Var(E)/(E − E∞)²")
    trace_file: str | None = Field(None, description="CSV of the optimization trace, beside the record")


def results_root() -> Path:
    """Where NQS results go: ``$NQSBENCH_RESULTS`` when set (tests, CI scratch), else results/."""
    import os

    env = os.environ.get("NQSBENCH_RESULTS")
    return Path(env) if env else RESULTS_DIR


def results_path(geom, model: str, sampler: str, seed: int, root: Path | None = None) -> Path:
    """results/<system>/<params>_k<mesh>/nqs-<model>-<sampler>-s<seed>.json (mirrors
    :func:`nqsbench.references.record_path`)."""
    return geometry_folder(geom, root or results_root()) / f"nqs-{model}-{sampler}-s{seed}.json"


def trace_path(record_path: str | Path) -> Path:
    """The trace CSV beside a record: ``<stem>.trace.csv``."""
    p = Path(record_path)
    return p.with_name(p.stem + ".trace.csv")


def write_trace_csv(path: str | Path, trace: dict) -> Path:
    """Write the per-step trace (dict of equal-length arrays) atomically as CSV with a step column."""
    import pandas as pd

    from .io import atomic_write

    df = pd.DataFrame({k: list(v) for k, v in trace.items()})
    df.insert(0, "step", range(len(df)))
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, float_format="%.12g"))


def read_trace_csv(path: str | Path):
    import pandas as pd

    return pd.read_csv(path)


def write_result(record: ResultRecord, path: str | Path, trace: dict | None = None) -> Path:
    """Write the trace CSV (if given) and then the JSON record, each atomically."""
    path = Path(path)
    if trace is not None:
        write_trace_csv(trace_path(path), trace)
    return write_record(record, path)


class BandRecord(CellRecord):
    """Quasiparticle bands of an NQS ground state from its excitation subspace (issue 5).

    ``bands`` come from the NQS state, ``control_bands`` from the same subspace built on the
    exact ground state (ansatz error = bands − control_bands; subspace error = control_bands −
    exact N±1 bands). ``errors`` maps "<what>_vs_<reference>" to band_errors() dicts (meV).
    ``energy_per_cell`` is E(N) of the NQS state as estimated here (ewald convention).
    """
    kind: Literal["nqs-bands"] = "nqs-bands"
    method: str = "nqs-rbm-bands"
    ground_state: dict[str, Any] = Field(description="the NQS result record used: path, seed, sampler, "
                                         "n_steps, energy_per_cell")
    estimator: Literal["exact", "monte_carlo"]
    s_threshold: float = Field(description="S eigenvalues at or below this are dropped")
    ranks: dict[str, list[int]] = Field(description="kept rank of S per k, electron and hole")
    n_samples: int | None = None
    n_blocks: int | None = Field(None, description="jackknife blocks (Markov chains)")
    seed: int | None = Field(None, description="sampling seed of the Monte Carlo estimator")
    energy_error: float | None = Field(None, description="Monte Carlo error of E(N) per cell (Ha)")
    bands: list[Band]
    gap: float | None = None
    control_bands: list[Band] = []
    control_gap: float | None = None
    errors: dict[str, dict[str, Any]] = {}
    figure: str | None = Field(None, description="band figure stem (PNG + SVG beside the record)")


def bands_path(result_path: str | Path, estimator: str) -> Path:
    """``<result stem>.bands-<estimator>.json`` beside the NQS result record."""
    p = Path(result_path)
    return p.with_name(f"{p.stem}.bands-{estimator}.json")
