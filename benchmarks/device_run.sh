#!/bin/bash
# The GPU figures of benchmarks/results/h100-2026-11-27 (issue 14): correctness and throughput of
# the NQS core on JAX's default backend, and the same throughput on this machine's CPUs.
#
#   OUT=folder bash benchmarks/device_run.sh          (from the repository root)
#
# Needs jax (with its GPU plugin), flax, optax and nqsbench's other requirements importable with
# PYTHONPATH=. , and the Hamiltonians of the timed systems in $NQSBENCH_CACHE (build them on a
# machine with PySCF: `python benchmarks/system_throughput.py --sr-steps 0 --batch 8`). A GPU image
# without PySCF (the one this ran on) gets a stand-in `pyscf` module holding only the version
# string of the cache key: then a cache miss fails instead of building. Each stage has a time
# limit (T1..T4 seconds) so that the script fits a leased machine's slot.
PY=${PY:-python3}
SYSTEMS=${SYSTEMS:-"h-chain-k4 h-chain-k8 graphene-2x2x1 lih-2x2x2"}
: "${OUT:?set OUT to the folder for the results}"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} NQSBENCH_MEMORY_GB=${NQSBENCH_MEMORY_GB:-64}
if ! $PY -c "import pyscf" 2>/dev/null; then
  stub=$(mktemp -d); mkdir -p "$stub/pyscf/gto"
  echo "__version__ = '${PYSCF_VERSION:-2.14.0}'" > "$stub/pyscf/__init__.py"
  echo "from . import basis" > "$stub/pyscf/gto/__init__.py"
  printf 'def load(name, symbol):\n    return [[0, [1.0, 1.0]]]\n' > "$stub/pyscf/gto/basis.py"
  export PYTHONPATH=$PYTHONPATH:$stub
fi
nvidia-smi -L 2>/dev/null; nproc
$PY -c "import jax, flax, optax, numpy; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'numpy', numpy.__version__, jax.devices())"
echo "== 1 throughput, RBM, default backend"
timeout "${T1:-230}" $PY benchmarks/system_throughput.py --systems $SYSTEMS --json "$OUT/gpu_rbm.json" 2>&1 | tee "$OUT/gpu_rbm.log"
echo "== 2 correctness on the default backend: brute-force local energies, NNBF = HF determinant, LU"
timeout "${T2:-120}" $PY -m pytest -q -p no:cacheprovider tests/test_linalg.py tests/test_nqs_operator.py tests/test_models.py tests/test_nqs_memory.py -k "bruteforce or hf_determinant or linalg or compacted" 2>&1 | tee "$OUT/pytest.log" | tail -8
echo "== 3 throughput, NNBF, H chain N_k = 8"
timeout "${T3:-60}" $PY benchmarks/system_throughput.py --systems h-chain-k8 --model nnbf --sr-steps 2 --json "$OUT/gpu_nnbf.json" 2>&1 | tee "$OUT/gpu_nnbf.log"
echo "== 4 the same machine's CPUs"
JAX_PLATFORMS=cpu timeout "${T4:-100}" $PY benchmarks/system_throughput.py --systems h-chain-k8 graphene-2x2x1 --batch 256 --sr-steps 1 --json "$OUT/cpu_rbm.json" 2>&1 | tee "$OUT/cpu_rbm.log"
