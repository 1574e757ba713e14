"""The pairwise judge: is the student's answer better than the service LLM's, worse, or as good?

Each row is asked twice, once with the student's answer as A (``student_first``) and once with the
service's as A (``service_first``), so a judge that favours a position cannot make the student win.
Per row the two verdicts are combined: the student wins in both orders -> ``win`` 1.0; loses in both
-> 0.0; anything else (a verdict that flips with the position, a tie in either order) -> 0.5; either
order failed or not sent -> None.

Input rows: ``_key``, ``instruction``, ``reference`` (the service's answer), ``answer`` (the
student's), ``category``. Output per row: ``pairwise`` (one
``{order, winner, position, reason, repeat}`` per valid verdict; ``winner`` is ``student``,
``service`` or ``tie``, ``position`` the judge's own ``A``, ``B`` or ``tie``) and ``win``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, ServiceLLMConfig
from ..data.privacy import scrub_messages
from ..schemas import first_problem
from ..store import Store
from .absolute import CutByBudget, ask, asked, raw_text, start_spend

PAIRWISE_TEMPLATE = "judge_pairwise.j2"
PAIRWISE_SCHEMA = "pairwise_verdict.schema.json"
# The index is the request's repeat number: its own journal entry.
ORDERS = ("student_first", "service_first")
WIN, TIE, LOSS = 1.0, 0.5, 0.0


@dataclass
class PairwiseOutcome(CutByBudget):
    """What the pairwise judge gave.

    Attributes:
        rows: row key -> ``{"pairwise": [verdict, ...], "win": 1.0 | 0.5 | 0.0 | None}``.
        failures: ``{id, order, repeat, error, raw, attempts}`` per order whose reply stayed invalid.
        usage: the manifest's usage (``budget.Spend.usage``).
        unsent: requests not sent because the spend budget would have been passed.
    """

    rows: dict[str, dict]
    failures: list[dict]
    usage: dict
    unsent: int = 0


def pairwise_verdict(data, schema: dict, order: str) -> tuple[dict | None, str | None]:
    """One reply as ``{order, winner, position, reason}`` (winner named as
    student/service/tie), or (None, problem)."""
    problem = first_problem(data, schema)
    if problem is None:
        try:
            position, reason = data["winner"], str(data["reason"])
        except (KeyError, TypeError) as exc:  # a custom schema that does not require these keys
            problem = f"missing {exc}"
        else:
            if position in ("A", "B", "tie"):
                student = "A" if order == "student_first" else "B"
                winner = "tie" if position == "tie" else ("student" if position == student else "service")
                return {"order": order, "winner": winner, "position": position, "reason": reason}, None
            problem = f"winner is {position!r}; expected A, B or tie"
    return None, f"reply does not match {schema.get('title') or 'the pairwise schema'}: {problem}"


def combine(verdicts: list[dict]) -> float | None:
    """``win`` of one row from its verdicts in both orders (None unless both orders have one)."""
    by_order = {v["order"]: v["winner"] for v in verdicts}
    if set(by_order) != set(ORDERS):
        return None
    winners = set(by_order.values())
    if winners == {"student"}:
        return WIN
    if winners == {"service"}:
        return LOSS
    return TIE


def plan_pairwise(cfg: Config, rows: list[dict], *, template: str, schema: dict) -> list[tuple]:
    """(Request, order) per row and order; the student's answer is A in ``student_first``, B
    in ``service_first``."""
    from ..llm import Request
    from ..prompts import render

    planned = []
    for row in rows:
        for repeat, order in enumerate(ORDERS):
            if order == "student_first":
                a, b = row["answer"], row["reference"]
            else:
                a, b = row["reference"], row["answer"]
            messages = render(cfg, template, **asked(row), answer_a=a, answer_b=b)
            # Personal data out before anything is sent (privacy.scrub).
            messages = scrub_messages(cfg, messages)
            request = Request(key=row["_key"], messages=messages, schema=schema, repeat=repeat)
            planned.append((request, order))
    return planned


def judge_pairwise(cfg: Config, store: Store, svc: ServiceLLMConfig, rows: list[dict], *,
                   journal: Path | str, artifact_name: str, template: str = PAIRWISE_TEMPLATE,
                   schema: str = PAIRWISE_SCHEMA, desc: str = "pairwise judge", already: float = 0.0,
                   carry: bool = True) -> PairwiseOutcome:
    """Ask judge ``svc`` whether each row's student answer beats the service's, in
    both orders, within budget.

    Args:
        rows: dicts with ``_key``, ``instruction``, ``reference``, ``answer``, ``category``.
        journal: the engine's journal file (a file of its own, e.g. ``round-N-pairwise.jsonl``).
        artifact_name: the artifact the verdicts go to (its cost is carried; see
            ``judging.start_spend``).
        template, schema: the prompt template and reply schema names.
        already, carry: as in ``judging.start_spend`` (when another judge of this run
            already spent or carried).
    """
    from ..prompts import load_reply_schema

    reply_schema = load_reply_schema(cfg, schema)
    planned = plan_pairwise(cfg, rows, template=template, schema=reply_schema)
    spend = start_spend(cfg, store, svc, artifact_name, already=already, carry=carry)
    answered, unsent = ask(svc, planned, journal=journal, spend=spend, desc=desc)
    verdicts: dict[str, list[dict]] = {row["_key"]: [] for row in rows}
    failures = []
    for (_, order), res in answered:
        if res.ok:
            verdict, problem = pairwise_verdict(res.data, reply_schema, order)
        else:
            verdict, problem = None, res.error or "failed"
        if verdict is not None:
            verdicts[res.key].append({**verdict, "repeat": res.repeat})
            continue
        failures.append({"id": res.key, "order": order, "repeat": res.repeat, "error": problem,
                         "raw": raw_text(res), "attempts": res.attempts})
    out = {key: {"pairwise": vs, "win": combine(vs)} for key, vs in verdicts.items()}
    return PairwiseOutcome(out, failures, spend.usage(), unsent)


def win_rate_counts(outcomes: PairwiseOutcome | Iterable) -> dict:
    """``{"wins", "ties", "losses", "n", "win_rate"}`` over the rows with a ``win``
    (None ones are left out).

    ``outcomes``: a PairwiseOutcome, or per-row dicts holding ``win``, or bare ``win`` values.
    ``win_rate`` is (wins + ties / 2) / n, None when n is 0.
    """
    if isinstance(outcomes, PairwiseOutcome):
        outcomes = outcomes.rows.values()
    wins = [o.get("win") if isinstance(o, dict) else o for o in outcomes]
    wins = [float(w) for w in wins if w is not None]
    counts = {"wins": wins.count(WIN), "ties": wins.count(TIE), "losses": wins.count(LOSS), "n": len(wins)}
    counts["win_rate"] = sum(wins) / len(wins) if wins else None
    return counts
