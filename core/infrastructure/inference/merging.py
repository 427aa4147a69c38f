"""Merging LoRA / DoRA / QLoRA adapters into their base model, verified by comparing logits.

Every merge is checked before it is published: the merged model is saved, loaded back from disk
and its logits on fixed prompts are compared with the base model plus the (unmerged) adapter in
the same precision. The merge fails when the largest absolute difference exceeds the tolerance
``atol + rtol * max|reference logit|`` (float rounding grows with depth and logit scale: a 30-layer
135M model with logits around 20 lands near 1e-4 where a 2-layer toy model lands near 1e-6):

* LoRA / DoRA in fp32: ``atol=1e-4, rtol=1e-5`` (about 3e-4 for SmolLM2-135M);
* QLoRA in fp32: ``atol=1e-3, rtol=1e-4`` (looser, stated): the base is reloaded unquantized and
  the adapter merged into the full-precision weights; the check compares against base plus
  adapter loaded in that same precision. The adapter was trained against the dequantized NF4
  weights, so the merged model also differs from the quantized training-time model; that drift is
  measured, logged and written into the model card (it is not a merge error, it is the known
  QLoRA approximation);
* 16-bit merges (``model.dtype=bfloat16|float16``): ``atol=5e-2, rtol=1e-2`` for the rounding of
  the merged weights.

Prefix Tuning has no weights to fold in and cannot be merged; it stays servable as an adapter.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from loguru import logger

from core.domain.config import Settings
from core.domain.errors import FinetuneStudioError, UnsupportedOperationError
from core.domain.manifest import CHAT_TEMPLATE_FILE, RunManifest, write_json_atomic
from core.domain.output_dirs import check_replaceable, mark_output, replace_output
from core.domain.portable import portable_lineage
from core.domain.techniques import technique_names, traits_for
from core.infrastructure.inference.loading import inference_dtype, peft_type_name, quantization_for
from core.infrastructure.inference.targets import InferenceSource
from core.infrastructure.models.loading import load_causal_lm, load_tokenizer
from core.infrastructure.registry.artifacts import LINEAGE_FILE
from core.infrastructure.registry.model_card import render_model_card

VERIFICATION_PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "List three uses of a paperclip.",
)
"""Fixed user prompts whose logits are compared (rendered with the run's chat template)."""

FLOAT32_TOLERANCES: dict[bool, tuple[float, float]] = {False: (1e-4, 1e-5), True: (1e-3, 1e-4)}
"""``(atol, rtol)`` of a float32 merge, by whether the run trained on a quantized base (QLoRA);
16-bit merges use ``HALF_PRECISION_TOLERANCE``."""

HALF_PRECISION_TOLERANCE = (5e-2, 1e-2)
MERGE_OUTPUT = "merge"  # the kind named in the output marker


class MergeVerificationError(FinetuneStudioError):
    """The merged model's logits differ from base plus adapter by more than the tolerance."""


@dataclass(frozen=True)
class MergeResult:
    """Outcome of a verified merge.

    Attributes:
        output_dir: Directory of the merged model.
        max_abs_diff: Largest absolute logit difference, merged vs base plus adapter.
        tolerance: The tolerance it was checked against.
        dtype: Precision of the merge and of the comparison.
        quantization_drift: QLoRA only: max abs logit difference between the merged model and the
            quantized base plus adapter (the training-time model).
    """

    output_dir: Path
    max_abs_diff: float
    tolerance: float
    dtype: str
    quantization_drift: float | None = None


def merge_tolerance(quantized_base: bool, dtype: torch.dtype, reference_scale: float) -> float:
    """The stated tolerance for a merge: ``atol + rtol * reference_scale``.

    Args:
        quantized_base: True when the adapter was trained on a quantized base (QLoRA).
        dtype: Merge precision.
        reference_scale: Largest absolute reference logit.

    Returns:
        The max abs logit difference allowed.
    """
    atol, rtol = HALF_PRECISION_TOLERANCE if dtype != torch.float32 else FLOAT32_TOLERANCES[quantized_base]
    return atol + rtol * reference_scale


def _prompt_ids(tokenizer: Any) -> list[list[int]]:
    from core.infrastructure.data.tokenize import render_prompt_ids

    return [render_prompt_ids(tokenizer, [{"role": "user", "content": prompt}]) for prompt in VERIFICATION_PROMPTS]


def prompt_logits(model: torch.nn.Module, prompts: list[list[int]]) -> list[torch.Tensor]:
    """Float32 logits of each prompt (one forward pass each, no padding).

    Args:
        model: A causal LM (a PeftModel included).
        prompts: Token id lists.

    Returns:
        One ``[length, vocab]`` tensor per prompt.
    """
    device = next(model.parameters()).device
    outputs = []
    with torch.inference_mode():
        for ids in prompts:
            tensor = torch.tensor([ids], device=device)
            outputs.append(model(input_ids=tensor, attention_mask=torch.ones_like(tensor)).logits[0].float().cpu())
    return outputs


def max_abs_difference(first: list[torch.Tensor], second: list[torch.Tensor]) -> float:
    """Largest absolute element difference over paired tensors.

    Args:
        first: Tensors.
        second: Tensors of the same shapes.

    Returns:
        The maximum.
    """
    return max(float((a - b).abs().max()) for a, b in zip(first, second, strict=True))


def check_mergeable(source: InferenceSource) -> None:
    """Refuses sources that cannot be merged, with the reason and what to do instead.

    Args:
        source: The resolved run.

    Raises:
        UnsupportedOperationError: For Prefix Tuning, full finetuning, or non-adapter artifacts.
    """
    from peft import PeftConfig

    if not source.is_adapter:
        raise UnsupportedOperationError(
            f"{source.name}: nothing to merge -- {source.artifact_dir} is already a full model "
            f"(technique {source.technique or 'none'}); serve or register it directly."
        )
    peft_config = PeftConfig.from_pretrained(str(source.artifact_dir))
    traits = traits_for(source.technique) if source.technique in technique_names() else None
    if peft_config.is_prompt_learning or (traits is not None and not traits.can_merge):
        title = traits.title if traits is not None else peft_type_name(peft_config)
        raise UnsupportedOperationError(
            f"{source.name}: {title} cannot be merged -- what it learns (virtual tokens) is not a weight "
            "update that can be folded into the base model. Serve it as an adapter instead "
            f"(finetune-studio serve, or generate --run {source.name})."
        )


def merge_adapter(
    source: InferenceSource, output_dir: Path, settings: Settings, overwrite: bool = False
) -> MergeResult:
    """Merges a run's adapter into its base model, verifies the result and writes the export.

    The output holds ``model.safetensors``, ``config.json``, ``generation_config.json``, the
    tokenizer with the run's chat template, ``chat_template.jinja``, ``lineage.json`` and a model
    card ``README.md``. It is written to a temporary sibling and renamed only after verification.

    Args:
        source: The run (see :func:`~core.infrastructure.inference.loading.resolve_inference_target`).
        output_dir: Destination directory; an earlier merge there is replaced, anything else only
            with ``overwrite`` (see :mod:`core.domain.output_dirs`).
        settings: Settings (``model.dtype`` picks the merge precision; ``auto`` is fp32 on CPU).
        overwrite: Replace ``output_dir`` even when it holds files the merge did not write.

    Returns:
        The merge result.

    Raises:
        UnsupportedOperationError: When the run cannot be merged (Prefix Tuning, full finetuning).
        MergeVerificationError: When merged and unmerged logits disagree beyond the tolerance.
        OutputExistsError: When ``output_dir`` holds files the merge did not write (without ``overwrite``).
    """
    check_mergeable(source)
    output_dir = Path(output_dir)
    check_replaceable(output_dir, MERGE_OUTPUT, overwrite)
    started = time.perf_counter()
    quantization = quantization_for(source)
    dtype = inference_dtype(settings)
    tokenizer = load_tokenizer(source.artifact_dir, chat_template=source.chat_template)
    prompts = _prompt_ids(tokenizer)
    quantized_logits = _quantized_reference(source, quantization, prompts) if quantization is not None else None
    merged, reference = _merged_in_memory(source, settings, dtype, tokenizer, prompts)
    reference_scale = max(float(logits.abs().max()) for logits in reference)
    tolerance = merge_tolerance(quantization is not None, dtype, reference_scale)
    staging = output_dir.with_name(f".{output_dir.name}.merging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _save(merged, tokenizer, staging)
        del merged
        difference, drift = _check_staged(source, staging, settings, prompts, reference, quantized_logits, tolerance)
        verification = _verification(dtype, quantization is not None, (difference, tolerance, reference_scale), drift)
        verification["seconds"] = round(time.perf_counter() - started, 2)
        _seal(source, staging, output_dir, verification)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.success("Merged {} into {}", source.name, output_dir)
    return MergeResult(output_dir, difference, tolerance, str(dtype).removeprefix("torch."), drift)


def _verification(
    dtype: torch.dtype, quantized: bool, check: tuple[float, float, float], drift: float | None
) -> dict[str, Any]:
    """The merge's verification record (``lineage.json``): prompts, precision, difference and its tolerance.

    Args:
        dtype: The merge precision.
        quantized: True for a QLoRA run (merged into the 16-bit base).
        check: Max abs logit difference, its tolerance and the reference's max abs logit.
        drift: Difference from the quantized training-time model (QLoRA), else None.

    Returns:
        The record.
    """
    difference, tolerance, reference_scale = check
    return {
        "prompts": list(VERIFICATION_PROMPTS),
        "dtype": str(dtype).removeprefix("torch."),
        "max_abs_diff": difference,
        "tolerance": tolerance,
        "tolerance_rule": "atol + rtol * max|reference logit|",
        "atol_rtol": list(HALF_PRECISION_TOLERANCE if dtype != torch.float32 else FLOAT32_TOLERANCES[quantized]),
        "reference_max_abs_logit": reference_scale,
        "quantization_drift": drift,
    }


def _quantized_reference(source: InferenceSource, quantization: Any, prompts: list[list[int]]) -> list[torch.Tensor]:
    """Logits of the training-time model (quantized base plus adapter), to state the merge's drift from it."""
    from peft import PeftModel

    logger.info("Quantized base: measuring the quantized base plus adapter (the training-time model) first")
    quantized = load_causal_lm(source.base_model_path, dtype=torch.float32, quantization_config=quantization)
    return prompt_logits(PeftModel.from_pretrained(quantized, str(source.artifact_dir)).eval(), prompts)


def _merged_in_memory(
    source: InferenceSource, settings: Settings, dtype: torch.dtype, tokenizer: Any, prompts: list[list[int]]
) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """The base in ``dtype`` plus the adapter: its logits (the reference), then the adapter folded in."""
    from peft import PeftModel

    logger.info("Loading base {} in {} and the adapter of {}", source.base_model_path, dtype, source.name)
    base = load_causal_lm(source.base_model_path, dtype=dtype, trust_remote_code=settings.model.trust_remote_code)
    with_adapter = PeftModel.from_pretrained(base, str(source.artifact_dir)).eval()
    reference = prompt_logits(with_adapter, prompts)
    merged = with_adapter.merge_and_unload()
    generation_config = merged.generation_config
    if generation_config.eos_token_id is None:
        generation_config.eos_token_id = tokenizer.eos_token_id
    if generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    return merged, reference


def _save(merged: torch.nn.Module, tokenizer: Any, staging: Path) -> None:
    """Writes the merged weights, the tokenizer and the chat template to the staging directory."""
    merged.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    (staging / CHAT_TEMPLATE_FILE).write_text(tokenizer.chat_template, encoding="utf-8")


def _check_staged(
    source: InferenceSource,
    staging: Path,
    settings: Settings,
    prompts: list[list[int]],
    reference: list[torch.Tensor],
    quantized_logits: list[torch.Tensor] | None,
    tolerance: float,
) -> tuple[float, float | None]:
    """Reloads what was written and compares its logits with base plus adapter (and the quantized model).

    Raises:
        MergeVerificationError: When the difference exceeds the tolerance (nothing is written then).
    """
    dtype = inference_dtype(settings)
    reloaded = load_causal_lm(staging, dtype=dtype, attn_implementation=settings.model.attn_implementation)
    merged_logits = prompt_logits(reloaded, prompts)
    del reloaded
    difference = max_abs_difference(merged_logits, reference)
    drift = max_abs_difference(merged_logits, quantized_logits) if quantized_logits is not None else None
    logger.info(
        "Merge check: max abs logit difference {:.3g} (tolerance {:.3g}, {}) on {} prompts",
        difference,
        tolerance,
        str(dtype).removeprefix("torch."),
        len(prompts),
    )
    if drift is not None:
        logger.warning(
            "QLoRA approximation: the merged full-precision model differs from the quantized base plus "
            "adapter used in training by up to {:.3g} in the logits (NF4 dequantization error, expected)",
            drift,
        )
    if not difference <= tolerance:
        raise MergeVerificationError(
            f"{source.name}: merged model differs from base plus adapter by {difference:.3g} "
            f"(tolerance {tolerance:.3g}); the merge was not written"
        )
    return difference, drift


def _seal(source: InferenceSource, staging: Path, output_dir: Path, verification: dict[str, Any]) -> None:
    """Adds lineage and model card, marks the output as the merge's own and moves it into place."""
    lineage = portable_lineage(_lineage(source, verification))  # merged/ ships: no machine paths
    write_json_atomic(staging / LINEAGE_FILE, lineage)
    (staging / "README.md").write_text(render_model_card(lineage), encoding="utf-8")
    mark_output(staging, MERGE_OUTPUT)
    replace_output(staging, output_dir)


def _lineage(source: InferenceSource, verification: dict[str, Any]) -> dict[str, Any]:
    manifest = RunManifest.load(source.run_dir) if source.run_dir is not None else None
    config = manifest.config if manifest else {}
    return {
        "name": f"{source.name}-merged",
        "kind": "merged",
        "run_name": source.name,
        "base_model": (config.get("model") or {}).get("name") or str(source.base_model_path),
        "base_model_path": str(source.base_model_path),
        "technique": source.technique,
        "dataset": (config.get("data") or {}).get("dataset"),
        "data_fingerprint": manifest.data_fingerprint if manifest else None,
        "config": config,
        "metrics": manifest.metrics if manifest else {},
        "chat_template": source.chat_template,
        "merged_at": datetime.now(UTC).isoformat(),
        "verification": verification,
    }
