"""The asv suite (benchmarks/benchmarks/bench_*.py) cannot rot: every benchmark runs once here,
on the smallest system, through the same hooks asv calls (setup_cache, setup, the benchmark,
teardown); `asv check` validates discovery when asv (extra 'bench') is installed. Timings are
not asserted here: they are what asv tracks."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import itertools
import math
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "benchmarks" / "benchmarks"
PREFIXES = ("time_", "track_")
REQUIRED = {"time_build", "time_ground_state", "time_local_energy", "time_sweep", "time_sr_step",
            "track_local_energies_per_second", "track_samples_per_second", "track_energy_error",
            "time_band_subspace", "time_band_subspace_mc"}


def load_suite(systems: str | None):
    """Import the suite as a fresh package (unique name) with NQSBENCH_BENCH_SYSTEMS=systems."""
    old = os.environ.get("NQSBENCH_BENCH_SYSTEMS")
    if systems is None:
        os.environ.pop("NQSBENCH_BENCH_SYSTEMS", None)
    else:
        os.environ["NQSBENCH_BENCH_SYSTEMS"] = systems
    try:
        name = f"nqsbench_asv_{uuid.uuid4().hex[:8]}"
        spec = importlib.util.spec_from_file_location(name, SUITE / "__init__.py",
                                                      submodule_search_locations=[str(SUITE)])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[name] = pkg
        spec.loader.exec_module(pkg)
        mods = [importlib.import_module(f"{name}.{p.stem}") for p in sorted(SUITE.glob("bench_*.py"))]
        common = importlib.import_module(f"{name}.common")
    finally:
        if old is None:
            os.environ.pop("NQSBENCH_BENCH_SYSTEMS", None)
        else:
            os.environ["NQSBENCH_BENCH_SYSTEMS"] = old
    return common, mods


def benchmarks(mods):
    """(class, method name) for every benchmark defined in the bench modules (asv's prefixes)."""
    out = []
    for mod in mods:
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ != mod.__name__:
                continue
            out += [(cls, m) for m in dir(cls) if m.startswith(PREFIXES) and callable(getattr(cls, m))]
    return out


def test_default_parameters_cover_the_issue_systems():
    common, mods = load_suite(None)
    assert common.PARAMS == ["h-chain-k4", "h-chain-k6", "graphene-G", "lih-G",
                             "h-chain-k8", "graphene-2x2x1", "lih-2x2x2"]
    names = {m for _, m in benchmarks(mods)}
    missing = REQUIRED - names
    assert not missing, f"benchmarks missing from the suite: {missing}"
    for cls, m in benchmarks(mods):
        if m.startswith("track_"):
            assert getattr(getattr(cls, m), "unit", None), f"{cls.__name__}.{m} has no unit"
        assert cls.param_names == ["system"] and cls.params == [common.PARAMS]


def test_unknown_system_is_rejected():
    with pytest.raises(ValueError, match="NQSBENCH_BENCH_SYSTEMS"):
        load_suite("lih-G,no-such-system")


def test_every_benchmark_runs_once_on_the_smallest_system():
    common, mods = load_suite(None)
    small = common.SMALLEST
    common, mods = load_suite(small)
    caches: dict = {}
    ran = []
    for cls, name in benchmarks(mods):
        obj = cls()
        args = []
        sc = getattr(cls, "setup_cache", None)
        if sc is not None:
            key = (inspect.getsourcefile(sc), inspect.getsourcelines(sc)[1])   # asv's sharing key
            if key not in caches:
                caches[key] = sc(obj)
            args.append(caches[key])
        for param in itertools.product(*cls.params):
            assert param == (small,)
            if hasattr(obj, "setup"):
                obj.setup(*args, *param)
            try:
                value = getattr(obj, name)(*args, *param)
            finally:
                if hasattr(obj, "teardown"):
                    obj.teardown(*args, *param)
            if name.startswith("track_"):
                assert isinstance(value, float) and math.isfinite(value), (name, value)
                if name.endswith("per_second"):
                    assert value > 0
            else:
                assert value is None
            ran.append(name)
    assert REQUIRED <= set(ran)


@pytest.mark.skipif(importlib.util.find_spec("asv") is None, reason="asv not installed (extra 'bench')")
def test_asv_check_discovers_the_suite():
    asv = shutil.which("asv", path=str(Path(sys.executable).parent)) or shutil.which("asv")
    env = dict(os.environ, NQSBENCH_BENCH_SYSTEMS="lih-G")
    out = subprocess.run([asv, "check", "--python=same"], cwd=ROOT / "benchmarks", env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("asv") is None, reason="asv not installed (extra 'bench')")
def test_asv_quick_run_on_the_smallest_system():
    """What a developer runs: every benchmark once through asv itself (~1 min)."""
    asv = shutil.which("asv", path=str(Path(sys.executable).parent)) or shutil.which("asv")
    env = dict(os.environ, NQSBENCH_BENCH_SYSTEMS="lih-G")
    subprocess.run([asv, "machine", "--yes"], cwd=ROOT / "benchmarks", env=env, capture_output=True)
    out = subprocess.run([asv, "run", "--python=same", "--quick", "--dry-run", "--show-stderr"],
                         cwd=ROOT / "benchmarks", env=env, capture_output=True, text=True, timeout=900)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "failed" not in text.lower(), text
    for name in REQUIRED:
        assert name in text, f"{name} did not run:\n{text}"


def test_beyond_tier_local_energy_runs_and_exact_only_benchmarks_skip():
    """The beyond tier is an asv parameter (H chain N_k = 8 here, the cheapest): local energies
    at the planned chunk; SR steps and exact energies skip it (NotImplementedError: asv's skip)."""
    common, mods = load_suite("h-chain-k8")
    label = "h-chain-k8"
    assert label in common.BEYOND
    paths = common.warm_hamiltonians()
    nqs = next(m for m in mods if m.__name__.endswith("bench_nqs"))
    le = nqs.LocalEnergy()
    le.setup(paths, label)
    assert le.track_local_energies_per_second(paths, label) > 0
    for cls in (nqs.SRStep, nqs.EnergyError):
        with pytest.raises(NotImplementedError, match="beyond the exact tier"):
            cls().setup(paths, label)
