"""Typed, schema-checked records with provenance: what every method produces.

Every number nqsbench produces ends in one of these frozen pydantic models (unknown fields are
rejected) carrying versions, git commit, host, wall time, peak memory, the input hash of the
Hamiltonian it solved and the hash of the method settings that made it (``settings_hash``).

- :class:`MethodSettings`: the frozen, hashed inputs of one method (one subclass per method,
  registered by name with :func:`register_settings`, so a record's ``settings`` parse back into
  their model). The built-in methods' settings live here, next to the records that embed them.
- :class:`Estimate`: a Monte Carlo energy with its statistics.
- :class:`ReferenceRecord`, :class:`ResultRecord`, :class:`BandRecord`: reference methods, NQS
  ground states and NQS quasiparticle bands; each names its ``schema_name``.
- :func:`migrate`: schema-version-1 records (free settings dicts) to the current schema.

Where records live and when one is fresh is :mod:`nqsbench.store`'s business, not this module's.
"""
from __future__ import annotations

import hashlib
import json
import platform
import resource
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, WithJsonSchema,
                      field_validator, model_serializer, model_validator)

from .config import source_root
from .errors import RecordError
from .io import atomic_write_json

RECORD_SCHEMA_VERSION = 2


class Provenance(BaseModel):
    """Who made a record, when, how long it took and how much memory it needed."""
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
    """HEAD of the source checkout (``-dirty`` with uncommitted changes), "unknown" for a wheel."""
    root = source_root()
    if root is None:
        return "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_memory_mb() -> float:
    """Peak resident set size of this process: Linux's VmHWM (of this program's memory only:
    ru_maxrss also counts the parent's resident set at fork, so a run started by a 3 GB pytest
    reported a 3 GB peak), else ru_maxrss (KiB on Linux, bytes on macOS)."""
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def resident_memory_mb() -> float:
    """Resident set size of this process now (Linux VmRSS; elsewhere the peak so far)."""
    rss = _proc_status_mb("VmRSS")
    return rss if rss is not None else peak_memory_mb()


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


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def canonical_hash(obj: Any, n: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no spaces), first ``n`` hex digits."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


class Band(_Frozen):
    """Quasiparticle energies at one k (Hartree, ewald convention) with spectral weights."""

    k: int
    kvec: tuple[int, int, int]
    electron: list[float]
    hole: list[float]
    electron_weight: list[float] = []
    hole_weight: list[float] = []
    electron_error: list[float] = Field([], description="Monte Carlo standard errors (jackknife), Ha")
    hole_error: list[float] = Field([], description="Monte Carlo standard errors (jackknife), Ha")


class Estimate(_Frozen):
    """A Monte Carlo energy: mean and error per cell (Ha, raw exxdiv=None H), the variance of the
    local energy of the simulation cell (Ha²), integrated autocorrelation time, split-chain R̂ and
    the number of samples behind it. Exact enumeration: error 0, tau_corr 0, r_hat 1."""

    mean: float
    error: float
    variance: float
    tau_corr: float | None = None
    r_hat: float | None = None
    n_samples: int | None = None


# ============================================================================ method settings
class MethodSettings(_Frozen):
    """The inputs that define a method's record, besides the Hamiltonian: frozen and hashed.

    Subclass once per method with ``method: Literal["name"] = "name"`` and register it with
    :func:`register_settings` (the method registry does this). ``version`` is the algorithm
    version: bump it when the method's numbers change, and every old record turns stale."""

    method: str
    version: int = 1

    def settings_hash(self) -> str:
        return canonical_hash(self.model_dump(mode="json"))

    def flat(self) -> dict[str, Any]:
        """``{"optimizer.lr": 0.25, ...}``: for messages that say which setting differs. Every
        field, also those the dump leaves out at their default (``sampler.deterministic`` 0)."""
        out: dict[str, Any] = {}

        def walk(prefix, obj):
            if isinstance(obj, (dict, BaseModel)):
                for k, v in (obj.items() if isinstance(obj, dict) else obj):
                    walk(f"{prefix}{k}.", v)
            else:
                out[prefix[:-1]] = obj
        walk("", self)
        return out

    def diff(self, have: "MethodSettings") -> str:
        """Which settings of ``have`` (a record's) differ from these (wanted): "key have ≠ want, ..."."""
        a, b = self.flat(), have.flat()
        keys = [k for k in a if a[k] != b.get(k)] + [k for k in b if k not in a]
        return ", ".join(f"{k} {b.get(k)!r} ≠ {a.get(k)!r}" for k in keys) or "settings hash differs"


class UnregisteredSettings(MethodSettings):
    """Settings of a method this process does not know (a plug-in not installed): read as they
    are, so the record still lists and tables; never fresh (no settings to compare with)."""
    model_config = ConfigDict(extra="allow", frozen=True)


