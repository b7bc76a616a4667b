"""The worker supervisor's stop bound: a worker that hangs in its shutdown is killed, the supervisor returns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from framecast.edge.workers import Supervisor

# a worker process that ignores SIGTERM (as one hung in its shutdown would)
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


class StubbornWorkers(Supervisor):
    def _spawn(self, index: int) -> None:
        self.procs[index] = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE)


def test_workers_past_the_stop_bound_are_killed() -> None:
    sup = StubbornWorkers(2, "127.0.0.1", 0, [], stop_timeout_s=0.5)
    started = threading.Event()

    def stop_soon() -> None:
        deadline = time.monotonic() + 10
        while len(sup.procs) < 2 or any(p.stdout is None for p in sup.procs.values()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        for p in sup.procs.values():
            assert p.stdout is not None
            p.stdout.readline()  # the worker has set its SIGTERM handler
        started.set()
        os.kill(os.getpid(), signal.SIGTERM)  # the supervisor's handler forwards it; the workers ignore it

    threading.Thread(target=stop_soon, daemon=True).start()
    t0 = time.monotonic()
    code = sup.run()  # in the main thread: it installs the signal handlers
    took = time.monotonic() - t0
    assert started.is_set()
    assert all(p.returncode == -signal.SIGKILL for p in sup.procs.values()), [p.returncode for p in sup.procs.values()]
    assert took < 5.0, took
    assert code == 0  # killed by the supervisor's own bound: no worker reported a failure code
