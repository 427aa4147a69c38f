"""The report of one evaluation: ``report.md`` and ``report.html`` (with plotly figures)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from core.infrastructure.evaluation.figures import check_bars, figures_html, loss_curves, metric_bars
from core.infrastructure.evaluation.report_format import html_page, html_table, markdown_table

REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"

METRIC_LABELS = (
    ("eval_loss", "Loss (response tokens)"),
    ("perplexity", "Perplexity"),
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rougeL", "ROUGE-L"),
    ("rougeLsum", "ROUGE-Lsum"),
    ("bleu", "BLEU (sacreBLEU, 0-100)"),
    ("exact_match", "Exact match"),
    ("normalized_exact_match", "Normalized exact match"),
    ("checks_pass_rate", "Instruction checks passed"),
    ("checks_all_passed_rate", "Samples passing all checks"),
    ("generation_tokens_per_second", "Generation tokens/s"),
)
"""Headline metrics in report order: (key in ``metrics``, label)."""

SAMPLES_SHOWN = 20


def metric_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """Rows ``[label, value]`` of the headline metrics present in an evaluation.

    Args:
        metrics: The ``metrics`` mapping.

    Returns:
        The rows.
    """
    return [[label, metrics[key]] for key, label in METRIC_LABELS if metrics.get(key) is not None]


def _sample_rows(samples: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for sample in samples[:SAMPLES_SHOWN]:
        checks = sample.get("checks") or []
        verdicts = ", ".join(f"{check['kind']}: {'pass' if check['passed'] else 'FAIL'}" for check in checks)
        rows.append([sample["prompt"], sample["output"], sample["reference"], verdicts or "-"])
    return rows


def write_evaluation_report(evaluation: dict[str, Any], directory: Path, metrics_rows: list[dict]) -> list[Path]:
    """Writes ``report.md`` and ``report.html`` for one evaluation.

    Args:
        evaluation: The contents of ``evaluation.json``.
        directory: Where to write (the run directory).
        metrics_rows: The run's ``metrics.jsonl`` rows (empty for a base model).

    Returns:
        Paths of the written reports.
    """
    directory = Path(directory)
    metrics = evaluation["metrics"]
    title = f"Evaluation of {evaluation['name']}"
    subtitle = (
        f"Model: {evaluation.get('base_model') or evaluation['name']} · technique: {evaluation.get('technique') or 'none'}"
        f" · split: {evaluation['data']['split']} ({evaluation['data']['loss_sequences']} sequences for the loss,"
        f" {evaluation['data']['generated_samples']} generated answers) · {evaluation['created_at']}"
    )
    lengths = metrics.get("response_length") or {}
    checks = metrics.get("checks") or {}
    by_kind = checks.get("by_kind") or {}

    markdown = [
        f"# {title}",
        "",
        subtitle,
        "",
        "## Metrics",
        "",
        markdown_table(["Metric", "Value"], metric_rows(metrics)),
    ]
    if lengths:
        markdown += ["", "## Response length", "", markdown_table(["Statistic", "Value"], list(lengths.items()))]
    if by_kind:
        markdown += [
            "",
            "## Instruction checks by kind",
            "",
            markdown_table(["Check", "Pass rate"], list(by_kind.items())),
        ]
    markdown += [
        "",
        f"## Samples (first {min(SAMPLES_SHOWN, len(evaluation['samples']))})",
        "",
        markdown_table(["Prompt", "Output", "Reference", "Checks"], _sample_rows(evaluation["samples"])),
        "",
        "Full per-sample results are in evaluation.json; the HTML report has the plots.",
        "",
    ]

    figures = [metric_bars(metrics)]
    if by_kind:
        figures.append(check_bars(by_kind))
    if any("loss" in row or "eval_loss" in row for row in metrics_rows):
        figures.append(loss_curves({evaluation["name"]: metrics_rows}, title="Loss during training"))
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(subtitle)}</p>", "<h2>Metrics</h2>"]
    body.append(html_table(["Metric", "Value"], metric_rows(metrics)))
    if lengths:
        body += ["<h2>Response length</h2>", html_table(["Statistic", "Value"], list(lengths.items()))]
    body += ["<h2>Plots</h2>", *figures_html(figures)]
    body += [
        f"<h2>Samples (first {min(SAMPLES_SHOWN, len(evaluation['samples']))})</h2>",
        html_table(["Prompt", "Output", "Reference", "Checks"], _sample_rows(evaluation["samples"]), preformatted=True),
    ]
    markdown_path = directory / REPORT_MARKDOWN
    html_path = directory / REPORT_HTML
    markdown_path.write_text("\n".join(markdown), encoding="utf-8")
    html_path.write_text(html_page(title, "\n".join(body)), encoding="utf-8")
    return [markdown_path, html_path]
