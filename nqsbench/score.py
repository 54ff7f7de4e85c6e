"""``nqsbench score FILE…``: results of other codes, validated, stored and gated.

For every submission (:class:`~nqsbench.methods.external.Submission`, JSON Schema in
``schemas/submission.schema.json``): parse it (one-line error naming the file and field), build
its geometry from the catalog, check ``instance_sha256`` when given against the instance hash of
this store's Hamiltonian (:func:`nqsbench.export.instance_sha256`, what ``nqsbench export`` puts in
the manifest). Every file is checked before anything is written. Then each is stored as an
``external`` record (the ``external`` method converts the convention to ewald) and gated: the
energy gate against the best available reference (exact, then DMRG, then CCSD(T): the first
fresh, converged one), and, when bands are given, the band gate against exact (then EOM-CCSD).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import catalog
from .errors import CatalogError
from .export import REFERENCE_ORDER, instance_sha256
from .gates import BandGate, EnergyGate, Row
from .methods import RunContext
from .methods.external import Submission, SubmissionError, read_submission, settings_of
from .store import Store
from .units import CHEMICAL_ACCURACY_MHA, HARTREE_TO_MEV

BAND_REFERENCES = ("exact", "eom_ccsd")
BAND_MAE_MEV = CHEMICAL_ACCURACY_MHA * 1e-3 * HARTREE_TO_MEV     # 43.5 meV: 1.6 mHa of an energy difference


@dataclass
class ScoreJob:
    """What a gate needs of a job (the attributes of :class:`nqsbench.suites.Job` it reads)."""
    geom: catalog.Geometry
    path: Path
    reference_settings: tuple = ()           # references with their default settings

    @property
    def system(self) -> str:
        return self.geom.spec.id

    @property
    def params(self):
        return tuple(sorted(self.geom.params.items()))

    @property
    def kmesh(self):
        return self.geom.kmesh

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Scored:
    file: Path
    submission: Submission
    path: Path                      # the external record written
    record: object
    rows: list[Row] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.status != "FAIL" for r in self.rows)


@dataclass
class _Checked:
    file: Path
    sub: Submission
    sha: str
    geom: catalog.Geometry
    ham: object
    instance_checked: bool


def check_submission(path: str | Path) -> _Checked:
    """Parse, build the geometry and check the instance hash (SubmissionError on any problem)."""
    from .build import get_hamiltonian

    path = Path(path)
    sub, sha = read_submission(path)
    try:
        spec = catalog.load(sub.system)
    except CatalogError as exc:
        raise SubmissionError(f"{path}: field 'system': {exc}") from None
    try:
        geom = spec.geometry(sub.params, sub.kmesh)
    except CatalogError as exc:
        field_ = "kmesh" if "mesh" in str(exc) else "params"
        raise SubmissionError(f"{path}: field '{field_}': {exc}") from None
    ham = get_hamiltonian(geom)
    checked = False
    if sub.instance_sha256 is not None:
        have = instance_sha256(ham)
        if sub.instance_sha256 != have:
            raise SubmissionError(
                f"{path}: field 'instance_sha256': {sub.instance_sha256[:16]}… is not the instance "
                f"{geom.label()} this store exports ({have[:16]}…); solve the instance of "
                "`nqsbench export` here (manifest.json instance_sha256), or omit the field")
        checked = True
    return _Checked(path, sub, sha, geom, ham, checked)


def score(files, store: Store | None = None, tolerance_mha: float = CHEMICAL_ACCURACY_MHA,
          band_mae_mev: float = BAND_MAE_MEV, sigmas: float = 2.0) -> list[Scored]:
    """Validate every file (nothing written when one is invalid), store each as an external
    record, gate it. Raises SubmissionError (one line) on an invalid file."""
    store = store or Store.default()
    checked = [check_submission(f) for f in files]
    seen: dict[Path, Path] = {}
    for c in checked:
        target = store.path("external", c.geom, settings_of(c.sub))
        if target in seen:
            raise SubmissionError(f"{c.file}: field 'method': {c.sub.method!r} on {c.geom.label()} is also "
                                  f"submitted by {seen[target]}; give each submission its own method name")
        seen[target] = c.file
    energy = EnergyGate(kind="energy", against=list(REFERENCE_ORDER), tolerance_mha=tolerance_mha, sigmas=sigmas)
    bands = BandGate(kind="bands", against=list(BAND_REFERENCES), max_mae_mev=band_mae_mev, sigmas=sigmas)
    out = []
    for c in checked:
        ctx = RunContext(options={"submission": c.sub, "file": c.file.name, "sha256": c.sha,
                                  "instance_checked": c.instance_checked})
        res = store.run("external", c.geom, settings_of(c.sub), ctx=ctx, ham=c.ham, force=True)
        job = ScoreJob(c.geom, res.path)
        rows = [energy.evaluate(job, res.record, store)]
        if c.sub.bands:
            rows.append(bands.evaluate(job, res.record, store))
        out.append(Scored(c.file, c.sub, res.path, res.record, rows))
    return out
