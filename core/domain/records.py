"""Normalized training records: every input format becomes a list of :class:`Conversation`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    """A function call made by an assistant turn.

    Attributes:
        name: The function's name.
        arguments: Its arguments (a JSON object, or the raw text when the input held no valid JSON).
    """

    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class Message(BaseModel):
    """One turn of a conversation.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool`` (a tool's result, never trained).
        content: The text of the turn (may be empty for an assistant turn that only calls tools).
        tool_calls: Calls an assistant turn makes (trained like its text).
        trained: False for an assistant turn that is context only (``train: false`` or
            ``weight: 0`` in the input, as axolotl and TRL datasets mark them).
    """

    role: Role
    content: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    trained: bool = True


class Conversation(BaseModel):
    """A training example in the one shape every format is converted to.

    Attributes:
        messages: Turns in order; assistant turns are what the model learns to produce.
        source: ``file:line`` (or ``dataset[index]``) the record came from, for error messages.
        checks: Instruction-following checks that the answer to this record must pass.
        metadata: Extra fields kept from the input (category, language, ...).
        tools: Schemas of the tools offered to the model (OpenAI ``tools`` / ShareGPT ``tools``).
        references: Further acceptable answers for evaluation (the record's ``references`` field);
            training uses only the assistant turns.
    """

    messages: list[Message]
    source: str = ""
    checks: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)

    @property
    def prompt_messages(self) -> list[Message]:
        """Messages before the last assistant turn (what a model is asked at evaluation)."""
        last = max(index for index, message in enumerate(self.messages) if message.role == "assistant")
        return self.messages[:last]

    @property
    def reference(self) -> str:
        """Content of the last assistant turn (the expected answer at evaluation)."""
        return next(message.content for message in reversed(self.messages) if message.role == "assistant")

    @property
    def reference_answers(self) -> list[str]:
        """Every acceptable answer at evaluation: the last assistant turn, then the record's other references."""
        first = self.reference
        return [first, *(text for text in dict.fromkeys(self.references) if text != first)]
