"""Static checks of the GitHub Actions layer: actionlint, the workflow/action JSON Schemas, zizmor, and house rules.

The rules: no untrusted expression inside a ``run:`` script, third-party actions pinned to a full commit SHA,
least privilege per job, every job time-limited, checkouts without persisted credentials, and composite-action
inputs/outputs that match the CLI's ``$GITHUB_OUTPUT`` names (docs/contracts.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / "actions").glob("*/action.yml"))
BIN = Path(sys.executable).parent

# docs/contracts.md, "CLI outputs": what each stage writes to $GITHUB_OUTPUT.
CLI_OUTPUTS = {
    "prepare": set(),
    "synthesize": {"samples", "cost-usd", "trains"},
    "finetune": {"adapter-repo", "adapter-revision"},
    "infer": set(),
    "evaluate": {"verdict"},
    "report": {"report-dir", "pr-url", "pr-number"},
    "decide": {"decision", "next-round", "next-samples", "dispatched"},
    "promote": {"round", "status", "commit"},
    "canary": {"verdict", "weight", "next-weight", "report", "config-pr-url"},
    "monitor": {"drift", "next-round", "dispatched"},
}
UNTRUSTED_IN_RUN = re.compile(r"\$\{\{\s*(inputs\.|github\.event|secrets\.)")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return path


def run_tool(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    # The venv's bin first on PATH: actionlint runs shellcheck on workflow scripts when it finds it.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env,
                          input=stdin)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def steps_of(doc: dict) -> list[dict]:
    """Every step of a workflow (all jobs) or of a composite action."""
    if "jobs" in doc:
        return [s for job in doc["jobs"].values() for s in job.get("steps", [])]
    return doc.get("runs", {}).get("steps", [])


def test_there_is_a_round_workflow_and_an_action_per_stage():
    assert ROOT / ".github/workflows/round.yml" in WORKFLOWS
    assert {p.parent.name for p in ACTIONS} >= set(CLI_OUTPUTS) | {"setup"}


def test_actionlint_is_clean():
    tool("shellcheck")  # without it actionlint silently skips the scripts
    out = run_tool(tool("actionlint"), "-config-file", ".github/actionlint.yaml", *map(str, WORKFLOWS))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", ACTIONS, ids=lambda p: p.parent.name)
def test_action_scripts_pass_shellcheck(path):
    """actionlint checks workflow scripts only; composite-action scripts get shellcheck here (as bash -e)."""
    shellcheck = tool("shellcheck")
    for step in steps_of(load(path)):
        if "run" in step:
            script = re.sub(r"\$\{\{.*?\}\}", "EXPR", step["run"])  # expressions are gone before bash sees it
            out = run_tool(shellcheck, "--shell=bash", "-", stdin=script)
            assert out.returncode == 0, f"{path.parent.name}: '{step.get('name')}':\n{out.stdout}"


@pytest.mark.parametrize("schema, files", [("vendor.github-workflows", WORKFLOWS), ("vendor.github-actions", ACTIONS)],
                         ids=["workflows", "actions"])
def test_files_match_the_github_schemas(schema, files):
    out = run_tool(tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files))
    assert out.returncode == 0, out.stdout + out.stderr


def test_zizmor_finds_nothing():
    out = run_tool(tool("zizmor"), "--offline", "--no-progress", ".")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No findings" in out.stdout + out.stderr


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_untrusted_expression_inside_run_scripts(path):
    bad = [s.get("name", s["run"][:40]) for s in steps_of(load(path))
           if "run" in s and UNTRUSTED_IN_RUN.search(s["run"])]
    assert not bad, f"{path.name}: pass inputs/secrets/event data through env:, not inside run: {bad}"


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_third_party_actions_are_pinned_to_a_commit_with_a_version_comment(path):
    text = path.read_text()
    for step in steps_of(load(path)):
        uses = step.get("uses")
        if not uses or uses.startswith("./"):
            continue
        assert PINNED.match(uses), f"{path.name}: {uses} is not pinned to a full commit SHA"
        assert re.search(re.escape(uses) + r" # v\d", text), f"{path.name}: {uses} lacks a '# vX.Y.Z' comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_jobs_have_least_privilege_and_time_limits(path):
    doc = load(path)
    assert doc.get("permissions") == {}, f"{path.name}: the workflow-level permissions must be {{}}"
    for name, job in doc["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} has no permissions block"
        assert isinstance(job.get("timeout-minutes"), int), f"{path.name}: job {name} has no timeout-minutes"
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}: {name} checkout"


def test_round_workflow_shape():
    doc = load(ROOT / ".github/workflows/round.yml")
    trigger = doc.get("on") or doc.get(True)  # PyYAML reads the bare key `on` as True
    inputs = trigger["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"config", "round", "samples", "dry-run"}
    assert inputs["config"]["default"] == "duo.yaml" and str(inputs["round"]["default"]) == "1"
    assert inputs["dry-run"]["type"] == "boolean"
    assert doc["concurrency"]["cancel-in-progress"] is False
    jobs = doc["jobs"]
    # `task` resolves the task name (the concurrency groups) and validates the config before anything is paid
    assert list(jobs) == ["task", "synthesize", "finetune", "infer", "evaluate", "report", "decide"]
    assert any(step.get("uses") == "./actions/validate" for step in jobs["task"]["steps"])
    writers = {n for n, j in jobs.items() if any(v == "write" for v in j["permissions"].values())}
    assert writers == {"report", "decide"}
    assert set(jobs["report"]["permissions"]) == {"contents", "pull-requests"}
    assert jobs["decide"]["permissions"] == {"actions": "write", "contents": "read", "pull-requests": "write"}
    assert "dry-run" in jobs["decide"]["if"]
    for name in ("finetune", "infer"):
        assert "self-hosted" in jobs[name]["runs-on"] and "gpu" in jobs[name]["runs-on"]
    labels = load(ROOT / ".github/actionlint.yaml")["self-hosted-runner"]["labels"]
    assert "gpu" in labels


def test_a_round_whose_synthesis_added_no_rows_is_still_reported_and_decided():
    """Issue 20: such a round skips finetune, infer and evaluate (nothing new to train) but gets its
    report and decision; before, finetune failed and the run ended with no report, so the last report
    still said continue."""
    jobs = load(ROOT / ".github/workflows/round.yml")["jobs"]
    assert jobs["synthesize"]["outputs"]["trains"] == "${{ steps.synthesize.outputs.trains }}"
    assert jobs["finetune"]["if"] == "${{ needs.synthesize.outputs.trains != 'false' }}"
    assert "if" not in jobs["infer"] and "if" not in jobs["evaluate"]  # skipped with finetune
    report_if = " ".join(jobs["report"]["if"].split())
    assert "synthesize" in jobs["report"]["needs"] and report_if.startswith("${{ !cancelled()")
    assert "needs.evaluate.result == 'success' || needs.synthesize.outputs.trains == 'false'" in report_if
    decide_if = "${{ !cancelled() && !inputs.dry-run && needs.report.result == 'success' }}"
    assert jobs["decide"]["if"] == decide_if


def test_secrets_reach_only_the_steps_that_use_them():
    doc = load(ROOT / ".github/workflows/round.yml")
    assert "secrets." not in yaml.safe_dump(doc.get("env", {}))
    for name, job in doc["jobs"].items():
        assert "secrets." not in yaml.safe_dump(job.get("env", {})), f"job {name} puts a secret in job env"
        for step in job["steps"]:
            if step.get("uses", "").startswith(("actions/", "./actions/setup")):
                assert "secrets." not in yaml.safe_dump(step), f"{name}: '{step['name']}' gets a secret"


@pytest.mark.parametrize("verb", sorted(CLI_OUTPUTS))
def test_stage_action_wires_the_cli_outputs(verb):
    doc = load(ROOT / "actions" / verb / "action.yml")
    assert doc["runs"]["using"] == "composite"
    duo_steps = [s for s in doc["runs"]["steps"] if re.search(rf"^\s*duo {verb}\b", s.get("run", ""), re.MULTILINE)]
    assert len(duo_steps) == 1, f"{verb}: expected one step that runs `duo {verb}`"
    step_id = duo_steps[0]["id"]
    outputs = doc.get("outputs", {})
    assert set(outputs) == CLI_OUTPUTS[verb] | {"artifact", "location"}
    for name, spec in outputs.items():
        assert spec["value"] == f"${{{{ steps.{step_id}.outputs.{name} }}}}"


@pytest.mark.parametrize("path", ACTIONS, ids=lambda p: p.parent.name)
def test_action_inputs_are_kebab_case_and_documented(path):
    for name, spec in load(path).get("inputs", {}).items():
        assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name), f"{path.parent.name}: input {name}"
        desc = spec.get("description", "")
        assert desc.endswith(".") and re.search(r"default|unset", desc), \
            f"{path.parent.name}: input {name} needs one sentence that says what happens when it is unset"


@pytest.mark.parametrize("verb", sorted(CLI_OUTPUTS))
def test_stage_action_flags_are_ones_the_cli_accepts(verb):
    from pipeline.cli import make_parser

    script = next(s["run"] for s in load(ROOT / "actions" / verb / "action.yml")["runs"]["steps"] if "run" in s)
    values = {"--round": "2", "--samples": "3", "--set": "store.kind=hub"}
    argv = [verb, "duo.yaml"]
    for flag in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", script))):
        argv += [flag, values[flag]] if flag in values else [flag]
    args = make_parser().parse_args(argv)  # argparse exits (status 2) on a flag the CLI lacks
    assert args.verb == verb and args.config == "duo.yaml"
