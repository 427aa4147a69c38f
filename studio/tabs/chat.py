"""Chat tab: stream answers from a run, a merged model or the base model; N columns for side-by-side answers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.chat_engine import chat_targets
from studio.context import Refresher, StudioContext, plain_errors

MAX_COLUMNS = 4


def message_text(content: Any) -> str:
    """The text of a chatbot message's content (a string or Gradio's list of typed parts).

    Args:
        content: Message content.

    Returns:
        The text.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(message_text(part) for part in content)
    if isinstance(content, dict):
        if content.get("type") == "text" or "text" in content:
            return str(content.get("text", ""))
        return ""
    return str(content or "")


def history_messages(history: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Chatbot history as plain role/content messages for the model.

    Args:
        history: The Chatbot value.

    Returns:
        Messages.
    """
    return [
        {"role": item["role"], "content": message_text(item.get("content"))}
        for item in history or []
        if item.get("role") in {"user", "assistant", "system"}
    ]


def context_line(prompt_tokens: int, room: int, max_new_tokens: int, window: int) -> str:
    """The line under the chat that says how much of the model's context the conversation uses.

    Args:
        prompt_tokens: Tokens of the conversation so far, the new message included.
        room: New tokens the answer may take.
        max_new_tokens: New tokens asked for.
        window: The model's context window.

    Returns:
        Markdown text.
    """
    line = f"Context: {prompt_tokens:,} of {window:,} tokens used by the conversation"
    if room < max_new_tokens:
        return f"{line}; **the answer is limited to {room:,} tokens** (the window is nearly full: press Clear)"
    return line


@dataclass
class _SingleChat:
    """The single-chat screen: model and generation settings, the conversation and its buttons."""

    target: gr.Dropdown
    system_prompt: gr.Textbox
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    seed: gr.Number
    template: gr.Code
    show_template: gr.Button
    chatbot: gr.Chatbot
    prompt: gr.Textbox
    send: gr.Button
    stop: gr.Button
    clear: gr.Button
    context_note: gr.Markdown


@dataclass
class _Columns:
    """The N-column screen: one prompt to several models, side by side."""

    targets: gr.CheckboxGroup
    prompt: gr.Textbox
    send: gr.Button
    stop: gr.Button
    chatbots: list[gr.Chatbot]


def build_chat_tab(context: StudioContext) -> Refresher:
    """Builds the Chat tab inside the current Blocks context.

    Args:
        context: Studio context.

    Returns:
        The handler refreshing the model lists.
    """
    targets = chat_targets(context.settings)
    with gr.Tabs():
        with gr.Tab("Single chat", id="single"), gr.Row(equal_height=False):
            single = _single_chat(targets)
        with gr.Tab("N columns", id="columns"):
            columns = _columns(targets)
    _wire_single_chat(context, single)
    _wire_columns(context, columns, single)

    def refresh(current: str | None, selected: list[str] | None) -> tuple[Any, Any]:
        labels = chat_targets(context.settings)
        keep = current if current in labels else labels[-1]
        return gr.update(choices=labels, value=keep), gr.update(
            choices=labels, value=[label for label in selected or [] if label in labels] or [labels[-1]]
        )

    pickers = [single.target, columns.targets]
    return Refresher(refresh, pickers, pickers, "refresh_chat")


def _single_chat(targets: list[str]) -> _SingleChat:
    """Builds the single-chat screen (the base model is chosen first)."""
    with gr.Column(scale=1, min_width=260, elem_classes=["tool-panel"]):
        target = gr.Dropdown(targets, value=targets[-1], label="Model", elem_id="chat-target")
        system_prompt = gr.Textbox(label="System prompt (optional)", lines=2)
        max_new_tokens = gr.Slider(8, 512, value=96, step=8, label="Max new tokens", elem_id="chat-max-tokens")
        temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0: greedy)")
        seed = gr.Number(42, label="Seed", precision=0)
        with gr.Accordion("Chat template", open=False):
            template = gr.Code(label="Jinja template", language="jinja2", interactive=False)
            show_template = gr.Button("Show template", size="sm")
    with gr.Column(scale=3, elem_classes=["chat-column"]):
        chatbot = gr.Chatbot(
            label="Chat", height=460, elem_id="chatbot", buttons=["copy"],
            placeholder="Pick a model on the left (a run, a merged model or the base model) and ask something.",
        )  # fmt: skip
        with gr.Row():
            prompt = gr.Textbox(placeholder="Ask something…", show_label=False, scale=6, elem_id="chat-input")
            send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
            stop = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
            clear = gr.Button("Clear", scale=1)
        context_note = gr.Markdown(elem_id="chat-context", elem_classes=["hint"])
    return _SingleChat(
        target, system_prompt, max_new_tokens, temperature, seed, template, show_template, chatbot, prompt, send,
        stop, clear, context_note,
    )  # fmt: skip


def _columns(targets: list[str]) -> _Columns:
    """Builds the N-column screen (one column shown until more models are ticked)."""
    with gr.Row():
        column_targets = gr.CheckboxGroup(
            targets, value=[targets[-1]], label=f"Models (up to {MAX_COLUMNS})", elem_id="column-targets"
        )
    with gr.Row():
        prompt = gr.Textbox(
            placeholder="One prompt, sent to every model with the same seed", show_label=False, scale=6,
            elem_id="columns-input",
        )  # fmt: skip
        send = gr.Button("Send to all", variant="primary", scale=1, elem_id="columns-send")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="columns-stop")
    with gr.Row():
        chatbots = [
            gr.Chatbot(label=f"Model {index + 1}", height=380, visible=index == 0, elem_classes=["chat-column"])
            for index in range(MAX_COLUMNS)
        ]
    return _Columns(column_targets, prompt, send, stop, chatbots)


def _session(request: gr.Request | None) -> str | None:
    """The browser session a generation belongs to (Stop ends that session's generations)."""
    return request.session_hash if request is not None else None


def _stopper(context: StudioContext) -> Any:
    """The Stop handler: ends this browser session's generations on the server, not only the stream."""

    def stop_generation(request: gr.Request) -> None:
        context.chat_models.cancel(_session(request))

    return stop_generation


def _wire_single_chat(context: StudioContext, ui: _SingleChat) -> None:
    """Send (streamed, with the context line), Stop, Clear and Show template."""

    @plain_errors
    def chat(
        message: str, history: list[dict[str, Any]] | None, label: str, system: str, tokens: float, heat: float,
        chosen_seed: float, request: gr.Request,
    ) -> Iterator[tuple[list[dict[str, str]], str, str]]:  # fmt: skip
        if not (message or "").strip():
            raise ValueError("type a message first")
        if not label:
            raise ValueError("choose a model to chat with")
        messages = history_messages(history)
        conversation = ([{"role": "system", "content": system}] if system and system.strip() else []) + messages
        conversation.append({"role": "user", "content": message})
        use = context.chat_models.context_use(label, conversation)
        room = use.room(int(tokens))
        if room == 0:
            raise ValueError(
                f"the conversation is {use.prompt_tokens:,} tokens and the model reads at most {use.window:,}: "
                "shorten the message or press Clear to start a new conversation"
            )
        note = context_line(use.prompt_tokens, room, int(tokens), use.window)
        shown = [*messages, {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        yield shown, "", note
        for text in context.chat_models.stream(
            label, conversation, room, float(heat), int(chosen_seed or 0), _session(request)
        ):
            shown[-1] = {"role": "assistant", "content": text}
            yield shown, "", note

    inputs = [ui.prompt, ui.chatbot, ui.target, ui.system_prompt, ui.max_new_tokens, ui.temperature, ui.seed]
    outputs = [ui.chatbot, ui.prompt, ui.context_note]
    sent = ui.send.click(chat, inputs=inputs, outputs=outputs, api_name="chat", concurrency_limit=2)
    submitted = ui.prompt.submit(chat, inputs=inputs, outputs=outputs, api_name="chat_submit", concurrency_limit=2)
    ui.clear.click(lambda: ([], ""), outputs=[ui.chatbot, ui.context_note], api_name="clear_chat")
    ui.stop.click(_stopper(context), cancels=[sent, submitted], api_name="stop_chat", queue=False)

    @plain_errors
    def show(label: str) -> str:
        return context.chat_models.template(label)

    ui.show_template.click(show, inputs=ui.target, outputs=ui.template, api_name="chat_template")


def _column_layout(selected: list[str] | None) -> list[Any]:
    """One visible column per ticked model (at least one), labelled with its name."""
    selected = (selected or [])[:MAX_COLUMNS]
    return [
        gr.update(visible=index < max(1, len(selected)), label=selected[index] if index < len(selected) else "")
        for index in range(MAX_COLUMNS)
    ]


def _chosen_columns(selected: list[str] | None, message: str) -> list[str]:
    """The distinct ticked models (at most :data:`MAX_COLUMNS`); errors name what is missing."""
    selected = list(dict.fromkeys(selected or []))
    if not selected:
        raise ValueError("select at least one model")
    if len(selected) > MAX_COLUMNS:
        gr.Warning(f"Only the first {MAX_COLUMNS} models are used")
        selected = selected[:MAX_COLUMNS]
    if not (message or "").strip():
        raise ValueError("type a prompt first")
    return selected


def _wire_columns(context: StudioContext, ui: _Columns, single: _SingleChat) -> None:
    """One prompt streamed to every ticked model in turn (same settings and seed), and Stop."""
    ui.targets.change(_column_layout, inputs=ui.targets, outputs=ui.chatbots, api_name="chat_columns_layout")

    @plain_errors
    def chat_columns(
        message: str, selected: list[str] | None, tokens: float, heat: float, chosen_seed: float, request: gr.Request
    ) -> Iterator[tuple[Any, ...]]:
        selected = _chosen_columns(selected, message)
        histories = [[{"role": "user", "content": message}, {"role": "assistant", "content": ""}] for _ in selected]

        def frame() -> tuple[Any, ...]:
            return (*(histories[index] if index < len(selected) else [] for index in range(MAX_COLUMNS)), "")

        yield frame()
        streams = {
            index: context.chat_models.stream(
                label,
                [{"role": "user", "content": message}],
                int(tokens),
                float(heat),
                int(chosen_seed or 0),
                _session(request),
            )
            for index, label in enumerate(selected)
        }
        while streams:
            for index in list(streams):
                try:
                    histories[index][-1] = {"role": "assistant", "content": next(streams[index])}
                except StopIteration:
                    del streams[index]
            yield frame()

    inputs = [ui.prompt, ui.targets, single.max_new_tokens, single.temperature, single.seed]
    outputs = [*ui.chatbots, ui.prompt]
    sent = ui.send.click(chat_columns, inputs=inputs, outputs=outputs, api_name="chat_columns")
    submitted = ui.prompt.submit(chat_columns, inputs=inputs, outputs=outputs, api_name="chat_columns_submit")
    ui.stop.click(_stopper(context), cancels=[sent, submitted], api_name="stop_columns", queue=False)
