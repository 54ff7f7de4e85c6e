"""Every committed record validates against its schema; exported schemas are current."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nqsbench.errors import RecordError
from nqsbench.records import BandRecord, ExternalRecord, ReferenceRecord, ResultRecord, read_record

ROOT = Path(__file__).resolve().parent.parent


def test_committed_reference_records_validate():
    paths = sorted((ROOT / "references").rglob("*.json"))
    assert len(paths) >= 96           # the H-chain part of the default cache alone
    for p in paths:
        rec = read_record(p)
        assert rec.converged == (rec.failure is None)
        assert p.parent.parent.name == rec.system and p.stem == rec.method


@pytest.mark.parametrize("name,model", [("reference-record", ReferenceRecord), ("result-record", ResultRecord),
                                        ("band-record", BandRecord), ("external-record", ExternalRecord)])
def test_record_schema_files_are_current(name, model):
    committed = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())
    assert committed == json.loads(json.dumps(model.model_json_schema())), "run `nqsbench schema`"


def test_corrupt_record_is_named(tmp_path):
    bad = tmp_path / "exact.json"
    bad.write_text('{"method": "exact"}')
    with pytest.raises(RecordError, match=f"{bad}: invalid record: field"):
        read_record(bad)
