"""A new reference method is one file plus one registry line (issue 12): a toy method, defined
here and registered with ``register``, runs through ``suite``, ``check`` and ``table`` with no
other change anywhere. It reads the exact record through a declared dependency and reports
E_exact + ``shift_mha``, so the energy gate must pass at +1.0 mHa/cell and fail at +3.0."""
from __future__ import annotations

import shutil
from io import StringIO
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
from typer.testing import CliRunner

from nqsbench.cli import app
from nqsbench.methods import Dependency, Method, registry
from nqsbench.records import MethodSettings, ReferenceRecord, _SETTINGS

ROOT = Path(__file__).resolve().parent.parent


class ToySettings(MethodSettings):
    method: Literal["toy"] = "toy"
    shift_mha: float = 1.0


class Toy(Method):
    """Exact energy plus a constant: a stand-in for any new reference method."""
    name = "toy"
    Settings = ToySettings
    summary = "exact energy + shift (test plug-in)"
    record_model = ReferenceRecord

    def dependencies(self, settings, label=None):
        return [Dependency("exact", "exact")]

    def run(self, geom, ham, settings, ctx):
        exact = ctx.inputs["exact"][1]
        shift = settings.shift_mha * 1e-3
        return ReferenceRecord(method=self.name, **self.common_fields(geom, ham), settings=settings, converged=True,
                               energy_per_cell=exact.energy_per_cell + shift,
                               energy_per_cell_raw=exact.energy_per_cell_raw + shift, e_hf_per_cell=ham.e_hf)


SUITE = """
name = "toy"
description = "a plug-in reference method gated against exact"
[[tasks]]
kind = "reference"
system = "h-chain"
kmesh = [1, 1, 2]
params = { d = 2.2 }
methods = ["exact", "toy"]
gates = [{ kind = "energy", against = ["exact"] }]
"""


@pytest.fixture
def toy():
    registry.register(Toy)                       # the one registry line
    try:
        yield Toy
    finally:
        registry._METHODS.pop("toy", None)
        _SETTINGS.models.pop("toy", None)


def test_toy_method_runs_through_suite_check_and_table(toy, tmp_path, monkeypatch):
    shutil.copytree(ROOT / "references" / "h-chain" / "d2.2_k1x1x2", tmp_path / "references" / "h-chain" / "d2.2_k1x1x2")
    (tmp_path / "toy.toml").write_text(SUITE)
    roots = ["--references", str(tmp_path / "references"), "--results", str(tmp_path / "results")]
    runner = CliRunner()
    res = runner.invoke(app, ["suite", str(tmp_path / "toy.toml"), "--no-progress", *roots])
    assert res.exit_code == 0 and "1 computed" in res.output, res.output
    record = tmp_path / "references" / "h-chain" / "d2.2_k1x1x2" / "toy.json"
    assert record.is_file()
    res = runner.invoke(app, ["check", str(tmp_path / "toy.toml"), *roots], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "+1.000" in res.output and "all pass" in res.output, res.output
    res = runner.invoke(app, ["table", *roots])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(StringIO(res.stdout))
    row = df[df["method"] == "toy"].iloc[0]
    assert row["delta_vs_exact_mha"] == pytest.approx(1.0, abs=1e-9)
    # the same method with other settings: the record is stale, recomputed, and now fails its gate
    monkeypatch.setattr(ToySettings.model_fields["shift_mha"], "default", 3.0)
    ToySettings.model_rebuild(force=True)
    assert toy().default_settings().shift_mha == 3.0
    res = runner.invoke(app, ["check", str(tmp_path / "toy.toml"), *roots], env={"COLUMNS": "250"})
    assert res.exit_code == 1 and "settings differ: shift_mha 1.0 ≠ 3.0" in res.output, res.output
    res = runner.invoke(app, ["suite", str(tmp_path / "toy.toml"), "--no-progress", *roots])
    assert res.exit_code == 0 and "1 computed" in res.output, res.output
    res = runner.invoke(app, ["check", str(tmp_path / "toy.toml"), *roots], env={"COLUMNS": "250"})
    assert res.exit_code == 1 and "+3.000" in res.output and "FAIL" in res.output, res.output