class Tagged:
    """Settings models told apart by one key (``method`` of method settings, ``kind`` of model
    settings): :meth:`register` a subclass under its key's default, :meth:`parse` a table into
    the registered subclass (``fallback`` for a key this process does not know)."""

    def __init__(self, key: str, fallback: type[BaseModel], default: str | None = None, example: str = ""):
        self.key, self.fallback, self.default, self.example = key, fallback, default, example
        self.models: dict[str, type[BaseModel]] = {}

    def register(self, model: type[BaseModel]) -> type[BaseModel]:
        name = model.model_fields[self.key].default
        if not isinstance(name, str):
            raise TypeError(f"{model.__name__}: give '{self.key}' a default (its registry name)")
        self.models[name] = model
        return model

    def parse(self, data: Any) -> BaseModel:
        if isinstance(data, self.fallback):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"expected a table with a '{self.key}' key{self.example}")
        return self.models.get(data.get(self.key, self.default), self.fallback).model_validate(data)


_SETTINGS = Tagged("method", UnregisteredSettings)


def register_settings(model: type[MethodSettings]) -> type[MethodSettings]:
    """Make records whose ``settings.method`` names this model parse into it."""
    return _SETTINGS.register(model)


def parse_settings(data: Any) -> MethodSettings:
    if isinstance(data, MethodSettings):
        return data
    return _SETTINGS.parse(data)


def _settings_field(description: str):
    """A settings field typed by its ``method`` key (any registered MethodSettings subclass)."""
    return Annotated[SerializeAsAny[MethodSettings], WithJsonSchema(
        {"type": "object", "required": ["method"], "properties": {"method": {"type": "string"}},
         "description": description})]


@register_settings
class ExactSettings(MethodSettings):
    """Exact diagonalization of the N (and N±1) sectors; v2: bands on the lowest singlet by a
    Krylov quasiparticle search, time-reversal shortcut."""
    method: Literal["exact"] = "exact"
    version: int = 2
    n_roots: int = Field(2, ge=1, description="eigenvalues per sector")
    bands: bool = Field(True, description="also the N±1 sectors and quasiparticle bands")


@register_settings
class HFSettings(MethodSettings):
    """KRHF energy (the Hamiltonian's own orbitals) and Koopmans bands."""
    method: Literal["hf"] = "hf"


@register_settings
class MP2Settings(MethodSettings):
    """KMP2 with the exxdiv=None Fock operator's denominators (the Hamiltonian's own)."""
    method: Literal["mp2"] = "mp2"


@register_settings
class CCSDSettings(MethodSettings):
    """KRCCSD convergence settings (PySCF attribute names)."""
    method: Literal["ccsd"] = "ccsd"
    conv_tol: float = Field(1e-10, gt=0)
    conv_tol_normt: float = Field(1e-7, gt=0)
    max_cycle: int = Field(300, ge=1)
    diis_space: int = Field(10, ge=1)


@register_settings
class CCSDTSettings(CCSDSettings):
    """KRCCSD(T) on converged CCSD amplitudes, exxdiv=None Fock denominators."""
    method: Literal["ccsd_t"] = "ccsd_t"


class EOMRoots(_Frozen):
    """Davidson settings and root selection of EOM-IP/EA-KRCCSD at each k."""
    conv_tol: float = Field(1e-9, gt=0)
    max_cycle: int = Field(200, ge=1)
    max_space: int = Field(100, ge=1)
    min_roots: int = Field(3, ge=1, description="at least this many lowest roots per k")
    extra_roots: int = Field(2, ge=0, description="lowest roots asked for: bands + this")
    koopmans_roots: bool = Field(True, description="also follow the Koopmans (1h/1p) guesses")
    retry_max_cycle: int = Field(600, ge=1, description="second try for an unconverged selected root")
    retry_max_space: int = Field(250, ge=1)
    drop_unconverged_nonfrontier: bool = True
    min_weight: float = Field(0.1, ge=0, le=1, description="one-particle weight below which a root "
                              "is a satellite, never a band")


@register_settings
class EOMCCSDSettings(CCSDSettings):
    """EOM-IP/EA-KRCCSD quasiparticle bands; roots by one-particle weight |r1|²/|r|²."""
    method: Literal["eom_ccsd"] = "eom_ccsd"
    eom: EOMRoots = EOMRoots()


def dmrg_schedule(m: int) -> tuple[tuple[int, int, float], ...]:
    """The DMRG sweep schedule up to bond dimension ``m``: (bond dim, sweeps, noise) rows of the
    growth below ``m``, then ``m`` with 6 noiseless sweeps."""
    grow = ((50, 4, 1e-4), (100, 4, 1e-5), (250, 4, 1e-6), (500, 4, 1e-6), (1000, 4, 1e-7))
    return tuple(r for r in grow if r[0] < m) + ((m, 6, 0.0),)


def dmrg_reverse_bond_dims(m: int) -> tuple[int, ...]:
    """The reverse sweeps for the discarded-weight extrapolation: 0.8, 0.6, 0.4, 0.3, 0.2 × ``m``."""
    return tuple(max(1, round(f * m)) for f in (0.8, 0.6, 0.4, 0.3, 0.2))


