"""Issue 19, item 2: ``pipeline.shutdown`` — stop hooks run on SIGTERM/SIGINT, last registered
first, then the signal does what it did before; an ignored signal stays ignored; nothing is
swallowed. Each case runs in a child process, so the test process keeps its own handlers."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str, ignore: int | None = None) -> subprocess.CompletedProcess:
    prelude = f"import os, signal, sys, time\nsys.path.insert(0, {str(ROOT)!r})\n"
    if ignore is not None:
        prelude += f"signal.signal({ignore}, signal.SIG_IGN)\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], check=False,
                          capture_output=True, text=True, timeout=30)


def test_sigterm_runs_the_hooks_last_first_then_dies_of_it():
    proc = run("""
        from pipeline import shutdown
        shutdown.on_stop(lambda: print("lock released", flush=True))
        shutdown.on_stop(lambda: print("journal flushed", flush=True))
        shutdown.on_stop(lambda: 1 / 0)  # a failing hook does not stop the others
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("still alive")
    """)
    assert proc.returncode == -signal.SIGTERM
    assert proc.stdout.splitlines() == ["journal flushed", "lock released"]
    assert "failed: division by zero" in proc.stderr


def test_sigint_raises_keyboard_interrupt_after_the_hooks():
    proc = run("""
        from pipeline import shutdown
        shutdown.on_stop(lambda: print("hook", flush=True))
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            print("interrupted", shutdown.handed_on())
    """)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["hook", "interrupted True"]


def test_an_ignored_signal_stays_ignored_and_nothing_stops():
    proc = run("""
        from pipeline import shutdown
        shutdown.on_stop(lambda: print("hook", flush=True))
        print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        print("stopping", shutdown.stopping())
    """, ignore=signal.SIGINT)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["True", "stopping False"]


def test_work_in_flight_lands_first_and_a_handler_that_returns_lets_the_run_go_on():
    proc = run("""
        import threading
        from pipeline import shutdown
        signal.signal(signal.SIGTERM, lambda s, f: print("previous handler", flush=True))
        shutdown.on_stop(lambda: print("hook", flush=True))

        def reply():
            with shutdown.in_flight():
                time.sleep(0.5)
                print("reply landed", flush=True)

        t = threading.Thread(target=reply)
        t.start()
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        print("stopping", shutdown.stopping(), flush=True)
        t.join()
        time.sleep(1.0)
        print("stopping", shutdown.stopping(), flush=True)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["stopping True", "reply landed", "hook", "previous handler",
                                        "stopping False"]


def test_a_second_signal_during_the_wait_acts_at_once():
    proc = run("""
        import threading
        from pipeline import shutdown
        shutdown.on_stop(lambda: print("hook", flush=True))
        never = shutdown.in_flight()
        never.__enter__()  # a reply that never lands
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        print("still alive")
    """)
    assert proc.returncode == -signal.SIGTERM and proc.stdout.splitlines() == ["hook"]
