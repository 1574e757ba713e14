"""``duo synthesize``: ask the service LLM for new training pairs like the train seeds, then clean them.

As in LlamaDuo: seeds are sampled with replacement from the coverage TRAIN split (never the test
split); each request shows one seed and asks for ``pairs_per_request`` new pairs as
``{"contents": [{"instruction", "response"}, ...]}``. Cleaning (``dedup.PairFilter``) removes empty,
truncated, duplicate and near-duplicate pairs (among themselves, against the coverage train split
and earlier rounds' synthetic data) and anything too close to a test prompt. The stage asks again,
up to ``max_attempts`` times, until the round's target is kept.

Output ``round-N/synthesize``: ``data.jsonl`` (``id``, ``instruction``, ``response``, ``category``,
``messages``, ``seed_id``, ``generator``, ``round``), ``removed.jsonl`` (pair + ``reason``: empty,
truncated, duplicate, near_duplicate, test_overlap, or surplus for good pairs beyond the target) and
``failures.jsonl`` (``key``, ``error``, ``raw``). Request keys and prompts depend only on (seed,
round, attempt, index), so a rerun re-uses every answer already paid for from the journal.

The task's shape is kept: each request carries its seed's system prompt (a synthetic row gets that
``system`` and ``messages`` [system, user, assistant]) and the seeds' typical response lengths; a
pair whose response falls outside the seeds' range (``synthesize.length_filter``) is removed as
``length_outlier``, and one whose instruction means the same as a test prompt
(``synthesize.decontaminate``, ``decontam_semantic``) as ``semantic_contaminated``. Seeds are drawn
by ``pipeline.data.seeds`` (``synthesize.targeting``). Every request is scrubbed of personal data
first (``privacy.scrub``, each distinct prompt once); the counts per type are the manifest's ``scrubbed``.
A chunk's replies are cleaned on a worker thread while the next chunk is sent (``pairs.Cleaner``).
"""

from __future__ import annotations

import argparse
import math
from collections import Counter

from .. import gha
from ..artifacts import ARTIFACTS, carried_cost, reusable
from ..artifacts.synthesize import earlier_rounds, no_new_rows
from ..config import Config
from ..data import decontam_semantic, hygiene, privacy, seeds
from ..data.dedup import REASONS, PairFilter
from ..data.pairs import EXTRA_REASONS, Cleaner, Collector
from ..data.structured_pairs import DROP_REASONS, PairRules
from ..errors import DuoError
from ..flags import COMMON, Flag
from ..manifest import Manifest
from ..prices import price_of
from ..prompts import load_reply_schema, render
from ..records import read_jsonl, write_jsonl
from ..stats.budget import Spend, not_sent, plan_text, spent_in_store
from ..store import Store, artifact_name, open_store
from .common import publish, round_arg

STAGE = "synthesize"
PLAN = Flag("--plan", "Print what would be sent (requests, tokens and dollars at most, requests already in the "
            "journal, the first request) and exit: nothing is sent or written.", kind="switch")
FLAGS = COMMON + (Flag("--samples", "Synthetic samples to add this round "
                       "(default: from synthesize.samples, growth or schedule).", type=int, metavar="N"), PLAN)
ARTIFACT = ARTIFACTS[STAGE]


def build_requests(cfg: Config, drawer: seeds.Seeds, schema: dict, round_no: int, attempt: int, count: int,
                   band: dict | None, rules: PairRules | None = None) -> list:
    """``count`` requests of one attempt, each scrubbed of personal data. Seed choice and key depend only on
    (seed, round, attempt, index). A structured task (``rules``) asks for pairs of its kind."""
    from ..llm import Request

    rules = rules or PairRules("text")
    low, high = band["typical"] if band else (None, None)
    requests = []
    for i in range(count):
        seed_row = drawer.draw(round_no, attempt, i)
        messages = render(cfg, rules.prompt_name(cfg), **rules.prompt_vars(seed_row),
                          topic=cfg.task.description,
                          system_prompt=seeds.system_of(seed_row),
                          instruction=seed_row["instruction"],
                          response=seed_row["response"],
                          category=seed_row.get("category"),
                          n=cfg.synthesize.pairs_per_request,
                          min_response_chars=cfg.synthesize.min_response_chars,
                          length_low=low,
                          length_high=high)
        messages = privacy.scrub_messages(cfg, messages)
        # repeat is unique per request: the same seed drawn twice must get two answers, not one
        # journal entry.
        requests.append((Request(key=f"r{round_no}-a{attempt}-{i:05d}",
                                 messages=messages,
                                 schema=schema,
                                 repeat=attempt * 100_000 + i),
                         seed_row))
    return requests


