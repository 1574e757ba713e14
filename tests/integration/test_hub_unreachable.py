"""An unreachable Hub fails in one line within seconds (issue 19, item 7): it took 26 s and 12 lines of the
client's retry chatter before the error (132 s and 56 lines for ``duo pull``). A refused connection, an unknown
host and a server that never answers are each told at once; 429 and 5xx are still retried."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from pipeline.cli import main
from pipeline.config import build_config
from pipeline.errors import DuoError
from pipeline.store import hub_transport, open_store


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers (a stuck proxy or a half-dead host)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


def make_cfg(root):
    doc = {"task": {"name": "demo"}, "data": {"source": "data.jsonl"}, "student": {"model": "m"},
           "store": {"kind": "hub", "namespace": "duo-org", "path": str(root)}}
    return build_config(doc, base_dir=root)


def timed_error(store) -> tuple[float, str]:
    start = time.monotonic()
    with pytest.raises(DuoError) as err:
        store.exists("prepare")
    return time.monotonic() - start, str(err.value)


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:{port}", "http://duo-no-such-host.invalid"])
def test_an_unreachable_hub_fails_in_one_line_at_once(tmp_path, monkeypatch, caplog, endpoint):
    """Regression (issue 19): the client's retries and ours ran one after the other, each line logged."""
    url = endpoint.format(port=closed_port())
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    store = open_store(make_cfg(tmp_path))  # the retry delays as shipped: nothing waits on them
    with caplog.at_level(logging.WARNING):
        seconds, msg = timed_error(store)
    print(f"\nunreachable Hub at {url}: {seconds:.2f} s to fail")
    assert seconds < 5
    assert msg.startswith(f"Hugging Face Hub at {url} is unreachable (") and "\n" not in msg
    assert msg.endswith("check HF_ENDPOINT and the network")
    assert [r for r in caplog.records if r.name.startswith("huggingface_hub")] == []


def test_a_hub_that_never_answers_fails_within_the_probe_timeout(tmp_path, monkeypatch, silent_server):
    url = f"http://127.0.0.1:{silent_server}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(hub_transport, "PROBE_TIMEOUT_S", 1.0)
    seconds, msg = timed_error(open_store(make_cfg(tmp_path)))
    print(f"\nsilent Hub: {seconds:.2f} s to fail (probe timeout 1 s)")
    assert seconds < 3 and msg.startswith(f"Hugging Face Hub at {url} is unreachable (")


def test_the_cli_says_it_in_one_line(tmp_path, monkeypatch, capsys):
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    (tmp_path / "data.jsonl").write_text("".join(f'{{"instruction": "q{i}", "response": "a{i}"}}\n'
                                                 for i in range(10)))
    (tmp_path / "duo.yaml").write_text("task: {name: demo}\ndata: {source: data.jsonl}\nstudent: {model: m}\n"
                                       "store: {kind: hub, namespace: duo-org}\n")
    start = time.monotonic()
    assert main(["prepare", str(tmp_path / "duo.yaml")]) == 1
    seconds = time.monotonic() - start
    err = capsys.readouterr().err.strip().splitlines()
    print(f"\nduo prepare, unreachable Hub: {seconds:.2f} s, {len(err)} line(s)")
    assert len(err) == 1 and err[0].startswith(f"error: Hugging Face Hub at {url} is unreachable (") and seconds < 5


def test_a_reachable_hub_still_retries_429_and_5xx(fake_hub, tmp_path):
    store = open_store(make_cfg(tmp_path))
    store.retry_delays = (0.0, 0.0, 0.0)
    fake_hub.fail_next("GET", r"/api/datasets/duo-org/demo-duo-data/tree/", 503)
    fake_hub.fail_next("GET", r"/api/datasets/duo-org/demo-duo-data/tree/", 429)
    assert not store.exists("prepare")  # answered after two retries: an empty repo
    statuses = [e["status"] for e in fake_hub.requests("GET", r"/api/datasets/duo-org/demo-duo-data/tree/")]
    assert statuses[:2] == [503, 429]
