"""Chat templates rendered without Jinja's sandbox: only those whose syntax gives it nothing to stop, same text."""

from __future__ import annotations

import random

import pytest
from jinja2.sandbox import SandboxedEnvironment
from transformers.utils.chat_template_utils import _compile_jinja_template

from core.infrastructure.data.plain_templates import is_plain, plain_template
from core.infrastructure.models.loading import load_tokenizer
from core.infrastructure.models.tokenizer_loading import BUILTIN_TEMPLATES
from tests.test_data_verbatim import CUSTOM_TEMPLATE, varied_conversation

LLAMA3_LIKE = (  # items, tests, an if/else chain, loop attributes, a set, and blocks on lines of their own
    "{% set offset = 1 if messages[0]['role'] == 'system' else 0 %}\n"
    "{% for message in messages %}\n"
    "    {% if loop.index0 == 0 and bos_token is defined %}{{ bos_token }}{% endif %}\n"
    "{{ '<|start_header_id|>' ~ message.role ~ '<|end_header_id|>\\n\\n' ~ message['content'] ~ '<|eot_id|>' }}\n"
    "    {% if loop.last and add_generation_prompt %}\n"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "    {% endif %}\n"
    "{% endfor %}\n"
)

SANDBOXED = {
    "filter": "{% for m in messages %}{{ m['content'] | trim }}{% endfor %}",
    "method call": "{% for m in messages %}{{ m['content'].strip() }}{% endfor %}",
    "format": "{{ '{0.__class__}'.format(messages) }}",
    "namespace": "{% set ns = namespace(found=false) %}{{ ns.found }}",
    "private attribute": "{{ messages.__class__ }}",
    "private item": "{{ messages['__class__'] }}",
    "computed key": "{% for m in messages %}{{ m[m['role']] }}{% endfor %}",
    "internal name": "{{ messages.mro }}{{ messages.gi_frame }}",
    "macro": "{% macro turn(m) %}{{ m['content'] }}{% endmacro %}{% for m in messages %}{{ turn(m) }}{% endfor %}",
    "raise_exception": "{% if messages[0]['role'] == 'tool' %}{{ raise_exception('no tools') }}{% endif %}",
}


@pytest.fixture(scope="module")
def sandbox():
    return _compile_jinja_template("{{ '' }}").environment


@pytest.mark.parametrize("name", sorted(SANDBOXED))
def test_a_template_that_calls_or_reads_private_names_stays_in_the_sandbox(sandbox, name):
    assert not is_plain(SANDBOXED[name], sandbox)
    assert plain_template(SANDBOXED[name], sandbox) is None


def test_a_template_that_does_not_parse_stays_in_the_sandbox(sandbox):
    assert not is_plain("{% for message in messages %}", sandbox)


@pytest.mark.parametrize("name", ["model", "chatml", "alpaca", "custom", "llama3-like"])
def test_plain_templates_render_what_apply_chat_template_renders(embedded_model_dir, sandbox, name):
    """SmolLM2's own template and the builtin ones are plain; their text without the sandbox is transformers'."""
    template = {"model": None, "custom": CUSTOM_TEMPLATE, "llama3-like": LLAMA3_LIKE}.get(
        name, BUILTIN_TEMPLATES.get(name)
    )
    tokenizer = load_tokenizer(embedded_model_dir, template)
    compiled = plain_template(tokenizer.chat_template, sandbox)
    assert compiled is not None and not isinstance(compiled.environment, SandboxedEnvironment)
    generator = random.Random(name)
    variables = {"tools": None, "documents": None, **tokenizer.special_tokens_map}
    for index in range(60):
        conversation = varied_conversation(generator, index)
        messages = [{"role": message.role, "content": message.content} for message in conversation.messages]
        for prompt in (False, True):
            expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
            assert compiled.render(messages=messages, add_generation_prompt=prompt, **variables) == expected
