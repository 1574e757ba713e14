"""Asking a judge LLM: the absolute judge (LlamaDuo's similarity and precision, 1-100), and
what every judge shares.

Input rows: ``_key`` (unique per row), ``instruction``, ``reference`` (the service LLM's answer),
``answer`` (the student's), ``category``. Every judge asks through the engine (so answers are
journaled and a rerun pays nothing for what it has), within the spend budget (``budget.Spend``), and
turns each reply into a verdict or a failure record that keeps the raw text. The pairwise judge is
in ``pairwise.py``, the judge panel in ``panel.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import carried_cost
from ..artifacts.evaluate import JUDGE_METRICS
from ..config import Config, ServiceLLMConfig
from ..data.chat import asked_fields
from ..data.privacy import scrub_messages
from ..data.structured import logged_schema
from ..schemas import first_problem
from ..stats.budget import Spend, not_sent, spent_in_store
from ..store import Store


class CutByBudget:
    """An outcome whose ``unsent`` counts requests the spend budget did not allow."""

    unsent: int

    @property
    def stopped(self) -> bool:
        """True when the spend budget cut the judge short."""
        return self.unsent > 0


@dataclass
class JudgeOutcome(CutByBudget):
    """What the absolute judge gave.

    Attributes:
        verdicts: row key -> list of ``{similarity, precision, similarity_reason,
            precision_reason, repeat}``, one per repeat that gave a valid reply (empty when every
            repeat failed or was not sent).
        failures: ``{id, repeat, error, raw, attempts}`` per repeat whose reply stayed invalid.
        usage: the manifest's usage (``budget.Spend.usage``: requests, tokens, cost_usd
            with the carried cost, ...).
        unsent: requests not sent because the spend budget would have been passed.
    """

    verdicts: dict[str, list[dict]]
    failures: list[dict]
    usage: dict
    unsent: int = 0

    def scores(self, keys: list[str], metrics=JUDGE_METRICS) -> dict[str, list[float | None]]:
        """Per metric, each row's mean over its valid repeats (None: unscored), in the order of ``keys``."""
        return {m: [_mean([v[m] for v in self.verdicts.get(k, [])]) for k in keys] for m in metrics}


# --------------------------------------------------------------------------- shared by every judge


def start_spend(cfg: Config, store: Store, svc: ServiceLLMConfig, artifact_name: str, *,
                already: float = 0.0, carry: bool = True) -> Spend:
    """A spend guard for a judge writing ``artifact_name``.

    The artifact being replaced keeps its spend in the ledger: its cost is carried into the new
    manifest (when ``carry``). ``already`` is new spend of this run not yet in any manifest
    (earlier judges of a panel).
    """
    carried = carried_cost(store, artifact_name) if carry else 0.0
    return Spend(cfg, svc, spent_in_store(store, exclude=artifact_name) + already, carried=carried)


def ask(svc: ServiceLLMConfig, planned: list[tuple], *, journal: Path | str, spend: Spend, desc: str
        ) -> tuple[list[tuple[tuple, object]], int]:
    """Send ``planned`` ((Request, ...) tuples) in budget-sized chunks, each send
    reserving its worst case first.

    Returns ((planned item, Result) for each sent request, in order; the number
    of requests not sent).
    """
    from ..llm import Engine

    engine = Engine(svc, journal=journal, spend=spend)
    answered, sent = [], 0
    for chunk in spend.chunks(planned):
        results = engine.run([item[0] for item in chunk], desc=desc)
        for item, res in zip(chunk, results):
            if not_sent(res):
                continue  # the spend cap kept it back (budget.Spend.reserve)
            sent += 1
            spend.add(res)
            answered.append((item, res))
    return answered, len(planned) - sent


def asked(row: dict) -> dict:
    """What a judge template is told of the question: ``instruction`` (the last user turn),
    ``system`` (the system prompt the student was given, or None), ``context`` (earlier turns,
    ``[{role, content}]``), ``category``, and ``tools`` / ``response_format`` (JSON text of the request's
    tool definitions and answer schema, or None)."""
    fmt = row.get("response_format")
    shown = logged_schema(row) or fmt  # the schema itself when there is one (json_object: the format)
    return {"instruction": row["instruction"], **asked_fields(row), "category": row.get("category"),
            "tools": json.dumps(row["tools"], ensure_ascii=False) if row.get("tools") else None,
            "response_format": json.dumps(shown, ensure_ascii=False) if fmt else None}


