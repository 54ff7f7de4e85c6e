"""DMRG on MPI (issue 18): block2's MPI build on 2 ranks gives the serial energy (1e-8 Ha) on
the H chain N_k = 4, and the rank count is a run option, not part of the record's identity.

Runs where an MPI launcher (``$NQSBENCH_MPIRUN``, default ``mpirun``) and a Python with
block2's MPI build (``$NQSBENCH_MPI_PYTHON``, default this one; extra ``dmrg-mpi``) exist, and
the serial block2 (extra ``dmrg``) is importable here; skipped elsewhere, saying which is missing.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from nqsbench import config


def _missing() -> str | None:
    try:
        import pyblock2  # noqa: F401
    except ImportError:
        return "serial block2 (extra 'dmrg') not installed"
    if shutil.which(shlex.split(config.mpirun())[0]) is None:
        return f"no MPI launcher {config.mpirun()!r} (apt-get install openmpi-bin libopenmpi-dev)"
    probe = subprocess.run([config.mpi_python(), "-c", "import block2, sys; sys.exit(0 if hasattr(block2.su2, "
                            "'MPICommunicator') else 1)"], capture_output=True)
    if probe.returncode != 0:
        return f"{config.mpi_python()} has no MPI build of block2 (extra 'dmrg-mpi'; or set NQSBENCH_MPI_PYTHON)"
    return None


MISSING = _missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.mark.slow      # ~60 s on 2 loaded cores (Hamiltonian, serial and MPI DMRG)
def test_dmrg_on_two_mpi_ranks_equals_serial(tmp_path, ham_factory):
    from nqsbench import catalog
    from nqsbench.methods import RunContext
    from nqsbench.records import read_record
    from nqsbench.store import Store

    geom = catalog.load("h-chain").geometry({"d": 1.8}, (1, 1, 4))
    ham = ham_factory("h-chain", (1, 1, 4), d=1.8)
    store = Store(tmp_path / "references", tmp_path / "results")
    serial = store.run("dmrg", geom, path=tmp_path / "serial.json", ham=ham).record
    par = store.run("dmrg", geom, path=tmp_path / "mpi.json", ham=ham, ctx=RunContext(options={"mpi": 2})).record
    assert serial.converged and par.converged
    assert serial.details["mpi_ranks"] == 1 and par.details["mpi_ranks"] == 2
    assert abs(par.energy_per_cell - serial.energy_per_cell) < 1e-8
    assert abs(par.details["e_variational_raw"] - serial.details["e_variational_raw"]) < 1e-8
    # the same record identity: a record made on 2 ranks is fresh for a serial request
    assert par.settings_hash == serial.settings_hash
    assert read_record(tmp_path / "mpi.json").settings == serial.settings
    assert store.status("dmrg", geom, path=tmp_path / "mpi.json").fresh
