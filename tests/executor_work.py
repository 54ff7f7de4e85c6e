"""Work functions for tests/test_local_executor.py, importable by spawned processes: each
counts its attempts in files under the folder it is given, so a first attempt can stall or die
and the retry succeed."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _attempt(folder: str) -> int:
    d = Path(folder)
    n = len(list(d.glob("attempt-*"))) + 1
    (d / f"attempt-{n}").touch()
    return n


def stalls_once(items, hooks=None):
    """First attempt never returns (as a wedged XLA call); the retry returns its number."""
    n = _attempt(items[0])
    if n == 1:
        time.sleep(3600)
    return ["ok", n]


def killed_once(items, hooks=None):
    """First attempt is SIGKILLed (as by the out-of-memory killer); the retry returns."""
    n = _attempt(items[0])
    if n == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return ["ok", n]


def always_stalls(items, hooks=None):
    _attempt(items[0])
    time.sleep(3600)


def raises(items, hooks=None):
    _attempt(items[0])
    raise ValueError("bad input, do not retry")


def quick(items, hooks=None):
    return ["ok", _attempt(items[0])]


def hangs_at_exit(items, hooks=None):
    """Returns its result, then its process never exits (a non-daemon thread that sleeps)."""
    import threading
    threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()
    return ["ok", _attempt(items[0])]


def cpus(items, hooks=None):
    """The CPUs this worker may run on."""
    return sorted(os.sched_getaffinity(0))
