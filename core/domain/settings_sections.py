"""The sections of :class:`~core.domain.config.Settings`: model, technique, data, training, evaluation, ...

Every rule about a field lives next to the field: ranges in ``Field``, cross-field rules in
model validators. How the sections are loaded and combined is :mod:`core.domain.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, SecretStr, field_validator, model_validator

from core.domain.catalog import EMBEDDED_MODEL_NAME
from core.domain.check_kinds import canonical_check
from core.domain.data_settings import DatasetSource as DatasetSource  # re-exported: the data section
from core.domain.data_settings import DataSettings as DataSettings
from core.domain.section import Section
from core.domain.techniques import technique_specs


class ModelSettings(Section):
    """Which model to finetune and how to load it."""

    name: str = Field(
        EMBEDDED_MODEL_NAME,
        description="Catalog name, Hugging Face Hub id, local directory or .gguf file.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(False, description="Allow custom modelling code from the Hub.")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="auto picks flash_attention_2 on CUDA when installed, sdpa otherwise."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype when loading; auto keeps fp32 master weights for training."
    )
    cpu_offload: bool = Field(False, description="Offload layers that do not fit the GPU to CPU (accelerate).")


TechniqueSettings = Annotated[
    Union[tuple(spec.settings for spec in technique_specs())],  # noqa: UP007 (built from the registry)
    Field(discriminator="name"),
]
"""Discriminated union of the registered techniques' settings; the ``name`` field selects the variant."""


