"""Write the team's gateway config for a canary of the student (``duo rollout``, and ``duo canary``'s
next step): LiteLLM's proxy (``litellm.yaml`` plus the capture hook ``duo_capture.py`` and its settings
``duo_capture.json``) or Portkey's gateway (``portkey.json``), into ``rollout.config_dir``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

from ..config import Config
from ..errors import DuoError
from . import litellm_config, portkey_config

GATEWAYS = ("litellm", "portkey")
HOOK_SOURCE = Path(__file__).with_name("capture_hook.py")
LITELLM_FILE, PORTKEY_FILE = "litellm.yaml", "portkey.json"


def traffic_folder(cfg: Config) -> Path:
    """``rollout.traffic`` (relative to the config file), else ``traffic/`` in the local store root."""
    if cfg.rollout.traffic:
        return cfg.resolve(cfg.rollout.traffic)
    return cfg.resolve(cfg.store.path) / "traffic"


def share(text: str) -> float:
    """A student weight from the command line (``duo rollout --canary``, ``duo canary --weight``): 0-1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share of the traffic within 0–1") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share of the traffic within 0–1")
    return value


def config_folder(cfg: Config) -> Path:
    return cfg.resolve(cfg.rollout.config_dir)


def _header(weight: float, cfg: Config) -> str:
    return (f"# Written by duo rollout for task {cfg.task.name}: "
            f"the student takes {weight:.0%} of the traffic.\n"
            "# Regenerate it with duo rollout / duo canary rather than editing it by hand.\n")


def write_litellm(cfg: Config, weight: float, out: Path) -> list[Path]:
    doc = litellm_config.proxy_config(cfg, weight)
    config = out / LITELLM_FILE
    config.write_text(_header(weight, cfg) + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    hook = out / f"{litellm_config.HOOK_MODULE}.py"
    shutil.copyfile(HOOK_SOURCE, hook)
    settings = out / f"{litellm_config.HOOK_MODULE}.json"
    doc = litellm_config.hook_settings(cfg, str(traffic_folder(cfg)))
    settings.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return [config, hook, settings]


def write_portkey(cfg: Config, weight: float, out: Path) -> list[Path]:
    path = out / PORTKEY_FILE
    path.write_text(json.dumps(portkey_config.gateway_config(cfg, weight), indent=2) + "\n", encoding="utf-8")
    return [path]


def write_gateway_configs(cfg: Config, weight: float, out_dir: Path | None = None,
                          gateway: str | None = None) -> list[Path]:
    """Write the gateway's files for student weight ``weight`` (in [0, 1]) into ``out_dir``
    (default ``rollout.config_dir``); ``gateway`` defaults to ``rollout.gateway``. Returns the paths."""
    gateway = gateway or cfg.rollout.gateway
    if gateway not in GATEWAYS:
        raise DuoError(f"rollout.gateway: found {gateway!r}; expected one of {', '.join(GATEWAYS)}")
    if not 0 <= weight <= 1:
        raise DuoError(f"rollout: student weight {weight:g}; expected a share within 0–1")
    out = Path(out_dir) if out_dir is not None else config_folder(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write = write_litellm if gateway == "litellm" else write_portkey
    return write(cfg, weight, out)


def start_commands(cfg: Config, paths: list[Path], gateway: str | None = None) -> list[str]:
    """The shell lines that start the gateway on the written files, and how a client reaches it."""
    gateway = gateway or cfg.rollout.gateway
    name = litellm_config.names(cfg)["model"]
    if gateway == "litellm":
        key = litellm_config.MASTER_KEY_ENV
        return [f"export {key}=sk-$(openssl rand -hex 32)  # the proxy wants one; clients send it as their key",
                f"litellm --config {paths[0]} --port 4000",
                ("# clients: OpenAI(base_url='http://127.0.0.1:4000/v1', "
                 "api_key=os.environ['LITELLM_MASTER_KEY'])"
                 f".chat.completions.create(model='{name}', ...)"),
                f"# traffic: {traffic_folder(cfg)} (DUO_TRAFFIC overrides it)"]
    return ["npx @portkey-ai/gateway@" + PORTKEY_VERSION + " --port=8787 --headless",
            f"export PORTKEY_CONFIG=\"$(envsubst < {paths[0]})\"",
            ("# clients: OpenAI(base_url='http://127.0.0.1:8787/v1', api_key='unused', "
             "default_headers={'x-portkey-config': os.environ['PORTKEY_CONFIG']})")]


PORTKEY_VERSION = "1.15.2"  # the version scripts/install pins and the tests run
