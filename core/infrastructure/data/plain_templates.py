"""Chat templates rendered without Jinja's sandbox, when their syntax alone shows the sandbox has nothing to stop.

transformers renders chat templates in an immutable sandbox: every attribute a template reads
(``loop.first``) is checked, which is half of a short record's rendering (SmolLM2's template, one
Alpaca record: 10.6 -> 5.5 us; eight turns: 22.3 -> 9.3 us). The sandbox stops what a template
could reach through calls and private attributes (``__class__``, ``gi_frame``). A template whose
syntax tree holds only output, ``if``, ``for``, ``set``, names, constants, operators, tests, and
attributes and items named by constants that are public (no leading ``_``, none of the sandbox's
internal names) calls nothing and reads nothing the sandbox would refuse, so rendering it without
the sandbox gives the same text and can do nothing more (the caller also checks the text against
``apply_chat_template`` on its probes). Any other template (a filter, a method call, a macro,
``namespace()``, a key computed at render time) is rendered in the sandbox, as before.
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2 import nodes, sandbox

_ALLOWED_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.If,
    nodes.For,
    nodes.Assign,
    nodes.Name,
    nodes.Const,
    nodes.Getitem,
    nodes.Getattr,
    nodes.Slice,
    nodes.Concat,
    nodes.Add,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.CondExpr,
    nodes.Test,
    nodes.List,
    nodes.Tuple,
    nodes.Continue,
    nodes.Break,
)
"""Node types a template rendered without the sandbox may hold (no call, filter, macro, include or block)."""

_INTERNAL_NAMES = frozenset(
    {"mro"}
    | sandbox.UNSAFE_GENERATOR_ATTRIBUTES
    | sandbox.UNSAFE_COROUTINE_ATTRIBUTES
    | sandbox.UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
    | sandbox.UNSAFE_METHOD_ATTRIBUTES
    | sandbox.UNSAFE_FUNCTION_ATTRIBUTES
)
"""Public-looking names the sandbox refuses to read (frames and code of generators, a type's ``mro``)."""


def is_plain(source: str, environment: jinja2.Environment) -> bool:
    """Whether a template's syntax holds only what the sandbox has nothing to check in.

    Args:
        source: The template's text.
        environment: The environment that parses it (transformers' sandbox).

    Returns:
        True when every node is of an allowed type and every attribute or item is named by a
        constant: a number, or a public name.
    """
    try:
        tree = environment.parse(source)
    except jinja2.TemplateError:
        return False
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED_NODES):
            return False
        if isinstance(node, nodes.Getattr) and not _public(node.attr):
            return False
        if isinstance(node, nodes.Getitem) and not _plain_key(node.arg):
            return False
    return True


def _plain_key(key: nodes.Node) -> bool:
    """A constant number or public name, or a slice of constant numbers."""
    if isinstance(key, nodes.Slice):
        return all(part is None or _plain_key(part) for part in (key.start, key.stop, key.step))
    if not isinstance(key, nodes.Const):
        return False
    value = key.value
    return (isinstance(value, int) and not isinstance(value, bool)) or _public(value)


def _public(name: object) -> bool:
    """A string naming an attribute the sandbox lets a template read."""
    return isinstance(name, str) and not name.startswith("_") and name not in _INTERNAL_NAMES


def plain_template(source: str, sandboxed: jinja2.Environment) -> jinja2.Template | None:
    """The template compiled without the sandbox (same options, filters, tests and globals), or None.

    Args:
        source: The template's text.
        sandboxed: transformers' sandboxed environment.

    Returns:
        The compiled template when :func:`is_plain`, else None.
    """
    if not is_plain(source, sandboxed):
        return None
    options: dict[str, Any] = {
        name: getattr(sandboxed, name)
        for name in ("trim_blocks", "lstrip_blocks", "keep_trailing_newline", "newline_sequence", "undefined")
    }
    environment = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"], **options)
    environment.filters.update(sandboxed.filters)
    environment.tests.update(sandboxed.tests)
    environment.globals.update(sandboxed.globals)
    return environment.from_string(source)
