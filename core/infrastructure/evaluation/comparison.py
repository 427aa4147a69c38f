"""Comparison of evaluated models: one row per model, side-by-side samples and a recommendation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.domain.manifest import RunManifest

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")

ROW_FIELDS = (
    "name",
    "technique",
    "is_base",
    "status",
    "final_eval_loss",
    "best_eval_loss",
    "eval_loss",
    "perplexity",
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
    "bleu",
    "exact_match",
    "normalized_exact_match",
    "checks_pass_rate",
    "checks_pass_rate_loose",
    "checks_all_passed_rate",
    "checks_all_passed_rate_loose",
    "checks_by_kind",
    "trainable_parameters",
    "total_parameters",
    "adapter_size_mb",
    "peak_memory_mb",
    "train_runtime_s",
    "tokens_per_second",
    "metrics_ci",
)
"""Columns of ``comparison.json``'s model rows (``metrics_ci``: the evaluation's 95 % bootstrap intervals;
``checks_by_kind``: strict and loose pass rates per check kind). ``checks_*`` rates are instruction level
(``pass_rate``: share of checks passed) and prompt level (``all_passed_rate``), strict and loose."""


def weights_size_mb(directory: Path) -> float | None:
    """Size on disk of the weight files (adapter or full model) in a directory.

    Args:
        directory: E.g. a run's ``final/``.

    Returns:
        Megabytes, or None when the directory does not exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    total = sum(path.stat().st_size for path in directory.rglob("*") if path.suffix in WEIGHT_SUFFIXES)
    return total / 2**20


def model_row(evaluation: dict[str, Any], manifest: RunManifest | None, run_dir: Path | None) -> dict[str, Any]:
    """One comparison row from an evaluation and, for runs, the run's manifest.

    Args:
        evaluation: The contents of ``evaluation.json``.
        manifest: The run's manifest (None for the base model).
        run_dir: The run directory (None for the base model).

    Returns:
        A mapping with every field of :data:`ROW_FIELDS`.
    """
    metrics = evaluation.get("metrics", {})
    summary = manifest.metrics if manifest else {}
    row: dict[str, Any] = {
        "name": evaluation.get("name") if manifest is None else manifest.run_name,
        "technique": (manifest.config.get("technique", {}) or {}).get("name") if manifest else "base",
        "is_base": manifest is None,
        "status": manifest.status if manifest else "base model",
        "final_eval_loss": summary.get("final_eval_loss"),
        "best_eval_loss": summary.get("best_eval_loss"),
        "trainable_parameters": manifest.trainable_parameters if manifest else 0,
        "total_parameters": manifest.total_parameters if manifest else evaluation.get("total_parameters"),
        "adapter_size_mb": weights_size_mb(run_dir / (manifest.final_path or "final"))
        if manifest and run_dir
        else None,
        "peak_memory_mb": summary.get("peak_memory_mb"),
        "train_runtime_s": summary.get("train_runtime_s"),
        "tokens_per_second": summary.get("tokens_per_second"),
    }
    for key in (
        "eval_loss",
        "perplexity",
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "bleu",
        "exact_match",
        "normalized_exact_match",
        "checks_pass_rate",
        "checks_pass_rate_loose",
        "checks_all_passed_rate",
        "checks_all_passed_rate_loose",
    ):
        row[key] = metrics.get(key)
    checks = metrics.get("checks") or {}
    row["checks_by_kind"] = {key: checks[key] for key in ("by_kind", "by_kind_loose", "by_kind_count") if key in checks}
    row["metrics_ci"] = evaluation.get("metrics_ci") or {}
    return {field: row.get(field) for field in ROW_FIELDS}


def side_by_side_samples(evaluations: dict[str, dict[str, Any]], limit: int = 12) -> list[dict[str, Any]]:
    """Per-sample outputs of every model for the same prompts.

    Samples are matched by source and prompt, in the order of the first evaluation.

    Args:
        evaluations: Model name -> its evaluation.
        limit: Most samples returned.

    Returns:
        Mappings with ``prompt``, ``reference`` and ``outputs`` (model name -> output and
        whether it passed all its checks).
    """
    if not evaluations:
        return []
    indexed = {
        name: {(sample.get("source"), sample.get("prompt")): sample for sample in evaluation.get("samples", [])}
        for name, evaluation in evaluations.items()
    }
    first = next(iter(evaluations.values()))
    rows = []
    for sample in first.get("samples", [])[:limit]:
        key = (sample.get("source"), sample.get("prompt"))
        outputs = {}
        for name, samples in indexed.items():
            match = samples.get(key)
            if match is not None:
                outputs[name] = {"output": match["output"], "passed_all_checks": match.get("passed_all_checks")}
        rows.append({"prompt": sample["prompt"], "reference": sample["reference"], "outputs": outputs})
    return rows


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _best(rows: list[dict[str, Any]], key: str, highest: bool) -> dict[str, Any] | None:
    candidates = [row for row in rows if _number(row.get(key)) is not None]
    if not candidates:
        return None
    return (max if highest else min)(candidates, key=lambda row: _number(row[key]))


def _percent(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:.0%}"


def quality_key(row: dict[str, Any]) -> tuple[float, float, float]:
    """Sort key of answer quality: checks passed, then exact match, then lower held-out loss.

    Args:
        row: A comparison row.

    Returns:
        A tuple where larger means better.
    """
    loss = _number(row.get("eval_loss"))
    return (
        _number(row.get("checks_pass_rate")) or 0.0,
        _number(row.get("normalized_exact_match")) or 0.0,
        -loss if loss is not None else float("-inf"),
    )


