"""The method interface: every way nqsbench computes a record is one :class:`Method`.

PySCF style: a method is an object with a typed ``Settings`` model (frozen pydantic, hashed into
the record's ``settings_hash``) and ``run(geometry, hamiltonian, settings, ctx) -> record``.
:func:`compute` runs one method in memory (never writes the record); :mod:`nqsbench.store` adds
paths, freshness and atomic writes on top. A method names what it needs (``dependencies``:
other records, e.g. the exact reference or an NQS ground state); whoever calls it resolves them
into ``ctx.inputs``, so a method never looks records up itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from ..catalog import Geometry
from ..records import CellRecord, MethodSettings, Timer, provenance


@dataclass(frozen=True)
class Dependency:
    """A record a method reads: ``ctx.inputs[name]`` = (path, record) when resolved.

    ``required``: computed when missing or stale; otherwise used only when present and fresh.
    ``pinned``: the record is tied to this very input (``Method.stale_reason`` compares them), so
    its freshness depends on the input's."""
    name: str
    method: str
    settings: MethodSettings | None = None     # None: the method's default settings
    label: str | None = None
    required: bool = True
    pinned: bool = False


def checkpoint_dir(record_path: str | Path) -> Path:
    """The folder of a record's checkpoints, ``<stem>.ckpt/`` beside it (NQS steps, finished
    band sectors); only the record's writer writes there."""
    p = Path(record_path)
    return p.with_name(p.stem + ".ckpt")


@dataclass
class RunContext:
    """What a run needs besides its settings: where its record will go (side files such as
    traces, parameters, checkpoints and figures are written beside it), resolved inputs, and
    how to report progress. ``resume``: True continues from the latest checkpoint (an error when
    it belongs to another run), False starts afresh, "auto" resumes when the checkpoint matches."""
    path: Path | None = None
    inputs: dict[str, tuple[Path, CellRecord]] = field(default_factory=dict)
    resume: bool | Literal["auto"] = "auto"
    checkpoint_every: float = 60.0          # seconds between NQS checkpoints
    checkpoint_steps: int = 50              # ... and at least every this many steps (0: off)
    progress: bool = False
    on_step: Callable[[int, int], None] | None = None
    log: Callable[[str], None] | None = None     # one-line notes before/while running (e.g. the memory plan)
    options: dict[str, Any] = field(default_factory=dict)   # run limits (e.g. exact: max_dim)

    @property
    def checkpoint_dir(self) -> Path | None:
        return checkpoint_dir(self.path) if self.path is not None else None


class Method:
    """Subclass, set ``name``, ``Settings``, ``summary`` (one line for the CLI help) and implement
    :meth:`run`; register with :func:`nqsbench.methods.registry.register`."""

    name: ClassVar[str]
    Settings: ClassVar[type[MethodSettings]]
    summary: ClassVar[str] = ""
    kind: ClassVar[str] = "reference"      # record kind: "reference" records live in the reference cache
    record_model: ClassVar[type[CellRecord]]

    def default_settings(self) -> MethodSettings:
        return self.Settings()

    def settings_from(self, **fields) -> MethodSettings:
        """Settings from keyword fields over the defaults, nested tables merged into theirs
        (``nqsbench.run(method, geom, **fields)``, ``nqsbench reference METHOD --set``, a suite
        task's ``settings``)."""
        return self.Settings.model_validate(_merge(self.default_settings().model_dump(), fields))

    def record_name(self, settings: MethodSettings, label: str | None = None) -> str:
        """File stem of the record inside its geometry folder."""
        return self.name

    def dependencies(self, settings: MethodSettings, label: str | None = None) -> list[Dependency]:
        return []

    def preflight(self, geom: Geometry, settings: MethodSettings, ctx: RunContext) -> None:
        """Refuse, before any PySCF work, what cannot run (raise NqsbenchError)."""

    def run(self, geom: Geometry, ham, settings: MethodSettings, ctx: RunContext) -> CellRecord:
        raise NotImplementedError

    def same_computation(self, want: MethodSettings, record: CellRecord,
                         geom: Geometry) -> tuple[bool, str] | None:
        """Whether ``record`` (made on ``geom``) is what ``want`` computes there, where the settings
        as written do not say it all: (True, why) for a record made with other settings that is
        nevertheless the same computation (a budget it never reached; an "auto" that means on this
        system what the record ran), (False, why) for one whose equal settings no longer mean
        what it ran; None (the default): the settings hashes decide."""
        return None

    def stale_reason(self, record: CellRecord, inputs: dict[str, tuple[Path, CellRecord]]) -> str | None:
        """Freshness beyond input and settings hashes: e.g. bands computed from another run of
        their ground state. None = current."""
        return None

    # helpers for subclasses
    @staticmethod
    def common_fields(geom: Geometry, ham) -> dict[str, Any]:
        """The record fields every method fills the same way (provenance stamped by compute)."""
        spec = geom.spec
        return {"system": spec.id, "params": geom.params, "kmesh": geom.kmesh, "basis": spec.basis,
                "frozen_core": spec.frozen_core, "madelung": float(ham.madelung), "hamiltonian_hash": ham.hash,
                "input_hash": ham.meta.get("input_hash", "unknown"), "provenance": provenance(0.0)}


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, nested tables merged."""
    return {**base, **{k: _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                       for k, v in over.items()}}


def compute(method: Method, geom: Geometry, settings: MethodSettings | None = None, ham=None,
            ctx: RunContext | None = None) -> CellRecord:
    """Run ``method`` on ``geom`` (building or loading its Hamiltonian) → the record, with its
    provenance (wall time includes the Hamiltonian). Writes no record."""
    from ..build import get_hamiltonian

    settings = settings if settings is not None else method.default_settings()
    ctx = ctx or RunContext()
    method.preflight(geom, settings, ctx)
    with Timer() as timer:
        ham = ham if ham is not None else get_hamiltonian(geom)
        record = method.run(geom, ham, settings, ctx)
    return record.model_copy(update={"provenance": provenance(timer.elapsed)})
