"""Loading tokenizers and causal LMs with the right device, dtype and attention kernel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from core.infrastructure.models.quantized_layers import with_supported_layers
from core.infrastructure.models.tokenizer_loading import load_tokenizer as load_tokenizer  # torch-free; re-exported


def select_device() -> torch.device:
    """Returns the best available device: CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """Returns True when the CPU has native bf16 matmuls (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return any(flag in flags for flag in ("amx_bf16", "avx512_bf16"))


def select_attn_implementation(requested: str = "auto") -> str:
    """Chooses the attention kernel: Flash Attention 2 on CUDA when installed, sdpa otherwise.

    Args:
        requested: ``auto`` or an explicit implementation name.

    Returns:
        The implementation to pass to ``from_pretrained``.
    """
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return "sdpa"


QUANTIZED_PARAMETER_TYPES = frozenset({"Params4bit", "Int8Params"})
"""bitsandbytes parameter classes: their data already lives in memory the quantizer allocated."""


def load_causal_lm(
    path: Path | str,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "auto",
    quantization_config: Any = None,
    device_map: Any = None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """Loads a causal LM from a local directory.

    Args:
        path: Model directory.
        dtype: Weight dtype.
        attn_implementation: ``auto`` or an explicit kernel name.
        quantization_config: bitsandbytes config for QLoRA, or None. Layers the machine's 4-bit
            kernel cannot run stay unquantized (see ``quantized_layers``).
        device_map: accelerate device map (``"auto"`` enables CPU offload), or None.
        trust_remote_code: Allow custom modelling code.

    Returns:
        The model, in eval mode.
    """
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": select_attn_implementation(attn_implementation),
        "trust_remote_code": trust_remote_code,
    }
    if quantization_config is not None:
        kwargs["quantization_config"] = with_supported_layers(path, quantization_config, trust_remote_code)
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if quantization_config is not None:
        release_checkpoint_file(model)
    model.eval()
    return model


def release_checkpoint_file(model: torch.nn.Module) -> None:
    """Copies the CPU tensors a quantized load left as views of the checkpoint file into process memory.

    transformers memory-maps safetensors files and keeps CPU tensors it does not convert (embeddings,
    norms) as views of the mapping. After a bitsandbytes load the mapping then keeps every page the
    quantizer read resident: on SmolLM2-135M, 405 MB of the file on top of the quantized weights,
    which made QLoRA use more memory than LoRA on CPU. Copying the unquantized tensors (tied weights
    stay tied: the parameter object is kept) drops the last reference to the mapping.

    Args:
        model: A model loaded with a quantization config.
    """
    with torch.no_grad():
        for module in model.modules():
            tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
            for _name, tensor in tensors:
                if tensor.device.type == "cpu" and type(tensor).__name__ not in QUANTIZED_PARAMETER_TYPES:
                    tensor.data = tensor.data.clone()


def base_model_of(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a PEFT wrapper (``model`` itself when it is not wrapped).

    Args:
        model: A causal LM, plain or PEFT-wrapped.

    Returns:
        The base model, whose ``config``, ``forward`` and output layer are the architecture's own.
    """
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """Counts trainable and total parameters (4-bit weights counted as their logical size).

    Args:
        model: Any module.

    Returns:
        ``(trainable, total)``.
    """
    trainable = total = 0
    for parameter in model.parameters():
        count = parameter.numel()
        if parameter.__class__.__name__ == "Params4bit":
            count *= 2
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total
