"""The ``data`` section of the settings: one dataset or several mixed ones, and how records become examples.

One dataset is ``data.dataset`` (with ``data.format``, ``data.field_mapping``, ``data.split``);
several are ``data.datasets``, a list of :class:`DatasetSource` mixed by ``data.mix_strategy``.
Either way the use cases read :meth:`DataSettings.sources`: one dataset is one source.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator

from core.domain.section import Section

DataFormat = Literal["auto", "alpaca", "dolly", "sharegpt", "openai", "oasst", "custom"]
"""Input formats; ``auto`` detects the format from the records."""


class DatasetSource(Section):
    """One dataset of a mix: where it is, how to read it, and its share of the mix."""

    dataset: str = Field(
        ...,
        min_length=1,
        description="'demo', a local file/directory (JSON, JSONL, CSV, Parquet, also compressed) or a Hub dataset id.",
    )
    format: DataFormat = Field("auto", description="Format of this source; auto detects it.")
    field_mapping: dict[str, str] = Field(
        default_factory=dict,
        description="custom format: maps instruction/input/output/system to this source's column names.",
    )
    weight: float = Field(
        1.0,
        gt=0,
        le=1_000_000,
        description="Share of the mix when data.mix_strategy=weighted (normalised over the sources); "
        "ignored by concat.",
    )
    max_samples: int | None = Field(
        None,
        ge=1,
        description="Keep at most this many of this source's valid records (seeded shuffle) before mixing.",
    )
    repeat: bool = Field(
        False,
        description="weighted: draw this source's records again when the mix asks for more than it has "
        "(otherwise it gives what it has and a warning states the shortfall).",
    )
    split: str = Field("train", min_length=1, description="Split to read when the source is a Hub dataset.")


class DataSettings(Section):
    """Where the data comes from and how it becomes training examples."""

    dataset: str = Field(
        "demo",
        description="'demo', a local file/directory (JSON, JSONL, CSV, Parquet) or a Hub dataset id.",
    )
    format: DataFormat = "auto"
    field_mapping: dict[str, str] = Field(
        default_factory=dict,
        description="custom format: maps instruction/input/output/system to the file's column names.",
    )
    datasets: list[DatasetSource] = Field(
        default_factory=list,
        description="Several datasets mixed in one run instead of data.dataset: a list of "
        "{dataset, format, field_mapping, weight, max_samples, repeat, split} (JSON in the environment).",
    )
    mix_strategy: Literal["concat", "weighted"] = Field(
        "concat",
        description="concat appends the sources (each capped by its max_samples); weighted draws from them "
        "by their weights (seeded by data.seed).",
    )
    mix_size: int | None = Field(
        None,
        ge=1,
        description="weighted: records in the mix (split by largest remainder); unset: as many as the sources "
        "allow without repeating a record.",
    )
    template: Literal["model", "alpaca", "chatml", "custom"] = Field(
        "model", description="model uses the tokenizer's own chat template."
    )
    custom_template: str | None = Field(None, description="Jinja chat template when template=custom.")
    system_prompt: str | None = Field(None, description="System prompt added where the data has none.")
    max_seq_length: int = Field(
        512, ge=16, le=131072, title="Max length", description="Longest training sample in tokens."
    )
    truncation: Literal["split_turns", "keep_first", "truncate", "drop"] = Field(
        "split_turns",
        description="A conversation longer than max_seq_length: split_turns cuts it at turn boundaries into "
        "samples that train every answer; keep_first (old name: truncate) keeps one window; drop skips it.",
    )
    train_on_prompt: bool = Field(False, description="Also train on prompt tokens (default: assistant only).")
    deduplicate: Literal["exact", "normalized", "none"] = Field(
        "exact", description="Remove repeated conversations: identical, or also up to case/punctuation/spaces."
    )
    train_on: Literal["all_assistant", "last_assistant"] = Field(
        "all_assistant", description="Which assistant turns are trained: every one, or the last of each conversation."
    )
    validation_fraction: float = Field(0.05, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.05, ge=0.0, lt=0.5)
    max_samples: int | None = Field(
        None, ge=1, description="Keep at most this many records (after shuffling; after the mix of several sources)."
    )
    lenient: bool = Field(False, description="Skip bad records (reported) instead of stopping.")
    oasst_language: str | None = Field("en", description="Language filter for OpenAssistant trees.")
    split: str = Field("train", description="Split to read from a Hub dataset.")
    seed: int = 42

    @model_validator(mode="after")
    def _custom_template_needs_text(self) -> DataSettings:
        if self.template == "custom" and not self.custom_template:
            raise ValueError("data.custom_template: required when data.template=custom (a Jinja chat template)")
        return self

    @model_validator(mode="after")
    def _one_way_to_name_the_data(self) -> DataSettings:
        """``data.dataset`` and ``data.datasets`` exclude each other; mix settings need their strategy."""
        if self.datasets:
            given = [name for name in SINGLE_SOURCE_KEYS if name in self.model_fields_set]
            if given:
                raise ValueError(
                    "data.datasets: give either data.dataset (one source) or data.datasets (several sources), "
                    f"not both ({', '.join('data.' + name for name in given)} also set); a source's format, "
                    "field_mapping and split go inside its entry of data.datasets"
                )
        if self.mix_size is not None and self.mix_strategy != "weighted":
            raise ValueError(
                "data.mix_size: only used with data.mix_strategy=weighted (concat appends every source, each "
                "capped by its max_samples); set mix_strategy=weighted or drop mix_size"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_the_unused_single_source(self, handler: Any) -> Any:
        """With ``data.datasets``, the single-source keys are left out, so the dump loads back unchanged."""
        dumped = handler(self)
        if self.datasets and isinstance(dumped, dict):
            for name in SINGLE_SOURCE_KEYS:
                dumped.pop(name, None)
        return dumped

    def sources(self) -> list[DatasetSource]:
        """The datasets to read: ``data.datasets``, or ``data.dataset`` as one source.

        Returns:
            One :class:`DatasetSource` per dataset, in mixing order.
        """
        if self.datasets:
            return list(self.datasets)
        return [
            DatasetSource(dataset=self.dataset, format=self.format, field_mapping=self.field_mapping, split=self.split)
        ]

    def dataset_label(self) -> str:
        """What the data is called in messages and run lists: the dataset, or the sources joined by ``+``."""
        if not self.datasets:
            return self.dataset
        return " + ".join(source.dataset for source in self.datasets)


SINGLE_SOURCE_KEYS = ("dataset", "format", "field_mapping", "split")
"""Keys of ``data`` that describe the one source of ``data.dataset``."""


def yield_data_choice(preset_data: dict[str, Any], named_above: set[str]) -> dict[str, Any]:
    """Drops the preset's way of naming the data when a higher source (CLI, environment) names it the other way.

    A preset with ``dataset: demo`` and ``datasets=[...]`` on the command line is a choice, not a
    conflict; both ways in one source remain an error.

    Args:
        preset_data: The preset's ``data`` mapping.
        named_above: Keys of ``data`` set by higher sources.

    Returns:
        The preset's ``data`` mapping without the keys the higher sources replace.
    """
    if "datasets" in named_above:
        return {key: value for key, value in preset_data.items() if key not in SINGLE_SOURCE_KEYS}
    if named_above & {"dataset"}:
        return {key: value for key, value in preset_data.items() if key != "datasets"}
    return preset_data
