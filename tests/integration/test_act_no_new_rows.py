"""Issue 20, part 4, on GitHub: round.yml under act (see test_act_round.py) for a round whose synthesis
added no rows. The spend cap here is smaller than one request, so it refuses every synthesis request of
round 1: the synthesize job says ``trains=false``, finetune, infer and evaluate are skipped, and the
report job (a report without metrics) and the decide job still run, so the round's PR says why the rounds
stopped. Before, finetune failed and the run ended without a report or a decision.
"""

from __future__ import annotations

import re

import yaml

from tests.integration.test_act_round import TASK, make_repo, pytestmark, run_act, service_reply

__all__ = ["pytestmark"]  # skipped where act is not installed, like test_act_round


def test_a_round_with_no_new_rows_is_reported_and_decided_under_act(tmp_path, tiny_model_dir, fake_openai,
                                                                     fake_hub, fake_github):
    fake_openai.set_responder(service_reply)
    repo = make_repo(tmp_path, tiny_model_dir, min_similarity=90)
    config = yaml.safe_load((repo / "duo.yaml").read_text())
    config["budget"]["max_spend_usd"] = 0.0001  # one request may cost far more: the cap refuses every one
    (repo / "duo.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    home = tmp_path / "home"
    home.mkdir()
    rc, log = run_act(repo, home, fake_openai, fake_hub, fake_github)
    assert rc == 0, f"act failed (log in {home / 'act.log'}):\n{log[-6000:]}"
    assert re.search(r"::set-output:: trains=false$", log, re.MULTILINE), "synthesize's trains output"
    ran = set(re.findall(r"\[round/(\w+)\s*\]\s+🏁\s+Job succeeded", log))
    assert {"synthesize", "report", "decide"} <= ran and not ran & {"finetune", "infer", "evaluate"}, ran
    assert not fake_openai.log  # nothing was sent: the cap refused it all
    assert re.search(r"::set-output:: decision=stop-budget$", log, re.MULTILINE), "decide's decision output"

    # The report's PR says the round was not evaluated and why it stopped.
    prs = [pr for pr in fake_github.pulls if pr["head"] == f"duo/{TASK}/round-1"]
    assert len(prs) == 1, fake_github.pulls
    assert fake_github.dispatches == []
    assert "NOT EVALUATED" in prs[0]["title"] and "stop: budget" in prs[0]["title"]
    assert "(not evaluated)" in prs[0]["body"] and "**Decision: `stop-budget`**" in prs[0]["body"]
    assert "the spend cap refused every request" in prs[0]["body"]
