"""``duo decide``: after a round's evaluation, pass, stop on budget, or start the next round.

``decision(cfg, store, N)`` is pure: ``pass`` when the evaluation verdict passes; otherwise ``continue`` when the
budget allows another round (rounds done < ``budget.max_rounds``, synthetic rows so far plus the next round's
target <= ``budget.max_synthetic_samples``, spend so far < ``budget.max_spend_usd``), else ``stop-budget`` with a
reason naming every limit reached. ``run`` stores it as artifact ``round-N/decide`` (``decision.json``);
``command --dispatch`` starts the next round's workflow on GitHub and comments on the round's PR.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import gha
from .budget import spent_in_store
from .config import Config
from .errors import DuoError
from .manifest import Manifest
from .store import Store, artifact_name, latest_round, open_store

STAGE = "decide"
COMMENT_MARK = "<!-- duo-decide task={task} round={round} -->"


def evaluation(store: Store, round_no: int, needed_by: str = "duo decide") -> dict:
    """The round's ``metrics.json`` from ``round-N/evaluate``; ArtifactMissing / DuoError when absent or broken."""
    name = artifact_name("evaluate", round_no)
    if not store.exists(name):
        raise store.missing(name, f"{needed_by} (round {round_no})")
    path = store.open(name) / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DuoError(f"{path}: cannot read the evaluation metrics ({exc})") from None
    if not isinstance(data, dict) or data.get("verdict") not in ("pass", "fail"):
        raise DuoError(f"{path}: 'verdict' must be \"pass\" or \"fail\"")
    return data


def synthetic_by_round(store: Store, round_no: int) -> dict[int, int]:
    """Synthetic rows kept in each round k <= ``round_no`` that has a synthesize artifact (manifest ``kept``)."""
    out = {}
    for k in range(1, int(round_no) + 1):
        name = artifact_name("synthesize", k)
        if store.exists(name):
            out[k] = int((store.manifest(name).counts or {}).get("kept") or 0)
    return out


def _failing(ev: dict) -> str:
    bad = [f"{r['metric']} {r['stat']} {_num(r.get('value'))} < {_num(r['min'])}" if r.get("value") is not None
           else f"{r['metric']} {r['stat']}: {r.get('why') or 'not computed'}"
           for r in ev.get("rule", []) if not r.get("ok")]
    if ev.get("stopped") == "budget":
        bad.append("the judge was cut short by the spend budget")
    return "; ".join(bad) or "the pass rule does not hold"


def _num(x) -> str:
    if x is None:
        return "-"
    return f"{x:g}" if abs(x) >= 10 or x == int(x) else f"{x:.3g}"


def decision(cfg: Config, store: Store, round_no: int) -> dict:
    """Decide after round ``round_no`` without side effects; the ``decision.json`` dict (see docs/contracts.md)."""
    round_no = int(round_no)
    ev = evaluation(store, round_no)
    b = cfg.budget
    spend = round(spent_in_store(store, exclude=artifact_name(STAGE, round_no)), 6)
    synthetic = sum(synthetic_by_round(store, round_no).values())
    next_samples = int(cfg.synthesize.target_for_round(round_no + 1))
    out = {"round": round_no, "next_round": None, "next_samples": None, "spend_usd": spend,
           "synthetic_total": synthetic}
    if ev["verdict"] == "pass":
        conds = "; ".join(f"{r['metric']} {r['stat']} {_num(r.get('value'))} >= {_num(r['min'])}"
                          for r in ev.get("rule", []))
        return {"decision": "pass", "reason": f"round {round_no} passes the {ev.get('rule_kind', 'pass')} rule"
                + (f" ({conds})" if conds else ""), **out}
    if cfg.service.synthesize is None:
        # Without synthesis the next round would re-train on the same data and fail the same way.
        return {"decision": "stop-budget", "reason": f"round {round_no} fails ({_failing(ev)}) and no service LLM "
                "is configured for synthesis (service.synthesize), so another round would re-train on the same "
                "data", **out}
    limits = []
    if round_no >= b.max_rounds:
        limits.append(f"{round_no} of budget.max_rounds={b.max_rounds} rounds done")
    if synthetic + next_samples > b.max_synthetic_samples:
        limits.append(f"{synthetic} synthetic rows so far + {next_samples} for round {round_no + 1} would pass "
                      f"budget.max_synthetic_samples={b.max_synthetic_samples}")
    if spend >= b.max_spend_usd:
        limits.append(f"spent ${spend:.2f} of budget.max_spend_usd=${b.max_spend_usd:.2f}")
    if limits:
        return {"decision": "stop-budget",
                "reason": f"round {round_no} fails ({_failing(ev)}) and the budget is spent: " + "; ".join(limits),
                **out}
    out.update(next_round=round_no + 1, next_samples=next_samples)
    return {"decision": "continue", "reason": f"round {round_no} fails ({_failing(ev)}); the budget allows round "
            f"{round_no + 1} with {next_samples} more synthetic samples", **out}