@register_settings
class DMRGSettings(MethodSettings):
    """block2 DMRG (SU2) on the real Γ-supercell Hamiltonian, extrapolated in discarded weight."""
    method: Literal["dmrg"] = "dmrg"
    max_bond_dim: int = Field(500, ge=1, description="the largest bond dimension; the default schedule and "
                              "reverse sweeps are derived from it")
    schedule: tuple[tuple[int, int, float], ...] = dmrg_schedule(500)
    reverse_bond_dims: tuple[int, ...] = dmrg_reverse_bond_dims(500)

    @model_validator(mode="before")
    @classmethod
    def _schedule_from_max_bond_dim(cls, data):
        """``max_bond_dim = M`` alone sets the schedule (:func:`dmrg_schedule`) and the reverse
        sweeps (:func:`dmrg_reverse_bond_dims`): at M = 500 these are the defaults. Before, a lone
        max_bond_dim changed only the failure message."""
        if isinstance(data, dict) and "schedule" in data and "max_bond_dim" not in data:
            data = {**data, "max_bond_dim": max(int(r[0]) for r in data["schedule"])}
        if isinstance(data, dict) and "max_bond_dim" in data:
            m = int(data["max_bond_dim"])
            data = dict(data)
            data.setdefault("schedule", dmrg_schedule(m))
            data.setdefault("reverse_bond_dims", dmrg_reverse_bond_dims(m))
        return data

    @model_validator(mode="after")
    def _consistent(self):
        top = max(m for m, _, _ in self.schedule)
        if top != self.max_bond_dim:
            raise ValueError(f"max_bond_dim {self.max_bond_dim} is not the schedule's largest bond dimension "
                             f"{top}; give max_bond_dim alone (the schedule follows) or make them agree")
        if any(m >= self.max_bond_dim for m in self.reverse_bond_dims):
            raise ValueError(f"reverse_bond_dims must be below max_bond_dim {self.max_bond_dim} (the "
                             "extrapolation needs smaller bond dimensions)")
        return self
    sweep_tol: float = Field(1e-9, gt=0)
    n_threads: int = Field(2, ge=1)
    max_error_per_cell: float = Field(1e-4, gt=0, description="a larger extrapolation error (Ha per "
                                      "cell) is a failed record, not a reference")


class ModelSettings(_Frozen):
    """A variational model's settings: ``kind`` names the model in the model registry
    (:mod:`nqsbench.nqs.models`), the other fields are the model's own. Each model subclasses
    this with ``kind: Literal["name"] = "name"`` and forbids unknown fields; the registry
    registers the subclass here (:func:`register_model_settings`) so that records parse into
    it. A kind this process has not registered is kept as this base class with its fields as
    they are (same dump, same settings hash), so a record of any model still lists and tables."""
    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str = "rbm"


_MODEL_SETTINGS = Tagged("kind", ModelSettings, default="rbm", example=', e.g. {kind = "rbm", alpha = 2}')


def register_model_settings(model: type[ModelSettings]) -> type[ModelSettings]:
    """Make ``model = {kind = ...}`` tables of this kind parse into ``model``."""
    return _MODEL_SETTINGS.register(model)


def parse_model_settings(data: Any) -> ModelSettings:
    return _MODEL_SETTINGS.parse(data)


def _beta_in_range(v):
    if isinstance(v, float) and not 0 < v <= 1:
        raise ValueError(f"beta {v}: must be in (0, 1], or 'auto'")
    return v


# β of Markov-chain sampling (SamplerSettings, suite tasks): a number in (0, 1], or "auto"
BetaSetting = Annotated[float | Literal["auto"], AfterValidator(_beta_in_range)]


