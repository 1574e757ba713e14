"""``duo rollout``: write the team's gateway config for a canary of the promoted student against the
service, and print the command that starts the gateway on it.

``--gateway litellm`` (the default ``rollout.gateway``): LiteLLM's proxy config (the student and the
service as weighted deployments of one model name, fallback to the service, the service's answers
mirrored to the student) with its capture hook, which appends every request/response to
``rollout.traffic`` for ``duo canary``. ``--gateway portkey``: Portkey's gateway config (loadbalance
with the canary weight, the student falling back to the service). The weight is ``--canary`` or
``rollout.canary``. Nothing is started: the team runs its gateway (docs/rollout.md).
"""

from __future__ import annotations

import argparse

from ..config import Config
from ..errors import ConfigError
from ..flags import SET, Flag, one_of
from ..rollout.checks import rollout_problems
from ..rollout.gateway import GATEWAYS, share, start_commands, write_gateway_configs

FLAGS = (
    SET,
    Flag("--canary", "The student's share of the traffic, 0–1 (default: rollout.canary).",
         type=share, metavar="W"),
    Flag("--gateway", "litellm or portkey (default: rollout.gateway).", type=one_of(*GATEWAYS),
         metavar="litellm|portkey"),
)


def command(cfg: Config, args: argparse.Namespace) -> int:
    problems = rollout_problems(cfg)
    if problems:
        raise ConfigError(problems)
    weight = cfg.rollout.canary if args.canary is None else args.canary
    which = args.gateway or cfg.rollout.gateway
    paths = write_gateway_configs(cfg, weight, gateway=which)
    print(f"rollout {cfg.task.name}: {which} config for a {weight:.0%} canary of the student "
          f"({cfg.rollout.student.base_url}) against the service")
    for path in paths:
        print(f"  wrote {path}")
    print("start the gateway:")
    for line in start_commands(cfg, paths, which):
        print(f"  {line}")
    return 0
