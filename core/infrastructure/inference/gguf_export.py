"""Writing a whole Hugging Face model as one GGUF file for llama.cpp and Ollama.

The LLaMA family is supported (``llama``; ``mistral`` without a sliding window, which llama.cpp
also converts as ``llama``), with a byte-level BPE tokenizer (``tokenizer.ggml.model = gpt2``).
The file carries:

* the hyperparameters llama.cpp reads (context length, embedding and feed-forward sizes, blocks,
  heads and key/value heads, rope dimension and theta, RMS norm epsilon, vocabulary size);
* the tokenizer: tokens with their types (normal, control for special added tokens,
  user-defined for other added tokens), merges, bos/eos/unk/pad ids, whether BOS is prepended,
  the pre-tokenizer name and the chat template (``tokenizer.chat_template``);
* the tensors under llama.cpp's names (``token_embd``, ``blk.N.attn_q`` ..., ``output_norm``,
  ``output``; no ``output`` when the embeddings are tied). llama.cpp stores the query and key
  projections with the rows of each head interleaved differently from Hugging Face (its rope
  pairs neighbouring dimensions); they are permuted here, and transformers' GGUF loader undoes it.

Quantizations: ``f16`` (matrices in float16), ``q8_0`` and ``q4_0`` (matrices in blocks of 32
with a float16 scale, by ``gguf.quants``; ``q4_0`` keeps the token embedding -- also the output
layer when tied -- in ``q8_0``, as llama.cpp keeps its output layer at higher precision). Norms
stay float32; a matrix whose rows are not a multiple of 32 falls back to float16.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from loguru import logger
from safetensors import safe_open

from core.domain.errors import UnsupportedOperationError

QUANTIZATIONS: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (gguf.GGMLQuantizationType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
}
"""Quantization name -> (type of the matrices, ``general.file_type``)."""

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
EMBEDDING_TENSORS = ("token_embd.weight", "output.weight")
BLOCK_SIZE = 32  # elements per Q8_0 / Q4_0 block


@dataclass(frozen=True)
class ModelShape:
    """The hyperparameters written into the GGUF file (see :func:`read_model_shape`)."""

    name: str
    context_length: int
    embedding_length: int
    block_count: int
    feed_forward_length: int
    head_count: int
    head_count_kv: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    vocab_size: int
    tied_embeddings: bool


def read_model_shape(model_dir: Path) -> ModelShape:
    """Reads a model's configuration and refuses what the converter cannot write faithfully.

    Args:
        model_dir: A Hugging Face model directory (``config.json``).

    Returns:
        The hyperparameters.

    Raises:
        UnsupportedOperationError: For another family, rope scaling, biases or a sliding window.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_dir))
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedOperationError(
            f"{model_dir}: GGUF export supports the LLaMA family ({', '.join(SUPPORTED_MODEL_TYPES)}); "
            f"this model is {config.model_type!r}"
        )
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    unsupported = {
        "rope scaling": rope.get("rope_type", "default") != "default",
        "attention biases": bool(getattr(config, "attention_bias", False)),
        "MLP biases": bool(getattr(config, "mlp_bias", False)),
        "a sliding attention window": getattr(config, "sliding_window", None) is not None,
    }
    found = [feature for feature, present in unsupported.items() if present]
    if found:
        raise UnsupportedOperationError(f"{model_dir}: GGUF export does not support {', '.join(found)} yet")
    heads = config.num_attention_heads
    return ModelShape(
        name=str(getattr(config, "_name_or_path", "") or model_dir.name),
        context_length=config.max_position_embeddings,
        embedding_length=config.hidden_size,
        block_count=config.num_hidden_layers,
        feed_forward_length=config.intermediate_size,
        head_count=heads,
        head_count_kv=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        rope_theta=float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))),
        rms_norm_eps=float(config.rms_norm_eps),
        vocab_size=config.vocab_size,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
    )


