"""The report of one evaluation: ``report.md`` and ``report.html`` (with plotly figures)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from core.domain.evaluation_metrics import METRIC_LABELS, metric_rows
from core.infrastructure.evaluation.figures import check_bars, figures_html, loss_curves, metric_bars
from core.infrastructure.evaluation.report_format import format_value, html_page, html_table, markdown_table

REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"

SAMPLES_SHOWN = 20
INTERVAL_HEADER = "95 % interval (bootstrap over prompts)"


def _sample_rows(samples: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for sample in samples[:SAMPLES_SHOWN]:
        checks = sample.get("checks") or []
        verdicts = ", ".join(f"{check['kind']}: {'pass' if check['passed'] else 'FAIL'}" for check in checks)
        references = "\n".join(sample.get("references") or [sample["reference"]])
        rows.append([sample["prompt"], sample["output"], references, _sample_scores(sample), verdicts or "-"])
    return rows


def _metric_rows(evaluation: dict[str, Any]) -> list[list[Any]]:
    """Headline metrics with their bootstrap interval (``-`` where there is none, e.g. the loss)."""
    intervals = evaluation.get("metrics_ci") or {}
    labels_to_keys = {label: key for key, label in METRIC_LABELS}
    rows = []
    for label, value in metric_rows(evaluation["metrics"]):
        interval = intervals.get(labels_to_keys.get(label, ""))
        rows.append([label, value, f"[{format_value(interval[0])}, {format_value(interval[1])}]" if interval else "-"])
    return rows


def _sample_scores(sample: dict[str, Any]) -> str:
    """A sample's sentence BLEU and ROUGE-L (``-`` when neither was computed)."""
    scores = sample.get("scores") or {}
    parts = [f"BLEU {scores['bleu']:.1f}"] if "bleu" in scores else []
    parts += [f"ROUGE-L {scores['rougeL']:.3f}"] if "rougeL" in scores else []
    return " · ".join(parts) or "-"


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


def _markdown(evaluation: dict[str, Any], title: str, subtitle: str) -> str:
    """The Markdown report: metrics, response length, checks by kind, the first samples."""
    metrics = evaluation["metrics"]
    lengths, by_kind = metrics.get("response_length") or {}, (metrics.get("checks") or {}).get("by_kind") or {}
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
        markdown_table(["Prompt", "Output", "Reference", "Scores", "Checks"], _sample_rows(evaluation["samples"])),
        "",
        "Full per-sample results are in evaluation.json; the HTML report has the plots.",
        "",
    ]
    return "\n".join(markdown)


def _html_body(evaluation: dict[str, Any], title: str, subtitle: str, metrics_rows: list[dict]) -> str:
    """The HTML report's body: metrics, response length, plots (metrics, checks, training loss), samples."""
    metrics = evaluation["metrics"]
    lengths, by_kind = metrics.get("response_length") or {}, (metrics.get("checks") or {}).get("by_kind") or {}
    figures = [metric_bars(metrics)]
    if by_kind:
        figures.append(check_bars(by_kind))
    if any("loss" in row or "eval_loss" in row for row in metrics_rows):
        figures.append(loss_curves({evaluation["name"]: metrics_rows}, title="Loss during training"))
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(subtitle)}</p>", "<h2>Metrics</h2>"]
    body.append(html_table(["Metric", "Value", INTERVAL_HEADER], _metric_rows(evaluation)))
    if lengths:
        body += ["<h2>Response length</h2>", html_table(["Statistic", "Value"], list(lengths.items()))]
    body += ["<h2>Plots</h2>", *figures_html(figures)]
    body += [
        f"<h2>Samples (first {min(SAMPLES_SHOWN, len(evaluation['samples']))})</h2>",
        html_table(
            ["Prompt", "Output", "Reference", "Scores", "Checks"],
            _sample_rows(evaluation["samples"]),
            preformatted=True,
        ),
    ]
    return "\n".join(body)
