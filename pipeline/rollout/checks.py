"""What ``duo validate`` says about the ``rollout:`` keys (the schema already bounds each number):
the ramp's steps increase, the canary is one of them, the URLs are http(s) URLs, the student's
timeout leaves the service time to answer a fallback. A canary of 0 is a shadow-only start: the
service answers everything and mirrors ``rollout.shadow`` of it to the student."""

from __future__ import annotations

from itertools import pairwise
from urllib.parse import urlparse

from ..config import Config, read_yaml


def _url_problem(where: str, url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlparse(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return None
    return f"{where}: found {url!r}; expected an http(s) URL such as http://127.0.0.1:8080/v1"


def rollout_problems(cfg: Config) -> list[str]:
    """Problems of the ``rollout:`` keys; none for a config without that section (a task that is not
    rolled out yet is not held to the rollout's timeouts)."""
    if cfg.source_path is not None and "rollout" not in read_yaml(cfg.source_path):
        return []
    ro, out = cfg.rollout, []
    steps = [float(s) for s in ro.steps]
    if any(b <= a for a, b in pairwise(steps)):
        out.append(f"rollout.steps: found {steps}; expected weights increasing within (0, 1], "
                   "e.g. [0.05, 0.25, 1.0]")
    if ro.canary > 0 and steps and not any(abs(ro.canary - s) < 1e-9 for s in steps):
        out.append(f"rollout.canary: found {ro.canary:g}; expected one of rollout.steps "
                   f"({', '.join(f'{s:g}' for s in steps)}), the ramp goes on from it "
                   "(or 0: shadow only)")
    for where, url in (("rollout.student.base_url", ro.student.base_url),
                       ("service.synthesize.base_url", getattr(cfg.service.synthesize, "base_url", None))):
        problem = _url_problem(where, url)
        if problem:
            out.append(problem)
    svc = cfg.service.synthesize
    if svc is not None and svc.timeout_s and ro.timeout_s >= svc.timeout_s:
        out.append(f"rollout.timeout_s: found {ro.timeout_s:g} s; expected less than "
                   f"service.synthesize.timeout_s ({svc.timeout_s:g} s), so that a student too slow "
                   "still leaves the fallback time to answer")
    return out
