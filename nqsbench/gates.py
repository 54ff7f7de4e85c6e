"""Accuracy gates: what a suite's records must satisfy (``nqsbench check``).

Gates live with the tasks in the suite file (``gates = [{ kind = "energy", ... }]``); each gate
kind is a pydantic model in :data:`GATE_KINDS` with an ``evaluate`` method, so new kinds plug in.

- ``energy``: |E − E_ref| per cell ≤ tolerance + sigmas·σ, with E_ref the first *fresh, converged*
  record among ``against`` (default exact; e.g. ``["exact", "dmrg"]`` = the best available) and
  σ = sqrt(σ_E² + σ_ref²) the combined standard error (Monte Carlo error of the NQS mean, DMRG
  extrapolation error; 0 for exact sampling and exact references). Why ``tolerance + 2σ``: the
  target is that the *true* energy lies within chemical accuracy (1.6 mHa/cell); an estimate
  carries a statistical error σ, so a run whose true error sits exactly at the tolerance still
  passes with ~98% probability (one-sided 2σ), while one whose true error exceeds the tolerance
  by more than 2σ fails with ~98%. The band only widens with σ, so a noisy run must be longer,
  not luckier. Two-sided: an energy far *below* exact is a bug (non-variational) and fails too.
- ``bands``: mean absolute band error (meV) over every (k, branch, band) shared with the
  reference (:func:`nqsbench.bandstructure.band_errors`) ≤ max_mae_mev + sigmas·σ_MAE (σ_MAE from
  the Monte Carlo band errors, 0 for the exact estimator). ``against`` names reference methods
  or ``exact_state_subspace``: the same excitation subspace built on the exact ground state (the
  control in a band record), so the gate measures the NQS alone, not the subspace method.
- ``v_score``: V = N·Var(E)/(E − E∞)² ≤ max.
- Every record of a suite is also checked present and fresh (:func:`nqsbench.suites.check`).

Gates know jobs only by their attributes (system, params, kmesh, name, path, geom) and read
references through the record store, so this module sits below the suites.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import SuiteError
from .store import Store
from .units import CHEMICAL_ACCURACY_MHA, HARTREE_TO_MEV

CONTROL = "exact_state_subspace"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Row:
    gate: str
    job: Any                  # a nqsbench.suites.Job
    status: Literal["PASS", "FAIL", "WARN"]
    value: str = ""
    limit: str = ""
    reference: str = ""
    detail: str = ""

    def as_dict(self) -> dict:
        j = self.job
        return {"gate": self.gate, "system": j.system, "geometry": ",".join(f"{k}={v:g}" for k, v in j.params),
                "kmesh": "x".join(map(str, j.kmesh)), "method": j.name, "value": self.value,
                "limit": self.limit, "reference": self.reference, "status": self.status,
                "detail": self.detail, "path": str(j.path)}


class GateBase(_Frozen):
    kind: str
    methods: list[str] | None = Field(None, description="reference tasks: the methods gated "
                                      "(default: every method of the task not in 'against')")
    note: str = ""
    applies_to: ClassVar[tuple[str, ...]] = ()     # record kinds

    def evaluate(self, job, rec, store: Store) -> Row:
        raise NotImplementedError


def _reference(job, methods, store: Store, need_bands: bool = False):
    """First fresh, converged reference record among ``methods`` → (method, record, why-not-others),
    with the settings the suite computes it with (``job.reference_settings``; else the defaults)."""
    why = []
    settings = dict(job.reference_settings)        # the suite's, where not the defaults
    for m in methods:
        st = store.status(m, job.geom, settings.get(m))
        if not st.fresh:
            why.append(f"{m}: {st.reason}")
            continue
        rec = st.record
        if rec.failed:
            why.append(f"{m}: failed record")
        elif need_bands and not rec.bands:
            why.append(f"{m}: no bands")
        else:
            return m, rec, "; ".join(why)
    return None, None, "; ".join(why)


def reference_energy(rec, ref, name: str = "exact") -> tuple[float | None, str]:
    """(energy per cell, what it is) that ``rec`` is measured against in reference ``ref``: a run
    of H + λ S² (``settings.spin_penalty`` > 0) aims at the lowest singlet, so exact
    diagonalization's lowest singlet where the reference has one; else its energy."""
    from .records import exact_target

    singlet = (ref.details or {}).get("energy_per_cell_singlet")
    penalty = getattr(getattr(rec, "settings", None), "spin_penalty", 0.0)
    target = exact_target(penalty, ref.energy_per_cell, singlet)
    return target, (f"{name} lowest singlet" if target is singlet and singlet is not None else name)


