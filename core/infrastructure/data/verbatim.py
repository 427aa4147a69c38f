"""One render per conversation: the answers are located verbatim in the template's text, no prefix renders.

The exact way (:func:`core.infrastructure.data.tokenize.assistant_spans`) renders two growing
prefixes per assistant turn to learn where each answer starts and ends. A template that writes
every message's content verbatim, opens an answer with the generation prompt and closes it with
EOS (ChatML, Llama 3, the builtin ``alpaca`` one) gives the same spans from the whole rendering
alone: the contents are found in order from a moving cursor, each answer must sit right after the
generation prompt and right before EOS. Whether a template behaves so is probed once per template
(the exact and the verbatim spans of a few probe conversations must be equal); any record where
the verbatim location fails returns None and takes the exact way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.infrastructure.data.plain_templates import plain_template
from core.infrastructure.data.tokenizer_cache import TemplateKey, template_key

_PROBE_TURNS = (
    (("user", "Alpha one"), ("assistant", "Beta two")),
    (("system", "Gamma three"), ("user", "Delta four"), ("assistant", "Epsilon five")),
    (("user", "Theta"), ("assistant", "Iota"), ("user", "Kappa"), ("assistant", "Lambda")),
    (("system", "Mu"), ("user", "Nu"), ("assistant", "Xi"), ("user", "Omicron"), ("assistant", "Pi")),
)
"""Probe conversations (their middle answers are also probed untrained)."""


@dataclass(frozen=True)
class TemplateProfile:
    """What the probe learned about a template that renders contents verbatim.

    Attributes:
        generation_header: The text ``add_generation_prompt`` appends (it opens every answer).
        user_header: The text that opens a user turn, from the added token it starts with (None
            when it starts with none: the tokens of two turns may then merge).
        render: Renders messages without the generation prompt straight through the compiled
            template, when that gave ``apply_chat_template``'s text on every probe (else None).
    """

    generation_header: str
    user_header: str | None
    render: Callable[[list[dict]], str] | None = None


@dataclass(frozen=True)
class Rendering:
    """A conversation rendered once.

    Attributes:
        text: The whole rendering.
        spans: Character spans of the trained answers (content and EOS), in order.
        starts: Where each template message's content starts in ``text`` (-1 for an empty one).
    """

    text: str
    spans: list[tuple[int, int]]
    starts: list[int]


_PROFILES: dict[TemplateKey, TemplateProfile | None] = {}


def render_text(tokenizer: Any, messages: list[dict], add_generation_prompt: bool, tools: list | None = None) -> str:
    """The chat template's text of a conversation.

    Args:
        tokenizer: Tokenizer with the chat template.
        messages: Role/content mappings.
        add_generation_prompt: Append the prompt that opens an answer.
        tools: The template's ``tools=`` argument, if any.

    Returns:
        The rendered text.
    """
    extra = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **extra)


def template_profile(tokenizer: Any) -> TemplateProfile | None:
    """The tokenizer's template profile, probed once per template (None: the template needs the exact way).

    Args:
        tokenizer: Tokenizer with the chat template.

    Returns:
        The profile, or None.
    """
    key = template_key(tokenizer)
    if key not in _PROFILES:
        _PROFILES[key] = _probe(tokenizer)
    return _PROFILES[key]


def _probe(tokenizer: Any) -> TemplateProfile | None:
    """Renders the probe conversations both ways; a profile only when every span agrees."""
    from core.infrastructure.data.tokenize import assistant_spans

    if not tokenizer.eos_token:
        return None
    try:
        opening = [{"role": "user", "content": "Alpha one"}]
        prompt = render_text(tokenizer, opening, add_generation_prompt=True)
        closed = render_text(tokenizer, opening, add_generation_prompt=False)
        if not prompt.startswith(closed) or len(prompt) == len(closed):
            return None
        profile = TemplateProfile(prompt[len(closed) :], None)
        for turns in _PROBE_TURNS:
            messages = [{"role": role, "content": content} for role, content in turns]
            answers = sum(role == "assistant" for role, _ in turns)
            for trained in ([True] * answers, [number == answers - 1 for number in range(answers)]):
                rendering = locate_verbatim(tokenizer, profile, messages, trained)
                if rendering is None or (rendering.text, rendering.spans) != assistant_spans(
                    tokenizer, messages, trained=trained
                ):
                    return None
        return TemplateProfile(
            profile.generation_header, _user_header(tokenizer, profile, messages), _direct(tokenizer)
        )
    except Exception:  # any template failure on the probe means: take the exact way
        return None


def _direct(tokenizer: Any) -> Callable[[list[dict]], str] | None:
    """Rendering through the compiled template, when it gives ``apply_chat_template``'s text on every probe.

    ``apply_chat_template`` normalises its arguments on every call (about half of a rendering's
    time); the probe conversations hold plain string contents, as the records rendered this way do.
    The template is compiled again in transformers' environment (the same sandbox, filters and
    globals) with its globals as one plain dict: every render copies them, and copying the chain
    of dicts transformers' cached template keeps took a third of a short record's rendering
    (0.015 -> 0.010 ms per Alpaca record). A template whose syntax leaves the sandbox nothing to
    check is compiled without it (:mod:`core.infrastructure.data.plain_templates`).
    """
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        shared = _compile_jinja_template(tokenizer.chat_template)
        compiled = plain_template(tokenizer.chat_template, shared.environment)  # no sandbox where it checks nothing
        if compiled is None:
            compiled = shared.environment.from_string(tokenizer.chat_template)
        compiled.globals = dict(compiled.globals)
    except Exception:  # another transformers, a template per name: apply_chat_template renders
        return None
    variables = {"tools": None, "documents": None, "add_generation_prompt": False, **tokenizer.special_tokens_map}

    def render(messages: list[dict]) -> str:
        return compiled.render(messages=messages, **variables)

    for turns in _PROBE_TURNS:
        messages = [{"role": role, "content": content} for role, content in turns]
        if render(messages) != render_text(tokenizer, messages, add_generation_prompt=False):
            return None
    return render


def _user_header(tokenizer: Any, profile: TemplateProfile, messages: list[dict]) -> str | None:
    """The text opening the second user turn of a probe, from the first added token before its content."""
    rendering = locate_verbatim(tokenizer, profile, messages, [True] * 2)
    if rendering is None:
        return None
    second_user = max(index for index, message in enumerate(messages) if message["role"] == "user")
    between = rendering.text[rendering.spans[0][1] : rendering.starts[second_user]]
    positions = [between.find(token) for token in tokenizer.get_added_vocab() if token and token in between]
    return between[min(positions) :] if positions else None


def locate_verbatim(
    tokenizer: Any, profile: TemplateProfile, messages: list[dict], trained: list[bool] | None = None
) -> Rendering | None:
    """Renders a conversation once and finds every content verbatim, in order.

    Args:
        tokenizer: Tokenizer with the chat template.
        profile: The template's profile.
        messages: Role/content mappings (without ``tool_calls``).
        trained: Per assistant turn, whether it is trained (default: all).

    Returns:
        The rendering with the trained spans, or None when a content is not where the exact way
        would find it (empty answer, answer not right after the generation prompt or not right
        before EOS, the generation prompt also inside some content).
    """
    if profile.render is not None:
        text = profile.render(messages)
    else:
        text = render_text(tokenizer, messages, add_generation_prompt=False)
    eos, header = template_key(tokenizer).eos_token, profile.generation_header
    answers = sum(message["role"] == "assistant" for message in messages)
    if text.count(header) != answers:
        return None
    cursor, number, spans, starts = 0, 0, [], []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str) or (not content and message["role"] == "assistant"):
            return None
        found = text.find(content, cursor) if content else -1
        starts.append(found)
        if found < 0:
            if content:
                return None
            continue
        cursor = found + len(content)
        if message["role"] == "assistant":
            opened = found >= len(header) and text.startswith(header, found - len(header))
            if not (opened and text.startswith(eos, cursor)):
                return None
            cursor += len(eos)
            if trained is None or trained[number]:
                spans.append((found, cursor))
            number += 1
    return Rendering(text, spans, starts)
