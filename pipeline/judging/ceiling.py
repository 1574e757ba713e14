"""The service's own consistency (the ceiling): the service LLM asked once more for each test prompt.

A student that matches the service cannot score 1.0 against the service's logged answer: the
service itself, asked again, gives another answer that scores well below that (gpt-4o-mini reaches
~0.36-0.49 ROUGE-L against gpt-4o on AlpacaEval prompts). So round 0's evaluation asks the service a
second time for every test prompt, exactly as the student was asked (system prompt, earlier turns,
last user turn), and scores that second answer against the logged one with every metric and the
judge. Every round then compares its student with it prompt by prompt (``vs_service`` in
``metrics.json``; a pass-rule condition with ``vs: service`` is a parity rule).

The second answers are asked with ``service.synthesize`` (its model and params, unless
``evaluate.ceiling`` gives others), journaled beside the judges' journal of round 0, counted by
``--plan`` and held to the spend cap; round 0 is evaluated once per test set, so they are paid once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, ServiceLLMConfig
from ..data.chat import prompt_messages
from ..data.privacy import scrub_messages
from ..data.structured import api_messages, request_params
from ..errors import DuoError
from ..store import BASELINE_ROUND, Store
from .absolute import CutByBudget, ask, start_spend

PREFIX = "ceiling:"  # the row key of a second answer (the student's keys never start with it)


@dataclass
class CeilingOutcome(CutByBudget):
    """What asking the service again gave.

    Attributes:
        rows: one answer row per test prompt answered (``id``, ``instruction``, ``reference``,
            ``category``, ``system``, ``context``, ``answer``: the second answer, ``sample`` 0,
            ``_key``: ``ceiling:<id>``, ``finish_reason``, ``model``).
        failures: ``{id, error, raw, attempts}`` per prompt that got no answer.
        usage: the manifest's usage of these requests (``budget.Spend.usage``, carried cost included).
        cost: what this run paid for them (no carried cost).
        unsent: requests the spend cap kept back.
    """

    rows: list[dict]
    failures: list[dict]
    usage: dict
    cost: float = 0.0
    unsent: int = 0
    model: str = ""  # provider:model asked


def ceiling_service(cfg: Config) -> ServiceLLMConfig | None:
    """The service asked for the second answers, or None when the ceiling is off
    (``evaluate.ceiling.enabled: false``, or ``auto`` without ``service.synthesize``)."""
    c = cfg.evaluate.ceiling
    svc = cfg.service.synthesize
    if c.enabled is False or svc is None:
        if c.enabled is True and svc is None:
            raise DuoError("evaluate.ceiling.enabled is true but no service.synthesize is configured: "
                           "the ceiling asks that service once more for each test prompt")
        return None
    return dataclasses.replace(svc, model=c.model or svc.model, params={**(svc.params or {}), **c.params})


def asks_ceiling(cfg: Config, round_no: int) -> bool:
    """True when this round's evaluation asks for the ceiling: round 0 (the baseline), once per test set."""
    return int(round_no) == BASELINE_ROUND and ceiling_service(cfg) is not None


def prompts(rows: list[dict]) -> list[dict]:
    """One row per test prompt (the first sample of each), in order."""
    seen, out = set(), []
    for r in rows:
        if str(r["id"]) not in seen:
            seen.add(str(r["id"]))
            out.append(r)
    return out


def plan_ceiling(cfg: Config, rows: list[dict]) -> list[tuple]:
    """One (Request,) per test prompt: the conversation the student was asked, personal data scrubbed, with
    the logged request's ``tools`` and ``response_format`` (a structured task: docs/structured.md)."""
    from ..llm import Request

    def messages(r: dict) -> list:
        scrubbed = scrub_messages(cfg, prompt_messages(r))
        return api_messages(scrubbed) if r.get("tools") else scrubbed

    return [(Request(key=PREFIX + str(r["id"]), messages=messages(r), params=request_params(r) or None),)
            for r in prompts(rows)]


def journal_of(journal: Path) -> Path:
    """The ceiling's journal, beside the judges' journal of round 0."""
    return journal.with_name(journal.stem + "-ceiling.jsonl")


def ask_ceiling(cfg: Config, store: Store, rows: list[dict], *, journal: Path,
                artifact_name: str) -> CeilingOutcome:
    """Ask the ceiling's service once for each test prompt of ``rows`` (answer rows of round 0), in budget."""
    svc = ceiling_service(cfg)
    if svc is None:
        raise ValueError("the ceiling is off (see ceiling_service)")
    spend = start_spend(cfg, store, svc, artifact_name)
    planned = plan_ceiling(cfg, rows)
    answered, unsent = ask(svc, planned, journal=journal_of(journal), spend=spend, desc="service again")
    by_key = {PREFIX + str(r["id"]): r for r in prompts(rows)}
    out, failures = [], []
    for _, res in answered:
        row = by_key[res.key]
        text = res.data if isinstance(res.data, str) else None
        if not res.ok or text is None or not text.strip():
            failures.append({"id": row["id"], "error": res.error or "empty answer", "raw": res.raw,
                             "attempts": res.attempts})
            continue
        kept = ("id", "instruction", "reference", "category", "system", "context")
        out.append({k: row.get(k) for k in kept} | request_params(row)
                   | {"answer": text, "sample": 0, "_key": res.key, "finish_reason": res.finish_reason,
                      "model": f"{svc.provider}:{svc.model}"})
    return CeilingOutcome(out, failures, spend.usage(), spend.cost, unsent, f"{svc.provider}:{svc.model}")


def ask_for_round(cfg: Config, store: Store, round_no: int, rows: list[dict], name: str,
                  stage: str) -> CeilingOutcome | None:
    """Round 0's evaluation asks the service once more for each test prompt; None in other rounds (and
    when the ceiling is off). ``stage``: the journal's stage (``evaluate``)."""
    if not asks_ceiling(cfg, round_no):
        return None
    from ..llm.journal.sync import open_journal
    from ..prices import check_prices

    check_prices(cfg)
    journal = open_journal(store, cfg, stage, round_no)
    return ask_ceiling(cfg, store, rows, journal=journal, artifact_name=name)


def ceiling_summary(ceiling: CeilingOutcome | None, rows: list[dict] | None) -> dict:
    """What ``metrics.json`` says of the ceiling's answers (``ceiling_source``): the round that asked,
    the model, how many answers and failures; {} without a ceiling."""
    if not rows:
        return {}
    here = ceiling is not None
    return {"ceiling_source": {"round": BASELINE_ROUND,
                               "model": ceiling.model if here else rows[0].get("model"),
                               "answers": len(rows),
                               "failures": len(ceiling.failures) if here else None}}