class SamplerSettings(_Frozen):
    """``exact``: enumerate the sector; ``mcmc``: Metropolis chains of |ψ|^(2β) with importance
    weights. ``n_samples`` is rounded up to a multiple of ``n_chains`` (what the sampler draws)."""
    kind: Literal["exact", "mcmc"] = "exact"
    n_samples: int | None = Field(None, ge=2)
    n_chains: int | None = Field(None, ge=1)
    beta: BetaSetting | None = Field(
        None, description="mcmc: sample |ψ|^(2β) with importance weights; 'auto': β adapts per step, from 0.5 "
        "towards 1 while the weights leave under a quarter of the samples effective")
    deterministic: int = Field(0, ge=0, description="mcmc: configurations summed exactly each step (the most "
                               "probable ones seen; the samples among them replaced by their sum); 0: none")

    @model_serializer(mode="wrap")
    def _omit_no_deterministic(self, handler):
        # plain sampling dumps (and hashes) as it did before the field existed: its records stay fresh
        data = handler(self)
        if isinstance(data, dict) and not data.get("deterministic"):
            data.pop("deterministic", None)
        return data

    @model_validator(mode="after")
    def _consistent(self):
        mc = (self.n_samples, self.n_chains, self.beta)
        if self.kind == "exact" and (any(v is not None for v in mc) or self.deterministic):
            raise ValueError("samples/chains/beta/deterministic apply to sampler 'mcmc' only; remove them")
        if self.kind == "mcmc":
            if any(v is None for v in mc):
                raise ValueError("sampler 'mcmc' needs n_samples, n_chains and beta")
            if self.n_samples < 2 * self.n_chains:   # else 1 sample per chain: no R̂, no error bar
                raise ValueError(f"n_samples {self.n_samples} < 2·n_chains {self.n_chains}: need at "
                                 "least two samples per chain")
            rounded = -(-self.n_samples // self.n_chains) * self.n_chains
            if rounded != self.n_samples:
                object.__setattr__(self, "n_samples", rounded)
        return self


class OptimizerSettings(_Frozen):
    """Stochastic reconfiguration: learning rate ``lr`` (cosine-decayed to ``lr_final`` over the
    run when > 0), diagonal shift, trust region ``max_norm`` on |δ| (0 = none), and how the SR
    equations are solved (``solver``: :func:`nqsbench.nqs.optimizer.sr_direction`)."""
    kind: Literal["sr"] = "sr"
    lr: float = Field(gt=0)
    lr_final: float = Field(0.0, ge=0)
    max_norm: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        0.0, description="trust region |δ| ≤ max_norm per SR step (0 = none); auto: none up to 16 "
        "spin-orbitals, 1 above (nqsbench.nqs.models.base.resolve_max_norm)")
    diag_shift: float = Field(gt=0)
    solver: Literal["auto", "sr", "minsr", "cg"] = Field(
        "auto", description="sr: N_p × N_p Cholesky; minsr: N_s × N_s (samples < parameters); cg: "
        "matrix-free conjugate gradients (memory N_s × N_p); auto: minsr or sr, cg when both are large")


class ConvergenceSettings(_Frozen):
    """The plateau criterion (:mod:`nqsbench.nqs.convergence`): the mean energy of the last
    ``window`` steps lies within ``tol_mha`` mHa/cell plus ``sigmas`` error bars of the window
    before, and a line fitted to the last two windows does not fall by more than that over a
    window. With ``steps = "auto"`` a plateau at a learning rate above ``lr_final`` halves the
    rate (reduce on plateau) and the run goes on; a plateau at ``lr_final`` ends it."""
    window: int = Field(50, ge=5, description="steps per window")
    tol_mha: float = Field(0.05, gt=0, description="mHa/cell: the change between windows called flat")
    sigmas: float = Field(2.0, ge=0, description="error bars of the window means added to tol_mha")
    decay: float = Field(0.5, gt=0, lt=1, description="auto: learning-rate factor at a plateau")


@register_settings
class NQSSettings(MethodSettings):
    """An NQS ground state: model, sampler, optimizer, steps, seed and start.

    ``steps``: a number (run exactly that many; the record's ``converged`` says whether the
    plateau criterion holds at the end) or ``"auto"`` (run until it holds at the final learning
    rate, at most ``max_steps`` steps and ``max_minutes`` minutes)."""
    method: Literal["nqs"] = "nqs"
    model: SerializeAsAny[ModelSettings] = ModelSettings()
    sampler: SamplerSettings = SamplerSettings()
    optimizer: OptimizerSettings
    steps: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    max_steps: int | None = Field(None, ge=1, description="steps = auto: at most this many steps")
    max_minutes: float | None = Field(None, gt=0, description="steps = auto: stop after this many minutes of "
                                       "optimization, a resumed run's earlier processes included")
    convergence: ConvergenceSettings = ConvergenceSettings()
    seed: int = Field(0, ge=0)
    init: Literal["auto", "hf", "random"] | Annotated[str, Field(pattern=r"^params:[0-9a-f]{16}$")] = Field(
        "auto", description="auto: random up to 16 spin-orbitals, else hf; hf: visible bias towards the HF "
        "determinant; random: small random "
        "parameters; params:<digest>: the parameters of an earlier run (sha256 of its "
        ".params.msgpack, first 16 hex digits; the file itself is a run option)")
    spin_penalty: float = Field(0.0, ge=0, description="λ (Ha): optimize H + λ S² instead of H, so that the lowest "
                                "singlet is found where a triplet lies below it (bands are defined on the singlet); "
                                "the record's energy is ⟨H⟩ and details.spin_penalty has ⟨S²⟩; 0: no penalty")

    @model_serializer(mode="wrap")
    def _omit_no_penalty(self, handler):
        # runs without a penalty dump (and hash) as they did before the field existed: they stay fresh
        data = handler(self)
        if isinstance(data, dict) and not data.get("spin_penalty"):
            data.pop("spin_penalty", None)
        return data

    @field_validator("model", mode="before")
    @classmethod
    def _typed_model(cls, v):
        return parse_model_settings(v)

    @model_validator(mode="after")
    def _budget(self):
        if self.steps != "auto" and (self.max_steps is not None or self.max_minutes is not None):
            raise ValueError("max_steps/max_minutes apply to steps = 'auto' only; remove them")
        if self.steps == "auto" and self.max_steps is None:
            raise ValueError("steps = 'auto' needs max_steps")
        return self

    @property
    def step_budget(self) -> int:
        """The most steps this run may take."""
        return self.max_steps if self.steps == "auto" else self.steps


