"""Issue 12: a built wheel is a working duo. The wheel (``pip wheel --no-deps --no-build-isolation``) goes into a
fresh virtualenv whose only extra path is this project's site-packages (for the dependencies; duo's own editable
finder there is not loaded), then ``duo validate``, ``duo prepare`` and ``duo synthesize`` (``--plan``, then for real
against the fake OpenAI server) run from a folder outside the repository, with no ``prompts/`` anywhere near: the
packaged default templates must be in the wheel."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "alpaca_eval_sample.jsonl"

pytestmark = pytest.mark.slow


def build_wheel(dest: Path) -> Path:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(dest), str(ROOT)], capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    [wheel] = dest.glob("duo-*.whl")
    return wheel


def make_venv(folder: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed (no deps) and the project's site-packages appended to its path."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # A plain path line: appended after the venv's own site-packages, and .pth files inside it are not run.
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    Path(purelib, "project_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                          str(wheel)], capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return folder / "bin"


ROWS = SAMPLE.read_text().splitlines()[:12]
# Replies as long as a typical coverage answer: synthesize drops replies outside the seeds' length range.
REPLY_CHARS = sorted(len(json.loads(line)["output"]) for line in ROWS)[len(ROWS) // 2]


def synth_reply(body: dict) -> dict:
    n = len(json.dumps(body))
    pairs = []
    for i in range(5):
        text = f"A plain answer about the colour and the number {n + i}. "
        pairs.append({"instruction": f"Name a colour that rhymes with number {n + i}.",
                      "response": (text * (1 + REPLY_CHARS // len(text)))[:REPLY_CHARS].strip()})
    return {"contents": pairs}


def test_wheel_runs_from_outside_the_repository(tmp_path, fake_openai):
    wheel = build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"pipeline/prompts_default/synthesize.j2", "pipeline/prompts_default/judge.j2"} <= set(names)
    assert not any(n.startswith("prompts/") for n in names)
    bindir = make_venv(tmp_path / "venv", wheel)

    work = tmp_path / "team"
    work.mkdir()
    (work / "coverage.jsonl").write_text("\n".join(ROWS) + "\n")
    service = {"provider": "openai", "model": "gpt-4o", "price_input_per_1m": 5.0, "price_output_per_1m": 15.0,
               "rpm": None, "max_retries": 1, "concurrency": 2}
    (work / "duo.yaml").write_text(yaml.safe_dump({
        "task": {"name": "wheel-demo", "description": "short answers"},
        "data": {"source": "coverage.jsonl", "test": {"size": 3, "seed": 1},
                 "columns": {"instruction": "instruction", "response": "output", "category": "dataset"}},
        "student": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        "service": {"synthesize": service},
        "synthesize": {"samples": 5, "pairs_per_request": 5},
        "budget": {"max_spend_usd": 1.0}}))
    fake_openai.set_responder(synth_reply)
    env = {"PATH": f"{bindir}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
           "OPENAI_API_KEY": fake_openai.api_key, "OPENAI_BASE_URL": f"{fake_openai.url}/v1",
           "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}

    def duo(*argv: str) -> str:
        out = subprocess.run([str(bindir / "duo"), *argv], cwd=work, env=env, capture_output=True, text=True,
                             timeout=300, check=False)
        assert out.returncode == 0, f"duo {' '.join(argv)}:\n{out.stdout}\n{out.stderr}"
        return out.stdout + out.stderr

    where = subprocess.run([str(bindir / "python"), "-c", "import pipeline; print(pipeline.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert str(tmp_path / "venv") in where, where  # the wheel's copy, not the checkout
    duo("validate", "duo.yaml")
    duo("prepare", "duo.yaml")
    assert "requests" in duo("synthesize", "duo.yaml", "--round", "1", "--plan")
    assert not fake_openai.log  # a plan sends nothing
    duo("synthesize", "duo.yaml", "--round", "1")
    rows = (work / ".duo" / "wheel-demo" / "round-1" / "synthesize" / "data.jsonl").read_text().splitlines()
    assert len(rows) == 5
    chats = [r for r in fake_openai.log if r["path"].endswith("/chat/completions")]
    assert chats and "Name a colour" not in json.dumps(chats[0]["body"])  # the packaged synthesize.j2 was rendered
