"""Prompt formats: the chat templates Finetune Studio can train with, as Jinja strings.

``model`` means the tokenizer's own chat template. The template actually used for training is
stored in the run directory and is the one inference, chat and the API render with, so training
and serving tokens are identical.
"""

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML: ``<|im_start|>role\\ncontent<|im_end|>`` per turn."""

ALPACA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"
)
"""Alpaca: ``### Instruction:`` / ``### Response:`` blocks, each answer closed by EOS."""

ALPACA_DEFAULT_SYSTEM = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)

BUILTIN_TEMPLATES: dict[str, str] = {"chatml": CHATML_TEMPLATE, "alpaca": ALPACA_TEMPLATE}
"""Templates shipped with the product, keyed by ``data.template``."""