def pre_tokenizer_name(model_dir: Path) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer; refuses what is not byte-level BPE.

    Args:
        model_dir: Directory holding ``tokenizer.json``.

    Returns:
        ``gpt2`` (byte-level split with GPT-2's regex) or ``smollm`` (digits split first).

    Raises:
        UnsupportedOperationError: For SentencePiece or other tokenizers, or another pre-tokenizer.
    """
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise UnsupportedOperationError(f"{model_dir}: GGUF export needs a fast tokenizer (tokenizer.json)")
    description = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    if (description.get("model") or {}).get("type") != "BPE" or (description.get("decoder") or {}).get(
        "type"
    ) != "ByteLevel":
        raise UnsupportedOperationError(
            f"{model_dir}: GGUF export supports byte-level BPE tokenizers (GPT-2 style) only"
        )
    pre = description.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    raise UnsupportedOperationError(f"{model_dir}: GGUF export does not know the pre-tokenizer {kinds}")


def permute_for_llama_cpp(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorders the rows of a query or key projection from Hugging Face's rope layout to llama.cpp's.

    Hugging Face rotates the first half of each head against the second half; llama.cpp rotates
    neighbouring pairs. Within each head, row ``half * i + j`` (``half`` = head size / 2) moves to
    ``2 * j + i``.

    Args:
        weight: ``[heads * head_dim, hidden]`` projection.
        heads: Number of heads of that projection (key/value heads for the key projection).

    Returns:
        The permuted matrix (same shape).
    """
    rows = weight.shape[0]
    grouped = weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
    return grouped.swapaxes(1, 2).reshape(weight.shape)


def write_gguf(
    model_dir: Path,
    destination: Path,
    quantization: str,
    tokenizer: Any,
    chat_template: str | None,
    model_name: str | None = None,
) -> Path:
    """Writes ``model_dir`` (a whole model) as one GGUF file.

    Args:
        model_dir: Hugging Face model directory (safetensors weights, tokenizer files).
        destination: The ``.gguf`` file to write.
        quantization: ``f16``, ``q8_0`` or ``q4_0``.
        tokenizer: The model's tokenizer (for ``add_bos`` and the token list).
        chat_template: Chat template to embed (the run's), or None.
        model_name: ``general.name`` before the quantization suffix (the run's name); default: the
            model's Hub id, or its folder name when it was loaded from a local path (no machine path
            goes into the file).

    Returns:
        The destination.
    """
    shape = read_model_shape(model_dir)
    # "<name>-<quantization>" like the file name; never a bare family word (transformers reads general.name
    # "mistral" as its mistral architecture)
    shape = replace(shape, name=f"{model_name or portable_model_name(shape.name, model_dir)}-{quantization}")
    pre_tokenizer = pre_tokenizer_name(model_dir)
    logging.getLogger("gguf").setLevel(logging.WARNING)  # its per-key info lines are not ours to show
    writer = gguf.GGUFWriter(destination, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _add_hyperparameters(writer, shape, quantization)
    _add_tokenizer(writer, model_dir, tokenizer, chat_template, pre_tokenizer, shape.vocab_size)
    _add_tensors(writer, model_dir, shape, quantization)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return destination


def portable_model_name(name: str, model_dir: Path) -> str:
    """A model name without machine paths: a Hub id as is, a local path reduced to its folder name."""
    looks_local = Path(name).is_absolute() or name.startswith((".", "~")) or Path(name).exists()
    return Path(name).name if looks_local else (name or model_dir.name)


def _add_hyperparameters(writer: gguf.GGUFWriter, shape: ModelShape, quantization: str) -> None:
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(shape.name)
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.embedding_length)
    writer.add_block_count(shape.block_count)
    writer.add_feed_forward_length(shape.feed_forward_length)
    writer.add_head_count(shape.head_count)
    writer.add_head_count_kv(shape.head_count_kv)
    writer.add_rope_dimension_count(shape.head_dim)
    if shape.head_dim != shape.embedding_length // shape.head_count:
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.rms_norm_eps)
    writer.add_vocab_size(shape.vocab_size)
    writer.add_file_type(QUANTIZATIONS[quantization][1])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def token_table(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every token id's text and llama.cpp token type, padded to the embedding's row count.

    Args:
        tokenizer: A fast tokenizer.
        vocab_size: Rows of the embedding matrix (may exceed the tokenizer's size).

    Returns:
        ``(tokens, types)`` indexed by id; ids without a token become ``[PAD<id>]`` (unused).
    """
    by_id = {token_id: token for token, token_id in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for token_id in range(vocab_size):
        if token_id not in by_id:
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
        elif token_id in added:
            tokens.append(by_id[token_id])
            types.append(gguf.TokenType.CONTROL if added[token_id].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[token_id])
            types.append(gguf.TokenType.NORMAL)
    return tokens, [int(token_type) for token_type in types]


def _add_tokenizer(
    writer: gguf.GGUFWriter,
    model_dir: Path,
    tokenizer: Any,
    chat_template: str | None,
    pre_tokenizer: str,
    vocab_size: int,
) -> None:
    tokens, types = token_table(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=vocab_size)
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    special.add_special_token = {
        "bos": tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id],
        "eos": tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id],
    }
    special.chat_template = chat_template or tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)


def _model_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UnsupportedOperationError(f"{model_dir}: no safetensors weights to export")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            tensors.update({name: handle.get_tensor(name) for name in handle.keys()})  # noqa: SIM118
    return tensors


def _add_tensors(writer: gguf.GGUFWriter, model_dir: Path, shape: ModelShape, quantization: str) -> None:
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.block_count)
    for hf_name, tensor in _model_tensors(model_dir).items():
        if "rotary_emb" in hf_name or (shape.tied_embeddings and hf_name == "lm_head.weight"):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedOperationError(f"{model_dir}: no GGUF name for the tensor {hf_name!r}")
        weight = tensor.float().numpy()
        if name.endswith("attn_q.weight"):
            weight = permute_for_llama_cpp(weight, shape.head_count)
        elif name.endswith("attn_k.weight"):
            weight = permute_for_llama_cpp(weight, shape.head_count_kv)
        tensor_type = tensor_type_for(name, weight, quantization)
        _add_encoded(writer, name, weight, tensor_type)
    logger.debug("GGUF tensors added from {}", model_dir)


def tensor_type_for(name: str, weight: np.ndarray, quantization: str) -> gguf.GGMLQuantizationType:
    """The GGML type one tensor is stored in.

    Args:
        name: GGUF tensor name.
        weight: The float32 values.
        quantization: ``f16``, ``q8_0`` or ``q4_0``.

    Returns:
        F32 for vectors; the quantization's type for matrices (Q8_0 for the embedding under
        ``q4_0``), F16 where the rows are not a multiple of the block size.
    """
    if weight.ndim < 2:
        return gguf.GGMLQuantizationType.F32
    wanted = QUANTIZATIONS[quantization][0]
    if wanted == gguf.GGMLQuantizationType.Q4_0 and name in EMBEDDING_TENSORS:
        wanted = gguf.GGMLQuantizationType.Q8_0
    if wanted != gguf.GGMLQuantizationType.F16 and weight.shape[-1] % BLOCK_SIZE:
        return gguf.GGMLQuantizationType.F16
    return wanted


def _add_encoded(
    writer: gguf.GGUFWriter, name: str, weight: np.ndarray, tensor_type: gguf.GGMLQuantizationType
) -> None:
    if tensor_type == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, weight.astype(np.float32))
    elif tensor_type == gguf.GGMLQuantizationType.F16:
        writer.add_tensor(name, weight.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(weight, tensor_type), raw_dtype=tensor_type)
