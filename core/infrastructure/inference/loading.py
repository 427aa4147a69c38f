"""Loading runs, merged models, registered models and base models for generation.

What a target names is resolved by :mod:`core.infrastructure.inference.targets`.

An :class:`InferenceCache` shares one loaded base model between every adapter trained on it:
LoRA and DoRA adapters live side by side in one ``PeftModel`` (``load_adapter`` /
``set_adapter``), Prefix Tuning adapters wrap the same base module, and the base model alone is
served with the adapters disabled. Generation on a shared base is serialised by the base's lock
(:meth:`LoadedModel.activated`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from loguru import logger
from transformers import PreTrainedTokenizerBase

from core.domain.config import Settings
from core.domain.errors import ModelNotAvailableError
from core.domain.techniques import technique_names, technique_spec
from core.infrastructure.inference.targets import InferenceSource, resolve_inference_target
from core.infrastructure.models.loading import load_causal_lm, load_tokenizer

COMPUTE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class SharedBase:
    """One loaded base model and the adapters attached to it.

    Attributes:
        module: The base ``PreTrainedModel`` (adapter layers are injected into it once an adapter loads).
        adapter_model: The ``PeftModel`` holding every injected adapter (LoRA, DoRA, IA3, ...) on this
            base, all of one PEFT type, or None.
        adapter_type: That PEFT type (``LORA``, ``IA3``, ...), or None.
        prompt_models: Prompt-learning (Prefix Tuning) ``PeftModel`` wrappers by adapter name.
        lock: Serialises generation (and adapter switching) on this base.
    """

    module: torch.nn.Module
    adapter_model: Any = None
    adapter_type: str | None = None
    prompt_models: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


@dataclass
class LoadedModel:
    """A model ready for generation.

    Attributes:
        model: The module to call ``generate`` on (a ``PeftModel`` for adapters).
        tokenizer: Tokenizer carrying the chat template to render prompts with.
        chat_template: The chat template text.
        run_dir: Run directory for runs, else None.
        technique: Technique name, or None for plain models.
        name: Display name.
        adapter_name: Name of the adapter inside a shared ``PeftModel``, or None.
        prompt_learning: True for Prefix Tuning (generation injects the prefix as a KV cache).
        shared: The shared base this model runs on, or None for standalone models.
        lock: Lock serialising generation on the underlying weights.
    """

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    chat_template: str | None
    run_dir: Path | None
    technique: str | None
    name: str
    adapter_name: str | None = None
    prompt_learning: bool = False
    shared: SharedBase | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    @contextmanager
    def activated(self) -> Iterator[torch.nn.Module]:
        """Holds the lock and switches the shared base to this model's adapter.

        Yields:
            The module to generate with.
        """
        with self.lock:
            adapter_model = self.shared.adapter_model if self.shared is not None else None
            if adapter_model is None:
                yield self.model
            elif self.adapter_name is not None and not self.prompt_learning:
                adapter_model.set_adapter(self.adapter_name)
                yield self.model
            else:
                with adapter_model.disable_adapter():
                    yield self.model


def inference_dtype(settings: Settings) -> torch.dtype:
    """The weight dtype for inference: ``model.dtype``, or fp32 on CPU and bf16/fp16 on GPUs for ``auto``.

    Args:
        settings: Settings.

    Returns:
        The dtype.
    """
    if settings.model.dtype != "auto":
        return COMPUTE_DTYPES[settings.model.dtype]
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def peft_type_name(peft_config: Any) -> str:
    """A PEFT config's type as plain text (``LORA``, ``IA3``, ``PREFIX_TUNING``).

    Args:
        peft_config: A ``PeftConfig`` (or its JSON mapping).

    Returns:
        The type's name.
    """
    peft_type = peft_config.get("peft_type") if isinstance(peft_config, dict) else peft_config.peft_type
    return str(getattr(peft_type, "value", peft_type))


def quantization_for(source: InferenceSource) -> Any:
    """The bitsandbytes config a QLoRA run was trained with (None for other techniques).

    Args:
        source: The resolved source.

    Returns:
        A ``BitsAndBytesConfig`` or None.
    """
    if source.technique not in technique_names() or not source.is_adapter:
        return None
    spec = technique_spec(source.technique)
    if not spec.traits.needs_bitsandbytes:
        return None
    from core.infrastructure.techniques.qlora import quantization_config
    from core.infrastructure.training.precision import choose_precision

    fields = spec.settings.model_fields
    technique = spec.settings(**{key: value for key, value in source.technique_config.items() if key in fields})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return quantization_config(technique, choose_precision("auto", device).compute_dtype)


def _quantization_key(quantization: Any) -> str:
    if quantization is None:
        return "none"
    return json.dumps(quantization.to_dict(), sort_keys=True, default=str)


class InferenceCache:
    """Loaded models, with one base model shared by every adapter trained on it.

    Thread-safe: loading is serialised by one lock; generation is serialised per base by
    :meth:`LoadedModel.activated`.

    Args:
        device: Device to load onto (default: CPU unless CUDA is available).
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._bases: dict[tuple[str, str, str], SharedBase] = {}
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.RLock()

    def load(self, target: str | Path | None, settings: Settings) -> LoadedModel:
        """Loads a target, reusing loaded bases and adapters.

        Args:
            target: See :func:`resolve_inference_target`.
            settings: Settings.

        Returns:
            The loaded model.
        """
        source = resolve_inference_target(target, settings)
        return self.load_source(source, settings)

    def load_source(self, source: InferenceSource, settings: Settings) -> LoadedModel:
        """Loads an already resolved source.

        Args:
            source: The resolved source.
            settings: Settings (dtype, attention implementation).

        Returns:
            The loaded model.
        """
        key = str(source.artifact_dir.resolve())
        with self._lock:
            if key in self._models:
                return self._models[key]
            loaded = self._load(source, settings)
            self._models[key] = loaded
            return loaded

    def loaded_names(self) -> list[str]:
        """Names of the models loaded so far."""
        with self._lock:
            return [model.name for model in self._models.values()]

    def _shared_base(self, path: Path, settings: Settings, quantization: Any, variant: str = "") -> SharedBase:
        dtype = torch.float32 if quantization is not None else inference_dtype(settings)
        key = (str(Path(path).resolve()), _quantization_key(quantization), str(dtype), variant)
        if key not in self._bases:
            logger.info("Loading base model {}{}", path, " (quantized, as in training)" if quantization else "")
            module = load_causal_lm(
                path,
                dtype=dtype,
                attn_implementation=settings.model.attn_implementation,
                quantization_config=quantization,
                trust_remote_code=settings.model.trust_remote_code,
            )
            if quantization is None:
                module.to(self.device)
            self._bases[key] = SharedBase(module=module)
        return self._bases[key]

    def _base_for_adapter(self, source: InferenceSource, settings: Settings, peft_config: Any) -> SharedBase:
        """The base an adapter attaches to: the shared one, or a second copy for another injected PEFT type.

        Adapters of one PEFT type (LoRA and DoRA, or IA3, ...) share one injected ``PeftModel``;
        prompt-learning adapters wrap any base. An injected adapter of a different type than the one
        already on the shared base gets a base of its own (PEFT does not mix types in one model).
        """
        quantization = quantization_for(source)
        shared = self._shared_base(source.base_model_path, settings, quantization)
        peft_type = peft_type_name(peft_config)
        if peft_config.is_prompt_learning or shared.adapter_type in (None, peft_type):
            return shared
        return self._shared_base(source.base_model_path, settings, quantization, variant=peft_type)

    def _load(self, source: InferenceSource, settings: Settings) -> LoadedModel:
        from peft import PeftConfig, PeftModel

        tokenizer_dir = source.artifact_dir if _has_tokenizer(source.artifact_dir) else source.base_model_path
        if tokenizer_dir is None:
            tokenizer_dir = source.artifact_dir
        tokenizer = load_tokenizer(tokenizer_dir, chat_template=source.chat_template)
        if not source.is_adapter:
            shared = self._shared_base(source.artifact_dir, settings, None)
            return LoadedModel(
                model=shared.module,
                tokenizer=tokenizer,
                chat_template=tokenizer.chat_template,
                run_dir=source.run_dir,
                technique=source.technique,
                name=source.name,
                shared=shared,
                lock=shared.lock,
            )
        if source.base_model_path is not None and not Path(source.base_model_path).is_dir():
            source = _with_resolved_base(source, settings)
        if source.base_model_path is None or not Path(source.base_model_path).is_dir():
            raise ModelNotAvailableError(
                f"{source.name}: the base model {source.base_model_path} of this adapter is not available locally"
            )
        peft_config = PeftConfig.from_pretrained(str(source.artifact_dir))
        shared = self._base_for_adapter(source, settings, peft_config)
        adapter_name = f"adapter{len(self._models)}"
        with shared.lock:
            if peft_config.is_prompt_learning:
                model = PeftModel.from_pretrained(shared.module, str(source.artifact_dir), adapter_name=adapter_name)
                shared.prompt_models[adapter_name] = model
            elif shared.adapter_model is None:
                model = PeftModel.from_pretrained(shared.module, str(source.artifact_dir), adapter_name=adapter_name)
                shared.adapter_model, shared.adapter_type = model, peft_type_name(peft_config)
            else:
                shared.adapter_model.load_adapter(str(source.artifact_dir), adapter_name=adapter_name)
                model = shared.adapter_model
            model.eval()
        logger.info("Loaded adapter {} ({}) on {}", source.name, source.technique, source.base_model_path)
        return LoadedModel(
            model=model,
            tokenizer=tokenizer,
            chat_template=tokenizer.chat_template,
            run_dir=source.run_dir,
            technique=source.technique,
            name=source.name,
            adapter_name=adapter_name,
            prompt_learning=bool(peft_config.is_prompt_learning),
            shared=shared,
            lock=shared.lock,
        )


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))


