"""Results of other codes as a method: a submission (JSON, :class:`Submission`) → an
:class:`~nqsbench.records.ExternalRecord` the store writes (``results/<system>/<geom>/
external-<name>.json``), so gates, ``table`` and ``report`` treat it like any other record.

``nqsbench score FILE…`` (:mod:`nqsbench.score`) reads and validates submissions, checks the
instance hash, then calls ``Store.run("external", geom, settings, ctx)`` with the submission in
``ctx.options["submission"]``; :meth:`External.run` converts its energy (and bands) to the
ewald convention with :meth:`~nqsbench.hamiltonian.Hamiltonian.ewald_shift` — the conversion the
instance manifest documents (:mod:`nqsbench.export`).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import NqsbenchError
from ..records import EXTERNAL_NAME, Band, ExternalRecord, ExternalSettings
from .base import Method, RunContext
from .registry import register

SUBMISSION_SCHEMA_NAME = "nqsbench.submission"


class SubmissionError(NqsbenchError):
    """A submission file is unreadable, fails its schema or names another instance."""


class Submission(BaseModel):
    """A result computed by another code on an exported nqsbench instance (``nqsbench export``).

    Energies are Hartree per primitive cell, in the convention ``convention`` names: ``raw`` =
    an eigenvalue of the exported Hamiltonian (FCIDUMP or HDF5, its constant included) divided by
    N_k; ``ewald`` = PySCF's default exxdiv='ewald' number (the raw one plus the Madelung sector
    constant of the manifest's ``conventions``). Band energies (optional, the layout of a band
    record) are supercell energy differences in the same convention."""
    model_config = ConfigDict(extra="forbid", frozen=True, title="nqsbench submission")

    method: str = Field(pattern=EXTERNAL_NAME, description="name of the method (letters, digits, . _ + -), "
                        "e.g. 'block2-dmrg'; the record is results/<system>/<geometry>/external-<method>.json")
    system: str = Field(min_length=1, description="catalog id, e.g. 'h-chain'")
    params: dict[str, float] = Field(description="geometry parameters, e.g. {\"d\": 1.8}")
    kmesh: tuple[int, int, int] = Field(description="k-mesh, three integers, e.g. [1, 1, 2]")
    energy_per_cell: float = Field(allow_inf_nan=False, description="Hartree per primitive cell")
    energy_error: float | None = Field(ge=0, allow_inf_nan=False, description="standard error (Hartree per "
                                       "cell), null when the method has none (e.g. FCI)")
    convention: Literal["raw", "ewald"] = Field(description="raw: E/N_k of the exported Hamiltonian; "
                                                "ewald: with the Madelung sector constant (manifest)")
    instance_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="the manifest's "
                                        "instance_sha256 of the instance solved; checked when given")
    bands: list[Band] | None = Field(None, description="quasiparticle bands (layout of a band record), "
                                     "Hartree, in the submission's convention")
    code: str | None = Field(None, description="program, e.g. 'block2'")
    version: str | None = Field(None, description="program version")
    hardware: str | None = None
    wall_seconds: float | None = Field(None, ge=0, allow_inf_nan=False)
    notes: str | None = None

    @field_validator("kmesh")
    @classmethod
    def _positive(cls, v):
        if min(v) < 1:
            raise ValueError("k-mesh entries must be ≥ 1")
        return v

    @classmethod
    def json_schema(cls) -> dict:
        schema = cls.model_json_schema()
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SUBMISSION_SCHEMA_NAME, **schema}


def _one_line(path, exc: ValidationError) -> SubmissionError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field (see schemas/submission.schema.json)"
    return SubmissionError(f"{path}: invalid submission: field '{loc}': {msg}")


def read_submission(path: str | Path) -> tuple[Submission, str]:
    """(submission, sha256 of the file); SubmissionError names the file and the field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SubmissionError(f"{path}: submission not found") from None
    except OSError as exc:
        raise SubmissionError(f"{path}: unreadable ({exc.strerror})") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SubmissionError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SubmissionError(f"{path}: invalid submission: the top level must be an object")
    try:
        return Submission.model_validate(data), hashlib.sha256(raw).hexdigest()
    except ValidationError as exc:
        raise _one_line(path, exc) from None


def settings_of(sub: Submission) -> ExternalSettings:
    return ExternalSettings(name=sub.method, code=sub.code, code_version=sub.version)


def ewald_offsets(ham) -> dict[str, float]:
    """Supercell energies to add to raw numbers for the ewald convention: the N sector, and the
    quasiparticle differences (electron: E(N+1) − E(N), hole: E(N) − E(N−1))."""
    n0 = ham.n_alpha + ham.n_beta
    s = ham.ewald_shift
    return {"energy": s(n0), "electron": s(n0 + 1) - s(n0), "hole": s(n0) - s(n0 - 1)}


@register
class External(Method):
    name = "external"
    Settings = ExternalSettings
    kind = "external"
    record_model = ExternalRecord
    summary = "a result submitted by another code (nqsbench score), converted to the ewald convention"

    def record_name(self, settings: ExternalSettings, label: str | None = None) -> str:
        return f"external-{settings.name}"

    def run(self, geom, ham, settings: ExternalSettings, ctx: RunContext) -> ExternalRecord:
        sub: Submission | None = ctx.options.get("submission")
        if sub is None:
            raise SubmissionError("the external method records a submission: use `nqsbench score FILE`")
        off = ewald_offsets(ham)
        nk = ham.nk
        if sub.convention == "raw":
            e_raw, e_ewald = sub.energy_per_cell, sub.energy_per_cell + off["energy"] / nk
        else:
            e_raw, e_ewald = sub.energy_per_cell - off["energy"] / nk, sub.energy_per_cell
        bands = []
        for b in sub.bands or []:
            de, dh = (off["electron"], off["hole"]) if sub.convention == "raw" else (0.0, 0.0)
            bands.append(b.model_copy(update={"electron": [e + de for e in b.electron],
                                              "hole": [e + dh for e in b.hole]}))
        gap = None
        if bands:
            from ..bandstructure import gap as band_gap
            gap = band_gap([b.model_dump() for b in bands])
        submission = {"file": ctx.options.get("file"), "sha256": ctx.options.get("sha256"),
                      **sub.model_dump(mode="json", exclude={"bands"}),
                      "n_bands_k": len(sub.bands or [])}
        return ExternalRecord(
            method=f"external:{sub.method}", **self.common_fields(geom, ham), settings=settings,
            converged=True, energy_per_cell=e_ewald, energy_per_cell_raw=e_raw, energy_error=sub.energy_error,
            instance_sha256=sub.instance_sha256, bands=bands, gap=gap if gap is None or math.isfinite(gap) else None,
            wall_seconds=sub.wall_seconds, submission=submission,
            details={"ewald_shift_per_cell": off["energy"] / nk, "convention_submitted": sub.convention,
                     "instance_checked": bool(ctx.options.get("instance_checked", False))})
