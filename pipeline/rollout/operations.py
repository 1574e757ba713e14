"""What the captured calls of a window say about serving, apart from answer quality: the measured split, error
and fallback rates, latency p50/p95 of the student and the service, the cost of 1,000 requests of each and the
break-even volume (``duo canary``, ``duo monitor``).

A client request is a ``group``: its served call (and, when the student failed, the service's fallback call)
plus a shadow copy when the gateway mirrored it. Costs: the service's from the tokens each of its calls used
(``usage``) at its price (the config's ``price_*_per_1m`` for the service, else the built-in table for the
call's model); the student's from ``rollout.student_cost_per_hour_usd`` over the time from its first call in
the window to the window's end, shared by the calls it answered. The break-even volume is the request rate at
which the student's hourly price equals what the service would charge for the same requests.
"""

from __future__ import annotations

from datetime import datetime

from ..config import Config
from ..data.traffic import Call
from ..errors import DuoError
from ..prices import price_of, table_price


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(values, q)), 4)


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def deployment_figures(calls: list[Call], deployment: str) -> dict:
    """Requests, errors, error rate and latency p50/p95 (of the calls that answered) of one deployment."""
    mine = [c for c in calls if c.deployment == deployment]
    errors = sum(1 for c in mine if c.error is not None)
    latencies = [c.latency_s for c in mine if c.error is None and c.latency_s is not None]
    return {"requests": len(mine), "served": sum(1 for c in mine if c.role == "served"),
            "shadow": sum(1 for c in mine if c.role == "shadow"), "errors": errors,
            "error_rate": _rate(errors, len(mine)), "latency_p50_s": _percentile(latencies, 50),
            "latency_p95_s": _percentile(latencies, 95)}


def split(groups: dict[str, list[Call]]) -> dict:
    """Who answered the clients: requests, the student's share of them (served by the student without
    error) and the fallbacks (the student failed, the service answered)."""
    requests = [g for g in groups.values() if any(c.role == "served" for c in g)]
    student = sum(1 for g in requests
                  if any(c.role == "served" and c.deployment == "student" and c.ok for c in g))
    routed = sum(1 for g in requests if any(c.role == "served" and c.deployment == "student" for c in g))
    fallbacks = sum(1 for g in requests if any(c.fallback for c in g))
    return {"requests": len(requests), "routed_to_student": routed, "served_by_student": student,
            "student_share": _rate(student, len(requests)), "routed_share": _rate(routed, len(requests)),
            "fallbacks": fallbacks, "fallback_rate": _rate(fallbacks, routed)}


def _service_price(cfg: Config, model: str) -> tuple[tuple[float, float] | None, str]:
    svc = cfg.service.synthesize
    if svc is not None and svc.price_input_per_1m is not None and svc.price_output_per_1m is not None:
        return price_of(svc, "synthesize"), "service.synthesize's price in the config"
    provider = svc.provider if svc is not None else "openai"
    found = table_price(provider, model) if model else None
    if found is not None:
        return found, f"built-in price table ({provider}:{model})"
    if svc is not None:
        try:
            return price_of(svc, "synthesize"), "service.synthesize's price"
        except DuoError:  # an unpriced paid model: the report says so instead of stopping
            return None, f"no price known for {svc.model}"
    return None, f"no price known for {model or 'the service'}"


def costs(cfg: Config, calls: list[Call], requests: int, hours: float) -> dict:
    """Cost per 1,000 requests of the service and of the student, and the break-even volume; ``hours``: the
    time the student served in the window (from its first call to the window's end)."""
    priced, tokens, why = [], [0, 0], set()
    for c in calls:
        if c.deployment != "service" or c.error is not None or not c.usage:
            continue
        price, source = _service_price(cfg, c.model)
        why.add(source)
        if price is None:
            continue
        pin, pout = int(c.usage.get("prompt_tokens") or 0), int(c.usage.get("completion_tokens") or 0)
        tokens[0] += pin
        tokens[1] += pout
        priced.append((pin * price[0] + pout * price[1]) / 1e6)
    service_per_request = sum(priced) / len(priced) if priced else None
    per_hour = float(cfg.rollout.student_cost_per_hour_usd)
    answered = sum(1 for c in calls if c.deployment == "student" and c.error is None)
    student_per_request = per_hour * hours / answered if answered else None
    volume = requests / hours if hours else None
    breakeven = per_hour / service_per_request if service_per_request else None
    return {
        "service_per_1k_usd": None if service_per_request is None else round(service_per_request * 1000, 6),
        "student_per_1k_usd": None if student_per_request is None else round(student_per_request * 1000, 6),
        "service_priced_calls": len(priced), "service_tokens": {"input": tokens[0], "output": tokens[1]},
        "service_price_source": sorted(why), "student_cost_per_hour_usd": per_hour,
        "serving_hours": round(hours, 4),
        "student_answers": answered, "requests_per_hour": None if volume is None else round(volume, 3),
        "breakeven_requests_per_hour": None if breakeven is None else round(breakeven, 1),
        "breakeven_requests_per_day": None if breakeven is None else round(breakeven * 24),
    }


def operations(cfg: Config, calls: list[Call], groups: dict[str, list[Call]], hours: float,
               until: datetime | None = None) -> dict:
    """Everything above for a window of ``hours`` ending at ``until``: the costs count the time from the first
    call to ``until`` (the student has served since then), at most the window, at least a minute."""
    if calls and until is not None:
        hours = min(hours, max((until - calls[0].ts).total_seconds() / 3600, 1 / 60))
    s = split(groups)
    return {"split": s, "student": deployment_figures(calls, "student"),
            "service": deployment_figures(calls, "service"),
            "costs": costs(cfg, calls, s["requests"], float(hours))}
