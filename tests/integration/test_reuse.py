"""The one reuse rule (issue #8): a stage redoes its artifact exactly when something it reads changed."""

from __future__ import annotations

import shutil

from pipeline.config import load_config
from pipeline.prompts import PROMPTS_DIR
from pipeline.records import read_jsonl
from pipeline.stages import prepare, synthesize
from pipeline.store import open_store

from .test_synthesize import MessyService, make_config


def test_editing_the_synthesis_template_redoes_synthesize_and_reuses_prepare(tmp_path, fake_openai):
    """Regression for #8: synthesize hashed the template's name, so an edited template kept a stale artifact."""
    template = tmp_path / "my_synthesize.j2"
    shutil.copy(PROMPTS_DIR / "synthesize.j2", template)
    cfg = load_config(make_config(tmp_path, prompt=template.name))
    store = open_store(cfg)
    prep = prepare.run(cfg, store)
    train = [r["instruction"] for r in read_jsonl(store.open("prepare") / "train.jsonl")]
    fake_openai.set_responder(MessyService([], train))
    first = synthesize.run(cfg, store, 1)
    sent = len(fake_openai.log)

    # Unchanged: both stages return their artifacts as they are, with no request sent.
    assert prepare.run(cfg, store).timings == prep.timings
    assert synthesize.run(cfg, store, 1).timings == first.timings
    assert len(fake_openai.log) == sent

    text = template.read_text(encoding="utf-8")
    cut = text.rindex("{% endblock")  # the end of the user block
    template.write_text(text[:cut] + "Keep every answer under 80 words.\n" + text[cut:], encoding="utf-8")
    cfg = load_config(cfg.source_path)
    assert prepare.run(cfg, store).timings == prep.timings  # prepare does not read the template
    redone = synthesize.run(cfg, store, 1)
    assert redone.timings != first.timings
    assert redone.fingerprint != first.fingerprint
    assert len(fake_openai.log) > sent  # the new prompts are new requests (the journal keys include the prompt)
    # and the edited text really reached the service
    assert "Keep every answer under 80 words." in str(fake_openai.log[-1]["body"])
