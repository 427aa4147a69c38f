"""Which linear layers a 4-bit load quantizes: the ones bitsandbytes' kernel on this machine can run.

On CPUs with AVX512-BF16 (Intel Xeon with AMX, AMD Zen 4), bitsandbytes switches 4-bit layers to a
fused CPU kernel on their first no-grad forward in eval mode (evaluation, generation) and repacks
the weights for it in blocks of output rows, with one scale per block of inputs: an output size
that is not a multiple of the row block (32 in bitsandbytes 0.50) fails with ``N must be
divisible by block_n``, an input size that is not a multiple of the quantization block (64) with
``shape '[32, 0]' is invalid``.
Such layers are kept unquantized (``llm_int8_skip_modules``), next to the layers transformers
always keeps (the output embedding, tied weights), and one warning names them. Elsewhere (CUDA,
CPUs without AVX512-BF16) every linear layer is quantized.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from loguru import logger

FALLBACK_PACK_BLOCK = 32
"""Output rows per packed block when bitsandbytes does not expose it (its 0.50 default)."""

QUANTIZATION_BLOCK = 64
"""Inputs per absmax scale of a 4-bit weight (bitsandbytes' ``Params4bit`` default, which transformers keeps)."""


def cpu_kernel_pack_block() -> int | None:
    """Returns the row block the active bitsandbytes CPU 4-bit kernel packs weights in, or None.

    None means the kernel in use does not repack weights (no AVX512-BF16, or a CUDA device), so
    every layer shape is supported.
    """
    from core.infrastructure.models.loading import select_device

    if select_device().type != "cpu":
        return None
    try:
        from bitsandbytes import functional
    except ImportError:
        return None
    has_packed_kernel = getattr(functional, "has_avx512bf16", None)
    if has_packed_kernel is None or not has_packed_kernel():
        return None
    packer = getattr(functional, "_convert_weight_packed_for_cpu", None)
    if packer is None:
        return FALLBACK_PACK_BLOCK
    default = inspect.signature(packer).parameters.get("block_n")
    return int(default.default) if default is not None and isinstance(default.default, int) else FALLBACK_PACK_BLOCK


def linear_shapes(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """Maps each layer bitsandbytes would quantize (``nn.Linear`` and GPT-2's ``Conv1D``) to its shape.

    Args:
        model: Any model (weights may live on the meta device).

    Returns:
        ``{module name: (in_features, out_features)}``.
    """
    from transformers.pytorch_utils import Conv1D

    shapes = {}
    for name, module in model.named_modules():
        if type(module) is torch.nn.Linear:
            shapes[name] = (module.in_features, module.out_features)
        elif isinstance(module, Conv1D):
            in_features, out_features = module.weight.shape
            shapes[name] = (int(in_features), int(out_features))
    return shapes


def unpackable_layers(shapes: dict[str, tuple[int, int]], pack_block: int) -> list[str]:
    """Returns the layers whose shape the packed CPU kernel rejects.

    Args:
        shapes: ``{module name: (in_features, out_features)}``.
        pack_block: Output rows per packed block.

    Returns:
        Module names, in model order.
    """
    return [
        name
        for name, (in_features, out_features) in shapes.items()
        if out_features % pack_block or in_features % QUANTIZATION_BLOCK
    ]


def layer_summary(names: list[str]) -> str:
    """Groups module names by their name with the layer index removed, e.g. ``self_attn.k_proj (x2)``."""
    groups = Counter(re.sub(r"\.\d+\.", ".N.", name) for name in names)
    return ", ".join(f"{group} (x{count})" if count > 1 else group for group, count in groups.items())


def with_supported_layers(path: Path | str, quantization_config: Any, trust_remote_code: bool = False) -> Any:
    """Returns the quantization config, extended to keep unpackable layers unquantized when needed.

    Args:
        path: Model directory (only its ``config.json`` is read; the model is built on the meta device).
        quantization_config: The ``BitsAndBytesConfig`` asked for.
        trust_remote_code: Allow custom modelling code.

    Returns:
        The same config when nothing needs skipping, otherwise a copy whose
        ``llm_int8_skip_modules`` lists transformers' default skips plus the unpackable layers.
    """
    if not getattr(quantization_config, "load_in_4bit", False):
        return quantization_config
    pack_block = cpu_kernel_pack_block()
    if pack_block is None:
        return quantization_config
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.quantizers.base import get_keys_to_not_convert

    model_config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(model_config, trust_remote_code=trust_remote_code)
    always_kept = set(get_keys_to_not_convert(skeleton)) | set(quantization_config.llm_int8_skip_modules or [])
    shapes = {
        name: shape
        for name, shape in linear_shapes(skeleton).items()
        if not any(name == kept or name.startswith(f"{kept}.") or name.endswith(f".{kept}") for kept in always_kept)
    }
    unpackable = unpackable_layers(shapes, pack_block)
    if not unpackable:
        return quantization_config
    logger.warning(
        "Keeping {} of {} linear layers unquantized: bitsandbytes' CPU 4-bit kernel on this machine packs "
        "output rows in blocks of {} and cannot run {}",
        len(unpackable),
        len(shapes),
        pack_block,
        layer_summary(unpackable),
    )
    extended = copy.deepcopy(quantization_config)
    extended.llm_int8_skip_modules = sorted(always_kept) + [re.escape(name) for name in unpackable]
    return extended
