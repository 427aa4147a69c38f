"""Use case ``export``: a run as one GGUF file for llama.cpp, or a GGUF plus an Ollama Modelfile.

``finetune-studio export --run R --format gguf|ollama [--quantization f16|q8_0|q4_0] [--output DIR]
[--push-to user/name [--private] [--dry-run]]``

1. :func:`setup` resolves the run and refuses, before any weights are loaded, what cannot be
   exported: Prefix Tuning (nothing to merge), a model family or tokenizer the converter does not
   support, a chat template Ollama's TEMPLATE cannot express, an output directory holding the
   user's files (``--overwrite`` replaces it).
2. :func:`main` merges the adapter into its base in float32 (verified as ``merge`` does; QLoRA
   merges into the unquantized base; a Full run's ``final/`` is already whole), writes the GGUF,
   loads it back and compares it with the merged model on held-out prompts (see
   :mod:`core.infrastructure.inference.gguf_verification`), writes ``verification.json`` (and
   the ``Modelfile``) and only then publishes the directory
   (default ``runs/R/export/<format>-<quantization>/``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from core.domain.config import Settings, load_settings
from core.domain.errors import ModelNotAvailableError, UnsupportedOperationError
from core.domain.manifest import RunManifest, write_json_atomic

if TYPE_CHECKING:
    from core.infrastructure.inference.targets import InferenceSource

EXPORT_OUTPUT = "export"  # the kind named in the output marker
EXPORT_FORMATS = ("gguf", "ollama")
VERIFICATION_FILE = "verification.json"
MODELFILE = "Modelfile"
MERGED_DIR = "merged-model"  # the float32 merge, inside the staging directory only


@dataclass(frozen=True)
class ExportPlan:
    """What :func:`main` writes, settled by :func:`setup`.

    Attributes:
        source: The resolved run.
        export_format: ``gguf`` or ``ollama``.
        quantization: ``f16``, ``q8_0`` or ``q4_0``.
        output_dir: The directory published at the end.
        gguf_name: File name of the GGUF.
        tokenizer: The run's tokenizer with its chat template.
        default_system: Ollama only: the system prompt the chat template adds by default.
    """

    source: InferenceSource
    export_format: str
    quantization: str
    output_dir: Path
    gguf_name: str
    tokenizer: Any
    default_system: str | None = None


def export(
    settings: Settings,
    run: str | Path,
    export_format: str = "gguf",
    quantization: str = "f16",
    output: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Exports a run as a verified GGUF file (and Ollama Modelfile).

    Args:
        settings: Settings (paths).
        run: Run name or run directory.
        export_format: ``gguf`` or ``ollama``.
        quantization: ``f16``, ``q8_0`` or ``q4_0``.
        output: Output directory (default ``<run>/export/<format>-<quantization>``).
        overwrite: Replace ``output`` even when it holds files the export did not write.

    Returns:
        The output directory.

    Raises:
        ModelNotAvailableError: If ``run`` is not a run.
        UnsupportedOperationError: For Prefix Tuning, an unsupported family, tokenizer or template.
        OutputExistsError: If ``output`` holds the user's files and ``overwrite`` is false.
        ExportVerificationError: If the file does not reproduce the merged model.
    """
    plan = setup(settings, run, export_format, quantization, output, overwrite)
    return main(plan, settings)


def setup(
    settings: Settings,
    run: str | Path,
    export_format: str,
    quantization: str,
    output: str | Path | None,
    overwrite: bool,
) -> ExportPlan:
    """Resolves the run and checks everything that can be checked without loading weights.

    Args:
        settings: Settings.
        run: Run name or directory.
        export_format: ``gguf`` or ``ollama``.
        quantization: ``f16``, ``q8_0`` or ``q4_0``.
        output: Output directory or None.
        overwrite: Allow replacing a directory holding foreign files.

    Returns:
        The plan.
    """
    from core.domain.output_dirs import check_replaceable
    from core.infrastructure.inference.gguf_export import QUANTIZATIONS
    from core.infrastructure.models.loading import load_tokenizer

    if export_format not in EXPORT_FORMATS or quantization not in QUANTIZATIONS:
        raise UnsupportedOperationError(
            f"export format {export_format!r} / quantization {quantization!r}: choose a format of "
            f"{', '.join(EXPORT_FORMATS)} and a quantization of {', '.join(QUANTIZATIONS)}"
        )
    source = _run_source(settings, run)
    output_dir = Path(output) if output else source.run_dir / "export" / f"{export_format}-{quantization}"
    check_exportable(source)
    check_replaceable(output_dir, EXPORT_OUTPUT, overwrite)
    tokenizer = load_tokenizer(source.artifact_dir, chat_template=source.chat_template)
    default_system = _ollama_default_system(tokenizer) if export_format == "ollama" else None
    return ExportPlan(
        source=source,
        export_format=export_format,
        quantization=quantization,
        output_dir=output_dir,
        gguf_name=f"{source.name}-{quantization}.gguf",
        tokenizer=tokenizer,
        default_system=default_system,
    )