class EnergyGate(GateBase):
    kind: Literal["energy"]
    against: list[str] = Field(["exact"], min_length=1)
    tolerance_mha: float = Field(CHEMICAL_ACCURACY_MHA, gt=0)
    sigmas: float = Field(2.0, ge=0)
    applies_to: ClassVar[tuple[str, ...]] = ("reference", "nqs")

    def evaluate(self, job, rec, store):
        if rec.failed or rec.energy_per_cell is None:
            return Row("energy", job, "FAIL", detail=f"failed record: {rec.failure}")
        m, ref, why = _reference(job, self.against, store)
        if ref is None:
            return Row("energy", job, "FAIL", detail=f"no fresh converged reference ({why})")
        if abs(rec.madelung - ref.madelung) > 1e-8:
            return Row("energy", job, "FAIL", reference=m, detail="different Madelung constants: not the same cell")
        target, m = reference_energy(rec, ref, m)
        d = (rec.energy_per_cell - target) * 1e3
        sigma = math.hypot(rec.energy_error or 0.0, ref.energy_error or 0.0) * 1e3
        limit = self.tolerance_mha + self.sigmas * sigma
        ok = abs(d) <= limit
        detail = "" if ok else ("above" if d > 0 else "below") + f" {m} by {abs(d) - self.tolerance_mha:.3f} mHa beyond the tolerance"
        return Row("energy", job, "PASS" if ok else "FAIL", value=f"{d:+.3f} ± {sigma:.3f} mHa",
                   limit=f"|ΔE| ≤ {limit:.3f}" + (f" ({self.tolerance_mha:g} + {self.sigmas:g}σ)" if sigma else ""),
                   reference=m, detail=detail)


def _paired_sigma(bands, reference) -> tuple[float, int]:
    """σ of the band MAE (meV) from the Monte Carlo errors of ``bands``, paired as in
    :func:`nqsbench.bandstructure.band_errors` (energy order at each k): σ_MAE ≤ sqrt(Σσ_i²)/n."""
    a = {b.k: b for b in bands}
    r = {b.k: b for b in reference}
    var, n = 0.0, 0
    for k in sorted(set(a) & set(r)):
        for branch in ("electron", "hole"):
            x, errs = getattr(a[k], branch), getattr(a[k], f"{branch}_error")
            order = sorted(range(len(x)), key=lambda i: x[i])
            m = min(len(x), len(getattr(r[k], branch)))
            for i in order[:m]:
                var += (errs[i] if i < len(errs) else 0.0) ** 2
                n += 1
    return (math.sqrt(var) / n * HARTREE_TO_MEV if n else 0.0), n


class BandGate(GateBase):
    kind: Literal["bands"]
    against: list[str] = Field(["exact"], min_length=1)
    max_mae_mev: float = Field(gt=0)
    sigmas: float = Field(2.0, ge=0)
    applies_to: ClassVar[tuple[str, ...]] = ("reference", "nqs-bands")

    def evaluate(self, job, rec, store):
        from .bandstructure import band_errors

        if rec.failed or not rec.bands:
            return Row("bands", job, "FAIL", detail=f"failed record: {rec.failure}" if rec.failed else "no bands in the record")
        if self.against == [CONTROL]:
            ref_bands, m = getattr(rec, "control_bands", []), CONTROL
            if not ref_bands:
                return Row("bands", job, "FAIL", detail=f"the record has no {CONTROL} control bands")
        else:
            m, ref, why = _reference(job, [a for a in self.against if a != CONTROL], store, need_bands=True)
            if ref is None:
                return Row("bands", job, "FAIL", detail=f"no fresh converged band reference ({why})")
            ref_bands = ref.bands
        err = band_errors(rec.bands, ref_bands)
        if not err["n"]:
            return Row("bands", job, "FAIL", reference=m, detail="no (k, band) in common with the reference")
        sigma, _ = _paired_sigma(rec.bands, ref_bands)
        limit = self.max_mae_mev + self.sigmas * sigma
        ok = err["mae_meV"] <= limit
        return Row("bands", job, "PASS" if ok else "FAIL",
                   value=f"MAE {err['mae_meV']:.1f}" + (f" ± {sigma:.1f}" if sigma else "") + f" meV (n={err['n']})",
                   limit=f"≤ {limit:.1f} meV", reference=m,
                   detail="" if ok else f"max {err['max_meV']:.1f} meV")


class VScoreGate(GateBase):
    kind: Literal["v_score"]
    max: float = Field(gt=0)
    applies_to: ClassVar[tuple[str, ...]] = ("nqs",)

    def evaluate(self, job, rec, store):
        v = rec.v_score
        if v is None or not math.isfinite(v):
            return Row("v_score", job, "FAIL", detail="no V-score in the record")
        ok = v <= self.max
        return Row("v_score", job, "PASS" if ok else "FAIL", value=f"{v:.2e}", limit=f"≤ {self.max:.2e}")


GATE_KINDS: dict[str, type[GateBase]] = {"energy": EnergyGate, "bands": BandGate, "v_score": VScoreGate}


def parse_gate(data: dict[str, Any] | str) -> GateBase:
    """A gate table (or its canonical JSON) → its model. Raises ValidationError or SuiteError."""
    if isinstance(data, str):
        import json

        data = json.loads(data)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in GATE_KINDS:
        raise SuiteError(f"kind {kind!r} is not a gate kind; choose one of {', '.join(GATE_KINDS)}")
    return GATE_KINDS[kind].model_validate(data)


def rows_frame(rows: list[Row]):
    import pandas as pd

    return pd.DataFrame([r.as_dict() for r in rows])
