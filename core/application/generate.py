"""Use case ``generate``: answer prompts with a run, merged model, registered model or base model.

``finetune-studio generate --run R --prompt "..."`` answers each prompt (batched);
``--input-file in.jsonl --output-file out.jsonl`` runs resumable batch inference.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from core.domain.config import Settings, load_settings
from core.domain.errors import ConfigError


def generate(
    settings: Settings,
    run: str | Path | None,
    prompts: Sequence[str],
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    system: str | None = None,
) -> list[str]:
    """Answers prompts (one user turn each) with a model, batched.

    Args:
        settings: Settings.
        run: Run name/directory, merged directory, registry reference or model name (None: base model).
        prompts: User prompts.
        max_new_tokens: Longest answer.
        temperature: 0 decodes greedily.
        top_p: Nucleus sampling mass.
        seed: Sampling seed.
        stop: Stop strings.
        system: Optional system prompt.

    Returns:
        The answers, in prompt order.
    """
    from core.infrastructure.inference.loading import load_for_inference
    from core.infrastructure.inference.predictor import Predictor

    predictor = Predictor(load_for_inference(run, settings))
    head = [{"role": "system", "content": system}] if system else []
    conversations = [[*head, {"role": "user", "content": prompt}] for prompt in prompts]
    return predictor.generate(
        conversations,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        stop=stop,
        batch_size=settings.evaluation.batch_size,
    )


def generate_file(
    settings: Settings,
    run: str | Path | None,
    input_file: Path,
    output_file: Path,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    batch_size: int | None = None,
):
    """Batch inference from a JSONL file into a JSONL file; resumes an interrupted job.

    Args:
        settings: Settings.
        run: What to generate with (see :func:`generate`).
        input_file: JSONL with ``prompt`` or ``messages`` per line.
        output_file: JSONL answers.
        max_new_tokens: Longest answer.
        temperature: 0 decodes greedily.
        top_p: Nucleus sampling mass.
        seed: Sampling seed.
        stop: Stop strings.
        batch_size: Prompts per batch (default: ``evaluation.batch_size``).

    Returns:
        The :class:`~core.infrastructure.inference.batch.BatchSummary`.
    """
    from core.infrastructure.inference.batch import read_batch_input, run_batch_inference
    from core.infrastructure.inference.loading import load_for_inference
    from core.infrastructure.inference.predictor import Predictor, SamplingOptions

    read_batch_input(Path(input_file))  # report bad lines before loading a model
    predictor = Predictor(load_for_inference(run, settings))
    options = SamplingOptions(max_new_tokens, temperature, top_p, seed, tuple(stop))
    summary = run_batch_inference(
        predictor, Path(input_file), Path(output_file), options, batch_size or settings.evaluation.batch_size
    )
    logger.success(
        "{} answers in {} ({} generated now, {} from an earlier run)",
        summary.already_done + summary.generated,
        summary.output_file,
        summary.generated,
        summary.already_done,
    )
    return summary


def run(arguments: argparse.Namespace) -> int:
    """Runs ``finetune-studio generate``.

    Args:
        arguments: Parsed CLI arguments.

    Returns:
        Exit code 0.
    """
    settings = load_settings(arguments.config, arguments.overrides)
    common = {
        "max_new_tokens": arguments.max_new_tokens,
        "temperature": arguments.temperature,
        "top_p": arguments.top_p,
        "seed": arguments.seed,
        "stop": arguments.stop,
    }
    if arguments.input_file:
        if not arguments.output_file:
            raise ConfigError("--output-file: required with --input-file")
        generate_file(
            settings,
            arguments.run,
            arguments.input_file,
            arguments.output_file,
            batch_size=arguments.batch_size,
            **common,
        )
        return 0
    if not arguments.prompt:
        raise ConfigError("generate: pass --prompt TEXT (repeatable) or --input-file X --output-file Y")
    if arguments.stream:
        if len(arguments.prompt) != 1:
            raise ConfigError("--stream: pass exactly one --prompt")
        return _stream_one(settings, arguments)
    answers = generate(settings, arguments.run, arguments.prompt, system=arguments.system, **common)
    for prompt, answer in zip(arguments.prompt, answers, strict=True):
        logger.info("Prompt: {}", prompt)
        sys.stdout.write(answer + "\n")
    sys.stdout.flush()
    return 0


def _stream_one(settings: Settings, arguments: argparse.Namespace) -> int:
    from core.infrastructure.inference.loading import load_for_inference
    from core.infrastructure.inference.predictor import Predictor

    predictor = Predictor(load_for_inference(arguments.run, settings))
    head = [{"role": "system", "content": arguments.system}] if arguments.system else []
    for chunk in predictor.stream(
        [*head, {"role": "user", "content": arguments.prompt[0]}],
        max_new_tokens=arguments.max_new_tokens,
        temperature=arguments.temperature,
        top_p=arguments.top_p,
        seed=arguments.seed,
        stop=arguments.stop,
    ):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
