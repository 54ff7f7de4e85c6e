"""Where a suite's tasks run: in this process, in a local process pool, or on Dask.

A *task* is the jobs of one geometry, run in order inside one call (references, then NQS, then
bands: a later job reads the records of the earlier ones); tasks are independent. The suite
runner (:func:`nqsbench.suites.run_suite`) hands every executor the same things: the tasks, a
picklable ``work(jobs, hooks=None) -> outcomes`` (hooks by keyword) that computes and writes the records through
the one record store (claims, freshness, atomic writes: :mod:`nqsbench.store`), and callbacks
``done(task, outcomes)`` / ``died(task, reason)`` run in the driver as each task ends. So every
executor writes the same records; only the place where ``work`` runs differs.

- :class:`LocalExecutor` (``--executor local``, the default): ``--jobs 1`` runs in this process
  (per-step progress); ``--jobs N`` one spawned process per task (one BLAS/XLA thread each), N at
  a time, watched: a stalled or dead one is retried from its checkpoint (``--task-timeout``).
- :class:`DaskExecutor` (``--executor dask``, extra ``dask``): every task is a future on a
  ``LocalCluster`` of ``--jobs`` single-threaded worker processes, or on an existing cluster
  (``--scheduler ADDRESS``: dask-jobqueue on Slurm/PBS, dask-mpi, ``dask scheduler`` by hand).
  A task whose worker dies, or that runs past its timeout (its stack printed, its worker
  restarted), is rescheduled up to :data:`RETRIES` times and then reported as failed with the
  reason; a task's ``resources`` (from the suite's ``resources`` table) become
  Dask worker resources where the cluster's workers declare them.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import pin_to_one_cpu, single_thread_env, worker_init
from .errors import NqsbenchError

__all__ = ["Task", "Executor", "LocalExecutor", "DaskExecutor", "make_executor", "EXECUTORS", "RETRIES",
           "single_thread_env", "worker_init"]

RETRIES = 2          # a task is tried at most 1 + RETRIES times (worker deaths and escaped errors)
EXIT_GRACE_S = 10.0  # how long a task process that has sent its result may take to exit


class ExecutorError(NqsbenchError):
    """An executor cannot start (missing extra, unreachable scheduler, bad option)."""


@dataclass
class Task:
    """One unit of work: ``items`` (a geometry's jobs) run in order by one worker; ``timeout_s``:
    how long a worker may take before it counts as stalled (None: no limit)."""
    key: str
    items: list
    resources: dict[str, float] = field(default_factory=dict)
    timeout_s: float | None = None


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
    """This machine: in this process with ``n_jobs = 1`` (per-step progress, no watchdog), else
    one spawned process per task, ``n_jobs`` at a time, each with a watchdog.

    A task whose process dies (out of memory, a kill) or gives no result within its
    ``timeout_s`` is retried, at most :data:`RETRIES` times; the retry resumes from the
    run's last checkpoint. Before a stalled process is killed, its Python stacks go to stderr
    (``faulthandler`` on SIGUSR1): an XLA CPU call that never returned wedged a quick-suite
    worker for over an hour on a CI machine (that NNBF Markov-chain job, at 0 % CPU), so a stall
    is reported and survived, never waited out. Its cause, found later from native stacks: two
    batched LU kernels deadlocked in XLA's intra-op pool of two threads; each worker now runs
    on one CPU (:func:`~nqsbench.config.pin_to_one_cpu`), which gives that pool one thread."""
    name = "local"

    def __init__(self, n_jobs: int = 1, retries: int = RETRIES, exit_grace_s: float = EXIT_GRACE_S):
        self.n_jobs, self.retries, self.exit_grace_s = max(int(n_jobs), 1), retries, exit_grace_s

    def in_process(self) -> bool:
        return self.n_jobs <= 1

    def describe(self, n_tasks: int) -> str:
        return "1 process" if self.in_process() else f"{min(self.n_jobs, n_tasks)} workers"

    def run(self, tasks, work, hooks, done, died, echo=print):
        if self.in_process():
            for t in tasks:
                done(t, work(t.items, hooks=hooks))
            return
        import multiprocessing as mp
        from collections import deque
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")          # spawn, never fork: JAX (threads, XLA state) is not fork-safe
        queue = deque((t, 0) for t in tasks)    # (task, tries so far)
        running: dict = {}                      # sentinel -> _Running

        def start(t, tries):
            recv, send = ctx.Pipe(duplex=False)
            slot = min(set(range(self.n_jobs)) - {r.slot for r in running.values()})
            proc = ctx.Process(target=_task_main, args=(send, work, t.items, slot), name=f"nqsbench {t.key}")
            proc.start()
            send.close()                        # the child holds the only writer: EOF when it dies
            running[proc.sentinel] = _Running(t, tries, proc, recv, time.monotonic(), slot)

        def retry_or_die(r, why):
            if r.tries < self.retries:
                echo(f"task {r.task.key}: {why}; retrying ({r.tries + 1} of {self.retries}, from its checkpoint)")
                queue.append((r.task, r.tries + 1))
            else:
                died(r.task, f"{why} (after {self.retries} retries)")

        try:
            while queue or running:
                while queue and len(running) < self.n_jobs:
                    start(*queue.popleft())
                now = time.monotonic()
                deadlines = [r.t0 + r.task.timeout_s - now for r in running.values() if r.task.timeout_s]
                ready = wait([*running, *(r.conn for r in running.values())],
                             timeout=max(min(deadlines), 0.0) if deadlines else None)
                for key in list(running):
                    r = running[key]
                    if r.conn in ready or key in ready:
                        msg = _receive(r.conn)
                        del running[key]
                        # the result is in hand: a child that then hangs in its shutdown is killed
                        _stop(r.proc, grace_s=self.exit_grace_s)
                        r.conn.close()
                        if msg is None:          # died without a word: killed (OOM), segfault
                            retry_or_die(r, f"worker died (exit code {r.proc.exitcode})")
                        elif msg[0] == "ok":
                            done(r.task, msg[1])
                        else:                    # an error escaped work(): deterministic, no retry
                            died(r.task, f"worker error: {msg[1]}")
                    elif r.task.timeout_s and time.monotonic() - r.t0 > r.task.timeout_s:
                        del running[key]
                        _dump_stacks(r.proc)
                        _stop(r.proc)
                        r.conn.close()
                        retry_or_die(r, f"no result after {r.task.timeout_s / 60:.1f} min (stacks above)")
        finally:
            for r in running.values():          # interrupted (Ctrl-C): no orphans left computing
                _stop(r.proc)


@dataclass
class _Running:
    task: Task
    tries: int
    proc: Any
    conn: Any
    t0: float
    slot: int = 0


def _task_main(conn, work, items, slot: int = 0) -> None:
    """A task's process: one CPU (:func:`pin_to_one_cpu`), one BLAS/XLA thread, Python stacks on
    SIGUSR1, the result (or the error's one line) sent back."""
    import faulthandler
    import signal

    pin_to_one_cpu(slot)
    worker_init()
    if hasattr(faulthandler, "register"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        out = ("ok", work(items))
    except BaseException as exc:  # noqa: BLE001 - reported by the driver as the task's failure
        out = ("error", f"{type(exc).__name__}: {exc}")
    conn.send(out)
    conn.close()


def _receive(conn):
    """The child's message, or None when it died before sending one."""
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None


def _dump_stacks(proc, grace_s: float = 2.0) -> None:
    """Ask a stalled task process for its Python stacks (printed on its stderr)."""
    import signal
    import time

    try:
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(grace_s)
    except (OSError, AttributeError):
        pass


def _stop(proc, grace_s: float = 0.0) -> None:
    """Give ``proc`` ``grace_s`` to exit, then kill and reap it (a zombie's pid still looks
    alive to a stale-claim check)."""
    if grace_s > 0:
        proc.join(grace_s)
    if proc.is_alive():
        proc.kill()
    proc.join()


class DaskExecutor(Executor):
    """dask.distributed: a ``LocalCluster`` of ``n_jobs`` single-threaded workers, or the
    cluster at ``scheduler`` (an address such as ``tcp://host:8786``, or a scheduler file)."""
    name = "dask"

    def __init__(self, n_jobs: int = 1, scheduler: str | None = None, retries: int = RETRIES,
                 poll_s: float = 2.0):
        self.n_jobs, self.scheduler, self.retries, self.poll_s = max(int(n_jobs), 1), scheduler, retries, poll_s

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
            watch = _DaskWatch(client, {fut.key: t for fut, t in futs.items()}, echo)
            pending = as_completed(futs)
            while not pending.is_empty():
                batch = pending.next_batch(block=False)
                if not batch:
                    watch.check()
                    time.sleep(self.poll_s)
                for fut in batch:
                    t = futs[fut]
                    try:
                        res = fut.result()
                    except Exception as exc:  # noqa: BLE001 - KilledWorker after the retries, or an escaped error
                        why = watch.stalls.get(fut.key)
                        died(t, (f"no result after {t.timeout_s / 60:.1f} min, {why} times (stacks above)" if why
                                 else f"{type(exc).__name__}: {exc}") + f" (after at most {self.retries} retries)")
                    else:
                        done(t, res)
                    fut.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


class _DaskWatch:
    """The Dask executor's watchdog: a task running on a worker for longer than its
    ``timeout_s`` gets its Python stack printed (``Client.call_stack``) and its worker
    restarted by the worker's nanny; the scheduler counts that as a worker death and
    reschedules the task (``allowed-failures``), as for a worker killed by the OOM killer.
    Running time is counted from the first check that sees the task executing."""

    def __init__(self, client, tasks: dict, echo):
        self.client, self.tasks, self.echo = client, tasks, echo
        self.started: dict = {}            # key -> (worker address, first seen running)
        self.stalls: dict = {}             # key -> times its worker was restarted for it
        self.active = any(t.timeout_s for t in tasks.values())

    def check(self) -> None:
        if not self.active:
            return
        now = time.monotonic()
        try:
            stacks = self.client.call_stack()
        except Exception:  # noqa: BLE001 - a worker going away mid-call: look again next time
            return
        running = {key: worker for worker, tasks in stacks.items() for key in tasks}
        self.started = {k: v for k, v in self.started.items() if running.get(k) == v[0]}
        for key, worker in running.items():
            task = self.tasks.get(key)
            if task is None or not task.timeout_s:
                continue
            w, t0 = self.started.setdefault(key, (worker, now))
            if now - t0 <= task.timeout_s:
                continue
            frames = stacks[worker][key]
            self.echo(f"task {task.key}: no result after {task.timeout_s / 60:.1f} min on {worker}; its stack:\n"
                      + "".join(frames if isinstance(frames, (list, tuple)) else [str(frames)]).rstrip())
            self.stalls[key] = self.stalls.get(key, 0) + 1
            del self.started[key]
            try:
                self.client.restart_workers([worker], raise_for_error=False)
            except Exception as exc:  # noqa: BLE001 - reported; the next check tries again
                self.echo(f"task {task.key}: could not restart {worker}: {exc}")


EXECUTORS = {"local": LocalExecutor, "dask": DaskExecutor}


def make_executor(name: str = "local", n_jobs: int = 1, scheduler: str | None = None) -> Executor:
    """The executor named on the command line (``--executor``)."""
    if name not in EXECUTORS:
        raise ExecutorError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    if scheduler and name != "dask":
        raise ExecutorError("--scheduler applies to --executor dask only; add --executor dask or remove it")
    return DaskExecutor(n_jobs, scheduler) if name == "dask" else LocalExecutor(n_jobs)
