"""Normalized training records: every input format becomes a list of :class:`Conversation`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    """One turn of a conversation.

    Attributes:
        role: ``system``, ``user`` or ``assistant``.
        content: The text of the turn.
    """

    role: Role
    content: str


class Conversation(BaseModel):
    """A training example in the one shape every format is converted to.

    Attributes:
        messages: Turns in order; assistant turns are what the model learns to produce.
        source: ``file:line`` (or ``dataset[index]``) the record came from, for error messages.
        checks: Instruction-following checks that the answer to this record must pass.
        metadata: Extra fields kept from the input (category, language, ...).
    """

    messages: list[Message]
    source: str = ""
    checks: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def prompt_messages(self) -> list[Message]:
        """Messages before the last assistant turn (what a model is asked at evaluation)."""
        last = max(index for index, message in enumerate(self.messages) if message.role == "assistant")
        return self.messages[:last]

    @property
    def reference(self) -> str:
        """Content of the last assistant turn (the expected answer at evaluation)."""
        return next(message.content for message in reversed(self.messages) if message.role == "assistant")