@register_settings
class NQSBandsSettings(MethodSettings):
    """Quasiparticle bands of an NQS ground state (``ground_state``) from its excitation
    subspace, with the exact or the Monte Carlo estimator."""
    method: Literal["nqs_bands"] = "nqs_bands"
    ground_state: NQSSettings
    estimator: Literal["exact", "monte_carlo"] = "exact"
    n_samples: int | None = Field(None, ge=2, description="monte_carlo: samples of |ψ|²")
    n_chains: int | None = Field(None, ge=2, description="monte_carlo: Markov chains (jackknife blocks)")
    seed: int | None = Field(None, ge=0, description="monte_carlo: sampling seed")
    s_threshold: float = Field(1e-3, gt=0, description="S eigenvalues at or below this are dropped")
    control: bool = Field(True, description="also the same subspace on the exact ground state")
    band_method: Literal["subspace", "krylov", "sector"] = Field(
        "subspace", description="subspace: {c†_pk|Ψ⟩}, {c_pk|Ψ⟩} (the paper's); krylov: that subspace "
        "extended with H c†_pk|Ψ⟩ … H^order c†_pk|Ψ⟩ (block Lanczos from the paper's vectors); sector: an "
        "NQS of the ground state's settings optimized in each (N↑ ± 1, N↓, K0 ± k) sector (its lowest state)")
    order: int = Field(0, ge=0, le=64, description="krylov: the highest power of H applied (0 for subspace)")
    spin_penalty: float = Field(0.0, ge=0, description="sector: λ (Ha) of H + λ S² optimized in each sector, so "
                                "that its lowest doublet (the quasiparticle's spin) is found, not a quartet below it; "
                                "0: the lowest state of any spin")

    def settings_hash(self) -> str:
        # records made before the penalty existed are its λ = 0: the same hash, so they stay fresh
        data = self.model_dump(mode="json")
        if not data["spin_penalty"]:
            del data["spin_penalty"]
        return canonical_hash(data)

    @model_validator(mode="after")
    def _consistent(self):
        if self.spin_penalty and self.band_method != "sector":
            raise ValueError(f"spin_penalty {self.spin_penalty:g}: only band_method 'sector' optimizes states "
                             "(set band_method = 'sector' or remove it)")
        if self.band_method == "subspace" and self.order != 0:
            raise ValueError(f"order {self.order}: only band_method 'krylov' has an order; remove it or use krylov")
        if self.band_method == "sector" and self.estimator != "exact":
            raise ValueError("band_method 'sector' has the exact estimator only (energies and Z by exact sums "
                             "over each sector); use estimator 'exact'")
        if self.band_method == "sector" and self.order != 0:
            raise ValueError(f"order {self.order}: only band_method 'krylov' has an order; remove it or use krylov")
        if self.band_method == "krylov":
            if self.order < 1:
                raise ValueError("band_method 'krylov' needs order ≥ 1 (order 0 is the subspace)")
            if self.estimator != "exact" and self.order != 1:
                raise ValueError(f"order {self.order}: the Monte Carlo estimator of band_method 'krylov' has "
                                 "order 1 only (H² c†|Ψ⟩ is two nested connection sums per sample; order n "
                                 "needs n + 1); use order 1 or estimator 'exact'")
        mc = (self.n_samples, self.n_chains, self.seed)
        if self.estimator == "exact" and any(v is not None for v in mc):
            raise ValueError("samples/chains/seed apply to estimator 'monte_carlo' only; remove them")
        if self.estimator == "monte_carlo":
            if any(v is None for v in mc):
                raise ValueError("estimator 'monte_carlo' needs n_samples, n_chains and seed")
            if self.n_samples < 2 * self.n_chains:
                raise ValueError(f"n_samples {self.n_samples} < 2·n_chains {self.n_chains}: need at "
                                 "least two samples per chain")
        return self


EXTERNAL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"


@register_settings
class ExternalSettings(MethodSettings):
    """A result submitted by another code (``nqsbench score``): which method, code and code
    version made it (the record is ``external-<name>.json``; a new submission of the same name
    replaces it)."""
    method: Literal["external"] = "external"
    name: str = Field("submission", pattern=EXTERNAL_NAME, description="the submitted method's name")
    code: str | None = Field(None, description="the code that computed it (e.g. block2, netket)")
    code_version: str | None = None