class TrainingSettings(Section):
    """Optimisation hyper-parameters and training-loop behaviour."""

    num_epochs: float = Field(
        1.0, gt=0, title="Epochs", description="Passes over the training data (when max_steps is -1)."
    )
    max_steps: int = Field(
        -1, ge=-1, title="Max steps", description="Stop after this many optimizer steps (-1: use epochs)."
    )
    per_device_batch_size: int = Field(4, ge=1, title="Batch size", description="Sequences per device and micro-step.")
    eval_batch_size: int = Field(8, ge=1)
    eval_max_samples: int | None = Field(
        48,
        ge=1,
        description="Validation examples used for in-training evaluation, step 0 included (None: all). "
        "48 keeps an evaluation to a few batches on a CPU; every evaluation uses the same records, so the "
        "losses before, during and after training compare like for like.",
    )
    eval_on_start: bool = Field(
        True,
        description="Evaluate the untouched model before the first step: the step-0 row of metrics.jsonl and "
        "the manifest's initial_eval_loss (off: the first loss point comes sooner, no initial_eval_loss).",
    )
    eval_start_max_samples: int | None = Field(
        None,
        ge=1,
        description="Validation examples of that step-0 evaluation: the first N of the (eval_max_samples-capped) "
        "validation split, named in the manifest as initial_eval_records (None: the same records as later "
        "evaluations, so initial and final eval loss compare like for like). A smaller N brings the first loss "
        "point sooner, but initial_eval_loss then covers fewer records than the later evaluations.",
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, title="Accumulation", description="Micro-steps summed into one optimizer step."
    )
    learning_rate: float = Field(
        2e-4, gt=0, le=1.0, title="Learning rate", description="Peak learning rate (after warm-up)."
    )
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, ge=0.0)
    optimizer: Literal["adamw_torch", "adamw_torch_fused", "sgd", "adafactor", "paged_adamw_8bit"] = "adamw_torch"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 on CPUs/GPUs that support it, fp16 on older GPUs, else fp32."
    )
    gradient_checkpointing: bool = Field(
        False,
        title="Gradient checkpointing (saves memory)",
        description="Recompute activations in the backward pass: less memory, about a third slower.",
    )
    packing: Literal["auto", "on", "off"] = Field(
        "auto", description="Padding-free packing; auto enables it when correct for the model and technique."
    )
    group_by_length: bool = Field(True, description="Length-grouped batches when not packing.")
    chunked_loss: bool = Field(
        True,
        description="Project onto the vocabulary and take the loss a chunk of positions at a time, so the "
        "full logits never exist at once (less memory, faster; where the model's output layer allows).",
    )

    @field_validator("packing", mode="before")
    @classmethod
    def _packing_from_bool(cls, value: Any) -> Any:
        """Accepts YAML booleans (``packing: off`` parses as False) for the on/off switch."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    seed: int = 42
    logging_steps: int = Field(1, ge=1)
    eval_steps: int | None = Field(
        None, ge=1, title="Eval every", description="Evaluate every N steps (None: once per epoch)."
    )
    save_steps: int | None = Field(
        None, ge=1, title="Save every", description="Checkpoint every N steps (None: at evaluations)."
    )
    save_total_limit: int = Field(2, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_threshold: float = Field(0.0, ge=0.0)
    sample_every_steps: int | None = Field(
        None, ge=1, title="Samples every", description="Generate samples every N steps (None: never)."
    )
    sample_prompts: list[str] = Field(default_factory=list)
    nan_policy: Literal["skip", "stop"] = Field("skip", description="On NaN/inf loss: skip the update or stop.")
    resume: str = Field("auto", description="'auto' (newest complete checkpoint), 'never', or a checkpoint path.")
    dataloader_num_workers: int = Field(0, ge=0)

    @property
    def effective_batch_size(self) -> int:
        """Sequences per optimizer step on one process."""
        return self.per_device_batch_size * self.gradient_accumulation_steps


class CheckSpec(Section):
    """One instruction check applied to generated answers.

    ``kind`` is an IFEval instruction id (``value``: its keyword arguments, verdicts from the IFEval
    reference) or a project check (``valid_json``, ``json_keys``, ``starts_with``, ``regex``,
    ``exact_match``); the older names (``min_words``, ``not_contains``, ...) are read as the IFEval
    instruction they stood for (:func:`core.domain.check_kinds.canonical_check`).
    """

    kind: str = Field(description="IFEval instruction id or project check kind.")
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _canonical_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("kind"), str):
            kind, value = canonical_check(data["kind"], data.get("value"))
            return {**data, "kind": kind, "value": value}
        return data


class EvaluationSettings(Section):
    """How runs are evaluated."""

    max_new_tokens: int = Field(96, ge=1, le=8192)
    batch_size: int = Field(8, ge=1)
    max_samples: int | None = Field(
        64,
        ge=1,
        description="Test records evaluated (None: all): answers are generated for the first max_samples "
        "records, and the loss/perplexity is computed on the first max_samples tokenized sequences of the split.",
    )
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1.0)
    metrics: list[Literal["loss", "perplexity", "rouge", "bleu", "exact_match", "checks"]] = Field(
        default_factory=lambda: ["loss", "perplexity", "rouge", "bleu", "exact_match", "checks"]
    )
    checks: list[CheckSpec] = Field(
        default_factory=list, description="Checks applied to every answer, in addition to per-record checks."
    )
    bleu_tokenizer: Literal["13a", "intl", "zh", "ja-mecab", "char", "auto"] = Field(
        "13a",
        description="sacreBLEU tokenizer: 13a (sacreBLEU's default), intl, zh, ja-mecab (needs mecab-python3 "
        "and ipadic), char, or auto (chosen from the script of the references: zh for Chinese, ja-mecab or "
        "char for Japanese, char for Thai/Lao/Khmer/Myanmar, intl for other non-Latin scripts, 13a otherwise).",
    )
    rouge_tokenizer: Literal["default", "unicode", "auto"] = Field(
        "unicode",
        description="ROUGE tokenizer: unicode (lowercased Unicode letters/digits, CJK split per character; "
        "identical to rouge-score's own on ASCII text), default (rouge-score's, keeps only [a-z0-9]: "
        "non-Latin text scores 0), or auto (default for ASCII-only text, unicode otherwise).",
    )


class MonitoringSettings(Section):
    """Experiment tracking."""

    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "finetune-studio"
    wandb_entity: str | None = None
    wandb_mode: Literal["online", "offline", "disabled"] = "offline"
    wandb_api_key: SecretStr | None = None


class PathSettings(Section):
    """Where things are stored."""

    runs_dir: Path = Path("runs")
    model_cache: Path = Path(".cache/models")
    data_dir: Path = Path("data")
    registry_dir: Path = Path("registry")


class HubSettings(Section):
    """Hugging Face Hub uploads (``registry push``, ``export --push-to``)."""

    token: SecretStr | None = Field(
        None,
        description="Write token for pushes (FINETUNE_HUB__TOKEN); unset: HF_TOKEN or the `hf auth login` token.",
    )
    private: bool = Field(False, description="Create new repositories as private (as --private does).")


class StudioSettings(Section):
    """Gradio studio."""

    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    share: bool = False
