"""``generate`` that keeps a Prefix Tuning prefix (shared by the predictor and training samples).

PEFT's own ``generate`` passes the prefix under the deprecated ``past_key_values`` name, which
transformers 5 ignores once it has created its own ``cache``, silently dropping the prefix. Here
the adapter's virtual key/value prefix is built as the initial KV cache (``PeftModel.get_prompt``)
and the base model continues from it.
"""

from __future__ import annotations

from typing import Any

import torch


def is_prompt_learning(model: torch.nn.Module) -> bool:
    """Tells whether a model is a PEFT prompt-learning model (Prefix Tuning) with an active adapter.

    Args:
        model: Any causal LM, possibly PEFT-wrapped.

    Returns:
        True for prompt-learning adapters.
    """
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def generate_ids(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any
) -> torch.Tensor:
    """Runs ``model.generate`` and returns only the generated token ids (prompt and prefix removed).

    Args:
        model: The causal LM (plain or PEFT-wrapped, Prefix Tuning included); left-padded inputs.
        input_ids: ``(batch, prompt_length)`` prompt ids.
        attention_mask: Matching attention mask.
        **kwargs: Passed to ``generate`` (generation config, streamer, stopping criteria, ...).

    Returns:
        ``(batch, new_tokens)`` generated ids.
    """
    prefix_length = 0
    if is_prompt_learning(model):
        prefix_length = model.active_peft_config.num_virtual_tokens
        kwargs["cache"] = model.get_prompt(batch_size=input_ids.shape[0])
        pad_column = torch.zeros_like(input_ids[:, :1])
        input_ids = torch.cat([pad_column.expand(-1, prefix_length), input_ids], 1)
        attention_mask = torch.cat(
            [torch.ones_like(attention_mask[:, :1]).expand(-1, prefix_length), attention_mask], 1
        )
        model = model.get_base_model()
    output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    return output[:, input_ids.shape[1] :]
