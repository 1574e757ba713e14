"""``duo``: the command line. It parses arguments and calls one stage; stages live in their own modules."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import DuoError
from .errors import report as report_error
from .flags import add_config, fill

# verb -> one-line help; each verb is a module ``pipeline.stages.<verb>`` exposing
# ``command(cfg, args) -> int``.
VERBS = {
    "validate": "Check a task config and print every problem, one line each.",
    "prepare": "Load the coverage dataset, validate rows, make the fixed train/test split.",
    "synthesize": "Ask the service LLM for new pairs like the train seeds; clean, dedup, decontaminate.",
    "finetune": "LoRA/QLoRA fine-tune the student on coverage + synthetic data (TRL SFTTrainer).",
    "infer": "The student answers every test prompt (round 0: the untuned base, the baseline).",
    "evaluate": ("Score the answers (LLM judge, offline metrics), compare with the baseline; "
                 "apply the pass rule."),
    "report": "Write the round's report (markdown, metrics, charts); optionally open or update its PR.",
    "decide": ("Pass, stop (regressed, no data, plateau, budget, no service LLM) "
               "or start the next round (dispatching on GitHub)."),
    "run": ("Run rounds end to end on this machine: "
            "prepare, synthesize, finetune, infer, evaluate, report, decide."),
    "pull": ("Load a round's adapter from the store (default: the promoted, else the best, else the "
             "latest fine-tuned round) and generate from a prompt."),
    "promote": ("Record a report PR's review: "
                "merged promotes the round's adapter (production tag), closed rejects it."),
    "export": ("Export a round's adapter: a merged safetensors model, a GGUF file (llama.cpp, Ollama), "
               "or the vLLM command that serves it."),
    "serve": ("Serve a round's student as an OpenAI-compatible endpoint: llama-server on its GGUF (CPU) "
              "or vLLM with its LoRA (CUDA); prints the base_url, stops the engine on Ctrl-C/SIGTERM."),
    "rollout": ("Write the gateway's config (LiteLLM proxy or Portkey) for a canary of the student "
                "against the service, with fallback and shadow capture; print how to start it."),
    "feedback": ("Store reviewers' labels of a round's answers: the report PR's ticked boxes and "
                 "'/duo label ID good|bad' comments, or a CSV (--import)."),
    "unlock": ("Name who holds the task's lock and since when; "
               "remove it once its holder is gone (--force: even a live one)."),
    "canary": ("Compare the student with the service on captured traffic (shadowed prompts, errors, "
               "latency, cost) and decide ramp, hold or rollback; write the next gateway config."),
    "monitor": ("On recent captured traffic, dispatch a new round when the promoted student falls "
                "significantly behind the service (drift)."),
}

# Verbs that write to the store (and may pay): each holds the task's lock in the store while it runs.
WRITERS = ("prepare", "synthesize", "finetune", "infer", "evaluate", "report", "decide", "run", "promote",
           "feedback")
# Verbs that load the student with torch/transformers/peft: without the ``train`` extra they stop
# with one line.
NEEDS_TRAIN = ("finetune", "infer", "export", "run")
TRAIN_MODULES = ("torch", "transformers", "peft", "trl", "accelerate")
TRAIN_HINT = "pip install 'duo[train]' (or pip install -e '.[train]' in a checkout)"


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one ``error:`` line naming the verb and exit status 1, like every other duo error."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(1)


def _flags(verb: str) -> tuple:
    """The verb's own flags: ``FLAGS`` of module ``pipeline.stages.<verb>``
    (imported only for the verb being run)."""
    return tuple(importlib.import_module(f"pipeline.stages.{verb}").FLAGS)


def make_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``verb`` (the one being run) gets its full flags, the others only their one-line help."""
    parser = OneLineParser(
        prog="duo",
        description="Migrate a task from a service LLM to a small local model you own (LlamaDuo). "
                    "Every flag also reads an environment variable (shown in each verb's --help).",
    )
    parser.add_argument("--version", action="version", version=f"duo {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for name, help_text in VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_config(p)
        for flag in _flags(name) if name == verb else ():
            flag.add_to(p)
    return parser


def check_train_extra(verb: str, args: argparse.Namespace) -> None:
    """One line naming the extra to install, before a verb that needs it starts (and pays for) anything."""
    import importlib.util

    if verb not in NEEDS_TRAIN or getattr(args, "plan", False) or getattr(args, "to", None) == "vllm":
        return
    missing = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise DuoError(f"duo {verb} needs the 'train' extra (missing: {', '.join(missing)}): {TRAIN_HINT}")


def say(line: str) -> None:
    """A progress line on stderr (stdout keeps a stage's result)."""
    print(line, file=sys.stderr, flush=True)


class _StderrHandler(logging.StreamHandler):
    """Warnings of duo's modules as ``warning: ...`` lines on the stderr of the moment (tests swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("warning: %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler sets it on creation; the stderr of the moment wins
        pass


def warnings_to_stderr() -> None:
    """Show the warnings duo's modules log (a skipped journal line, a segment that is a folder) once each."""
    log = logging.getLogger("pipeline")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        log.addHandler(_StderrHandler())
        log.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    warnings_to_stderr()
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = make_parser(verb if verb in VERBS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and --version exit 0; a usage error was printed as one line: exit 1
        return int(exc.code or 0)
    if not args.verb:
        parser.print_help()
        return 1
    try:
        from .config import load_config
        from .config_reads import in_stage

        fill(args, _flags(args.verb))
        check_train_extra(args.verb, args)
        cfg = load_config(args.config, args.set)
        module = importlib.import_module(f"pipeline.stages.{args.verb}")
        from .model.launch import holds_no_lock

        # A process launched for a multi-process stage: its parent duo (or its rank 0) holds the lock.
        if args.verb not in WRITERS or getattr(args, "plan", False) or holds_no_lock():
            with in_stage(args.verb):
                return int(module.command(cfg, args) or 0)
        from .store import open_store
        from .store.lock import task_lock

        # one writer per task; a lock whose holder may be gone is waited for, with one line
        with task_lock(open_store(cfg), cfg.task.name, args.verb, say=say), in_stage(args.verb):
            return int(module.command(cfg, args) or 0)
    except DuoError as exc:  # a ConfigError too: one line per problem
        return report_error(exc)
    except ModuleNotFoundError as exc:  # an optional model package a stage imports on demand
        if (exc.name or "").split(".")[0] not in TRAIN_MODULES + ("datasets", "bitsandbytes"):
            raise
        print(f"error: duo {args.verb} needs the 'train' extra (No module named '{exc.name}'): {TRAIN_HINT}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: completed artifacts and paid-for answers are kept; "
              "run the same command to resume",
              file=sys.stderr)
        return 130


def entry() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    raise SystemExit(main())
