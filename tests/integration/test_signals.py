"""Issue 19, item 2: no handler swallows a signal.

A real ``duo synthesize`` pays for answers from the fake OpenAI (with latency) and gets SIGINT or
SIGTERM mid-stage. With the signal at its default it ends within a few seconds, after the replies
in flight landed in the journal (none left unknown); started with the signal ignored (as a
background job's SIGINT is) it keeps ignoring it and finishes the stage: before, duo replaced the
ignored disposition, swallowed the signal and parked every later request forever (15 of 15 hung).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from pipeline.llm.journal import read_ledger
from tests.synth_task import NewPairs, duo, journal_folder, journal_lines, make_task
from tests.synth_task import wait_for_answers as wait_for

SAMPLES = 40
END_WITHIN_S = 10.0  # the drain (at most 5 s) and the exit


def ignoring(signum: int):
    """A ``preexec_fn`` starting the child with ``signum`` ignored, as a shell's background job."""
    return lambda: signal.signal(signum, signal.SIG_IGN)


@pytest.mark.parametrize("disposition", ["default", "ignored"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_ends_duo_after_the_drain_or_is_ignored_as_inherited(fake_openai, tmp_path, capsys,
                                                                      signum, disposition):
    fake_openai.set_faults(latency_s=0.5)
    fake_openai.set_responder(NewPairs())
    config = make_task(tmp_path, samples=SAMPLES)
    folder = journal_folder(config)
    extra = {"preexec_fn": ignoring(signum)} if disposition == "ignored" else {}
    proc = duo(config, **extra)
    wait_for(folder, proc, 8)
    os.kill(proc.pid, signum)
    sent_at = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        name = signal.Signals(signum).name
        raise AssertionError(f"duo still running 60 s after {name}") from None
    took = time.monotonic() - sent_at
    entries, torn = journal_lines(folder)
    ledger = read_ledger(sorted(folder.glob("part-*.jsonl")))
    answers = sum(1 for e in entries if "key" in e)
    with capsys.disabled():
        print(f"\n{signal.Signals(signum).name} {disposition}: exit {proc.returncode} "
              f"{took:.1f} s after the signal; {answers} of {SAMPLES} answers journaled, "
              f"{ledger.pending} sends without a reply, {torn} torn lines")
    assert torn == 0 and ledger.pending == 0  # every reply in flight landed in the journal
    assert ledger.requests == answers  # and every paid reply is an answer kept for the rerun
    if disposition == "ignored":
        assert proc.returncode == 0, err[-2000:]
        assert answers == SAMPLES  # the stage went on to the end
        return
    assert took < END_WITHIN_S
    assert answers < SAMPLES
    # the journal's stop hook ran first, then the task lock's release (chained handlers)
    assert not list((config.parent / "store" / ".locks").glob("*.json"))
    if signum == signal.SIGINT:
        # KeyboardInterrupt, as without duo's handler
        assert proc.returncode == 130 and "interrupted" in err
    else:
        assert proc.returncode == -signal.SIGTERM  # dies of the signal, as without duo's handler
