"""``duo``: the command line. It parses arguments and calls one stage; stages live in their own modules."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import ConfigError, DuoError

# verb -> one-line help; each verb is a module ``pipeline.<verb>`` exposing ``command(cfg, args) -> int``.
VERBS = {
    "validate": "Check a task config and print every problem, one line each.",
    "prepare": "Load the coverage dataset, validate rows, make the fixed train/test split.",
    "synthesize": "Ask the service LLM for new pairs like the train seeds; clean, dedup, decontaminate.",
    "finetune": "LoRA/QLoRA fine-tune the student on coverage + synthetic data (TRL SFTTrainer).",
    "infer": "Generate the fine-tuned student's answers to every test prompt.",
    "evaluate": "Score the student's answers: LLM judge and offline metrics; apply the pass rule.",
    "report": "Write the round's report (markdown, metrics, charts); optionally open or update its PR.",
    "decide": "Pass, stop on budget, or start the next round (dispatching the workflow on GitHub).",
    "run": "Run rounds end to end on this machine: prepare, synthesize, finetune, infer, evaluate, report, decide.",
    "pull": "Load a round's adapter from the store and generate from a prompt.",
}


def _common(p: argparse.ArgumentParser, *, with_round: bool = True) -> None:
    p.add_argument("config", help="Path to the task's YAML config (e.g. duo.yaml).")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="Override one config value (YAML syntax); repeatable.")
    if with_round:
        p.add_argument("--round", type=int, default=None,
                       help="Round number (1-based); default: the latest round with artifacts, or 1.")
    p.add_argument("--force", action="store_true", help="Redo the stage even when its artifact is complete.")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="duo",
        description="Migrate a task from a service LLM to a small local model you own (LlamaDuo).",
    )
    parser.add_argument("--version", action="version", version=f"duo {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for verb, help_text in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        _common(p, with_round=verb not in ("validate", "prepare"))
        if verb == "synthesize":
            p.add_argument("--samples", type=int, default=None,
                           help="Synthetic samples to add this round (default: from synthesize.samples/growth/schedule).")
        if verb == "report":
            p.add_argument("--open-pr", action="store_true",
                           help="Open (or update) the report's pull request on GitHub (needs GITHUB_TOKEN, "
                                "GITHUB_REPOSITORY).")
        if verb == "decide":
            p.add_argument("--dispatch", action="store_true",
                           help="Dispatch the next round's workflow on GitHub when the round falls short.")
        if verb == "run":
            p.add_argument("--rounds", type=int, default=None,
                           help="Stop after this many rounds (default: budget.max_rounds).")
        if verb == "pull":
            p.add_argument("--prompt", action="append", default=[],
                           help="A prompt to answer with the pulled adapter; repeatable.")
            p.add_argument("--output", default=None, help="Also copy the adapter folder here.")
            p.add_argument("--max-new-tokens", type=int, default=None, help="Default: infer.max_new_tokens.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not args.verb:
        parser.print_help()
        return 1
    try:
        from .config import load_config

        cfg = load_config(args.config, args.overrides)
        module = importlib.import_module(f"pipeline.{args.verb}")
        return int(module.command(cfg, args) or 0)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return 1
    except DuoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: completed artifacts and paid-for answers are kept; run the same command to resume",
              file=sys.stderr)
        return 130


def entry() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    raise SystemExit(main())
