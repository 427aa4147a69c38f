"""The comparison report: ``report.md``, ``report.html`` (plotly figures) and ``comparison.json``."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from core.domain.manifest import write_json_atomic
from core.domain.report_format import format_value, html_page, html_table, markdown_table
from core.domain.sample_tables import kind_comparison
from core.infrastructure.evaluation.figures import figures_html, grouped_metric_bars, loss_curves, resource_bars

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
    ("checks_pass_rate", "Instr. acc. strict"),
    ("checks_pass_rate_loose", "Instr. acc. loose"),
    ("checks_all_passed_rate", "Prompt acc. strict"),
    ("checks_all_passed_rate_loose", "Prompt acc. loose"),
)
COST_COLUMNS = (
    ("trainable_parameters", "Trainable params"),
    ("adapter_size_mb", "Saved size (MB)"),
    ("peak_memory_mb", "Peak memory (MB)"),
    ("train_runtime_s", "Wall time (s)"),
    ("tokens_per_second", "Tokens/s"),
    ("status", "Status"),
)


TITLE = "Technique comparison"
CHECKS_NOTE = (
    "Instruction-level accuracy is the share of checks passed, prompt-level accuracy the share of prompts "
    "passing all their checks; IFEval instructions are judged by the IFEval reference (if-verifiable), strict "
    "on the answer as given, loose also on its variants without markdown asterisks or first/last line; the "
    "project's own checks (valid_json, json_keys, starts_with, regex, exact_match) give the same verdict both ways."
)


def _table_rows(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> list[list[Any]]:
    return [[row["name"], row["technique"], *(_with_interval(row, key) for key, _ in columns)] for row in rows]


def _with_interval(row: dict[str, Any], key: str) -> Any:
    """The value, followed by its 95 % bootstrap interval when the evaluation has one (``0.83 [0.79, 0.87]``)."""
    value, interval = row.get(key), (row.get("metrics_ci") or {}).get(key)
    if value is None or not interval:
        return value
    return f"{format_value(value)} [{format_value(interval[0])}, {format_value(interval[1])}]"


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
    tables = _tables(comparison)
    paths = [
        write_json_atomic(directory / COMPARISON_FILE, comparison),
        directory / "report.md",
        directory / "report.html",
    ]
    paths[1].write_text(_markdown(comparison, tables), encoding="utf-8")
    paths[2].write_text(html_page(TITLE, _html_body(comparison, tables, curves)), encoding="utf-8")
    return paths


def _tables(comparison: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """Headers and rows of the quality, cost and side-by-side sample tables."""
    rows = comparison["models"]
    names = [row["name"] for row in rows]
    return {
        "quality": (
            ["Model", "Technique", *(label for _, label in QUALITY_COLUMNS)],
            _table_rows(rows, QUALITY_COLUMNS),
        ),
        "cost": (["Model", "Technique", *(label for _, label in COST_COLUMNS)], _table_rows(rows, COST_COLUMNS)),
        "samples": _sample_table(comparison.get("samples", []), names),
        "kinds": kind_comparison({row["name"]: row.get("checks_by_kind") or {} for row in rows}),
    }


def _budget_text(comparison: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in (comparison.get("budget") or {}).items())


def _markdown(comparison: dict[str, Any], tables: dict[str, Any]) -> str:
    """The Markdown report: recommendation, failures, quality, cost and outputs side by side."""
    markdown = [f"# {TITLE}", "", f"Created {comparison['created_at']}."]
    if _budget_text(comparison):
        markdown += ["", f"Equal training budget: {_budget_text(comparison)}."]
    markdown += ["", "## Recommendation", "", comparison["recommendation"]["text"]]
    if comparison.get("failures"):
        markdown += ["", "## Failed runs", "", *(f"- {failure}" for failure in comparison["failures"])]
    markdown += [
        "",
        "## Quality (base model vs each finetuned model)",
        "",
        markdown_table(*tables["quality"]),
        "",
        "Held-out loss and perplexity are over response tokens of the test split; ROUGE, BLEU (0-100), exact match "
        "and checks are over the generated answers, with 95 % bootstrap intervals over the prompts in brackets. "
        + CHECKS_NOTE,
        "",
        "## Instruction checks by kind",
        "",
        markdown_table(*tables["kinds"]),
        "",
        "## Cost",
        "",
        markdown_table(*tables["cost"]),
        "",
        "## Outputs side by side",
        "",
        markdown_table(*tables["samples"]),
        "",
        "Loss curves and charts are in report.html; all numbers are in comparison.json.",
        "",
    ]
    return "\n".join(markdown)


def _html_body(comparison: dict[str, Any], tables: dict[str, Any], curves: dict[str, list[dict]]) -> str:
    """The HTML report's body: as the Markdown one, plus metric, loss-curve and resource plots."""
    rows = comparison["models"]
    run_rows = {row["name"]: row for row in rows if not row["is_base"]}
    figures = [grouped_metric_bars({row["name"]: row for row in rows})]
    if any(curves.values()):
        figures.append(loss_curves(curves, title="Loss curves (solid: train, dashed: eval)"))
    if run_rows:
        figures.append(resource_bars(run_rows))
    body = [f"<h1>{TITLE}</h1>", f"<p>Created {html.escape(comparison['created_at'])}.</p>"]
    if _budget_text(comparison):
        body.append(f"<p>Equal training budget: {html.escape(_budget_text(comparison))}.</p>")
    body += ["<h2>Recommendation</h2>", f'<p class="note">{html.escape(comparison["recommendation"]["text"])}</p>']
    if comparison.get("failures"):
        failures = comparison["failures"]
        body += ["<h2>Failed runs</h2>", "<ul>", *(f"<li>{html.escape(failure)}</li>" for failure in failures), "</ul>"]
    body += [
        "<h2>Quality (base model vs each finetuned model)</h2>",
        html_table(*tables["quality"]),
        f'<p class="note">{html.escape(CHECKS_NOTE)}</p>',
        "<h2>Instruction checks by kind</h2>",
        html_table(*tables["kinds"]),
        "<h2>Cost</h2>",
        html_table(*tables["cost"]),
        "<h2>Plots</h2>",
        *figures_html(figures),
        "<h2>Outputs side by side</h2>",
        html_table(*tables["samples"], preformatted=True),
    ]
    return "\n".join(body)