def main(plan: ExportPlan, settings: Settings) -> Path:
    """Merges, writes and verifies the export in a staging directory, then publishes it.

    Args:
        plan: From :func:`setup`.
        settings: Settings (merge precision).

    Returns:
        The output directory.
    """
    from core.domain.output_dirs import mark_output, replace_output
    from core.infrastructure.inference.gguf_export import write_gguf
    from core.infrastructure.inference.gguf_verification import verify_gguf

    staging = plan.output_dir.with_name(f".{plan.output_dir.name}.exporting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model_dir, merge_check = whole_model(plan, settings, staging)
        gguf_file = staging / plan.gguf_name
        logger.info("Writing {} ({})", gguf_file.name, plan.quantization)
        chat_template = plan.tokenizer.chat_template
        write_gguf(model_dir, gguf_file, plan.quantization, plan.tokenizer, chat_template, plan.source.name)
        figures = verify_gguf(gguf_file, model_dir, plan.tokenizer, plan.quantization)
        shutil.rmtree(staging / MERGED_DIR, ignore_errors=True)
        report = _report(plan, gguf_file, figures, merge_check)
        write_json_atomic(staging / VERIFICATION_FILE, report)
        if plan.export_format == "ollama":
            _write_modelfile(plan, staging)
        mark_output(staging, EXPORT_OUTPUT)
        replace_output(staging, plan.output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _log_result(plan, report)
    return plan.output_dir


def check_exportable(source: InferenceSource) -> None:
    """Refuses runs the export cannot write, naming the reason and the way out.

    Args:
        source: The resolved run.

    Raises:
        UnsupportedOperationError: For Prefix Tuning or another adapter type, an unsupported model
            family, or a tokenizer that is not byte-level BPE.
    """
    from core.infrastructure.inference.gguf_export import pre_tokenizer_name, read_model_shape
    from core.infrastructure.inference.merging import check_mergeable

    if source.is_adapter:
        try:
            check_mergeable(source)
        except UnsupportedOperationError as error:
            raise UnsupportedOperationError(f"GGUF export needs one whole model: {error}") from error
    read_model_shape(source.base_model_path if source.is_adapter else source.artifact_dir)
    pre_tokenizer_name(source.artifact_dir)


def whole_model(plan: ExportPlan, settings: Settings, staging: Path) -> tuple[Path, dict[str, Any] | None]:
    """The run as one model directory: its adapter merged into the base, or its Full ``final/``.

    Args:
        plan: The export plan.
        settings: Settings (``model.dtype`` picks the merge precision; ``auto`` is float32 on CPU).
        staging: Staging directory; the merge goes into ``MERGED_DIR`` inside it.

    Returns:
        ``(model directory, the merge's own verification or None)``.
    """
    from core.infrastructure.inference.merging import merge_adapter

    if not plan.source.is_adapter:
        return plan.source.artifact_dir, None
    result = merge_adapter(plan.source, staging / MERGED_DIR, settings)
    lineage = json.loads((result.output_dir / "lineage.json").read_text(encoding="utf-8"))
    return result.output_dir, lineage.get("verification")


def _run_source(settings: Settings, run: str | Path) -> InferenceSource:
    from core.infrastructure.inference.targets import resolve_inference_target

    source = resolve_inference_target(run, settings)
    if source.run_dir is None:
        raise ModelNotAvailableError(
            f"{run}: not a run (expected a run name under {settings.paths.runs_dir} or a run directory)"
        )
    return source


def _ollama_default_system(tokenizer: Any) -> str | None:
    from core.infrastructure.inference.ollama_modelfile import chatml_default_system

    def render(messages: list[dict[str, str]]) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return chatml_default_system(render)


def _write_modelfile(plan: ExportPlan, staging: Path) -> None:
    from core.infrastructure.inference.ollama_modelfile import render_modelfile, sampling_parameters

    evaluation = (RunManifest.load(plan.source.run_dir).config or {}).get("evaluation") or {}
    text = render_modelfile(plan.gguf_name, plan.default_system, sampling_parameters(evaluation))
    (staging / MODELFILE).write_text(text, encoding="utf-8")


def _report(
    plan: ExportPlan, gguf_file: Path, figures: dict[str, Any], merge_check: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "run_name": plan.source.name,
        "technique": plan.source.technique,
        "format": plan.export_format,
        "quantization": plan.quantization,
        "file": gguf_file.name,
        "size_bytes": gguf_file.stat().st_size,
        "exported_at": datetime.now(UTC).isoformat(),
        "verification": figures,
        "merge_verification": merge_check,
    }


def _log_result(plan: ExportPlan, report: dict[str, Any]) -> None:
    figures = report["verification"]
    logger.success(
        "Exported {} to {} ({:.1f} MB); verification passed ({}): greedy identical {}, top-1 agreement {:.2%} "
        "of all positions ({:.2%} of answer positions), max abs logit diff {:.3g}",
        plan.source.name,
        plan.output_dir / report["file"],
        report["size_bytes"] / 1e6,
        figures["requirement"],
        figures["greedy_identical"],
        figures["top1_agreement_all_positions"],
        figures["top1_agreement"],
        figures["max_abs_logit_diff"],
    )
    if plan.export_format == "ollama":
        logger.info("Ollama: cd {} && ollama create {} -f {}", plan.output_dir, plan.source.name, MODELFILE)


def run(arguments: argparse.Namespace) -> int:
    """Runs ``finetune-studio export``.

    Args:
        arguments: Parsed CLI arguments.

    Returns:
        Exit code 0.
    """
    settings = load_settings(arguments.config, arguments.overrides)
    push_to = arguments.push_to
    if push_to:
        check_push(settings, push_to, arguments.dry_run)
    output_dir = export(
        settings,
        arguments.run,
        arguments.format,
        arguments.quantization,
        arguments.output,
        arguments.overwrite,
    )
    if push_to:
        result = push_export(settings, output_dir, push_to, arguments.private, arguments.dry_run)
        sys.stdout.write(result if arguments.dry_run else result + "\n")
    return 0


def check_push(settings: Settings, repo_id: str, dry_run: bool) -> None:
    """Refuses a push that cannot happen (bad repository id, offline, no token) before exporting.

    Args:
        settings: Settings (``hub.token``).
        repo_id: ``user/name``.
        dry_run: A dry run needs neither network nor token.
    """
    from core.application.registry import hub_token_setting
    from core.infrastructure.registry.hub import check_repo_id, hub_token

    check_repo_id(repo_id)
    if not dry_run:
        hub_token(hub_token_setting(settings))


def push_export(settings: Settings, output_dir: Path, repo_id: str, private: bool, dry_run: bool) -> str:
    """Uploads an export folder (GGUF, verification.json, Modelfile) to a Hub model repository.

    Args:
        settings: Settings (``hub.token``, ``hub.private``).
        output_dir: The export folder.
        repo_id: ``user/name``.
        private: Create the repository as private (``hub.private`` also does).
        dry_run: Only list the files and sizes that would be uploaded.

    Returns:
        The repository URL, or the dry-run listing.
    """
    from core.application.registry import hub_token_setting
    from core.infrastructure.registry.hub import describe_upload, hub_token, upload_listing, upload_to_hub

    private = private or settings.hub.private
    if dry_run:
        return describe_upload(repo_id, upload_listing(output_dir), private)
    token = hub_token(hub_token_setting(settings))
    return upload_to_hub(output_dir, repo_id, token, private, f"Upload {output_dir.name} from Finetune Studio")
