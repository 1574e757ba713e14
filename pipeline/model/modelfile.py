"""The Ollama ``Modelfile`` beside a GGUF export: the file, its chat template in Ollama's Go-template form
(ChatML and Llama 3 templates are recognised; any other is left to Ollama, which reads the GGUF's own
template), the template's default system prompt, the end-of-turn stop tokens, and the decoding settings of
``infer:`` (greedy unless ``infer.do_sample``)."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..templating import TEMPLATES_DIR, environment

FAMILIES = {"chatml": ("<|im_start|>", ["<|im_end|>"]),
            "llama3": ("<|start_header_id|>", ["<|eot_id|>"])}
PROBE = "\x00duo-probe\x00"


def family(template: str | None) -> str | None:
    for name, (marker, _) in FAMILIES.items():
        if template and marker in template:
            return name
    return None


def default_system(template: str | None, eos: str | None) -> str | None:
    """The system prompt the Jinja template adds when a conversation has none (SmolLM2's does), else None."""
    if family(template) != "chatml":
        return None
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        text = env.from_string(template).render(messages=[{"role": "user", "content": PROBE}],
                                                add_generation_prompt=False, eos_token=eos or "",
                                                bos_token="")
    except Exception:  # noqa: BLE001 - a template we cannot render here: Ollama still has the GGUF's
        return None
    head = text.split(PROBE, 1)[0]
    start = "<|im_start|>system\n"
    if start not in head:
        return None
    return head.split(start, 1)[1].split("<|im_end|>", 1)[0] or None


def write_modelfile(cfg: Config, folder: Path, file: str, meta: dict, record: dict) -> Path:
    template, eos = meta.get("chat_template"), meta.get("eos_token")
    kind = family(template)
    stops = list(dict.fromkeys(([eos] if eos else []) + (FAMILIES[kind][1] if kind else [])))
    infer = cfg.infer
    params = [("temperature", infer.temperature if infer.do_sample else 0)]
    if infer.do_sample:
        params.append(("top_p", infer.top_p))
    params.append(("num_predict", infer.max_new_tokens))
    what = f"{cfg.student.model} + round {record['round']}'s adapter, merged" if record.get("round") else (
        f"{cfg.student.model} as shipped" if record.get("shipped") else cfg.student.model)
    gotmpl = (TEMPLATES_DIR / f"ollama_{kind}.gotmpl").read_text(encoding="utf-8") if kind else None
    text = environment(TEMPLATES_DIR, trim=True).get_template("Modelfile.j2").render(
        name=cfg.rollout.student.model or cfg.task.name, what=what, quant=record["quant"],
        size=f"{record['size_bytes'] / 2**20:.1f} MiB", sha256=record["sha256"], file=file, family=kind,
        template=gotmpl, system=default_system(template, eos), stops=stops, params=params)
    path = folder / "Modelfile"
    path.write_text(text, encoding="utf-8")
    return path