# ============================================================================ records
class CellRecord(_Frozen):
    """Fields every record shares: what was solved (system, geometry, k-mesh, Hamiltonian hash),
    by which settings (typed, hashed), the headline and raw energies per cell, and provenance."""

    schema_name: ClassVar[str] = "nqsbench.record"
    schema_version: int = RECORD_SCHEMA_VERSION
    kind: str
    method: str
    system: str
    params: dict[str, float]
    kmesh: tuple[int, int, int]
    basis: str
    frozen_core: int
    exxdiv: Literal[None] = None
    settings: _settings_field("the method's settings (nqsbench.records.<Method>Settings)")
    settings_hash: str = Field("", description="hash of settings (empty: computed on creation)")
    converged: bool
    failure: str | None = None
    energy_per_cell: float | None = Field(None, description="Hartree per cell, ewald convention")
    energy_per_cell_raw: float | None = Field(None, description="Hartree per cell, exxdiv=None H")
    madelung: float
    hamiltonian_hash: str
    input_hash: str
    details: dict[str, Any] = Field({}, description="solver diagnostics (outputs, not inputs)")
    provenance: Provenance
    checksum: str | None = Field(None, description="sha256 of the record's canonical JSON without this "
                                 "field; set on writing, verified on reading")

    @field_validator("settings", mode="before")
    @classmethod
    def _typed_settings(cls, v):
        return parse_settings(v)

    @model_validator(mode="before")
    @classmethod
    def _schema(cls, data):
        if isinstance(data, dict):
            name = data.get("schema_name")
            if name is not None and name != cls.schema_name:
                raise ValueError(f"schema_name {name!r} is not {cls.schema_name!r}")
            data = {k: v for k, v in data.items() if k != "schema_name"}
        return data

    @model_validator(mode="after")
    def _hash(self):
        if not self.settings_hash:
            object.__setattr__(self, "settings_hash", self.settings.settings_hash())
        return self

    @property
    def failed(self) -> bool:
        """No usable result: a method that did not converge (the record says why in
        ``failure``). NQS records override this: an unconverged NQS run is still a variational
        energy."""
        return not self.converged

    def model_dump(self, **kw) -> dict:   # schema_name first in every written record
        return {"schema_name": self.schema_name, **super().model_dump(**kw)}

    @classmethod
    def model_json_schema(cls, *args, **kw) -> dict:
        schema = super().model_json_schema(*args, **kw)
        schema["properties"] = {"schema_name": {"const": cls.schema_name, "type": "string"},
                                **schema["properties"]}
        return schema


def exact_target(spin_penalty: float | None, energy: float | None, singlet: float | None) -> float | None:
    """The exact energy per cell a run is measured against. A run of H + λ S² (λ > 0) aims at the
    lowest singlet, so exact diagonalization's lowest singlet (``details.energy_per_cell_singlet``)
    where the reference has one; otherwise the reference's energy. The one rule for gates, ``run``,
    ``table``, the leaderboard and the band table."""
    def given(x):
        return x is not None and x == x      # None or NaN (pandas) is "not given"
    return singlet if given(spin_penalty) and spin_penalty > 0 and given(singlet) else energy


class ReferenceRecord(CellRecord):
    """A reference calculation (exact, HF, CCSD, DMRG, ...) on one system, geometry and k-mesh."""

    schema_name: ClassVar[str] = "nqsbench.reference-record"
    kind: Literal["reference"] = "reference"
    e_hf_per_cell: float
    sectors: list[dict[str, Any]] = Field([], description="exact: lowest energies of every sector")
    bands: list[Band] = []
    gap: float | None = None
    e_corr_per_cell: float | None = Field(None, description="correlation energy per cell (Hartree), "
                                          "same in both conventions")
    energy_error: float | None = Field(None, description="error estimate of energy_per_cell (Hartree), "
                                       "e.g. DMRG extrapolation")


class ResultRecord(CellRecord):
    """A neural-network quantum state run on one system, geometry and k-mesh.

    The optimization trace (one row per step) lives in a CSV beside the JSON (``trace_file``,
    relative to the record), the final parameters in ``<stem>.params.msgpack``. ``details`` holds
    what the driver reports of itself (model class and parameter count, sampler internals).
    """
    schema_name: ClassVar[str] = "nqsbench.nqs-record"
    kind: Literal["nqs"] = "nqs"
    method: str = Field("nqs-rbm", description="nqs-<model>")
    settings: NQSSettings
    sector: dict[str, int] = Field({}, description="n_up, n_dn, k_total of the state")
    n_parameters: int | None = None
    n_steps: int = Field(description="optimization steps done (resumed steps included)")
    converged: bool = Field(description="the plateau criterion (settings.convergence) holds at the "
                            "end of the run; ``convergence`` says why or why not")
    convergence: str | None = Field(None, description="the plateau criterion's verdict in words")
    final_lr: float | None = Field(None, description="the learning rate at the end (auto steps lower it)")
    stopped_early: bool = False
    estimate: Estimate | None = Field(None, description="the final energy estimate and its statistics")
    energy_error: float | None = Field(None, description="Monte Carlo error of the mean (Hartree per "
                                       "cell); 0 for exact sampling")
    variance: float | None = Field(None, description="Var(E_loc) of the simulation cell (Ha²)")
    e_inf: float | None = Field(None, description="Tr H / dim in the (N↑, N↓) sector, simulation cell")
    v_score: float | None = Field(None, description="N·Var(E)/(E − E∞)²")
    trace_file: str | None = Field(None, description="CSV of the optimization trace, beside the record")

    @property
    def failed(self) -> bool:
        # a diverged run writes no record; an unconverged one is an upper bound still
        return self.energy_per_cell is None


