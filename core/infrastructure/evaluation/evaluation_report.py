"""The report of one evaluation: ``report.md`` and ``report.html`` (with plotly figures)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from core.domain.evaluation_metrics import METRIC_LABELS, metric_rows
from core.domain.report_format import format_value, html_page, html_table, markdown_table
from core.domain.sample_tables import (
    ACCURACY_HEADERS,
    KIND_HEADERS,
    SAMPLE_HEADERS,
    SORT_NOTE,
    accuracy_rows,
    kind_rows,
    sample_rows,
)
from core.infrastructure.evaluation.figures import check_bars, figures_html, loss_curves, metric_bars

REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"

SAMPLES_SHOWN = 20
INTERVAL_HEADER = "95 % interval (bootstrap over prompts)"


def _metric_rows(evaluation: dict[str, Any]) -> list[list[Any]]:
    """Headline metrics with their bootstrap interval (``-`` where there is none, e.g. the loss)."""
    intervals = evaluation.get("metrics_ci") or {}
    labels_to_keys = {label: key for key, label in METRIC_LABELS}
    rows = []
    for label, value in metric_rows(evaluation["metrics"]):
        interval = intervals.get(labels_to_keys.get(label, ""))
        rows.append([label, value, f"[{format_value(interval[0])}, {format_value(interval[1])}]" if interval else "-"])
    return rows


def _tokenizers_note(evaluation: dict[str, Any]) -> str:
    """Which tokenizers BLEU and ROUGE used (empty when neither metric was computed)."""
    tokenizers = evaluation.get("text_tokenizers") or {}
    parts = [f"{metric.upper()} tokenizer: {name}" for metric, name in sorted(tokenizers.items())]
    return f" · {' · '.join(parts)}" if parts else ""


def write_evaluation_report(evaluation: dict[str, Any], directory: Path, metrics_rows: list[dict]) -> list[Path]:
    """Writes ``report.md`` and ``report.html`` for one evaluation.

    Args:
        evaluation: The contents of ``evaluation.json``.
        directory: Where to write (the run directory).
        metrics_rows: The run's ``metrics.jsonl`` rows (empty for a base model).

    Returns:
        Paths of the written reports.
    """
    title = f"Evaluation of {evaluation['name']}"
    data = evaluation["data"]
    subtitle = (
        f"Model: {evaluation.get('base_model') or evaluation['name']} · technique: {evaluation.get('technique') or 'none'}"
        f" · split: {data['split']} ({data['loss_sequences']} sequences for the loss,"
        f" {data['generated_samples']} generated answers){_tokenizers_note(evaluation)} · {evaluation['created_at']}"
    )
    markdown_path, html_path = Path(directory) / REPORT_MARKDOWN, Path(directory) / REPORT_HTML
    markdown_path.write_text(_markdown(evaluation, title, subtitle), encoding="utf-8")
    html_path.write_text(html_page(title, _html_body(evaluation, title, subtitle, metrics_rows)), encoding="utf-8")
    return [markdown_path, html_path]


def _check_sections_markdown(checks: dict[str, Any]) -> list[str]:
    """IFEval accuracy (strict/loose, prompt/instruction level) and pass rates by kind, as Markdown."""
    markdown: list[str] = []
    if accuracy_rows(checks):
        markdown += ["", "## IFEval accuracy", "", markdown_table(ACCURACY_HEADERS, accuracy_rows(checks))]
    if checks.get("by_kind"):
        markdown += ["", "## Instruction checks by kind", "", markdown_table(KIND_HEADERS, kind_rows(checks))]
    return markdown


def _markdown(evaluation: dict[str, Any], title: str, subtitle: str) -> str:
    """The Markdown report: metrics, response length, IFEval accuracy, checks by kind, the worst samples."""
    metrics = evaluation["metrics"]
    lengths = metrics.get("response_length") or {}
    markdown = [
        f"# {title}",
        "",
        subtitle,
        "",
        "## Metrics",
        "",
        markdown_table(["Metric", "Value", INTERVAL_HEADER], _metric_rows(evaluation)),
    ]
    if lengths:
        markdown += ["", "## Response length", "", markdown_table(["Statistic", "Value"], list(lengths.items()))]
    markdown += _check_sections_markdown(metrics.get("checks") or {})
    total = len(evaluation["samples"])
    heading = f"all {total}" if total <= SAMPLES_SHOWN else f"the {SAMPLES_SHOWN} lowest-scoring of {total}"
    markdown += [
        "",
        f"## Samples ({heading}, lowest score first)",
        "",
        markdown_table(SAMPLE_HEADERS, sample_rows(evaluation["samples"], SAMPLES_SHOWN)),
        "",
        SORT_NOTE,
        "",
        "Full per-sample results are in evaluation.json; report.html lists every sample and has the plots.",
        "",
    ]
    return "\n".join(markdown)


def _html_body(evaluation: dict[str, Any], title: str, subtitle: str, metrics_rows: list[dict]) -> str:
    """The HTML report's body: metrics, response length, checks, plots, every sample worst first."""
    metrics = evaluation["metrics"]
    lengths, checks = metrics.get("response_length") or {}, metrics.get("checks") or {}
    figures = [metric_bars(metrics)]
    if checks.get("by_kind"):
        figures.append(check_bars(checks["by_kind"]))
    if any("loss" in row or "eval_loss" in row for row in metrics_rows):
        figures.append(loss_curves({evaluation["name"]: metrics_rows}, title="Loss during training"))
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(subtitle)}</p>", "<h2>Metrics</h2>"]
    body.append(html_table(["Metric", "Value", INTERVAL_HEADER], _metric_rows(evaluation)))
    if lengths:
        body += ["<h2>Response length</h2>", html_table(["Statistic", "Value"], list(lengths.items()))]
    if accuracy_rows(checks):
        body += ["<h2>IFEval accuracy</h2>", html_table(ACCURACY_HEADERS, accuracy_rows(checks))]
    if checks.get("by_kind"):
        body += ["<h2>Instruction checks by kind</h2>", html_table(KIND_HEADERS, kind_rows(checks))]
    body += ["<h2>Plots</h2>", *figures_html(figures)]
    body += [
        f"<h2>Samples ({len(evaluation['samples'])}, lowest score first)</h2>",
        f'<p class="note">{html.escape(SORT_NOTE)}</p>',
        html_table(SAMPLE_HEADERS, sample_rows(evaluation["samples"]), preformatted=True),
    ]
    return "\n".join(body)
