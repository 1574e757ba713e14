"""Issue 22 (the service path works after the default install): ``scripts/install`` with no argument installs
the ``privacy`` extra the example's commented ``service:`` block needs (scrubbing is on by default); the block
uncommented (the fake OpenAI server as its base_url) validates, prepares and plans through the installed
``duo``; a missing detector is one line naming the command that installs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "alpaca-gpt4o"
DUO = Path(sys.executable).parent / "duo"  # the console script of the venv the tests run in


def test_the_default_install_has_the_privacy_extra():
    script = (ROOT / "scripts" / "install").read_text()
    default = re.search(r'extras="\$\{1:-([^}]*)\}"', script).group(1)
    assert set(default.split(",")) == {"train", "privacy"}
    assert 'pip install -q -e ".[${extras}]"' in script
    privacy = re.search(r"\nprivacy = \[(.*?)\n\]", (ROOT / "pyproject.toml").read_text(), re.DOTALL).group(1)
    assert '"presidio-analyzer' in privacy


def uncommented(text: str, base_url: str) -> str:
    """The example's config with its commented ``service:`` block uncommented, synthesis sent to
    ``base_url``."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("# service:") or (inside and line.startswith("#   ")):
            inside = True
            out.append(line[2:])
            if line.strip() == "#   synthesize:":
                out.append(f"    base_url: {base_url}")
            continue
        inside = False
        out.append(line)
    assert inside is False and "\nservice:\n  synthesize:\n" in "\n".join(out)
    return "\n".join(out) + "\n"


def duo(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(DUO), *args], check=False, capture_output=True, text=True, timeout=240,
                          env=env)


def test_the_examples_service_block_plans_after_the_default_install(tmp_path, fake_openai):
    shutil.copytree(EXAMPLE / "data", tmp_path / "data")
    config = tmp_path / "duo.yaml"
    config.write_text(uncommented((EXAMPLE / "duo.yaml").read_text(), fake_openai.url + "/v1"))
    env = {**os.environ, "GEMINI_API_KEY": "fake-gemini-key"}  # OPENAI_API_KEY: the fixture sets the fake's
    for verb in (["validate"], ["prepare"]):
        done = duo(verb[0], str(config), env=env)
        assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    done = duo("synthesize", str(config), "--plan", env=env)
    assert done.returncode == 0, done.stderr
    assert ("synthesize round 1: 100 pairs at 5 a request, attempt 1 of at most 5: 20 requests to "
            "openai:gpt-4o-2024-05-13") in done.stdout
    assert fake_openai.requests(path="/v1/chat/completions") == []  # a plan sends nothing
    # as if presidio-analyzer were not installed (its import fails): one line naming the command
    blocked = ("import sys; sys.modules['presidio_analyzer'] = None; from pipeline.cli import main; "
               "sys.exit(main(sys.argv[1:]))")
    for verb in (["validate", str(config)], ["synthesize", str(config), "--plan"]):
        done = subprocess.run([sys.executable, "-c", blocked, *verb], check=False, capture_output=True,
                              text=True, env=env, timeout=120)
        hint = "pip install 'duo[privacy]' (or pip install -e '.[privacy]' in a checkout)"
        assert hint in done.stderr, verb
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: privacy.scrub is on (the default) but presidio-analyzer")