class BandRecord(CellRecord):
    """Quasiparticle bands of an NQS ground state from its excitation subspace.

    ``bands`` come from the NQS state, ``control_bands`` from the same subspace (or Krylov space
    of the same order) built on the exact ground state (ansatz error = bands − control_bands;
    subspace error = control_bands − exact N±1 bands). ``errors`` maps "<what>_vs_<reference>" to band_errors() dicts (meV).
    ``energy_per_cell`` is E(N) of the NQS state as estimated here (ewald convention).
    """
    schema_name: ClassVar[str] = "nqsbench.band-record"
    kind: Literal["nqs-bands"] = "nqs-bands"
    method: str = "nqs-rbm-bands"
    settings: NQSBandsSettings
    ground_state: dict[str, Any] = Field(description="the NQS result record used: path, seed, sampler, "
                                         "n_steps, energy_per_cell")
    estimator: Literal["exact", "monte_carlo"]
    band_method: Literal["subspace", "krylov", "sector"] = "subspace"
    order: int = Field(0, description="krylov: the highest power of H in the space")
    sectors: list[dict[str, Any]] = Field(
        [], description="sector: one row per (branch, k) sector: its NQS run (n_steps, converged, convergence, "
        "wall_s; lr: the learning rate it ran at, halved after a divergence), energy_raw (supercell, raw H, constant excluded), s2, z (quasiparticle weight "
        "Σ_p |⟨ψ|c†_pk↑|Ψ0⟩|²), with the control exact_energy_raw, exact_s2, error_mHa and exact_z; same_as_k for a "
        "k solved as its time-reversed partner")
    krylov_energy_per_cell: float | None = Field(
        None, description="krylov: E(N) per cell (ewald convention) from span{Ψ, HΨ, …, H^order Ψ}, the "
        "reference of ε at the same level as E(N±1); energy_per_cell stays ⟨Ψ|H|Ψ⟩")
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


class ExternalRecord(CellRecord):
    """A result computed by another code on an exported instance and submitted with ``nqsbench
    score`` (``method`` = ``external:<name>``). ``energy_per_cell`` is the submission converted to
    the ewald convention, ``energy_per_cell_raw`` to the raw one; ``submission`` keeps what was
    submitted (convention, energy, code, hardware, notes, the file and its sha256)."""
    schema_name: ClassVar[str] = "nqsbench.external-record"
    kind: Literal["external"] = "external"
    settings: ExternalSettings
    energy_error: float | None = Field(None, description="the submitter's error estimate (Ha per cell)")
    instance_sha256: str | None = Field(None, description="the exported instance the submission names "
                                        "(checked against this store's Hamiltonian), None if not given")
    bands: list[Band] = Field([], description="quasiparticle bands, ewald convention")
    gap: float | None = None
    wall_seconds: float | None = None
    submission: dict[str, Any] = Field({}, description="the submission as received (file, sha256, fields)")


RECORD_MODELS: dict[str, type[CellRecord]] = {"reference": ReferenceRecord, "nqs": ResultRecord,
                                              "nqs-bands": BandRecord, "external": ExternalRecord}


def record_model(kind: str) -> type[CellRecord] | None:
    return RECORD_MODELS.get(kind)


# ============================================================================ reading, writing
def content_checksum(data: dict) -> str:
    """sha256 of a record's canonical JSON without its ``checksum`` key."""
    return canonical_hash({k: v for k, v in data.items() if k != "checksum"}, n=64)


def write_record(record: CellRecord, path: str | Path) -> Path:
    data = record.model_dump(mode="json", exclude={"checksum"})
    return atomic_write_json(path, dict(data, checksum=content_checksum(data)))


