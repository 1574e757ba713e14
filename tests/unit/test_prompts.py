import jsonschema
import pytest

import pipeline.prompts as prompts_module
from pipeline.config import build_config
from pipeline.errors import DuoError
from pipeline.prompts import PACKAGED_PROMPTS_DIR, PROMPTS_DIR, find_template, load_reply_schema, render

SEED = {"topic": "cooking help", "instruction": "How do I boil an egg?", "response": "Put it in boiling water.",
        "n": 3, "min_response_chars": 10}


@pytest.fixture
def cfg(tmp_path):
    doc = {"task": {"name": "demo"}, "data": {"source": "x.jsonl"}, "student": {"model": "m"}}
    return build_config(doc, base_dir=tmp_path, source_path=tmp_path / "duo.yaml")


def test_synthesize_template_renders_system_and_user(cfg):
    messages = render(cfg, "synthesize.j2", **SEED)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "cooking help" in user and "How do I boil an egg?" in user and "Put it in boiling water." in user
    assert "Write 3 new request/reply pairs" in user and '"contents"' in user
    assert not user.startswith("\n") and "{#" not in user


def test_config_relative_template_wins_over_repo_copy(cfg, tmp_path):
    (tmp_path / "synthesize.j2").write_text("{% block user %}custom {{ n }}{% endblock %}")
    assert render(cfg, "synthesize.j2", **SEED) == [{"role": "user", "content": "custom 3"}]
    assert (PROMPTS_DIR / "synthesize.j2").is_file()


def test_prompts_beside_the_config_win_over_duo_defaults(cfg, tmp_path):
    """Issue 12: config path -> prompts/ beside the config -> duo's prompts/ -> the packaged defaults."""
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "judge.j2").write_text("team judge")
    assert find_template(cfg, "judge.j2") == tmp_path / "prompts" / "judge.j2"
    assert find_template(cfg, "synthesize.j2") == PROMPTS_DIR / "synthesize.j2"


def test_packaged_defaults_are_the_same_files_as_prompts(cfg, monkeypatch, tmp_path):
    """One copy in git: pipeline/prompts_default links to prompts/, and is used when no checkout is around."""
    assert sorted(p.name for p in PACKAGED_PROMPTS_DIR.glob("*.j2")) == sorted(p.name for p in PROMPTS_DIR.glob("*.j2"))
    monkeypatch.setattr(prompts_module, "PROMPTS_DIR", tmp_path / "no-checkout")  # as in a wheel install
    assert find_template(cfg, "synthesize.j2") == PACKAGED_PROMPTS_DIR / "synthesize.j2"
    with pytest.raises(DuoError, match="prompt template 'nope.j2' not found"):
        find_template(cfg, "nope.j2")


def test_template_without_blocks_is_one_user_message(cfg, tmp_path):
    (tmp_path / "plain.j2").write_text("Hello {{ who }}!\n")
    assert render(cfg, "plain.j2", who="you") == [{"role": "user", "content": "Hello you!"}]


def test_missing_variable_is_a_one_line_error(cfg):
    with pytest.raises(DuoError) as exc:
        render(cfg, "synthesize.j2", topic="x", instruction="i", response="r", n=2)
    msg = str(exc.value)
    assert "min_response_chars" in msg and "synthesize.j2" in msg and "\n" not in msg


def test_unknown_template_names_where_it_looked(cfg):
    with pytest.raises(DuoError, match=r"prompt template 'nope.j2' not found \(looked in: .*prompts/nope.j2"):
        render(cfg, "nope.j2")


def test_syntax_error_names_file_and_line(cfg, tmp_path):
    (tmp_path / "broken.j2").write_text("line one\n{% block user %}{{ x }\n")
    with pytest.raises(DuoError, match=r"broken.j2:2: template syntax error"):
        render(cfg, "broken.j2", x=1)


def test_reply_schema_found_in_package_and_validates_llamaduo_shape(cfg):
    schema = load_reply_schema(cfg, "synthesized_pairs.schema.json")
    jsonschema.validate({"contents": [{"instruction": "a", "response": "b"}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"contents": [{"instruction": "a"}]}, schema)


def test_reply_schema_config_relative_and_bad_json(cfg, tmp_path):
    (tmp_path / "mine.schema.json").write_text('{"type": "object"}')
    assert load_reply_schema(cfg, "mine.schema.json") == {"type": "object"}
    (tmp_path / "bad.schema.json").write_text('{\n  "type": object\n}')
    with pytest.raises(DuoError, match=r"bad.schema.json:2: reply schema is not valid JSON"):
        load_reply_schema(cfg, "bad.schema.json")
    (tmp_path / "wrong.schema.json").write_text('{"type": 12}')
    with pytest.raises(DuoError, match="not a valid JSON Schema"):
        load_reply_schema(cfg, "wrong.schema.json")
