"""The canary's verdict from its evidence: ``rollback`` (student weight 0), ``hold`` (the weight stays) or
``ramp`` (the next of ``rollout.steps``), with the one sentence that names why (``duo canary``).

In order:

1. ``rollback`` when the student failed more than ``rollout.max_error_rate`` of its requests (after
   ``rollout.min_prompts`` of them), or when the paired difference is significantly below 0
   (``stats.paired.change_word`` says ``worse``: the CI clears 0 by its Monte-Carlo margin);
2. ``hold`` with fewer than ``rollout.min_prompts`` shadowed prompts, or while the CI's lower bound is
   below ``-rollout.max_loss``: it says how many more prompts the CI needs (``min_prompts``, and the count at
   which a CI of this spread would clear ``-max_loss``, or 0 if the mean is below it: ``stats.paired``);
3. ``ramp`` otherwise; at the last step the rollout is complete (the weight stays at the last step).
"""

from __future__ import annotations

from ..config import Config
from ..stats.paired import prompts_needed

EPS = 1e-9


def next_step(steps: list[float], weight: float) -> float:
    """The first step above ``weight``; ``weight`` itself when it is at or past the last one."""
    return next((float(s) for s in sorted(steps) if s > weight + EPS), float(weight))


def more_prompts(d: dict | None, n: int, min_prompts: int, max_loss: float, confidence: float) -> int:
    """Prompts still needed: up to ``min_prompts``, and up to the count at which a CI as spread as this one
    would end on one side (above ``-max_loss`` when the mean is, else below 0)."""
    need = max(0, min_prompts - n)
    if not d or d.get("n", 0) < 2 or not d.get("sd"):
        return need
    mean, sd = float(d["diff"]), float(d["sd"])
    gap = mean + max_loss if mean > -max_loss else -mean
    if gap <= EPS:
        return need
    total = prompts_needed(sd, gap, confidence=confidence, power=0.5)  # z_0.5 = 0: the CI's half-width alone
    return max(need, total - n)


def decide(cfg: Config, evidence: dict, ops: dict, weight: float) -> dict:
    """``{"verdict", "weight", "next_weight", "reason", "more_prompts"}``."""
    ro = cfg.rollout
    student = ops["student"]
    d, n = evidence.get("diff"), int(evidence.get("prompts") or 0)
    metric = evidence.get("decision_metric")
    base = {"weight": weight, "more_prompts": 0}
    if student["requests"] >= ro.min_prompts and (student["error_rate"] or 0) > ro.max_error_rate:
        return {**base, "verdict": "rollback", "next_weight": 0.0,
                "reason": (f"the student failed {student['errors']} of its {student['requests']} requests "
                           f"({student['error_rate']:.1%}, above rollout.max_error_rate "
                           f"{ro.max_error_rate:.1%})")}
    if d and d.get("n") and evidence.get("change") == "worse":
        return {**base, "verdict": "rollback", "next_weight": 0.0,
                "reason": (f"on {d['n']} shadowed prompts the student is significantly behind the service: "
                           f"{diff_text(evidence)}")}
    need = more_prompts(d, n, ro.min_prompts, ro.max_loss, cfg.evaluate.confidence)
    if n < ro.min_prompts:
        return {**base, "verdict": "hold", "next_weight": weight, "more_prompts": need,
                "reason": (f"{n} shadowed prompts so far; rollout.min_prompts is {ro.min_prompts}: "
                           f"about {need} more needed"
                           + (f" ({diff_text(evidence)})" if d and d.get("n") else ""))}
    if d is None or d.get("ci_low") is None or d["ci_low"] < -ro.max_loss:
        return {**base, "verdict": "hold", "next_weight": weight, "more_prompts": need,
                "reason": (f"the CI of {metric} still reaches below -{ro.max_loss:g} (rollout.max_loss): "
                           f"{diff_text(evidence)}; about {need} more shadowed prompts needed")}
    nxt = next_step(list(ro.steps), weight)
    done = nxt <= weight + EPS
    return {**base, "verdict": "ramp", "next_weight": nxt,
            "reason": (f"on {d['n']} shadowed prompts the student is within rollout.max_loss "
                       f"{ro.max_loss:g} of the service: {diff_text(evidence)}"
                       + ("; the rollout is complete" if done else f"; next weight {nxt:.0%}"))}


def diff_text(evidence: dict) -> str:
    """``win_rate 0.31 [0.22, 0.40], difference -0.19 [-0.28, -0.10] (n=60)`` for the decision's metric."""
    d = evidence.get("diff") or {}
    if not d.get("n"):
        return "no shadowed prompt compared yet"
    metric = evidence["decision_metric"]
    summary = (evidence.get("judge") if metric == "win_rate" else evidence["metrics"].get(metric)) or {}
    ci = (f" [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if d.get("ci_low") is not None else "")
    level = (f"{metric} {summary['mean']:.3f}" if summary.get("mean") is not None else metric)
    if summary.get("ci_low") is not None:
        level += f" [{summary['ci_low']:.3f}, {summary['ci_high']:.3f}]"
    against = "0.5 (as good as the service)" if metric == "win_rate" else \
        f"its threshold {evidence.get('threshold')}"
    return f"{level}; paired difference vs {against} {d['diff']:+.3f}{ci} (n={d['n']})"