def read_record(path: str | Path, model: type[CellRecord] | None = None) -> CellRecord:
    """A record file of any kind (its ``kind`` picks the model; ``model`` insists on one),
    schema version 1 migrated on the fly. RecordError names the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: record not found") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: not a JSON record ({exc})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a JSON record (top level is not an object)")
    kind = data.get("kind", "reference")
    chosen = model or record_model(kind)
    if chosen is None:
        raise RecordError(f"{path}: invalid record: field 'kind': unknown kind {kind!r}")
    try:
        record = chosen.model_validate(migrate(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise RecordError(f"{path}: invalid record: field '{loc}': {err['msg']}") from None
    if data.get("schema_version", 1) >= 2:            # version 1 had no checksum
        if not data.get("checksum"):
            raise RecordError(f"{path}: invalid record: field 'checksum': missing; recompute the record")
        if data["checksum"] != content_checksum(data):
            raise RecordError(f"{path}: content checksum mismatch: the record was changed after it was "
                              "written (edited or damaged); recompute it or restore the original")
    return record


# ============================================================================ schema migration
# The config hashes that version-1 records carried when their runner settings equalled today's
# defaults (nqsbench 0.1.0 at 0abd4fd); any other value means the record was stale already.
_V1_CONFIG_HASHES = {"exact": "31d7ded2f295", "hf": "8e3e2e1bca29", "mp2": "6305e3f3bcec",
                     "ccsd": "c7a378b465e7", "ccsd_t": "78f35e23fb22", "eom_ccsd": "cfc652cbdadf",
                     "dmrg": "b744a077c790"}
_V1_INPUT_KEYS = {"config_hash", "n_roots", "bands", "conv_tol", "conv_tol_normt", "max_cycle",
                  "diis_space", "frozen", "denominators", "eom", "symmetry", "max_bond_dim", "schedule",
                  "reverse_bond_dims", "sweep_tol", "ordering", "n_threads", "max_error_per_cell"}
STALE = "stale-v1"


def migrate(data: dict) -> dict:
    """A record dict of any schema version → the current one (idempotent). Version 1 kept free
    settings dicts: reference settings become the method's settings model when the record's
    config hash shows it was made with today's defaults (else it is marked stale), diagnostics
    move to ``details``; NQS settings are rebuilt from the model/sampler/optimizer dicts; band
    records cannot name their ground-state settings and are marked stale (recomputed in seconds)."""
    if data.get("schema_version", 1) >= 2:
        return data
    d = dict(data, schema_version=RECORD_SCHEMA_VERSION)
    kind = d.get("kind", "reference")
    if kind == "reference":
        old = dict(d.pop("settings", {}) or {})
        method = d.get("method")
        model = _SETTINGS.models.get(method, UnregisteredSettings)
        settings = model() if model is not UnregisteredSettings else UnregisteredSettings(method=method)
        if method == "exact":
            settings = ExactSettings(n_roots=old.get("n_roots", 2), bands=old.get("bands", True))
        d["settings"] = settings.model_dump(mode="json")
        ok = old.get("config_hash") == _V1_CONFIG_HASHES.get(method)
        d["settings_hash"] = settings.settings_hash() if ok else STALE
        details = {k: v for k, v in old.items() if k not in _V1_INPUT_KEYS}
        if method == "dmrg":
            details["ordering"] = old.get("ordering")
        d["details"] = details
    elif kind == "nqs":
        model, sampler, opt = d.pop("model", {}), d.pop("sampler", {}), d.pop("optimizer", {})
        lr = opt.get("learning_rate")
        lr, lr_final = (lr["init"], lr["final"]) if isinstance(lr, dict) else (lr, 0.0)
        mcmc = sampler.get("kind") in ("metropolis", "mcmc")
        try:
            settings = NQSSettings(
                model=ModelSettings(alpha=model.get("alpha", 2.0)),
                sampler=SamplerSettings(kind="mcmc", n_samples=sampler.get("n_samples"),
                                        n_chains=sampler.get("n_chains"), beta=sampler.get("beta"))
                if mcmc else SamplerSettings(),
                optimizer=OptimizerSettings(lr=lr, lr_final=lr_final, max_norm=opt.get("max_norm") or 0.0,
                                            diag_shift=opt.get("diag_shift")),
                steps=max(int(d.get("n_steps", 1)), 1), seed=d.get("seed", 0), init=d.pop("init", "hf"))
            d["settings"] = settings.model_dump(mode="json")
        except (ValidationError, TypeError) as exc:
            raise RecordError(f"version-1 NQS record with unreadable settings ({exc}); recompute it") from None
        d.pop("seed", None)
        d["n_parameters"] = model.get("n_parameters")
        d["details"] = {"model": model, "sampler": sampler, "optimizer": opt}
        if d.get("energy_per_cell_raw") is not None:
            d["estimate"] = {"mean": d["energy_per_cell_raw"], "error": d.get("energy_error") or 0.0,
                             "variance": d.get("variance") or 0.0,
                             "n_samples": sampler.get("n_eval_samples", sampler.get("n_samples"))}
    elif kind == "nqs-bands":
        gs = d.get("ground_state", {})
        placeholder = NQSBandsSettings(
            ground_state=NQSSettings(optimizer=OptimizerSettings(lr=1.0, diag_shift=1.0),
                                     steps=max(int(gs.get("n_steps") or 1), 1)),
            estimator=d.get("estimator", "exact"),
            **({"n_samples": d.get("n_samples") or 64, "n_chains": d.get("n_blocks") or 2,
                "seed": d.get("seed") or 0} if d.get("estimator") == "monte_carlo" else {}))
        d["settings"] = placeholder.model_dump(mode="json")
        d["settings_hash"] = STALE
        d["method"] = d.get("method", "nqs-rbm-bands")
    return d


# ============================================================================ bulk data beside records
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
