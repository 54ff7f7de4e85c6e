"""Where a suite's tasks run: in this process, in a local process pool, or on Dask.

A *task* is the jobs of one geometry, run in order inside one call (references, then NQS, then
bands: a later job reads the records of the earlier ones); tasks are independent. The suite
runner (:func:`nqsbench.suites.run_suite`) hands every executor the same things: the tasks, a
picklable ``work(jobs, hooks=None) -> outcomes`` (hooks by keyword) that computes and writes the records through
the one record store (claims, freshness, atomic writes: :mod:`nqsbench.store`), and callbacks
``done(task, outcomes)`` / ``died(task, reason)`` run in the driver as each task ends. So every
executor writes the same records; only the place where ``work`` runs differs.

- :class:`LocalExecutor` (``--executor local``, the default): ``--jobs 1`` runs in this process
  (per-step progress); ``--jobs N`` a spawned process pool of one BLAS/XLA thread per worker.
- :class:`DaskExecutor` (``--executor dask``, extra ``dask``): every task is a future on a
  ``LocalCluster`` of ``--jobs`` single-threaded worker processes, or on an existing cluster
  (``--scheduler ADDRESS``: dask-jobqueue on Slurm/PBS, dask-mpi, ``dask scheduler`` by hand).
  A task whose worker dies is rescheduled up to :data:`RETRIES` times and then reported as
  failed with the reason; a task's ``resources`` (from the suite's ``resources`` table) become
  Dask worker resources where the cluster's workers declare them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import NqsbenchError

__all__ = ["Task", "Executor", "LocalExecutor", "DaskExecutor", "make_executor", "EXECUTORS", "RETRIES",
           "single_thread_env", "worker_init"]

RETRIES = 2          # a task is tried at most 1 + RETRIES times (worker deaths and escaped errors)


class ExecutorError(NqsbenchError):
    """An executor cannot start (missing extra, unreachable scheduler, bad option)."""


@dataclass
class Task:
    """One unit of work: ``items`` (a geometry's jobs) run in order by one worker."""
    key: str
    items: list
    resources: dict[str, float] = field(default_factory=dict)


def single_thread_env() -> dict[str, str]:
    """One BLAS/OpenMP/XLA thread: N single-threaded workers on N cores, no oversubscription."""
    env = {var: "1" for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                        " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    return env


def worker_init() -> None:
    """Process-pool initializer: :func:`single_thread_env` (before JAX or BLAS are loaded)."""
    os.environ.update(single_thread_env())


Done = Callable[[Task, list], None]
Died = Callable[[Task, str], None]


class Executor:
    """Run ``work(task.items, hooks)`` for every task; call ``done`` or ``died`` for each."""
    name = "executor"

    def describe(self, n_tasks: int) -> str:
        return self.name

    def run(self, tasks: list[Task], work: Callable, hooks: Any, done: Done, died: Died,
            echo: Callable[[str], None] = print) -> None:
        raise NotImplementedError


class LocalExecutor(Executor):
    """This machine: in-process for one job at a time, else a spawned process pool."""
    name = "local"

    def __init__(self, n_jobs: int = 1):
        self.n_jobs = max(int(n_jobs), 1)

    def in_process(self, n_tasks: int) -> bool:
        return self.n_jobs <= 1 or n_tasks <= 1

    def describe(self, n_tasks: int) -> str:
        return "1 process" if self.in_process(n_tasks) else f"{min(self.n_jobs, n_tasks)} workers"

    def run(self, tasks, work, hooks, done, died, echo=print):
        if self.in_process(len(tasks)):
            for t in tasks:
                done(t, work(t.items, hooks=hooks))
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, never fork: JAX (threads, XLA state) is not fork-safe
        with ProcessPoolExecutor(max_workers=self.n_jobs, mp_context=mp.get_context("spawn"),
                                 initializer=worker_init) as pool:
            futs = {pool.submit(work, t.items): t for t in tasks}
            for fut in as_completed(futs):
                t = futs[fut]
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker died (e.g. out of memory)
                    died(t, f"worker died: {type(exc).__name__}: {exc}")
                else:
                    done(t, res)


class DaskExecutor(Executor):
    """dask.distributed: a ``LocalCluster`` of ``n_jobs`` single-threaded workers, or the
    cluster at ``scheduler`` (an address such as ``tcp://host:8786``, or a scheduler file)."""
    name = "dask"

    def __init__(self, n_jobs: int = 1, scheduler: str | None = None, retries: int = RETRIES):
        self.n_jobs, self.scheduler, self.retries = max(int(n_jobs), 1), scheduler, retries

    def describe(self, n_tasks: int) -> str:
        return f"dask at {self.scheduler}" if self.scheduler else f"dask, {self.n_jobs} local workers"

    def _client(self, echo):
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise ExecutorError("--executor dask needs dask.distributed: install the optional extra with "
                                "`pip install -e '.[dask]'` (or `pip install distributed`)") from None
        # a task is rescheduled when its worker dies, at most `retries` times (then KilledWorker)
        dask.config.set({"distributed.scheduler.allowed-failures": self.retries})
        if self.scheduler:
            try:
                if os.path.isfile(self.scheduler):
                    client = Client(scheduler_file=self.scheduler, timeout="30s")
                else:
                    client = Client(self.scheduler, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(f"--scheduler {self.scheduler}: cannot connect ({exc}); start the cluster "
                                    "first or fix the address (tcp://HOST:8786 or a scheduler file)") from None
            echo(f"dask: connected to {self.scheduler}; dashboard {client.dashboard_link}")
            return client, None
        # dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536: glibc then hands freed
        # memory back to the OS at every large free, which made NQS steps 14 % slower (H chain
        # N_k = 4, 100 steps: 11.0 s in a worker against 9.6 s); keep glibc's default
        environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                   if k != "MALLOC_TRIM_THRESHOLD_"}
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ})
        cluster = LocalCluster(n_workers=self.n_jobs, threads_per_worker=1, processes=True,
                               dashboard_address=None, env=single_thread_env())
        return Client(cluster), cluster

    @staticmethod
    def _worker_resources(client) -> dict[str, float]:
        """The largest amount of each resource any worker declares (``dask worker --resources``)."""
        out: dict[str, float] = {}
        for w in client.scheduler_info().get("workers", {}).values():
            for k, v in (w.get("resources") or {}).items():
                out[k] = max(out.get(k, 0.0), float(v))
        return out

    def run(self, tasks, work, hooks, done, died, echo=print):
        from distributed import as_completed

        client, cluster = self._client(echo)
        try:
            have = self._worker_resources(client)
            futs = {}
            dropped = set()
            for t in tasks:
                # only resources the workers declare: a task asking for one no worker has would
                # wait forever (a LocalCluster declares none; hints are for real clusters)
                res = {k: v for k, v in t.resources.items() if k in have}
                dropped |= {k for k in t.resources if k not in have}
                too_big = {k: v for k, v in res.items() if v > have[k]}
                if too_big:
                    died(t, f"asks for {too_big} but the largest worker has "
                            f"{ {k: have[k] for k in too_big} }; start bigger workers")
                    continue
                fut = client.submit(work, t.items, key=f"nqsbench-{t.key}", pure=False,
                                    retries=self.retries, resources=res or None)
                futs[fut] = t
            if dropped and self.scheduler:
                echo(f"dask: no worker declares {sorted(dropped)}: those resource hints are ignored "
                     "(start workers with --resources, see README)")
            for fut in as_completed(futs):
                t = futs[fut]
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - KilledWorker after the retries, or an escaped error
                    died(t, f"{type(exc).__name__}: {exc} (after at most {self.retries} retries)")
                else:
                    done(t, res)
                fut.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


EXECUTORS = {"local": LocalExecutor, "dask": DaskExecutor}


def make_executor(name: str = "local", n_jobs: int = 1, scheduler: str | None = None) -> Executor:
    """The executor named on the command line (``--executor``)."""
    if name not in EXECUTORS:
        raise ExecutorError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    if scheduler and name != "dask":
        raise ExecutorError("--scheduler applies to --executor dask only; add --executor dask or remove it")
    return DaskExecutor(n_jobs, scheduler) if name == "dask" else LocalExecutor(n_jobs)
