"""What a reply must be: JSON valid against the request's schema;
and the message that re-asks a reply that is not.

A reply may come wrapped in a Markdown code fence (providers without structured output like to do that).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .base import Completion

REASK = (Path(__file__).parent / "reask_schema.txt").read_text()
FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def parse_reply(text: str, schema: dict) -> tuple[object, str | None]:
    """(data, None) when ``text`` is JSON valid against ``schema``, else (None or data, what is wrong)."""
    import jsonschema

    m = FENCE.match(text)
    try:
        data = json.loads(m.group(1) if m else text)
    except ValueError as e:
        return None, f"not valid JSON ({e})"
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return data, f"at {where}: {error.message}"
    return data, None


CUT = "cut at the max-tokens limit"  # how a problem says its reply was cut (data.pairs counts these)


def check_reply(completion: Completion, schema: dict | None) -> tuple[object, str | None]:
    """(data, problem): the text itself without a schema, else ``parse_reply``;
    a cut reply says it was cut."""
    if schema is None:
        return completion.text, None
    data, problem = parse_reply(completion.text, schema)
    if problem and completion.finish_reason == "length":
        problem = f"reply {CUT}, {problem}"
    return data, problem


def reask(messages: list, reply: str, problem: str, schema: dict) -> list:
    """The conversation so far, the rejected reply, and a user turn that says what was wrong with it."""
    return [*messages, {"role": "assistant", "content": reply},
            {"role": "user", "content": REASK.format(error=problem, schema=json.dumps(schema))}]