def run(cfg: Config, store: Store, round_no: int | None = None, *, force: bool = False) -> Manifest:
    """Write ``round-N/decide/decision.json``; an unchanged decision keeps the existing artifact."""
    round_no = int(round_no or latest_round(store, "evaluate") or 1)
    name = artifact_name(STAGE, round_no)
    found = decision(cfg, store, round_no)
    chash = cfg.section_hash("budget", "synthesize")
    eval_m = store.manifest(artifact_name("evaluate", round_no))
    if not force and store.exists(name):
        old = store.manifest(name)
        try:
            same = json.loads((store.open(name) / "decision.json").read_text(encoding="utf-8")) == found
        except (OSError, json.JSONDecodeError):
            same = False
        if same and old.config_hash == chash and old.parents == [eval_m.as_parent()]:
            return old
    manifest = Manifest.start(STAGE, name, chash, round_no, parents=[eval_m])
    manifest.counts = {"synthetic_total": found["synthetic_total"], "next_samples": found["next_samples"] or 0}
    manifest.usage = {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "cached": 0}
    manifest.extra = {"decision": found["decision"], "reason": found["reason"], "spend_usd": found["spend_usd"]}
    with store.write(name) as folder:
        (folder / "decision.json").write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
        manifest.finish(folder).write(folder)
    return manifest


def comment_body(cfg: Config, found: dict, dispatched: bool) -> str:
    """The decision as a PR comment (watermarked so a rerun edits it instead of posting another)."""
    mark = COMMENT_MARK.format(task=cfg.task.name, round=found["round"])
    head = {"pass": "✅ **Stop: the student passes.**", "stop-budget": "🛑 **Stop: the budget is spent.**",
            "continue": "🔁 **Continue with another round.**"}[found["decision"]]
    lines = [mark, f"### duo decision after round {found['round']}: `{found['decision']}`", "", head, "",
             found["reason"] + ".", "",
             f"Spend so far: ${found['spend_usd']:.4f}; synthetic rows so far: {found['synthetic_total']}."]
    if found["decision"] == "continue":
        lines.append(f"Round {found['next_round']} ({found['next_samples']} synthetic samples) was "
                     + ("dispatched." if dispatched else "not dispatched (run `duo decide --dispatch`)."))
    elif found["decision"] == "pass":
        lines.append("No further rounds: merge this PR and use the round's adapter.")
    else:
        lines.append("No further rounds will be started; raise the budget in the config to go on.")
    return "\n".join(lines) + "\n"


def dispatch_ref(repo) -> str:
    """The branch to run the next round on: the current one in Actions, else the repo's default branch."""
    ref = os.environ.get("GITHUB_REF", "")
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/"):]
    return repo.default_branch


def dispatch_next(cfg: Config, found: dict, already: dict | None = None) -> tuple[dict | None, str | None]:
    """Dispatch the next round (when ``continue`` and not ``already`` done) and comment on the round's PR.

    Returns (the dispatch made or found, ``{"ref", "inputs"}`` or None; the PR's url or None).
    """
    from . import github

    repo = github.connect()
    sent = None
    if found["decision"] == "continue":
        sent = already
        if sent is None:
            if cfg.source_path is None:
                raise DuoError("--dispatch needs the config's file path (to pass it to the next round's workflow)")
            inputs = {"config": github.relative_to_root(cfg.source_path), "round": str(found["next_round"]),
                      "samples": str(found["next_samples"]), "dry-run": "false"}
            ref = dispatch_ref(repo)
            github.dispatch(repo, cfg.report.workflow, ref, inputs)
            sent = {"ref": ref, "inputs": inputs, "workflow": cfg.report.workflow}
    try:
        pr = github.find_pr(repo, f"duo/{cfg.task.name}/round-{found['round']}")
        if pr is not None:
            github.upsert_comment(pr, comment_body(cfg, found, sent is not None),
                                  COMMENT_MARK.format(task=cfg.task.name, round=found["round"]))
    except DuoError as exc:
        # The decision stands and the dispatch went out; a job without pull-requests: write only loses the note.
        print(f"warning: no decision comment on the round's pull request: {exc}", file=sys.stderr)
        return sent, None
    return sent, pr.html_url if pr is not None else None


def mark_dispatched(store: Store, m: Manifest, sent: dict) -> Manifest:
    """Record the dispatch in the decide artifact, so a rerun of the job does not start the next round twice."""
    decision_json = (store.open(m.artifact) / "decision.json").read_bytes()
    m.extra = {**m.extra, "dispatched": sent}
    with store.write(m.artifact) as folder:
        (folder / "decision.json").write_bytes(decision_json)
        m.write(folder)
    return m


def command(cfg: Config, args: argparse.Namespace) -> int:
    store = open_store(cfg)
    round_no = args.round or latest_round(store, "evaluate") or 1
    m = run(cfg, store, round_no, force=getattr(args, "force", False))
    found = json.loads((store.open(m.artifact) / "decision.json").read_text(encoding="utf-8"))
    print(f"decide round {round_no}: {found['decision']}: {found['reason']}")
    sent, pr_url = None, None
    if getattr(args, "dispatch", False):
        already = (m.extra or {}).get("dispatched")
        sent, pr_url = dispatch_next(cfg, found, already)
        if sent and already:
            print(f"  round {found['next_round']} was already dispatched ({sent['workflow']} on {sent['ref']}); "
                  "use --force to dispatch it again")
        elif sent:
            m = mark_dispatched(store, m, sent)
            print(f"  dispatched {cfg.report.workflow}: round {found['next_round']}, "
                  f"{found['next_samples']} samples")
        if pr_url:
            print(f"  commented on {pr_url}")
    gha.set_output("artifact", m.artifact)
    gha.set_output("location", store.describe(m.artifact)["location"])
    gha.set_output("decision", found["decision"])
    gha.set_output("next-round", found["next_round"] or "")
    gha.set_output("next-samples", found["next_samples"] or "")
    gha.set_output("dispatched", "true" if sent else "false")
    gha.step_summary(f"### duo decide, round {round_no}: `{found['decision']}`\n\n{found['reason']}"
                     + (f"\n\nDispatched round {found['next_round']}." if sent else ""))
    return 0
