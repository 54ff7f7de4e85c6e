"""Wall time of one suite with `--executor local --jobs N` against `--executor dask --jobs N`,
measured in one run on the same machine (issue 18: expect parity, overhead <= 5 %).

Each run starts from a fresh results folder (references copied from the committed cache, so
they are cache hits; the Hamiltonian cache is shared and warmed first), so both executors compute
the same records; the runs alternate (local, dask, local, dask, ...) to spread drifting load.

    .venv/bin/python benchmarks/executor_overhead.py                 # a small built-in suite
    .venv/bin/python benchmarks/executor_overhead.py --suite paper --repeat 1   # the issue's measurement (~hours)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SMALL = """
name = "small"
description = "executor overhead: H chain N_k = 2 and 4, NQS (exact sampling) on 6 geometries"
[[tasks]]
kind = "reference"
system = "h-chain"
kmesh = [1, 1, 2]
params = { d = [2.2, 2.6, 3.0] }
methods = ["exact", "hf"]
[[tasks]]
kind = "nqs"
system = "h-chain"
kmesh = [1, 1, 2]
params = { d = [2.2, 2.6, 3.0] }
steps = 150
[[tasks]]
kind = "nqs"
system = "h-chain"
kmesh = [1, 1, 4]
params = { d = [1.4, 1.8, 2.2] }
steps = 100
"""


def run(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default=None, help="a suite name or file (default: the small built-in one)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="runs per executor")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nqsbench-executors-"))
    suite = args.suite
    if suite is None:
        suite = str(work / "small.toml")
        Path(suite).write_text(SMALL)
    env = dict(os.environ, NQSBENCH_CACHE=os.environ.get("NQSBENCH_CACHE", str(work / "cache")))
    cli = [sys.executable, "-m", "nqsbench.cli"]
    refs = work / "references"          # a copy: nothing is written into the repository
    shutil.copytree(ROOT / "references", refs)
    # warm the Hamiltonian cache (one reference pass; its records are cache hits)
    run([*cli, "reference", "--suite", suite, "--references", str(refs)], env)
    times: dict[str, list[float]] = {"local": [], "dask": []}
    for i in range(args.repeat):
        for ex in ("local", "dask"):
            res = work / f"{ex}-{i}"
            wall, out = run([*cli, "suite", suite, "--executor", ex, "--jobs", str(args.jobs), "--no-progress",
                             "--results", str(res), "--references", str(refs)], env)
            times[ex].append(wall)
            print(f"{ex:5s} run {i}: {wall:7.1f} s   {out.strip().splitlines()[-1]}", flush=True)
    lo, da = min(times["local"]), min(times["dask"])
    print(f"\nsuite {Path(suite).stem}, --jobs {args.jobs}, best of {args.repeat} (load average "
          f"{os.getloadavg()[0]:.1f}): local {lo:.1f} s, dask {da:.1f} s, overhead {100 * (da - lo) / lo:+.1f} %")
    print(f"all runs: local {[round(t, 1) for t in times['local']]}, dask {[round(t, 1) for t in times['dask']]}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
