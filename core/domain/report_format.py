"""Small Markdown and HTML building blocks shared by the evaluation and comparison reports."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #1f2933; padding: 0 1rem; }
h1, h2, h3 { color: #102a43; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d9e2ec; padding: 0.35rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f0f4f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { white-space: pre-wrap; margin: 0; font-size: 0.85rem; }
.pass { color: #0b7a3e; font-weight: 600; }
.fail { color: #b42318; font-weight: 600; }
.note { background: #f0f4f8; border-left: 4px solid #486581; padding: 0.6rem 1rem; }
"""


def format_value(value: Any, digits: int = 4) -> str:
    """Formats a metric for a table: floats rounded, large integers with separators, None as a dash.

    Args:
        value: Any value.
        digits: Significant decimals for floats.

    Returns:
        The text.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return (
            f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}".rstrip("0").rstrip(".")
        )
    return str(value)


def markdown_cell(text: Any) -> str:
    """Makes text safe for one Markdown table cell (no pipes, no line breaks).

    Args:
        text: Cell content.

    Returns:
        The escaped text.
    """
    return str(text).replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Builds a Markdown table.

    Args:
        headers: Column titles.
        rows: Cells; numbers are formatted with :func:`format_value`.

    Returns:
        The table text.
    """
    lines = [
        "| " + " | ".join(markdown_cell(header) for header in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for row in rows:
        cells = [markdown_cell(cell if isinstance(cell, str) else format_value(cell)) for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], preformatted: bool = False) -> str:
    """Builds an HTML table with escaped cells.

    Args:
        headers: Column titles.
        rows: Cells; numbers are right-aligned and formatted.
        preformatted: Render string cells in ``<pre>`` (model outputs keep their line breaks).

    Returns:
        The table markup.
    """
    head = "".join(f"<th>{html.escape(str(header))}</th>" for header in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if (isinstance(cell, int | float) and not isinstance(cell, bool)) or cell is None:
                cells.append(f'<td class="num">{html.escape(format_value(cell))}</td>')
            elif preformatted:
                cells.append(f"<td><pre>{html.escape(str(cell))}</pre></td>")
            else:
                cells.append(f"<td>{html.escape(str(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_page(title: str, body: str) -> str:
    """Wraps report markup into a standalone HTML page.

    Args:
        title: Page title.
        body: Inner markup.

    Returns:
        The page.
    """
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
