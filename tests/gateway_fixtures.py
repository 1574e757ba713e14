"""The gateways ``duo rollout`` writes configs for, started on 127.0.0.1 for the gateway tests: LiteLLM's
proxy (``litellm --config``, from ``.venv-gateway``: litellm pins openai<3, duo needs openai>=3) and Portkey's
open-source gateway (node, from ``.gateway/portkey``). ``scripts/install test`` makes both; without them the
tests skip and say why. The student is a llama-server of its own per test module (the tests kill it), the
service the fake OpenAI server.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from tests.fakes.openai_server import FakeOpenAI
from tests.llama_server import LlamaServer, free_port, server_parts

ROOT = Path(__file__).resolve().parents[1]
LITELLM = ROOT / ".venv-gateway" / "bin" / "litellm"
PORTKEY = ROOT / ".gateway/portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
MASTER_KEY = "sk-" + "d0" * 32  # the proxy refuses to start without a master key
STUDENT_KEY_ENV, SERVICE_KEY_ENV = "DUO_TEST_STUDENT_KEY", "DUO_TEST_SERVICE_KEY"
START_TIMEOUT_S = 180


def litellm_binary() -> Path:
    if not LITELLM.is_file():
        pytest.skip(f"no LiteLLM proxy at {LITELLM}: scripts/install test creates .venv-gateway")
    return LITELLM


def portkey_command(port: int) -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: Portkey's gateway runs on Node.js")
    if not PORTKEY.is_file():
        pytest.skip(f"no Portkey gateway at {PORTKEY}: scripts/install test npm-installs it (needs npm)")
    return [node, str(PORTKEY), f"--port={port}", "--headless"]


def binomial_bounds(n: int, p: float, tail: float = 1e-4) -> tuple[int, int]:
    """The counts k with P(X <= k) and P(X >= k) both above ``tail`` for X ~ Binomial(n, p)."""
    pmf = [math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n + 1)]
    low = next(k for k in range(n + 1) if sum(pmf[:k + 1]) > tail)
    high = next(k for k in range(n, -1, -1) if sum(pmf[k:]) > tail)
    return low, high


class Process:
    """A gateway process: started with its log in a file, ready when ``health`` answers 200."""

    def __init__(self, cmd: list[str], env: dict, log: Path, port: int, health: str):
        self.cmd, self.env, self.log, self.port = cmd, env, log, port
        self.url = f"http://127.0.0.1:{port}"
        self.health = self.url + health
        self.proc: subprocess.Popen | None = None
        self.start_s = 0.0

    def start(self) -> Process:
        t0 = time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = t0 + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[0]} exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(self.health, timeout=5) as reply:
                    if reply.status < 500:
                        self.start_s = time.monotonic() - t0
                        return self
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    self.start_s = time.monotonic() - t0
                    return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.cmd[0]} not ready within {START_TIMEOUT_S} s: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        from pipeline.model.llamacpp import stop_process

        stop_process(self.proc)


class Stack:
    """The service (fake OpenAI), the student (a llama-server of its own) and a task config whose
    ``rollout:`` section points at them."""

    def __init__(self, base: Path, **rollout):
        binary, model = server_parts()
        self.base = base
        self.service = FakeOpenAI().start()
        self.student = LlamaServer(binary, model, base / "llama-server.log").start()
        doc = {"task": {"name": "demo"}, "data": {"source": "rows.jsonl"}, "student": {"model": "m"},
               "store": {"kind": "local", "path": str(base / "store")},
               "service": {"synthesize": {"provider": "openai", "model": "gpt-4o",
                                          "base_url": self.service.url + "/v1",
                                          "api_key_env": SERVICE_KEY_ENV,
                                          "price_input_per_1m": 1, "price_output_per_1m": 1}},
               "rollout": {"student": {"base_url": self.student.base_url, "model": self.student.model,
                                       "api_key_env": STUDENT_KEY_ENV}, **rollout}}
        self.config = base / "duo.yaml"
        self.config.write_text(yaml.safe_dump(doc))
        self.cfg = load_config(self.config)
        self.env = {**os.environ, SERVICE_KEY_ENV: self.service.api_key,
                    STUDENT_KEY_ENV: self.student.api_key,
                    "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def student_requests(self) -> int:
        """Chat completions the student's server took (one ``processing task`` line each in its log)."""
        return self.student.log_tail(10**9).count("launch_slot_")

    def service_requests(self) -> int:
        return len(self.service.requests("POST", "/v1/chat/completions"))

    def traffic(self) -> list[dict]:
        rows = []
        for path in sorted((self.base / "store" / "traffic").glob("*/*.jsonl")):
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return rows

    def stop(self) -> None:
        self.student.stop()
        self.service.stop()


def start_litellm(stack: Stack, config: Path) -> Process:
    port = free_port()
    cmd = [str(litellm_binary()), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
           "--num_workers", "1"]
    return Process(cmd, stack.env, stack.base / "litellm.log", port, "/health/liveliness").start()


def start_portkey(stack: Stack) -> Process:
    port = free_port()
    return Process(portkey_command(port), stack.env, stack.base / "portkey.log", port, "/").start()


def kill_student_midway(stack: Stack, ask_one, n: int, after: int) -> list:
    """Send ``n`` requests (``ask_one(i)``, 4 at a time) and kill the student's llama-server once ``after`` of
    them are answered; the results in request order (raises if any client request failed)."""
    done = []

    def one(i):
        result = ask_one(i)
        done.append(i)
        return result

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        while len(done) < after:
            time.sleep(0.05)
        stack.student.proc.kill()
        return [f.result() for f in futures]
