"""The wheel ships the data: installed from the wheel (no checkout, no editable install), nqsbench
finds its catalog, suites and committed reference cache inside the installed package.

The wheel is built offline from a copy of the sources (``pip wheel --no-build-isolation``; an
in-tree build would reuse ``build/lib``, where stale modules survive, and would race with a
build in the checkout). It is installed into a fresh venv whose only link to the development
venv is a ``deps.pth`` naming its site-packages: a path line of a ``.pth`` file is appended to
``sys.path``, but the ``.pth`` files inside that folder are not processed, so the development
venv's editable-install finder (``__editable__.nqsbench-*.pth``) stays inactive and
``import nqsbench`` can only find the installed wheel. The commands run from an empty folder,
with every ``NQSBENCH_*`` variable unset except a private ``NQSBENCH_CACHE``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the wheel is built from (the sdist's content): the project files, the package (whose
# nqsbench/data/* are relative links to the top-level data folders) and those folders.
SOURCES = ["pyproject.toml", "README.md", "nqsbench", "systems", "suites", "references"]
SYSTEMS = {"h-chain", "lih", "graphene", "polyacetylene"}


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, run): a fresh venv with the wheel installed, and a runner of commands inside it."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--quiet", "-w", wheels, src])
    (wheel,) = wheels.glob("nqsbench-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # Install before deps.pth exists: pip then does not see the development venv's nqsbench
    # distribution (it would offer to uninstall it as an older version).
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel]
    if subprocess.run([sys.executable, "-m", "pip", "--python", python, "--version"],
                      capture_output=True).returncode != 0:                  # pip < 22.3: no --python
        pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", site, wheel]
    _run(pip)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    script = venv / "bin" / "nqsbench"
    nqsbench = [script] if script.exists() else [python, "-c", "import sys; from nqsbench.cli import app; "
                                                               "sys.argv[0] = 'nqsbench'; sys.exit(app())"]
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NQSBENCH_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(NQSBENCH_CACHE=str(tmp / "cache"), COLUMNS="200", NO_COLOR="1")

    def run(*args, nqs=True, check=True):
        cmd = [str(c) for c in ((nqsbench if nqs else [python]) + list(args))]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
        if check:
            assert out.returncode == 0, f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        return out

    return venv, run


def test_wheel_contains_the_data(installed):
    venv, _ = installed
    (pkg,) = venv.glob("lib/python*/site-packages/nqsbench")
    data = pkg / "data"
    assert {p.stem for p in (data / "systems").glob("*.toml")} >= SYSTEMS
    assert (data / "suites" / "quick.toml").is_file()
    assert len(list((data / "references").rglob("*.json"))) == len(list((ROOT / "references").rglob("*.json")))
    assert not any(p.is_symlink() for p in data.iterdir())       # real folders, not the checkout's links


def test_only_the_installed_package_is_importable(installed):
    venv, run = installed
    out = run("-c", "import sys, nqsbench, nqsbench.config as c\n"
                    "print(nqsbench.__file__); print(c.systems_dir()); print(c.suites_dir())\n"
                    "print(c.references_dir()); print(c.source_root())\n"
                    "print(sorted(type(f).__module__ for f in sys.meta_path))", nqs=False)
    init, systems, suites, references, source_root, finders = out.stdout.splitlines()
    for path in (init, systems, suites, references):
        assert Path(path).resolve().is_relative_to(venv.resolve()), (path, out.stdout)
        assert not Path(path).resolve().is_relative_to(ROOT), (path, out.stdout)
    assert source_root == "None"                      # the installed package is not a checkout
    assert "__editable__" not in finders, finders     # the dev venv's editable finder is inactive


def test_list_finds_the_packaged_catalog(installed):
    _, run = installed
    out = run("list").stdout
    listed = {line.split("│")[1].strip() for line in out.splitlines() if line.count("│") > 2}
    assert SYSTEMS <= listed, out


def test_suite_dry_run_finds_the_packaged_suite_and_references(installed):
    """``suite quick --dry-run`` loads the packaged suite and sees the packaged reference cache:
    every reference record of the suite is fresh; only NQS runs (results are not shipped) remain."""
    _, run = installed
    out = run("suite", "quick", "--dry-run", check=False)
    assert out.returncode == 0, f"exit {out.returncode}:\n{out.stdout}\n{out.stderr}"
    lines = out.stdout.splitlines()
    fresh = [ln for ln in lines if ln.startswith("fresh ")]
    todo = [ln for ln in lines if ln.startswith("run ")]
    assert fresh, out.stdout
    for system in ("h-chain", "lih", "graphene"):
        assert any(ln.split()[1] == system and ln.split()[-1] in ("exact", "hf") for ln in fresh), out.stdout
    assert all(" nqs-" in ln for ln in todo), todo    # no reference record missing or stale
