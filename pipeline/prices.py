"""What a service LLM's tokens cost: the one place prices are resolved (budget, engine,
plan and decide use it).

The config's ``price_input_per_1m``/``price_output_per_1m`` win. Without them: a service
with ``base_url`` (your own server) is free; a paid provider (the real OpenAI or Gemini
endpoint) takes its model's price from the dated table ``schemas/prices.json`` (a dated id
such as ``gpt-4o-2024-05-13`` is priced as ``gpt-4o``); a paid model the table does not know
refuses to start unless the config sets ``allow_unpriced: true`` (then it counts as free,
and the spend cap cannot hold).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from .errors import DuoError

TABLE = Path(__file__).parent / "schemas" / "prices.json"
# dated or pinned suffixes of a model id: -2024-05-13, -0613, -001, -latest, -preview-05-20
_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{3,4}|latest|preview(-\d{2}-\d{2})?)$")


@functools.lru_cache(maxsize=1)
def table() -> dict:
    """The built-in price table: ``{"as_of", "source", "models": {"provider:model":
    {input_per_1m, ...}}}``."""
    return json.loads(TABLE.read_text(encoding="utf-8"))


def table_price(provider: str, model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens of ``provider:model`` from the table, date
    suffixes stripped; or None."""
    models = table()["models"]
    name = model.removeprefix("models/")
    while True:
        found = models.get(f"{provider}:{name}")
        if found is not None:
            return float(found["input_per_1m"]), float(found["output_per_1m"])
        shorter = _SUFFIX.sub("", name)
        if shorter == name:
            return None
        name = shorter


def price_of(svc, role: str | None = None) -> tuple[float, float]:
    """(input, output) USD per 1M tokens of service ``svc``; DuoError (one line) for an unpriced paid model.

    Args:
        svc: a ``ServiceLLMConfig``.
        role: where it sits in the config (``synthesize``, ``judge``, ``judge[1]``), named in the error.
    """
    given_in, given_out = svc.price_input_per_1m, svc.price_output_per_1m
    if given_in is not None and given_out is not None:
        return float(given_in), float(given_out)
    if svc.base_url:  # your own server: free unless the config says otherwise
        return float(given_in or 0.0), float(given_out or 0.0)
    found = table_price(svc.provider, svc.model)
    if found is None:
        if getattr(svc, "allow_unpriced", False):
            return float(given_in or 0.0), float(given_out or 0.0)
        where = f"service.{role or '<role>'}"
        raise DuoError(f"{where}.price_input_per_1m: no known price for {svc.provider}:{svc.model} "
                       f"(built-in table of {table()['as_of']}); "
                       f"set {where}.price_input_per_1m and .price_output_per_1m "
                       "(USD per 1M tokens), "
                       f"or {where}.allow_unpriced: true to run without a spend cap")
    return (float(given_in) if given_in is not None else found[0],
            float(given_out) if given_out is not None else found[1])


def check_prices(cfg) -> None:
    """Refuse to start (DuoError, one line) when a configured paid service has no known price."""
    for role, svc in cfg.service.roles():
        price_of(svc, role)


def price_text(svc) -> str:
    """``$2.50/$10.00 per 1M tokens (table of 2026-11-23)`` for a plan or a report."""
    pin, pout = price_of(svc)
    if svc.price_input_per_1m is not None and svc.price_output_per_1m is not None:
        source = "from the config"
    elif svc.base_url:
        source = "own server: free unless priced in the config"
    elif table_price(svc.provider, svc.model) is None:
        source = "unpriced (allow_unpriced)"
    else:
        source = f"table of {table()['as_of']}"
    return f"${pin:.2f} in / ${pout:.2f} out per 1M tokens ({source})"