def recommend(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Picks the winners on quality, memory and speed and says so in plain words.

    Args:
        rows: Comparison rows (the base model row, if any, has ``is_base``).

    Returns:
        ``quality``, ``lowest_loss``, ``memory``, ``speed``, ``smallest`` (run names or None),
        ``beats_base`` (run name -> bool) and ``text`` (a paragraph).
    """
    base = next((row for row in rows if row.get("is_base")), None)
    runs = [row for row in rows if not row.get("is_base")]
    if not runs:
        return {"quality": None, "memory": None, "speed": None, "text": "No finetuned runs to compare."}
    winners = {
        "quality": max(runs, key=quality_key),
        "lowest_loss": _best(runs, "eval_loss", highest=False),
        "memory": _best(runs, "peak_memory_mb", highest=False),
        "speed": _best(runs, "tokens_per_second", highest=True),
        "smallest": _best(runs, "adapter_size_mb", highest=False),
    }
    beats_base = {row["name"]: quality_key(row)[:2] > quality_key(base)[:2] for row in runs} if base else {}
    sentences = [_quality_sentence(runs, winners["quality"], base), *_cost_sentences(winners)]
    losers = [name for name, beats in beats_base.items() if not beats]
    if base is not None:
        sentences.append(
            "Every finetuned run beats the base model on the instruction checks."
            if not losers
            else f"Not better than the base model on the checks: {', '.join(losers)}."
        )
    names = {key: row["name"] if row else None for key, row in winners.items()}
    return {**names, "beats_base": beats_base, "text": " ".join(sentences)}


def _quality_sentence(runs: list[dict[str, Any]], quality: dict[str, Any], base: dict[str, Any] | None) -> str:
    """Who wins on quality (ties named), with its check and exact-match rates against the base model's."""
    tied = [row["name"] for row in runs if row is not quality and quality_key(row) == quality_key(quality)]
    winner = f"{quality['name']} ({quality['technique']}) wins" + (f" (tied with {', '.join(tied)})" if tied else "")
    against = (
        f", against {_percent(base.get('checks_pass_rate'))} and {_percent(base.get('normalized_exact_match'))} "
        "for the base model."
        if base
        else "."
    )
    return (
        f"Quality: {winner}, passing {_percent(quality.get('checks_pass_rate'))} "
        f"of the instruction checks with {_percent(quality.get('normalized_exact_match'))} normalized exact match"
        + against
    )


def _cost_sentences(winners: dict[str, dict[str, Any] | None]) -> list[str]:
    """The lowest loss (when another run than the quality winner), least memory, fastest, smallest."""
    sentences = []
    lowest_loss, memory, speed, smallest = (winners[key] for key in ("lowest_loss", "memory", "speed", "smallest"))
    if lowest_loss is not None and lowest_loss["name"] != winners["quality"]["name"]:
        sentences.append(
            f"The lowest held-out loss belongs to {lowest_loss['name']} ({lowest_loss['technique']}, "
            f"{lowest_loss['eval_loss']:.3f} nats/token)."
        )
    if memory is not None:
        sentences.append(
            f"Memory: {memory['name']} ({memory['technique']}) needs the least, peaking at "
            f"{memory['peak_memory_mb']:.0f} MB during training."
        )
    if speed is not None:
        sentences.append(
            f"Speed: {speed['name']} ({speed['technique']}) trains fastest at {speed['tokens_per_second']:.0f} "
            f"tokens/s ({_number(speed.get('train_runtime_s')) or 0:.0f} s wall time)."
        )
    if smallest is not None:
        sentences.append(
            f"Smallest on disk: {smallest['name']} ({smallest['technique']}, {smallest['adapter_size_mb']:.1f} MB)."
        )
    return sentences


PAIRED_METRICS = (
    ("checks_pass_rate", "instruction checks passed"),
    ("normalized_exact_match", "normalized exact match"),
)
"""Metrics a paired test may use, in order of preference (the quality ranking's first two keys)."""


def paired_tests(evaluations: dict[str, dict[str, Any]], winner: str) -> dict[str, dict[str, Any]]:
    """Paired bootstrap tests of the quality winner against every other evaluated model on the same prompts.

    Args:
        evaluations: Evaluations by model name (the base model's included).
        winner: Name of the quality winner.

    Returns:
        Model name -> ``{"metric", "difference" (winner minus model), "interval", "prompts", "significant"}``.
    """
    from core.infrastructure.evaluation.intervals import paired_test

    winner_samples = evaluations[winner].get("samples", [])
    tests: dict[str, dict[str, Any]] = {}
    for name, evaluation in evaluations.items():
        if name == winner:
            continue
        for metric, _label in PAIRED_METRICS:
            result = paired_test(winner_samples, evaluation.get("samples", []), metric)
            if result is not None:
                tests[name] = {"metric": metric, **result.to_dict()}
                break
    return tests


def significance_sentence(winner: str, tests: dict[str, dict[str, Any]]) -> str:
    """Says which models the winner is not significantly better than (the interval of the difference contains 0).

    Args:
        winner: Name of the quality winner.
        tests: :func:`paired_tests`'s result.

    Returns:
        A sentence (empty when there was nothing to test).
    """
    if not tests:
        return ""
    labels = dict(PAIRED_METRICS)
    metric = next(iter(tests.values()))["metric"]
    prompts = max(test["prompts"] for test in tests.values())
    how = f"on {labels[metric]} (paired bootstrap over {prompts} prompts, 95 % interval of the difference)"
    ties = [name for name, test in tests.items() if not test["significant"]]
    if not ties:
        return f"{winner} is significantly better than every other model {how}."
    return f"No significant difference between {winner} and {', '.join(ties)} {how}."
