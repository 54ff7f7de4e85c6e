"""The models' determinants: a log-determinant that cannot deadlock XLA's CPU thread pool.

Why not always ``jnp.linalg.slogdet``: on CPU it is a ``lapack_zgetrf_ffi`` call that splits its
batch over XLA's intra-op thread pool (``ParallelBatchMap``) and blocks until that work is done. When
the thunk executor runs two such calls at once on a pool of two threads (NNBF's determinants of
the sample and of its connections, 2 CPUs), each call's waiting thread holds a pool thread the
other call's batch work needs: the process wedges at 0 % CPU (native stacks in the session-12
note; cf. PyAutoLabs/PyAutoFit#1530). Pool workers are pinned to one CPU for that reason, but an
in-process run on a machine with several cores is not. Gaussian elimination written as array
operations is fused by XLA like any other elementwise work and never waits on the pool.

It is 1.6× slower than LAPACK at n = 16 (faster at n = 8), so :func:`log_det` keeps LAPACK
where the deadlock cannot happen: on an accelerator, and in a process that may run on one CPU
only (XLA sizes its pool from the CPUs a process may use when it starts: suite and sector-pool
workers, ``taskset -c N``).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp


@functools.lru_cache(maxsize=1)
def lapack_is_safe() -> bool:
    """Whether LAPACK's batched kernels cannot deadlock here: not on the CPU backend, or XLA's
    CPU pool has one thread because this process may use one CPU only."""
    if jax.default_backend() != "cpu":
        return True
    try:
        return len(os.sched_getaffinity(0)) == 1
    except (AttributeError, OSError):          # not Linux: no affinity to read, assume several
        return False


def log_det(a, lapack: bool | None = None):
    """log det of a batch (…, n, n) of small complex matrices, holomorphic in ``a``: LAPACK's
    ``slogdet`` where :func:`lapack_is_safe` (or ``lapack=True``), else :func:`lu_log_det`."""
    if lapack if lapack is not None else lapack_is_safe():
        sign, logabs = jnp.linalg.slogdet(a)
        return jnp.log(sign) + logabs
    return lu_log_det(a)


def lu_log_det(a):
    """log det of a batch (…, n, n) of small complex matrices: LU with partial pivoting (the
    algorithm of LAPACK's getrf), unrolled over the n columns at trace time, each step on the
    trailing submatrix only. The result is Σ log(pivot) + iπ·(row swaps), a holomorphic function
    of ``a`` (stochastic reconfiguration differentiates it with ``holomorphic=True``), equal to
    ``log(sign) + logabs`` of ``slogdet`` modulo 2πi; an exactly singular matrix gives −∞ (ψ = 0,
    as ``slogdet``'s sign 0: NNBF's HF start has zero rows at the empty orbitals). Meant for the
    models' determinants (n = number of electrons, ≤ a few tens). The batch is moved to the last
    axis, so that every step is elementwise work vectorized over it, and the row swap is a one-hot
    sum instead of a gather (which was 2× slower): NNBF local energies 1.25× faster than through
    LAPACK at n = 8, 1.6× slower at n = 16 (``benchmarks/nqs_throughput.py --model nnbf``)."""
    a = jnp.asarray(a)
    n = a.shape[-1]
    batch = a.shape[:-2]
    b = jnp.moveaxis(a.reshape((-1, n, n)), 0, -1)                    # (n, n, B)
    logdet = jnp.zeros(b.shape[-1], a.dtype)
    for m in range(n, 0, -1):
        col = b[:, 0, :]
        p = jnp.argmax(jnp.abs(col.real) + jnp.abs(col.imag), axis=0)  # (B,) pivot row (1-norm, as LAPACK's izamax)
        onehot = (jnp.arange(m)[:, None] == p[None, :]).astype(b.dtype)  # (m, B)
        row_p = jnp.sum(onehot[:, None, :] * b, axis=0)                # (m, B)
        singular = row_p[0] == 0                                       # the whole column is zero: det = 0
        pivot = jnp.where(singular, 1.0, row_p[0])                     # (no 0/0 in the later steps)
        logdet = logdet + jnp.where(singular, -jnp.inf, jnp.log(pivot)) + jnp.where(p != 0, 1j * jnp.pi, 0.0)
        if m > 1:
            rest = b[1:] + onehot[1:, None, :] * (b[0] - row_p)[None]   # rows 1…m−1 after swapping 0 and p
            b = rest[:, 1:] - (rest[:, 0] / pivot)[:, None, :] * row_p[None, 1:]
    return logdet.reshape(batch)
