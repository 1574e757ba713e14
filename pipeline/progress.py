"""Per-stage wall time and peak memory for ``duo run``, and the one-line summary printed for each stage."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark so the next reading is this stage's own peak (Linux >= 4.0)."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children, in seconds."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last reset, in MiB (ru_maxrss
    where /proc is missing)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


@dataclass
class StageRecord:
    """What ``duo run`` measured for one stage of one round."""

    round: int | None
    stage: str
    status: str = "running"  # done | skipped | failed | off
    seconds: float = 0.0
    cpu_s: float = 0.0  # CPU time: unlike wall time, it hardly changes when other work shares the cores
    peak_rss_mb: float = 0.0
    peak_is_stage: bool = True  # False when the peak could not be reset: then it is the process peak
    counts: dict = field(default_factory=dict)
    cost_usd: float = 0.0
    note: str = ""

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class StageMeter:
    """Context manager timing one stage and taking its peak RSS; fills ``record``."""

    def __init__(self, record: StageRecord):
        self.record = record

    def __enter__(self) -> StageRecord:
        self.record.peak_is_stage = _reset_peak()
        self._t0, self._cpu0 = time.perf_counter(), cpu_seconds()
        return self.record

    def __exit__(self, exc_type, exc, tb) -> None:
        self.record.seconds = round(time.perf_counter() - self._t0, 2)
        self.record.cpu_s = round(cpu_seconds() - self._cpu0, 2)
        self.record.peak_rss_mb = round(peak_rss_mb(), 1)
        if exc_type is not None:
            self.record.status = "failed"


def _fmt_counts(counts: dict, limit: int = 4) -> str:
    items = [(k, v) for k, v in counts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    text = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in items[:limit])
    return text + (", ..." if len(items) > limit else "")


def summary_line(rec: StageRecord) -> str:
    """One stage's summary line, e.g.

    ``round 1  finetune   done      212.4s  cpu   401.2s  peak   3120 MiB  $0.0000  train_rows 120, ...``.
    """
    where = f"round {rec.round}" if rec.round is not None else "task"
    head = f"{where:<8} {rec.stage:<10} {rec.status:<7}"
    if rec.status == "off":
        return f"{head} {rec.note}"
    parts = [head,
             f"{rec.seconds:7.1f}s",
             f"cpu {rec.cpu_s:7.1f}s",
             f"peak {rec.peak_rss_mb:6.0f} MiB",
             f"${rec.cost_usd:.4f}"]
    counts = _fmt_counts(rec.counts)
    if counts:
        parts.append(counts)
    if rec.note:
        parts.append(f"({rec.note})")
    return "  ".join(parts)


def summary_table(records: list[StageRecord]) -> str:
    """A markdown table of the stages, for ``$GITHUB_STEP_SUMMARY``."""
    lines = ["| round | stage | status | wall s | CPU s | peak RSS (MiB) | cost (USD) | counts |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r.round if r.round is not None else ''} | {r.stage} | {r.status} | "
                     f"{r.seconds:.1f} | {r.cpu_s:.1f} | {r.peak_rss_mb:.0f} | {r.cost_usd:.4f} | "
                     f"{_fmt_counts(r.counts, 6) or r.note} |")
    return "\n".join(lines)