def load_for_inference(
    target: str | Path | None, settings: Settings, cache: InferenceCache | None = None
) -> LoadedModel:
    """Loads a run, merged model, registered model or base model for generation.

    Args:
        target: Run name, run directory, merged directory, registry reference (``name``,
            ``name:2``, ``name@production``) or model name; None means ``settings.model.name``.
        settings: Settings (paths, dtype, attention implementation).
        cache: Share loaded bases with earlier loads (the API server and studio pass one);
            None loads fresh weights.

    Returns:
        The loaded model with its tokenizer and chat template.

    Raises:
        ModelNotAvailableError: If the target cannot be found or its base model is missing.
    """
    return (cache or InferenceCache()).load(target, settings)


def _with_resolved_base(source: InferenceSource, settings: Settings) -> InferenceSource:
    """Resolves an adapter's base given by Hub id (a portable adapter) to a local directory.

    The catalog's models come from the model cache, other ids from the Hugging Face cache
    (downloaded only when online); an id that cannot be resolved is left as it is.
    """
    from dataclasses import replace

    from core.domain.portable import is_hub_id
    from core.infrastructure.models.resolve import resolve_model

    reference = str(source.base_model_path)
    if not is_hub_id(reference):
        return source
    try:
        resolved = resolve_model(reference, Path(settings.paths.model_cache))
    except ModelNotAvailableError:
        return source
    return replace(source, base_model_path=resolved.path)
