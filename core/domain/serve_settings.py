"""Settings of the OpenAI-compatible API server (the ``serve`` section of :class:`~core.domain.config.Settings`).

Limits count prompts (a ``/v1/completions`` request with a list of prompts counts each one):
``max_concurrency`` prompts generate at once, up to ``max_queue`` more wait (at most
``queue_timeout_s``) for a slot, and only beyond that a request is refused with 429.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ServeSettings(BaseModel):
    """OpenAI-compatible API server."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: SecretStr | None = None
    max_prompt_tokens: int = Field(2048, ge=1)
    max_tokens_cap: int = Field(512, ge=1)
    request_timeout_s: float = Field(120.0, gt=0)
    max_concurrency: int = Field(
        8,
        ge=1,
        description="Prompts generating at once (running or next in a batch); at least max_batch_size so batches fill.",
    )
    max_queue: int = Field(
        128, ge=0, description="Prompts that may wait for a generation slot; beyond them requests get 429."
    )
    queue_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for a generation slot before a request gets 429 (Retry-After)."
    )
    body_timeout_s: float = Field(
        15.0, gt=0, description="Longest time a client may take to send its request body; slower clients get 408."
    )
    max_request_bytes: int = Field(1_000_000, ge=1024)
    max_batch_size: int = Field(
        8, ge=1, le=256, description="Most requests (prompts) one model decodes together in a batch."
    )
    batch_wait_ms: float = Field(
        5.0, ge=0.0, le=1000.0, description="How long a batch waits for more compatible requests before it starts."
    )
