"""``duo validate``: everything that would otherwise fail after money is spent,
one line per problem.

The CLI already loaded the config and checked it against the schema. Here: the fine-tuning recipe's
keys by the same code ``duo finetune`` runs (``sft_recipe.effective``: the installed peft and TRL's option
names, cached per version so that only the first call imports them, ~6 s; without peft/TRL a note says the
keys went unchecked), the data source and its first
rows with the column mapping, the prompt templates and reply schemas, every threshold and rule bound
against its metric's range, the test size against the row count, the store, and each service's
API-key variable (a warning, an error with ``--strict``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from ..config import Config
from ..errors import ConfigError, DuoError
from ..flags import WITHOUT_ROUND, Flag
from ..model.sft_recipe import effective
from ..rollout.checks import rollout_problems
from ..stats.structured_metrics import STRUCTURED
from ..stats.task_kind import kind_problems
from ..tracking.checks import problems as tracking_problems

STRICT = Flag("--strict",
              "Also fail when a service's API-key variable is not set (the workflow's first job).",
              kind="switch")
FLAGS = (*WITHOUT_ROUND, STRICT)
HEAD = 20  # rows of the data source read to check the column mapping
# What each metric's per-sample score can be: judge scores 1-100, win rate and ROUGE-L 0-1,
# BLEU 0-100, cosine.
RANGES = {
    "similarity": (1, 100),
    "precision": (1, 100),
    "win_rate": (0, 1),
    "rougeL": (0, 1),
    "bleu": (0, 100),
    "embedding": (-1, 1),
    **{m: (0, 1) for m in STRUCTURED},  # json, label and tool-call metrics (docs/structured.md)
}


def recipe(cfg: Config) -> tuple[dict, dict, str]:
    """(LoRA kwargs, SFT kwargs, note): checked when peft and TRL are installed, else as
    written plus defaults."""
    if all(importlib.util.find_spec(name) is not None for name in ("peft", "trl")):
        try:
            lora, sft = effective(cfg)
            return lora, sft, ""
        except ImportError as exc:
            why = f"cannot import peft/trl: {str(exc).splitlines()[0]}"
    else:
        why = "peft/trl not installed"
    return dict(cfg.finetune.lora), dict(cfg.finetune.sft), f" (keys not checked: {why})"


def _span(lo: float, hi: float) -> str:
    return f"{lo:g}–{hi:g}"


def data_problems(cfg: Config) -> list[str]:
    """The source exists and parses, its first rows fit the column mapping, and the whole file
    holds what ``prepare`` needs: enough valid, distinct rows for the test size (and no bad row
    at all under ``data.on_bad_row: fail``)."""
    from ..data.rows import invalid_reason
    from ..data.sources import detect_format, load_source

    size = cfg.data.test.size
    out = []
    if size >= 1 and size != int(size):
        out.append(f"data.test.size: found {size:g}; "
                   "expected a fraction in (0, 1) or a whole count of test rows")
    try:
        if detect_format(cfg) in ("hub", "stored_completions"):
            return out  # checked by `duo prepare`: validate makes no network call
        src = load_source(cfg)
    except DuoError as exc:
        return [*out, str(exc)]
    bad = [(row, reason) for row in src.rows[:HEAD] if (reason := invalid_reason(row, cfg))]
    if bad:
        row, reason = bad[0]
        if len(bad) > 1:
            more = f" (and {len(bad) - 1} more of the first {min(HEAD, len(src.rows))} rows)"
        else:
            more = ""
        # the first rows say the mapping is wrong: the rest of the file would only repeat it
        return [*out, f"{src.where(row)}: {reason}{more}"]
    if size >= 1 and size == int(size) and size >= len(src.rows):
        return [*out, (f"data.test.size: found {int(size)} test rows; "
                       f"expected fewer than the {len(src.rows)} rows of "
                       f"{cfg.data.source} (or a fraction in (0, 1))")]
    return out if out else _split_problems(cfg, src)


def _split_problems(cfg: Config, src) -> list[str]:
    """What ``prepare`` would refuse after reading every row: a bad row under
    ``on_bad_row: fail``, fewer than two valid distinct rows, a test size they cannot spare."""
    from ..data.rows import enough_rows, holdout_count, read_rows

    try:
        valid, bad = read_rows(cfg, src)
        enough_rows(src, valid, bad)
        duplicates = sum(1 for b in bad if b["kind"] == "duplicate")
        holdout_count(len(valid), cfg.data.test.size, duplicates)
    except DuoError as exc:
        return [str(exc)]
    return []


def file_problems(cfg: Config) -> list[str]:
    """Every prompt template and reply schema the config names exists (and each schema is a JSON Schema)."""
    from ..prompts import find_template, load_reply_schema

    ev = cfg.evaluate
    names = [("synthesize.prompt", cfg.synthesize.prompt, find_template),
             ("synthesize.schema", cfg.synthesize.schema, load_reply_schema),
             ("evaluate.prompt", ev.prompt, find_template),
             ("evaluate.schema", ev.schema, load_reply_schema)]
    if ev.pairwise or "win_rate" in ev.metrics:
        names += [("evaluate.pairwise_prompt", ev.pairwise_prompt, find_template),
                  ("evaluate.pairwise_schema", ev.pairwise_schema, load_reply_schema)]
    out = []
    for field, name, check in names:
        try:
            check(cfg, name)
        except DuoError as exc:
            out.append(f"{field}: {exc}")
    return out


def _rule_problem(where: str, rule) -> str | None:
    key, bound = ("min", rule.min) if rule.min is not None else ("above", rule.above)
    if bound is None or rule.metric not in RANGES:
        return None
    lo, hi = RANGES[rule.metric]
    if rule.vs or rule.stat == "diff":  # a paired difference: anywhere between -(hi - lo) and hi - lo
        lo, hi, what = -(hi - lo), hi - lo, f"a difference of {rule.metric} vs {rule.vs or 'baseline'}"
    elif rule.stat == "pass_rate":
        lo, hi, what = 0, 1, f"a {rule.metric} pass rate"
    else:
        what = f"{rule.metric} {rule.stat}"
    if lo <= bound <= hi and not (key == "above" and bound == hi):
        return None
    return f"{where}.{key}: found {bound:g}; expected {what} within {_span(lo, hi)}"


def metric_problems(cfg: Config) -> list[str]:
    """Thresholds and pass-rule bounds within the range their metric can reach (a judge min
    of 900 never passes)."""
    ev, out = cfg.evaluate, []
    for metric, value in ev.thresholds.items():
        if metric not in RANGES:
            out.append(f"evaluate.thresholds.{metric}: unknown metric; expected one of {', '.join(RANGES)}")
        elif not RANGES[metric][0] <= value <= RANGES[metric][1]:
            out.append(f"evaluate.thresholds.{metric}: found {value:g}; expected {_span(*RANGES[metric])}")
    ceiling = ev.ceiling.enabled is not False and cfg.service.synthesize is not None
    if ev.ceiling.enabled is True and cfg.service.synthesize is None:
        out.append("evaluate.ceiling.enabled: true, but no service.synthesize is configured; expected a "
                   "service to ask once more for each test prompt (or enabled: auto)")
    for key in ("pass_rule", "offline_pass_rule"):
        for i, rule in enumerate(getattr(ev, key) or []):
            problem = _rule_problem(f"evaluate.{key}[{i}]", rule)
            if problem:
                out.append(problem)
            elif rule.vs == "service" and not ceiling:
                why = ("evaluate.ceiling.enabled is false" if ev.ceiling.enabled is False
                       else "no service.synthesize to ask")
                out.append(f"evaluate.{key}[{i}].vs: service, but no ceiling is measured ({why}); expected "
                           "a service to ask once more for each test prompt, or the rule can never hold")
    return out


def store_problems(cfg: Config) -> list[str]:
    out = []
    if cfg.store.kind == "hub" and not cfg.store.namespace:
        out.append("store.namespace: missing; expected the Hub user or organisation that owns the repos "
                   "(store.kind is hub)")
    path = cfg.resolve(cfg.store.path)
    if path.exists() and not path.is_dir():
        out.append(f"store.path: {path} is a file; expected a folder (or a path that does not exist yet)")
    return out


def key_problems(cfg: Config) -> list[str]:
    """Each configured service whose API-key variable is unset or empty."""
    out = []
    for role, s in cfg.service.roles():
        if not os.environ.get(s.api_key_env, "").strip():
            out.append(f"service.{role}: ${s.api_key_env} is not set; "
                       f"expected the API key for {s.provider}:{s.model} "
                       f"in that environment variable")
    return out


def privacy_problems(cfg: Config) -> list[str]:
    """Scrubbing is on for a configured service but its detector is not installed here (a warning:
    the jobs that send may run elsewhere, with the ``privacy`` extra)."""
    from ..data import privacy

    if (not list(cfg.service.roles())
            or not privacy.enabled(cfg)
            or importlib.util.find_spec("presidio_analyzer")):
        return []
    return [("privacy.scrub: on, but presidio-analyzer is not installed here; "
             f"the stages that send to a service need it: {privacy.HINT} "
             "(or set privacy.scrub: false to send data unscrubbed)")]


def price_problems(cfg: Config) -> list[str]:
    """A paid service whose model has no known price (the spend cap could not hold)."""
    from ..prices import price_of

    out = []
    for role, svc in cfg.service.roles():
        try:
            price_of(svc, role)
        except DuoError as exc:
            out.append(str(exc))
    return out


def reply_limit_problems(cfg: Config) -> list[str]:
    """A token limit in a service's params that is not a whole number of tokens
    (the spend cap reserves each request's reply at it)."""
    from ..llm.usage import LIMIT_NAMES

    out = []
    for role, svc in cfg.service.roles():
        for key in LIMIT_NAMES:
            value = (svc.params or {}).get(key)
            if value is not None and (type(value) is not int or value < 1):
                out.append(f"service.{role}.params.{key}: found {value!r}; "
                           "expected a whole number of tokens, 1 or more")
    return out


def reply_limit_notes(cfg: Config) -> list[str]:
    """Each service whose params set no max_tokens: the limit its requests are sent with instead
    and what a reply may cost then (the spend cap reserves that much for every request). Read
    once ``reply_limit_problems`` found nothing."""
    from ..llm.usage import DEFAULT_MAX_OUTPUT_TOKENS, output_limit
    from ..prices import price_of

    out = []
    for role, svc in cfg.service.roles():
        if output_limit(svc.params or {}) is not None:
            continue
        try:
            dearest = DEFAULT_MAX_OUTPUT_TOKENS * price_of(svc, role)[1] / 1e6
        except DuoError:
            continue  # unpriced: price_problems says so
        out.append(f"service.{role}: {svc.provider}:{svc.model} sets no params.max_tokens; "
                   f"each request is sent with a limit of {DEFAULT_MAX_OUTPUT_TOKENS} output tokens, "
                   f"so its reply costs at most ${dearest:.4f} (plus its prompt)")
    return out


def _pairs(values: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in values.items())


def command(cfg: Config, args: argparse.Namespace) -> int:
    errors: list[str] = []
    try:
        lora, sft, note = recipe(cfg)
    except DuoError as exc:
        errors.append(str(exc))
    for check in (data_problems, file_problems, metric_problems, store_problems, price_problems,
                  reply_limit_problems, rollout_problems, kind_problems, tracking_problems):
        errors.extend(check(cfg))
    missing_keys = key_problems(cfg)
    if getattr(args, "strict", False):
        errors.extend(missing_keys)
    else:
        for line in missing_keys:
            print(f"warning: {line} (an error with --strict)", file=sys.stderr)
    for line in privacy_problems(cfg):
        print(f"warning: {line}", file=sys.stderr)
    if errors:
        raise ConfigError(list(dict.fromkeys(errors)))
    svc = cfg.service
    print(f"{cfg.source_path}: ok "
          f"(task {cfg.task.name}, student {cfg.student.model}, store {cfg.store.kind})")
    for role in ("synthesize", "judge"):
        s = getattr(svc, role)
        print(f"  service.{role}: " + (f"{s.provider}:{s.model}" if s else "none (offline)"))
    for line in reply_limit_notes(cfg):
        print(f"  note: {line}")
    print(f"  finetune.lora: {_pairs(lora)}{note}")
    print(f"  finetune.sft: {_pairs(sft)}{note}")
    return 0