def _load_filter(cfg: Config, store: Store, round_no: int, train: list[dict],
                 test: list[dict], rules: PairRules) -> PairFilter:
    s = cfg.synthesize
    f = PairFilter(near_duplicate_threshold=s.near_duplicate_threshold,
                   decontamination_threshold=s.decontamination_threshold,
                   min_response_chars=rules.min_response_chars(s))
    f.add_test((r["id"], r["instruction"]) for r in test)
    f.add_known((r["id"], r["instruction"]) for r in train)
    for name in earlier_rounds(store, round_no):
        f.add_known((r["id"], r["instruction"]) for r in read_jsonl(store.open(name) / "data.jsonl"))
    return f


def ask_until_kept(cfg: Config, store: Store, round_no: int, drawer: seeds.Seeds, band: dict | None,
                   collector: Collector, spend: Spend) -> tuple[int, str | None]:
    """Ask, attempt after attempt, until ``collector`` holds its target (or the budget or the
    attempts run out); returns (attempts made, ``"budget"`` when the spend budget stopped it, else
    None)."""
    from ..llm import Engine
    from ..llm.journal.sync import open_journal

    svc, schema = cfg.service.synthesize, load_reply_schema(cfg, collector.rules.schema_name(cfg))
    engine = Engine(svc, journal=open_journal(store, cfg, STAGE, round_no), batch=cfg.synthesize.batch_api,
                    spend=spend)
    attempts = 0
    with Cleaner(collector) as cleaner:  # cleans a chunk's replies while the next chunk is sent
        for attempt in range(1, cfg.synthesize.max_attempts + 1):
            count = collector.requests_needed(cfg.synthesize.pairs_per_request)
            if count == 0:
                break
            attempts = attempt
            chunks = spend.chunks(build_requests(cfg, drawer, schema, round_no, attempt, count, band,
                                                 collector.rules))
            # the yield beat the plan: don't pay for the rest of this attempt
            while not cleaner.reached() and (chunk := next(chunks, None)) is not None:
                results = engine.run([req for req, _ in chunk],
                                     desc=f"synthesize r{round_no} attempt {attempt}")
                # not sent: the spend cap kept it back, neither paid for nor a failure of the service
                replies = [(result, seed_row) for (_, seed_row), result in zip(chunk, results)
                           if not not_sent(result)]
                for result, _ in replies:
                    spend.add(result)
                cleaner.submit(replies)
            cleaner.wait()
            if spend.stopped:
                return attempts, "budget"
    return attempts, None


def round_target(cfg: Config, store: Store, round_no: int, samples: int | None) -> tuple[int, int]:
    """(pairs asked for: ``samples`` or the config's target for the round; the target after
    ``budget.max_synthetic_samples``)."""
    requested = int(samples) if samples is not None else cfg.synthesize.target_for_round(round_no)
    if requested < 0:
        raise DuoError(f"synthesize: --samples must be 0 or more, got {requested}")
    earlier_total = sum(int(store.manifest(n).counts.get("kept", 0))
                        for n in earlier_rounds(store, round_no))
    return requested, max(0, min(requested, cfg.budget.max_synthetic_samples - earlier_total))


