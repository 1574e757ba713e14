"""``duo run``: the whole LlamaDuo loop on this machine, round after round, on the configured store.

Each round chains synthesize -> finetune -> infer -> evaluate -> report -> decide (prepare once per
task). Every stage skips itself when its artifact is already complete, so running the same command
after a crash or Ctrl-C resumes from the last complete artifact, and the service-LLM journal re-uses
every answer already paid for.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import tracking
from ..artifacts.decide import read_decision
from ..artifacts.finetune import adapter_location, cut_warning
from ..artifacts.synthesize import no_new_rows
from ..config import Config
from ..config_reads import in_stage
from ..errors import DuoError
from ..flags import COMMON, Flag
from ..gha import set_output, step_summary
from ..manifest import Manifest
from ..prices import check_prices
from ..progress import StageMeter, StageRecord, summary_line, summary_table
from ..stats.best import adapter_round
from ..store import BASELINE_ROUND, Store, artifact_name, open_store

ROUND_STAGES = ("synthesize", "finetune", "infer", "evaluate", "report", "decide")
FLAGS = COMMON + (Flag("--rounds",
                       "Stop after this many rounds (default: budget.max_rounds).",
                       type=int,
                       metavar="N"),
                  Flag("--plan",
                       "Print what the next round's synthesize and evaluate would send "
                       "(requests, tokens and dollars at most, the first request of each) "
                       "and exit: nothing is sent or written.",
                       kind="switch"))


@dataclass
class RunResult:
    """What ``run_rounds`` did: the stages it measured, the last round and its decision."""

    records: list = field(default_factory=list)  # list[StageRecord]
    last_round: int | None = None
    decision: dict = field(default_factory=dict)
    stopped_because: str = ""
    report: str | None = None
    adapter: str | None = None
    notes: list = field(default_factory=list)


def check_service(cfg: Config) -> list[str]:
    """Notes on what runs offline; a configured service whose API key variable is unset is an error."""
    for role, svc in cfg.service.roles():
        if not os.environ.get(svc.api_key_env):
            raise DuoError(f"service.{role} ({svc.provider}:{svc.model}) needs its API key "
                           f"in the environment variable {svc.api_key_env}, which is not set; "
                           f"set it, or remove service.{role} "
                           f"from {cfg.source_path or 'the config'} to run offline")
    check_prices(cfg)  # a paid model with no known price refuses before round 1 starts
    notes = []
    if cfg.service.synthesize is None:
        notes.append("synthesis skipped: no service LLM is configured (service.synthesize); "
                     "training uses the coverage data only")
    if cfg.service.judge is None:
        notes.append("LLM judge skipped: no service LLM is configured (service.judge); "
                     "evaluation uses the offline metrics and evaluate.offline_pass_rule")
    return notes


def _stage_module(stage: str):
    return importlib.import_module(f"pipeline.stages.{stage}")


def _finished(store: Store, name: str) -> str | None:
    """The ``finished`` stamp of a complete artifact, or None; tells a skipped stage from a fresh one."""
    if not store.exists(name):
        return None
    try:
        return store.manifest(name).timings.get("finished") or ""
    except (OSError, ValueError):
        return None


def run_stage(cfg: Config, store: Store, stage: str, round_no: int | None, *, force: bool = False,
              echo: Callable[[str], None] = print, **kwargs) -> tuple[Manifest, StageRecord]:
    """Run one stage (it skips itself when complete), measuring wall time and peak RSS;
    echo one summary line."""
    name = artifact_name(stage, round_no)
    before = None if force else _finished(store, name)
    record = StageRecord(round=round_no, stage=stage)
    try:
        with StageMeter(record), in_stage(stage):
            manifest = _stage_module(stage).run(cfg, store, round_no, force=force, **kwargs)
    except BaseException as exc:
        record.note = f"{type(exc).__name__}: rerun the same command to resume"
        echo(summary_line(record))
        raise
    finally:
        gc.collect()  # a stage's model must not stay resident while the next one loads its own
    skipped = before is not None and before == manifest.timings.get("finished")
    record.status = "skipped" if skipped else "done"
    record.counts = dict(manifest.counts or {})
    record.cost_usd = float((manifest.usage or {}).get("cost_usd") or 0.0)
    if skipped:
        record.note = "already complete"
    echo(summary_line(record))
    if stage == "finetune" and (warning := cut_warning(record.counts)):
        echo(warning)
    return manifest, record


def _adapter_text(cfg: Config, store: Store, round_no: int) -> str | None:
    """Where the adapter to use after round ``round_no`` is (the promoted round's, else the best
    round's, else the latest fine-tuned one's, as ``duo pull`` takes it), for the closing lines."""
    try:
        chosen, _, why = adapter_round(cfg, store, round_no)
    except DuoError:  # no round up to this one was fine-tuned
        return None
    name = artifact_name("finetune", chosen)
    ref, revision = adapter_location(store, name)
    local = store.local_path(name) / "adapter"
    where = f"{ref} at revision {revision}; local copy {local}" if revision else str(local)
    return where if chosen == round_no else f"{where} (round {chosen}: {why})"


def _report_text(cfg: Config, store: Store, round_no: int) -> str | None:
    from .report import report_dir

    if not store.exists(artifact_name("report", round_no)):
        return None
    return str(report_dir(cfg, round_no) / "report.md")


def baseline(cfg: Config, store: Store, *, force: bool, echo: Callable[[str], None]) -> list[StageRecord]:
    """Round 0: the untuned base student answers and is scored once per task
    (reused while nothing changed)."""
    records = []
    for stage in ("infer", "evaluate"):
        _, rec = run_stage(cfg, store, stage, BASELINE_ROUND, force=force, echo=echo)
        records.append(rec)
    return records


def run_round(cfg: Config, store: Store, round_no: int, samples: int | None, *, force: bool,
              echo: Callable[[str], None]) -> list[StageRecord]:
    """One round's stages, in order; synthesize is marked off when no service LLM can write data, and a round
    whose synthesis kept no rows skips finetune, infer and evaluate (nothing new to train) but still
    gets its report and its decision (stop-no-data, or stop-budget when money was why)."""
    records = []
    for stage in ROUND_STAGES:
        if stage == "synthesize" and cfg.service.synthesize is None:
            rec = StageRecord(round=round_no, stage=stage, status="off",
                              note="skipped: no service LLM configured (service.synthesize)")
            echo(summary_line(rec))
        elif stage in ("finetune", "infer", "evaluate") and no_new_rows(store, round_no):
            rec = StageRecord(round=round_no, stage=stage, status="off",
                              note="skipped: synthesis added no rows (kept 0): nothing new to train")
            echo(summary_line(rec))
        else:
            kwargs = {"samples": samples} if stage == "synthesize" else {}
            _, rec = run_stage(cfg, store, stage, round_no, force=force, echo=echo, **kwargs)
        records.append(rec)
    return records


def run_rounds(cfg: Config, store: Store, *, rounds: int | None = None, start_round: int = 1,
               force: bool = False, echo: Callable[[str], None] = print) -> RunResult:
    """Run rounds from ``start_round`` until the decision is not ``continue`` (pass or a stop), or
    round ``rounds`` is done; every round run writes its report and its decision, the last one too.

    Args:
        rounds: the last round to run (default ``budget.max_rounds``).
        start_round: the first round; earlier rounds' artifacts are taken as they are.
        force: redo every stage this call runs, even when complete
            (service answers still come from the journal).
        echo: where the one-line stage summaries go.
    """
    result = RunResult(notes=check_service(cfg))
    for note in result.notes:
        echo(note)
    last = rounds or cfg.budget.max_rounds
    if last < start_round:
        raise DuoError(f"--rounds {last} is below the first round to run ({start_round})")
    _, rec = run_stage(cfg, store, "prepare", None, force=force, echo=echo)
    result.records.append(rec)
    result.records += baseline(cfg, store, force=force, echo=echo)
    samples = None  # round 1: from the config (synthesize.samples / schedule)
    if start_round > 1 and store.exists(artifact_name("decide", start_round - 1)):
        samples = read_decision(store, start_round - 1).get("next_samples")
    round_no = start_round
    while True:
        result.last_round = round_no
        result.records += run_round(cfg, store, round_no, samples, force=force, echo=echo)
        decision = result.decision = read_decision(store, round_no)
        echo(f"round {round_no}: decision {decision.get('decision')}: {decision.get('reason', '')}")
        if decision.get("decision") != "continue":
            result.stopped_because = decision.get("reason") or str(decision.get("decision"))
            break
        if round_no >= last:
            result.stopped_because = f"stopped after round {round_no} (--rounds {last})"
            echo(f"round {round_no}: {result.stopped_because}")
            break
        samples, round_no = decision.get("next_samples"), int(decision.get("next_round") or round_no + 1)
    result.report = _report_text(cfg, store, result.last_round)
    result.adapter = _adapter_text(cfg, store, result.last_round)
    return result


def next_round(store: Store) -> tuple[int, int | None]:
    """(the round ``duo run`` would do next, its synthetic
    target from the last decision or None: the config's)."""
    k = 0
    while store.exists(artifact_name("decide", k + 1)):
        k += 1
    return k + 1, read_decision(store, k).get("next_samples") if k else None


def plan(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> str:
    """What the next round (``round_no``: that one) would send: the baseline's judging when round 0 is not
    evaluated yet, then the round's synthesize and evaluate; nothing is sent or written."""
    from ..stats.budget import plan_text, spent_in_store
    from . import evaluate, synthesize

    check_prices(cfg)
    samples = None
    if round_no is None:
        round_no, samples = next_round(store)
    parts, notes = [], [f"round {round_no}, as duo run would do it next"]
    if not store.exists("prepare"):
        notes.append("nothing planned until prepare has run (duo prepare: free, it asks no service LLM)")
        return plan_text(f"duo run, round {round_no}", [], cfg, spent_in_store(store), tuple(notes))
    if not store.exists(artifact_name("evaluate", BASELINE_ROUND)):
        base, more = evaluate.plan(cfg, store, BASELINE_ROUND, force=force)
        parts, notes = parts + base, notes + [f"baseline (round 0): {n}" for n in more]
    if cfg.service.synthesize is None:
        notes.append("synthesis skipped: no service LLM is configured (service.synthesize)")
    else:
        parts += synthesize.plan(cfg, store, round_no, samples, force=force)
    judged, more = evaluate.plan(cfg, store, round_no, force=force)
    return plan_text(f"duo run, round {round_no}", parts + judged, cfg, spent_in_store(store),
                     tuple(notes + more))


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    start = args.round if args.round is not None else 1
    if start < 1:
        raise DuoError("duo run: --round must be 1 or more "
                       "(round 0, the untuned baseline, runs before round 1)")
    if args.plan:
        print(plan(cfg, store, args.round, force=args.force))
        return 0
    result = run_rounds(cfg, store, rounds=args.rounds, start_round=start, force=args.force)
    total_s = sum(r.seconds for r in result.records)
    cost = sum(r.cost_usd for r in result.records)
    peak = max((r.peak_rss_mb for r in result.records), default=0.0)
    print(f"done after round {result.last_round}: decision {result.decision.get('decision')} "
          f"({result.stopped_because}); {total_s:.0f}s, peak {peak:.0f} MiB, service cost ${cost:.4f}")
    if result.report:
        print(f"report:  {result.report}")
    if line := tracking.summary_line(tracking.link(cfg, result.last_round or 0)):
        print(line)
    if result.adapter:
        print(f"adapter: {result.adapter}")
    for note in result.notes:
        print(note)
    step_summary("### duo run\n\n" + summary_table(result.records))
    set_output("decision", result.decision.get("decision", ""))
    set_output("rounds", result.last_round or 0)
    return 0
