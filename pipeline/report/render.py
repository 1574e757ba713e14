"""How a report is rendered: the templates environment with the report's filters, and secrets held in
the environment (tokens, API keys) redacted from every report and PR body."""

from __future__ import annotations

import html
import os
import re
from functools import lru_cache

from ..formatting import condition, num, rule_row, signed
from ..templating import TEMPLATES_DIR, environment

SECRET_VARS = ("GITHUB_TOKEN", "GH_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY",
               "GEMINI_API_KEY", "GOOGLE_API_KEY")
BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
MAX_TEXT = 1500  # characters of one answer shown in the worst-samples table


# --------------------------------------------------------------------------- rendering


def _html(text) -> str:
    """Text from the data as HTML for a table cell: escaped, line breaks kept. A ``<br>`` written in
    the data (AlpacaEval's instructions have them) is a line break, not text to show escaped."""
    text = BR.sub("\n", str(text))
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + " …"
    return html.escape(text).replace("\n", "<br>")


FILTERS = {
    "num": num, "signed": signed, "condition": condition, "rule_row": rule_row, "html": _html,
    "md": lambda t: re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(t)),  # no raw HTML tags from data in markdown
    "cell": lambda t: html.escape(str(t), quote=False).replace("|", "\\|").replace("\n", " "),
    "pct": lambda x: "–" if x is None else f"{x:.0%}",
    "pval": lambda p: "< 0.001" if p < 0.001 else f"= {p:.3f}" if p < 0.1 else f"= {p:.2f}",
    "usd": lambda x: f"${x:,.2f}" if abs(x) >= 1 else f"${x:.4f}",
}


@lru_cache(maxsize=1)
def _environment():
    """The shared templates environment (``trim=True``) with the report's filters, as an overlay: the cached
    shared environment itself stays untouched."""
    env = environment(TEMPLATES_DIR, trim=True).overlay()
    env.filters = {**env.filters, **FILTERS}  # an overlay shares the filters dict: give it its own
    return env


def render(name: str, **context) -> str:
    return re.sub(r"\n{3,}", "\n\n", redact(_environment().get_template(name).render(**context)))


def redact(text: str) -> str:
    """Replace any secret held in the environment (tokens, API keys) by ``***``:
    never in reports or PR bodies."""
    for var in SECRET_VARS:
        value = os.environ.get(var) or ""
        if len(value) >= 6:
            text = text.replace(value, "***")
    return text