def raw_text(res) -> str | None:
    """The reply text kept in a failure record (the parsed data re-encoded when there is no text)."""
    return res.raw if res.raw is not None else (json.dumps(res.data) if res.data is not None else None)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# --------------------------------------------------------------------------- absolute judge


def absolute_verdict(data, schema: dict) -> tuple[dict | None, str | None]:
    """One judge reply as ``{similarity, precision, *_reason}``, or (None, problem)."""
    problem = first_problem(data, schema)
    if problem is None:
        try:
            sim, prec = data["similarity_assessment"], data["precision_assessment"]
            return {"similarity": float(sim["score"]), "precision": float(prec["score"]),
                    "similarity_reason": str(sim["reason"]), "precision_reason": str(prec["reason"])}, None
        except (KeyError, TypeError, ValueError) as exc:  # a custom schema that does not require these keys
            problem = f"missing {exc}"
    return None, f"reply does not match {schema.get('title') or 'the judge schema'}: {problem}"


def plan_absolute(cfg: Config, rows: list[dict], *, template: str, schema: dict,
                  repeats: int) -> list[tuple]:
    """One (Request,) per row and repeat, rows in order, repeats 0..repeats-1."""
    from ..llm import Request
    from ..prompts import render

    planned = []
    for row in rows:
        messages = render(cfg, template, **asked(row), reference=row["reference"], answer=row["answer"])
        # Personal data out before anything is sent (privacy.scrub).
        messages = scrub_messages(cfg, messages)
        planned += [(Request(key=row["_key"], messages=messages, schema=schema, repeat=k),)
                    for k in range(repeats)]
    return planned


def run_absolute(cfg: Config, svc: ServiceLLMConfig, rows: list[dict], *, spend: Spend, journal: Path | str,
                 template: str, schema_name: str, repeats: int, desc: str) -> JudgeOutcome:
    """The absolute judge with a spend guard given by the caller (a panel shares the
    budget among its judges)."""
    from ..prompts import load_reply_schema

    schema = load_reply_schema(cfg, schema_name)
    planned = plan_absolute(cfg, rows, template=template, schema=schema, repeats=repeats)
    answered, unsent = ask(svc, planned, journal=journal, spend=spend, desc=desc)
    verdicts: dict[str, list[dict]] = {row["_key"]: [] for row in rows}
    failures = []
    for _, res in answered:
        verdict, problem = absolute_verdict(res.data, schema) if res.ok else (None, res.error or "failed")
        if verdict is not None:
            verdicts[res.key].append({**verdict, "repeat": res.repeat})
            continue
        failures.append({"id": res.key, "repeat": res.repeat, "error": problem, "raw": raw_text(res),
                         "attempts": res.attempts})
    return JudgeOutcome(verdicts, failures, spend.usage(), unsent)


def judge_absolute(cfg: Config, store: Store, svc: ServiceLLMConfig, rows: list[dict], *,
                   journal: Path | str, artifact_name: str, template: str | None = None,
                   schema: str | None = None, repeats: int | None = None,
                   desc: str = "judge", already: float = 0.0, carry: bool = True) -> JudgeOutcome:
    """Ask judge ``svc`` ``repeats`` times per row to score the student's answer against
    the reference, in budget.

    Args:
        rows: dicts with ``_key``, ``instruction``, ``reference``, ``answer``, ``category``.
        journal: the engine's journal file (``evaluate`` uses
            ``store.journal_dir / "round-N-evaluate.jsonl"``).
        artifact_name: the artifact the scores go to: its current cost is carried, its manifest left
            out of the spend so far.
        template, schema, repeats: default ``cfg.evaluate.prompt``, ``.schema``, ``.judge_repeats``.
        already, carry: as in ``start_spend`` (when an earlier step of this run already spent or carried).
    """
    ev = cfg.evaluate
    spend = start_spend(cfg, store, svc, artifact_name, already=already, carry=carry)
    return run_absolute(cfg, svc, rows, spend=spend, journal=journal,
                        template=template or ev.prompt, schema_name=schema or ev.schema,
                        repeats=ev.judge_repeats if repeats is None else repeats, desc=desc)

