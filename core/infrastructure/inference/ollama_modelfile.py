r"""The Ollama ``Modelfile`` of an exported GGUF: template, stop tokens and sampling defaults.

Ollama formats a conversation with a Go template (``TEMPLATE``), not with the Jinja chat template
the model was trained with, so the Jinja template is recognised and its Go equivalent emitted.
ChatML is recognised (``<|im_start|>role\n...<|im_end|>\n``, the SmolLM2 / Qwen family), with
the default system prompt the template inserts when a conversation has none. Recognition is by
rendering: probe conversations rendered by the tokenizer must equal ChatML exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.domain.errors import UnsupportedOperationError

TURN_START, TURN_END = "<|im_start|>", "<|im_end|>"
PROBE_SYSTEM, PROBE_USER, PROBE_ASSISTANT, PROBE_FOLLOW_UP = "Be brief.", "Hi there", "Hello!", "How are you?"

Renderer = Callable[[list[dict[str, str]]], str]
"""Renders messages with the model's chat template, generation prompt included."""


def chatml(messages: list[dict[str, str]], default_system: str | None) -> str:
    """Renders messages as ChatML with the assistant header, as the SmolLM2 template does.

    Args:
        messages: ``[{"role": ..., "content": ...}, ...]``.
        default_system: System prompt inserted when the first message is not a system one.

    Returns:
        The prompt text.
    """
    turns = list(messages)
    if default_system is not None and (not turns or turns[0]["role"] != "system"):
        turns.insert(0, {"role": "system", "content": default_system})
    body = "".join(f"{TURN_START}{turn['role']}\n{turn['content']}{TURN_END}\n" for turn in turns)
    return f"{body}{TURN_START}assistant\n"


def chatml_default_system(render: Renderer) -> str | None:
    """Checks that a chat template renders ChatML and finds the system prompt it adds by default.

    Args:
        render: The model's template (generation prompt included).

    Returns:
        The default system prompt, or None when the template adds none.

    Raises:
        UnsupportedOperationError: When the template is not ChatML.
    """
    user_only = render([{"role": "user", "content": PROBE_USER}])
    plain = chatml([{"role": "user", "content": PROBE_USER}], None)
    header = f"{TURN_START}system\n"
    default_system = None
    if user_only != plain and user_only.startswith(header) and user_only.endswith(plain):
        default_system = user_only[len(header) : -len(plain)].removesuffix(f"{TURN_END}\n")
    conversation = [
        {"role": "user", "content": PROBE_USER},
        {"role": "assistant", "content": PROBE_ASSISTANT},
        {"role": "user", "content": PROBE_FOLLOW_UP},
    ]
    for messages in ([{"role": "system", "content": PROBE_SYSTEM}, *conversation], conversation):
        if render(messages) != chatml(messages, default_system):
            raise UnsupportedOperationError(
                "the run's chat template is not ChatML, the one template the Ollama export can translate into "
                "Ollama's Go TEMPLATE; export with --format gguf (the file carries the chat template itself)"
            )
    return default_system


def go_template(default_system: str | None) -> str:
    """Ollama's Go template equivalent to ChatML with an optional default system prompt.

    Args:
        default_system: System prompt added before a first message that is not a system one.

    Returns:
        The template text.
    """
    system = ""
    if default_system is not None:
        if "{{" in default_system or '"""' in default_system:
            raise UnsupportedOperationError("the default system prompt holds '{{' or '\"\"\"'; Ollama cannot quote it")
        system = (
            '{{ if and (eq $index 0) (ne $message.Role "system") }}'
            f"{TURN_START}system\n{default_system}{TURN_END}\n{{{{ end }}}}"
        )
    return (
        "{{- range $index, $message := .Messages }}"
        f"{system}{TURN_START}{{{{ $message.Role }}}}\n{{{{ $message.Content }}}}{TURN_END}\n"
        f"{{{{ end }}}}{TURN_START}assistant\n"
    )


def sampling_parameters(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The run's default decoding, as Ollama parameters.

    Args:
        evaluation: The run's ``evaluation`` settings (``do_sample``, ``temperature``, ``top_p``,
            ``max_new_tokens``).

    Returns:
        ``temperature`` (0 for greedy decoding), ``top_p`` and ``num_predict``.
    """
    greedy = not evaluation.get("do_sample", False)
    return {
        "temperature": 0 if greedy else evaluation.get("temperature", 1.0),
        "top_p": evaluation.get("top_p", 1.0),
        "num_predict": evaluation.get("max_new_tokens", 96),
    }


def render_modelfile(gguf_name: str, default_system: str | None, parameters: dict[str, Any]) -> str:
    """The Modelfile text.

    Args:
        gguf_name: The GGUF file beside the Modelfile.
        default_system: See :func:`go_template`.
        parameters: Sampling parameters (see :func:`sampling_parameters`).

    Returns:
        ``FROM``, ``TEMPLATE``, the ``PARAMETER stop`` lines and the sampling parameters.
    """
    lines = [f"FROM ./{gguf_name}", "", f'TEMPLATE """{go_template(default_system)}"""', ""]
    lines += [f'PARAMETER stop "{token}"' for token in (TURN_END, TURN_START)]
    lines += [f"PARAMETER {name} {value}" for name, value in parameters.items()]
    return "\n".join(lines) + "\n"
