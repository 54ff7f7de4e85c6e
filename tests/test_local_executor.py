"""The local process pool's watchdog: a task whose process stalls (gives no result within its
timeout) or dies is retried, its Python stacks printed first when it stalled; an error raised by
the work is reported at once, not retried. No JAX here: the work functions
(tests/executor_work.py) count their attempts in files."""
from __future__ import annotations

import time

import executor_work as w
import os

import pytest

from nqsbench.executors import LocalExecutor, Task
from nqsbench.suites import TIMEOUT_FLOOR_S, task_timeout_s


def run(tasks, work, retries=2, exit_grace_s=10.0):
    done, died, said = {}, {}, []
    LocalExecutor(2, retries=retries, exit_grace_s=exit_grace_s).run(tasks, work, None, lambda t, r: done.__setitem__(t.key, r),
                                          lambda t, why: died.__setitem__(t.key, why), said.append)
    return done, died, said


def attempts(folder):
    return len(list(folder.glob("attempt-*")))


def test_a_stalled_task_is_dumped_killed_and_retried(tmp_path, capfd):
    a, b = tmp_path / "a", tmp_path / "b"      # both stall once
    a.mkdir(), b.mkdir()
    t0 = time.monotonic()
    done, died, said = run([Task("stalls", [str(a)], timeout_s=3.0), Task("fine", [str(b)], timeout_s=3.0)],
                           w.stalls_once)
    assert done == {"stalls": ["ok", 2], "fine": ["ok", 2]} and not died, (done, died)
    assert attempts(a) == attempts(b) == 2
    assert any("stalls: no result after 0.1 min" in line and "retrying (1 of 2" in line for line in said), said
    err = capfd.readouterr().err                     # each stalled process's stack, from SIGUSR1
    assert err.count("in stalls_once") == 2 and err.count("in _task_main") == 2, err
    assert time.monotonic() - t0 < 60


def test_a_task_that_always_stalls_fails_after_the_retries(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    done, died, _ = run([Task("stuck", [str(a)], timeout_s=1.0)], w.always_stalls, retries=1)
    assert not done and "no result after" in died["stuck"] and "after 1 retries" in died["stuck"]
    assert attempts(a) == 2


def test_a_killed_worker_is_retried(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    done, died, said = run([Task("killed", [str(a)]), Task("other", [str(b)])], w.killed_once)
    assert not died and done["killed"] == ["ok", 2]
    assert any("killed: worker died (exit code -9)" in line for line in said), said


def test_an_error_in_the_work_is_reported_not_retried(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    done, died, said = run([Task("bad", [str(a)]), Task("good", [str(b)])], w.raises)
    assert died["bad"] == "worker error: ValueError: bad input, do not retry" and attempts(a) == 1
    assert not said


def test_many_tasks_two_at_a_time(tmp_path):
    folders = [tmp_path / str(i) for i in range(5)]
    for f in folders:
        f.mkdir()
    done, died, _ = run([Task(str(i), [str(f)], timeout_s=60.0) for i, f in enumerate(folders)], w.quick)
    assert not died and done == {str(i): ["ok", 1] for i in range(5)}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nothing to pin")
def test_each_worker_runs_on_one_cpu(tmp_path):
    """Pool workers are pinned to one CPU each, so XLA's intra-op pool has one thread and its
    LAPACK kernels cannot wait on each other (the NNBF worker deadlock); the two slots take
    different CPUs."""
    done, died, _ = run([Task(str(i), [], timeout_s=60.0) for i in range(4)], w.cpus)
    allowed = sorted(os.sched_getaffinity(0))
    assert not died and all(len(c) == 1 and c[0] in allowed for c in done.values()), done
    assert {c[0] for c in done.values()} <= set(allowed[:2])


def test_a_worker_that_hangs_after_its_result_is_killed_and_its_result_kept(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    t0 = time.monotonic()
    done, died, said = run([Task("hangs", [str(a)], timeout_s=600.0)], w.hangs_at_exit, exit_grace_s=1.0)
    assert done == {"hangs": ["ok", 1]} and not died and not said and attempts(a) == 1
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("estimate, minutes, want", [(10.0, None, TIMEOUT_FLOOR_S), (1000.0, None, 4000.0),
                                                     (10.0, 2.5, 150.0), (10.0, 0, None)])
def test_task_timeout(estimate, minutes, want):
    assert task_timeout_s(estimate, minutes) == want


# ----------------------------------------------------------------------------- the Dask executor's watchdog
def test_dask_restarts_the_worker_of_a_stalled_task_and_retries_it(tmp_path):
    """The same stall on a Dask LocalCluster: the task's stack is printed from the worker, the
    worker restarted by its nanny, the task rescheduled and its retry's result kept; one that
    always stalls is reported failed after the retries."""
    pytest.importorskip("distributed", reason="extra 'dask' not installed")
    from nqsbench.executors import DaskExecutor

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    done, died, said = {}, {}, []
    t0 = time.monotonic()
    DaskExecutor(2, retries=1, poll_s=0.5).run(
        [Task("stalls", [str(a)], timeout_s=3.0)], w.stalls_once, None,
        lambda t, r: done.__setitem__(t.key, r), lambda t, why: died.__setitem__(t.key, why), said.append)
    assert done == {"stalls": ["ok", 2]} and not died, (done, died, said)
    assert any("stalls: no result after 0.1 min" in s and "in stalls_once" in s for s in said), said
    DaskExecutor(2, retries=1, poll_s=0.5).run(
        [Task("stuck", [str(b)], timeout_s=2.0)], w.always_stalls, None,
        lambda t, r: done.__setitem__(t.key, r), lambda t, why: died.__setitem__(t.key, why), said.append)
    assert "no result after" in died.get("stuck", "") and attempts(b) == 2, (died, said)
    assert time.monotonic() - t0 < 120
