"""Captured gateway traffic written in the contract format (docs/rollout.md) for the canary's tests.

``write_capture(folder, pairs, ...)`` writes one group per (question, service answer, student answer): the
service's served call and the student's shadow copy (``student=None``: no shadow), with usage, latencies and,
optionally, student errors answered by the service as fallbacks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

SYSTEM = "You answer questions about European capitals in one sentence."
FACTS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
         ("Austria", "Vienna"), ("Poland", "Warsaw"), ("Greece", "Athens"), ("Sweden", "Stockholm"),
         ("Norway", "Oslo"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Ireland", "Dublin"),
         ("Belgium", "Brussels"), ("Hungary", "Budapest")]


def questions(n: int) -> list[tuple[str, str]]:
    """``n`` distinct (question, service answer) pairs."""
    out = []
    for i in range(n):
        country, city = FACTS[i % len(FACTS)]
        out.append((f"Question {i}: what is the capital city of {country}?",
                    f"The capital city of {country} is {city}, its largest and best known city."))
    return out


def completion(content: str, model: str, usage: tuple[int, int]) -> dict:
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


def line(group: str, role: str, deployment: str, model: str, ts: datetime, question: str, answer: str | None,
         latency: float, error: str | None = None, fallback: bool = False, usage=(30, 15)) -> dict:
    request = {"model": "support-bot", "messages": [{"role": "system", "content": SYSTEM},
                                                    {"role": "user", "content": question}]}
    return {"request": request,
            "response": None if error else completion(answer, model, usage),
            "duo": {"id": f"{group}-{role}", "group": group, "role": role, "deployment": deployment, "model": model,
                    "gateway": "litellm", "ts": ts.isoformat().replace("+00:00", "Z"), "latency_s": latency,
                    "error": error, "fallback": fallback,
                    "usage": None if error else {"prompt_tokens": usage[0], "completion_tokens": usage[1]}}}


def write_capture(folder: Path, answers: list[tuple[str, str, str | None]], *, start: datetime | None = None,
                  student_errors: int = 0, student_served: int = 0, service_model: str = "gpt-4o-mini",
                  student_model: str = "duo-student", name: str = "litellm-test-1.jsonl") -> Path:
    """One file of groups: ``(question, service answer, student answer or None)``. The first
    ``student_served`` groups are served by the student (the first ``student_errors`` of those fail and fall
    back to the service); the others are served by the service with the student as the shadow."""
    start = start or datetime.now(UTC) - timedelta(hours=1)
    path = Path(folder) / start.strftime("%Y-%m-%d") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (question, service, student) in enumerate(answers):
        ts = start + timedelta(seconds=10 * i)
        group = f"g{i:04d}"
        service_latency = 0.8 + 0.01 * (i % 20)
        student_latency = 0.2 + 0.005 * (i % 20)
        if i < student_served:
            if i < student_errors:
                rows.append(line(group, "served", "student", student_model, ts, question, None, 30.0,
                                 error="Timeout: the student did not answer in 30 s"))
                rows.append(line(group, "served", "service", service_model, ts, question, service, service_latency,
                                 fallback=True))
            else:
                rows.append(line(group, "served", "student", student_model, ts, question, student, student_latency,
                                 usage=(30, 12)))
            continue
        rows.append(line(group, "served", "service", service_model, ts, question, service, service_latency))
        if student is not None:
            rows.append(line(group, "shadow", "student", student_model, ts, question, student, student_latency,
                             usage=(30, 12)))
    with path.open("a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path