def plan(cfg: Config, store: Store, round_no: int, samples: int | None = None, *,
         force: bool = False) -> list:
    """What ``run`` would send first (attempt 1; later attempts only make up for removed pairs), as
    ``budget.PlanPart``s; sends nothing, writes no artifact."""
    from ..llm import Engine
    from ..llm.journal.sync import open_journal
    from ..stats.budget import PlanPart

    svc = cfg.service.synthesize
    if svc is None:
        return []
    price_of(svc, STAGE)
    if not store.exists("prepare"):
        raise store.missing("prepare", f"synthesize --plan (round {round_no})")
    _, target = round_target(cfg, store, round_no, samples)
    inputs = ARTIFACT.inputs(cfg, store, round_no, target=target)
    if reusable(store, inputs, force=force, budget_usd=cfg.budget.max_spend_usd):
        return []  # complete: reused as it is
    train = read_jsonl(store.open("prepare") / "train.jsonl")
    s = cfg.synthesize
    count = math.ceil(target / s.pairs_per_request) if train else 0
    drawer, band = seeds.for_round(cfg, store, round_no, train)[0], seeds.length_band(train, s.length_filter)
    rules = PairRules.for_task(cfg, store, train)
    schema = load_reply_schema(cfg, rules.schema_name(cfg))
    requests = [req for req, _ in build_requests(cfg, drawer, schema, round_no, 1, count, band, rules)]
    engine = Engine(svc, journal=open_journal(store, cfg, STAGE, round_no), progress=False)
    label = (f"synthesize round {round_no}: {target} pairs at {s.pairs_per_request} a request, "
             f"attempt 1 of at most {s.max_attempts}")
    return [PlanPart.of(label, svc, requests, engine.in_journal(requests))]


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False,
        samples: int | None = None) -> Manifest:
    """Make (or return the existing) ``round-N/synthesize`` artifact with ``samples`` (default: the config's
    target for the round) new pairs."""
    from ..llm.journal.sync import artifact_ledger, booked

    svc = cfg.service.synthesize
    if svc is None:
        raise DuoError("synthesize needs service.synthesize in the config "
                       "(provider and model of the service LLM that writes new training pairs)")
    price_of(svc, STAGE)  # a paid model with no known price refuses here, before anything is sent
    round_no = int(round_no or 1)
    name = artifact_name(STAGE, round_no)
    requested, target = round_target(cfg, store, round_no, samples)
    if not store.exists("prepare"):
        raise store.missing("prepare", f"synthesize (round {round_no})")
    ins = ARTIFACT.inputs(cfg, store, round_no, target=target)
    if (old := reusable(store, ins, force=force, budget_usd=cfg.budget.max_spend_usd)) is not None:
        return old

    prep = store.open("prepare")
    train, test = read_jsonl(prep / "train.jsonl"), read_jsonl(prep / "test.jsonl")
    drawer, seeding = seeds.for_round(cfg, store, round_no, train)
    band = seeds.length_band(train, cfg.synthesize.length_filter)
    rules = PairRules.for_task(cfg, store, train)  # a structured task's pairs are of its kind
    collector = Collector(round_no, target, _load_filter(cfg, store, round_no, train, test, rules), svc.model,
                          semantic=decontam_semantic.load(cfg, test), band=band, **hygiene.for_pairs(cfg),
                          rules=rules)
    manifest = ins.start()
    carried = carried_cost(store, name)
    # OpenAI's or Gemini's Batch API (the engine refuses a provider without one)
    batch = cfg.synthesize.batch_api
    # A batch takes up to its 24 h window, so each attempt goes out as one batch, not budget-sized chunks.
    spend = Spend(cfg, svc, spent_in_store(store), carried=carried, chunk_size=10**9 if batch else None)
    with privacy.tally() as scrubbed:
        attempts, stopped = ask_until_kept(cfg, store, round_no, drawer, band, collector, spend)

    kept = collector.kept
    by_reason = Counter(r["reason"] for r in collector.removed)
    manifest.counts = {
        "requested": target,
        "kept": len(kept),
        "received": collector.received,
        "requests": spend.requests,
        "attempts": attempts,
        "removed": {r: by_reason.get(r, 0) for r in REASONS + EXTRA_REASONS + DROP_REASONS},
        "surplus": by_reason.get("surplus", 0),
        "failures": len(collector.failures),
        "shortfall": max(0, target - len(kept)),
        "length_outliers": by_reason.get("length_outlier", 0),
        "semantic_contaminated": by_reason.get(decontam_semantic.REASON, 0),
        "seed_mix": dict(sorted(collector.seed_mix.items())),
        "hygiene": collector.hygiene(),  # data.hygiene: refusals, cut, empty and failed replies dropped
    }
    manifest.models = {"generator": svc.model, "provider": svc.provider}
    # the ledger of every run (a crashed one's too), paid plus unknown-at-most: what `cost-usd` says
    manifest.usage = booked(spend.usage(), artifact_ledger(store, STAGE, round_no))
    manifest.extra = {
        "stopped": stopped,
        "budget_usd": cfg.budget.max_spend_usd,
        "asked_for": requested,
        "capped_by_max_synthetic_samples": target < requested,
        "spent_before_usd": round(spend.before, 6),
        "train_seeds": len(train),
        "seeds": seeding,
        "kind": rules.kind,
        "length_band": band,
        "semantic_threshold": (cfg.synthesize.decontaminate.threshold
                               if cfg.synthesize.decontaminate.semantic else None),
        "scrubbed": privacy.counts_of(scrubbed) if privacy.enabled(cfg) else None,
    }
    with store.write(name) as folder:
        write_jsonl(folder / "data.jsonl", kept)
        write_jsonl(folder / "removed.jsonl", collector.removed)
        write_jsonl(folder / "failures.jsonl", collector.failures)
        manifest.finish(folder).write(folder)
    return manifest


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = round_arg(args, store)
    if round_no < 1:
        raise DuoError("synthesize: --round must be 1 or more "
                       "(round 0 is the untuned baseline: nothing to train)")
    if args.plan:
        parts = plan(cfg, store, round_no, args.samples, force=args.force)
        note = (() if parts
                else ("synthesis skipped: no service LLM is configured (service.synthesize)",)
                if cfg.service.synthesize is None
                else (f"round-{round_no}/synthesize is complete: it is reused",))
        print(plan_text(f"synthesize round {round_no}", parts, cfg, spent_in_store(store), note))
        return 0
    if cfg.service.synthesize is None:
        # The workflow runs this job for every task; a task with no service LLM trains on its
        # coverage data alone.
        note = ("synthesis skipped: no service LLM is configured (service.synthesize); "
                "training on coverage data only")
        print(f"synthesize round {round_no}: {note}")
        gha.set_output("samples", 0)
        gha.set_output("cost-usd", "0")
        gha.set_output("trains", "true")
        gha.step_summary(f"### synthesize (round {round_no})\n{note}")
        return 0
    m = run(cfg, store, round_no, force=args.force, samples=args.samples)
    c, cost = m.counts, m.usage.get("cost_usd", 0.0)
    removed = ", ".join(f"{k} {v}" for k, v in c["removed"].items() if v) or "none"
    if c["shortfall"]:
        why = "the spend budget (budget.max_spend_usd) ran out" if m.extra.get("stopped") == "budget" else \
            f"synthesize.max_attempts ({cfg.synthesize.max_attempts}) was reached"
        print(f"  warning: {c['shortfall']} short of the target: {why}")
    publish(store, m.artifact, f"synthesize round {round_no}: kept {c['kept']}/{c['requested']} pairs from "
            f"{c['requests']} requests ({c['received']} pairs received; removed: {removed}; failures "
            f"{c['failures']}); cost ${cost:.4f}", samples=c["kept"], cost_usd=f"{cost:.6f}",
            # false: nothing new to train, so the workflow skips finetune, infer and evaluate
            trains="false" if no_new_rows(store, round_no) else "true")
    return 0
