"""The comparison report: ``report.md``, ``report.html`` (plotly figures) and ``comparison.json``."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from core.domain.manifest import write_json_atomic
from core.infrastructure.evaluation.figures import figures_html, grouped_metric_bars, loss_curves, resource_bars
from core.infrastructure.evaluation.report_format import html_page, html_table, markdown_table

COMPARISON_FILE = "comparison.json"

QUALITY_COLUMNS = (
    ("eval_loss", "Held-out loss"),
    ("perplexity", "Perplexity"),
    ("final_eval_loss", "Final eval loss"),
    ("best_eval_loss", "Best eval loss"),
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rougeL", "ROUGE-L"),
    ("rougeLsum", "ROUGE-Lsum"),
    ("bleu", "BLEU"),
    ("exact_match", "Exact match"),
    ("normalized_exact_match", "Norm. EM"),
    ("checks_pass_rate", "Checks passed"),
    ("checks_all_passed_rate", "All checks passed"),
)
COST_COLUMNS = (
    ("trainable_parameters", "Trainable params"),
    ("adapter_size_mb", "Saved size (MB)"),
    ("peak_memory_mb", "Peak memory (MB)"),
    ("train_runtime_s", "Wall time (s)"),
    ("tokens_per_second", "Tokens/s"),
    ("status", "Status"),
)


def _table_rows(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> list[list[Any]]:
    return [[row["name"], row["technique"], *(row.get(key) for key, _ in columns)] for row in rows]


def _sample_table(samples: list[dict[str, Any]], names: list[str]) -> tuple[list[str], list[list[Any]]]:
    headers = ["Prompt", "Reference", *names]
    rows = []
    for sample in samples:
        cells: list[Any] = [sample["prompt"], sample["reference"]]
        for name in names:
            output = sample["outputs"].get(name)
            if output is None:
                cells.append("-")
            else:
                verdict = {True: " [checks: pass]", False: " [checks: FAIL]"}.get(output["passed_all_checks"], "")
                cells.append(f"{output['output']}{verdict}")
        rows.append(cells)
    return headers, rows


def write_comparison_report(comparison: dict[str, Any], directory: Path, curves: dict[str, list[dict]]) -> list[Path]:
    """Writes ``comparison.json``, ``report.md`` and ``report.html``.

    Args:
        comparison: ``models`` (rows), ``recommendation``, ``samples``, ``created_at``, ``budget``, ``failures``.
        directory: Output directory.
        curves: Run name -> its ``metrics.jsonl`` rows (for the overlaid loss curves).

    Returns:
        The written paths.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = comparison["models"]
    names = [row["name"] for row in rows]
    recommendation = comparison["recommendation"]["text"]
    title = "Technique comparison"
    budget = comparison.get("budget") or {}
    budget_text = ", ".join(f"{key}={value}" for key, value in budget.items())
    failures = comparison.get("failures") or []

    quality_headers = ["Model", "Technique", *(label for _, label in QUALITY_COLUMNS)]
    cost_headers = ["Model", "Technique", *(label for _, label in COST_COLUMNS)]
    sample_headers, sample_rows = _sample_table(comparison.get("samples", []), names)

    markdown = [f"# {title}", "", f"Created {comparison['created_at']}."]
    if budget_text:
        markdown += ["", f"Equal training budget: {budget_text}."]
    markdown += ["", "## Recommendation", "", recommendation]
    if failures:
        markdown += ["", "## Failed runs", "", *(f"- {failure}" for failure in failures)]
    markdown += [
        "",
        "## Quality (base model vs each finetuned model)",
        "",
        markdown_table(quality_headers, _table_rows(rows, QUALITY_COLUMNS)),
        "",
        "Held-out loss and perplexity are over response tokens of the test split; ROUGE, BLEU (0-100), exact match "
        "and checks are over the generated answers.",
        "",
        "## Cost",
        "",
        markdown_table(cost_headers, _table_rows(rows, COST_COLUMNS)),
        "",
        "## Outputs side by side",
        "",
        markdown_table(sample_headers, sample_rows),
        "",
        "Loss curves and charts are in report.html; all numbers are in comparison.json.",
        "",
    ]

    run_rows = {row["name"]: row for row in rows if not row["is_base"]}
    figures = [grouped_metric_bars({row["name"]: row for row in rows})]
    if any(curves.values()):
        figures.append(loss_curves(curves, title="Loss curves (solid: train, dashed: eval)"))
    if run_rows:
        figures.append(resource_bars(run_rows))
    body = [f"<h1>{title}</h1>", f"<p>Created {html.escape(comparison['created_at'])}.</p>"]
    if budget_text:
        body.append(f"<p>Equal training budget: {html.escape(budget_text)}.</p>")
    body += ["<h2>Recommendation</h2>", f'<p class="note">{html.escape(recommendation)}</p>']
    if failures:
        body += ["<h2>Failed runs</h2>", "<ul>", *(f"<li>{html.escape(failure)}</li>" for failure in failures), "</ul>"]
    body += [
        "<h2>Quality (base model vs each finetuned model)</h2>",
        html_table(quality_headers, _table_rows(rows, QUALITY_COLUMNS)),
        "<h2>Cost</h2>",
        html_table(cost_headers, _table_rows(rows, COST_COLUMNS)),
        "<h2>Plots</h2>",
        *figures_html(figures),
        "<h2>Outputs side by side</h2>",
        html_table(sample_headers, sample_rows, preformatted=True),
    ]
    paths = [
        write_json_atomic(directory / COMPARISON_FILE, comparison),
        directory / "report.md",
        directory / "report.html",
    ]
    paths[1].write_text("\n".join(markdown), encoding="utf-8")
    paths[2].write_text(html_page(title, "\n".join(body)), encoding="utf-8")
    return paths
