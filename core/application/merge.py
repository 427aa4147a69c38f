"""Use case ``merge``: fold a LoRA / DoRA / QLoRA adapter into its base model and verify it.

``finetune-studio merge --run R [--output DIR]`` writes a standalone model (default
``runs/R/merged``) after checking that its logits match base plus adapter on fixed prompts
(see :mod:`core.infrastructure.inference.merging` for the tolerances). Prefix Tuning runs are
refused with a clear message; they stay servable as adapters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.domain.config import Settings, load_settings
from core.domain.errors import ModelNotAvailableError


def merge(settings: Settings, run: str | Path, output: str | Path | None = None, overwrite: bool = False) -> Path:
    """Merges a run's adapter into its base model.

    Args:
        settings: Settings (paths; ``model.dtype`` for the merge precision).
        run: Run name or run directory.
        output: Output directory (default: ``<run dir>/merged``); an earlier merge there is replaced.
        overwrite: Replace ``output`` even when it holds files the merge did not write.

    Returns:
        The merged model directory.

    Raises:
        ModelNotAvailableError: If ``run`` is not a run.
        UnsupportedOperationError: For Prefix Tuning or full finetuning runs.
        MergeVerificationError: If the merged logits disagree with base plus adapter.
        OutputExistsError: If ``output`` holds files the merge did not write and ``overwrite`` is false.
    """
    from core.infrastructure.inference.merging import merge_adapter
    from core.infrastructure.inference.targets import resolve_inference_target

    source = resolve_inference_target(run, settings)
    if source.run_dir is None:
        raise ModelNotAvailableError(
            f"{run}: not a run (expected a run name under {settings.paths.runs_dir} or a run directory)"
        )
    destination = Path(output) if output else source.run_dir / "merged"
    return merge_adapter(source, destination, settings, overwrite).output_dir


def run(arguments: argparse.Namespace) -> int:
    """Runs ``finetune-studio merge``.

    Args:
        arguments: Parsed CLI arguments.

    Returns:
        Exit code 0.
    """
    settings = load_settings(arguments.config, arguments.overrides)
    merge(settings, arguments.run, arguments.output, getattr(arguments, "overwrite", False))
    return 0
