"""Model cards: the ``README.md`` written next to merged models and into Hub uploads (no torch here)."""

from __future__ import annotations

from typing import Any

QLORA_APPROXIMATION = (
    "The adapter was trained against the 4-bit (NF4) quantized base, but it is merged into the "
    "full-precision base weights. The merged model therefore differs slightly from the model "
    "evaluated during training (base dequantization error); the measured logit drift is listed below."
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_model_card(lineage: dict[str, Any], title: str | None = None) -> str:
    """Writes a model card from a lineage record.

    Args:
        lineage: ``name``, ``base_model``, ``technique``, ``data_fingerprint``, ``dataset``,
            ``config`` (technique section), ``metrics``, and for merges ``verification``
            (``tolerance``, ``max_abs_diff``, ``dtype``, ``prompts``, optional ``quantization_drift``).
        title: Heading (default: the lineage's name).

    Returns:
        Markdown text with a YAML front matter (Hub metadata).
    """
    lines = [
        *_summary(lineage, title or lineage.get("name") or "model"),
        *_settings_and_metrics(lineage),
        *_verification(lineage.get("verification")),
        *_usage(lineage.get("kind") == "adapter"),
    ]
    return "\n".join(lines)


def _summary(lineage: dict[str, Any], name: str) -> list[str]:
    """The Hub front matter and the table of base model, technique, data and artifact kind."""
    base = lineage.get("base_model") or "unknown"
    technique = lineage.get("technique") or "unknown"
    adapter = lineage.get("kind") == "adapter"
    return [
        "---",
        f"base_model: {base}" if "/" in str(base) and not str(base).startswith("/") else "base_model: null",
        "library_name: peft" if adapter else "library_name: transformers",
        "tags:",
        "- finetune-studio",
        f"- {technique}",
        "---",
        "",
        f"# {name}",
        "",
        "Instruction-tuned with Finetune Studio.",
        "",
        "| | |",
        "|---|---|",
        f"| Base model | `{base}` |",
        f"| Technique | {technique} |",
        f"| Dataset | {lineage.get('dataset') or 'unknown'} |",
        f"| Data fingerprint | `{lineage.get('data_fingerprint') or 'unknown'}` |",
        f"| Artifact | {'PEFT adapter (load on the base model)' if adapter else 'full model'} |",
    ]


def _settings_and_metrics(lineage: dict[str, Any]) -> list[str]:
    """The technique's settings and the scalar metrics, each as a table (when present)."""
    lines: list[str] = []
    technique_config = (lineage.get("config") or {}).get("technique") or {}
    if technique_config:
        lines += ["", "## Technique settings", "", "| Setting | Value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in technique_config.items()]
    metrics = lineage.get("metrics") or {}
    scalar_metrics = {key: value for key, value in metrics.items() if isinstance(value, int | float | str)}
    if scalar_metrics:
        lines += ["", "## Metrics", "", "| Metric | Value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in scalar_metrics.items()]
    return lines


def _verification(verification: dict[str, Any] | None) -> list[str]:
    """How the merge was checked (and, for QLoRA, the drift from the quantized model)."""
    if not verification:
        return []
    lines = [
        "",
        "## Merge verification",
        "",
        f"Logits of the merged model were compared with the base model plus adapter on "
        f"{len(verification.get('prompts', []))} fixed prompts ({verification.get('dtype')}): "
        f"max abs difference {_fmt(verification.get('max_abs_diff'))}, "
        f"tolerance {_fmt(verification.get('tolerance'))}.",
    ]
    if verification.get("quantization_drift") is not None:
        lines += [
            "",
            "### QLoRA approximation",
            "",
            QLORA_APPROXIMATION,
            "",
            f"Max abs logit difference between the merged model and the quantized base plus adapter: "
            f"{_fmt(verification['quantization_drift'])}.",
        ]
    return lines


def _usage(adapter: bool) -> list[str]:
    """How to load the artifact (peft for an adapter, transformers for a full model)."""
    if adapter:
        loader = [
            "from peft import AutoPeftModelForCausalLM",
            "from transformers import AutoTokenizer",
            "",
            'tokenizer = AutoTokenizer.from_pretrained("<this directory or repo>")',
            'model = AutoPeftModelForCausalLM.from_pretrained("<this directory or repo>")  # loads the base too',
        ]
    else:
        loader = [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            'tokenizer = AutoTokenizer.from_pretrained("<this directory or repo>")',
            'model = AutoModelForCausalLM.from_pretrained("<this directory or repo>")',
        ]
    return [
        "",
        "## Usage",
        "",
        "```python",
        *loader,
        "```",
        "",
        "Prompts must be rendered with the chat template shipped with the tokenizer "
        "(`chat_template.jinja`), the one used in training.",
        "",
    ]
