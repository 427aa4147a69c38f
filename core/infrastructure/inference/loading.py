"""Loading runs, merged models, registered models and base models for generation.

A *target* names what to load, tried in this order:

1. a run name under ``paths.runs_dir`` (``runs/<name>/manifest.json``);
2. a directory: a run directory, a registry version directory, a merged or full model
   directory (``config.json``) or a bare PEFT adapter directory (``adapter_config.json``);
3. a registered model (``name``, ``name:3`` or ``name@production``);
4. a model name (catalog name, local directory or Hub id) resolved by
   :func:`core.infrastructure.models.resolve.resolve_model` -- the base model alone.

Adapters load their base model from the run's ``base_model_path`` and answer with the run's own
chat template. QLoRA runs load the base quantized (bitsandbytes) exactly as training did.

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
from core.domain.manifest import CHAT_TEMPLATE_FILE, FINAL_DIR, MANIFEST_FILE, RunManifest
from core.infrastructure.models.loading import load_causal_lm, load_tokenizer

LINEAGE_FILE = "lineage.json"
"""Lineage of a merged model directory (written by merge, read by the registry and the loader)."""

REGISTRY_VERSION_FILE = "version.json"
"""Metadata of a registry version directory; its artifact lives in ``model/`` beside it."""

REGISTRY_ARTIFACT_DIR = "model"

COMPUTE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class InferenceSource:
    """What a target resolved to, before any weights are loaded.

    Attributes:
        name: Display name (run name, registry reference or model name).
        kind: ``run``, ``registry``, ``model`` or ``base``.
        artifact_dir: Directory holding the adapter or the whole model.
        base_model_path: Base model directory for adapters, else None.
        technique: Technique name (``lora``, ``qlora``, ``prefix``, ``full``) or None for plain models.
        technique_config: The run's technique section (quantization settings for QLoRA).
        chat_template: The chat template the model was trained with, when known.
        run_dir: The run directory, for runs.
    """

    name: str
    kind: str
    artifact_dir: Path
    base_model_path: Path | None = None
    technique: str | None = None
    technique_config: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    run_dir: Path | None = None

    @property
    def is_adapter(self) -> bool:
        """True when the artifact is a PEFT adapter (needs a base model)."""
        return (self.artifact_dir / "adapter_config.json").is_file()


@dataclass
class SharedBase:
    """One loaded base model and the adapters attached to it.

    Attributes:
        module: The base ``PreTrainedModel`` (LoRA layers are injected into it once an adapter loads).
        lora_model: The ``PeftModel`` holding every LoRA/DoRA adapter on this base, or None.
        prefix_models: Prefix Tuning ``PeftModel`` wrappers by adapter name.
        lock: Serialises generation (and adapter switching) on this base.
    """

    module: torch.nn.Module
    lora_model: Any = None
    prefix_models: dict[str, Any] = field(default_factory=dict)
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
            lora_model = self.shared.lora_model if self.shared is not None else None
            if lora_model is None:
                yield self.model
            elif self.adapter_name is not None and not self.prompt_learning:
                lora_model.set_adapter(self.adapter_name)
                yield self.model
            else:
                with lora_model.disable_adapter():
                    yield self.model


def resolve_inference_target(target: str | Path | None, settings: Settings) -> InferenceSource:
    """Works out what a target names without loading weights.

    Args:
        target: Run name, run directory, merged/registry directory, registry reference or model name;
            None or empty means ``settings.model.name``.
        settings: Settings (paths, model cache).

    Returns:
        The resolved source.

    Raises:
        ModelNotAvailableError: If nothing matches, or a run has no final model yet.
    """
    text = str(target).strip() if target is not None else ""
    if not text:
        text = settings.model.name
    runs_dir = Path(settings.paths.runs_dir)
    if _is_plain_name(text) and (runs_dir / text / MANIFEST_FILE).is_file():
        return _run_source(runs_dir / text)
    path = Path(text).expanduser()
    if path.is_dir():
        return _directory_source(path)
    reference = _registry_source(text, settings)
    if reference is not None:
        return reference
    from core.infrastructure.models.resolve import resolve_model

    resolved = resolve_model(text, Path(settings.paths.model_cache), settings.model.revision)
    return InferenceSource(name=resolved.display_name, kind="base", artifact_dir=resolved.path)


def _is_plain_name(text: str) -> bool:
    return bool(text) and "/" not in text and "\\" not in text and text not in {".", ".."}


def _technique_section(config: dict[str, Any]) -> dict[str, Any]:
    technique = config.get("technique") or {}
    return technique if isinstance(technique, dict) else {"name": str(technique)}


def _run_source(run_dir: Path) -> InferenceSource:
    manifest = RunManifest.load(run_dir)
    final_dir = run_dir / (manifest.final_path or FINAL_DIR)
    if not final_dir.is_dir():
        raise ModelNotAvailableError(
            f"run {manifest.run_name!r} has no final model yet (status: {manifest.status}); "
            "wait for training to complete or pick another run"
        )
    technique_config = _technique_section(manifest.config)
    technique = technique_config.get("name") or manifest.technique.get("name")
    chat_template = manifest.chat_template
    if chat_template is None and (run_dir / CHAT_TEMPLATE_FILE).is_file():
        chat_template = (run_dir / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    base = Path(manifest.base_model_path) if manifest.base_model_path else _adapter_base(final_dir)
    return InferenceSource(
        name=manifest.run_name,
        kind="run",
        artifact_dir=final_dir,
        base_model_path=base,
        technique=technique,
        technique_config=technique_config,
        chat_template=chat_template,
        run_dir=run_dir,
    )


def _adapter_base(adapter_dir: Path) -> Path | None:
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        return None
    base = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    return Path(base) if base else None


def _directory_source(path: Path) -> InferenceSource:
    if (path / MANIFEST_FILE).is_file():
        return _run_source(path)
    if (path / REGISTRY_VERSION_FILE).is_file():
        return registry_version_source(path)
    if (path / "config.json").is_file():
        lineage = _read_json(path / LINEAGE_FILE)
        template_file = path / CHAT_TEMPLATE_FILE
        return InferenceSource(
            name=lineage.get("name") or path.name,
            kind="model",
            artifact_dir=path,
            technique=lineage.get("technique"),
            chat_template=template_file.read_text(encoding="utf-8") if template_file.is_file() else None,
        )
    if (path / "adapter_config.json").is_file():
        base = _adapter_base(path)
        if base is None:
            raise ModelNotAvailableError(f"{path}: adapter without base_model_name_or_path")
        peft_type = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("peft_type", "")
        return InferenceSource(
            name=path.name,
            kind="model",
            artifact_dir=path,
            base_model_path=base,
            technique="prefix" if peft_type == "PREFIX_TUNING" else "lora",
        )
    raise ModelNotAvailableError(
        f"{path}: not a run, model or adapter directory (no manifest.json, config.json or adapter_config.json)"
    )


def registry_version_source(version_dir: Path) -> InferenceSource:
    """The source of a registry version directory (``<registry>/<name>/v<N>``).

    Args:
        version_dir: The version directory.

    Returns:
        The resolved source.
    """
    metadata = _read_json(version_dir / REGISTRY_VERSION_FILE)
    lineage = metadata.get("lineage") or {}
    artifact = version_dir / REGISTRY_ARTIFACT_DIR
    base = lineage.get("base_model_path")
    return InferenceSource(
        name=f"{metadata.get('name', version_dir.parent.name)}:{metadata.get('version', version_dir.name)}",
        kind="registry",
        artifact_dir=artifact,
        base_model_path=Path(base) if base and (artifact / "adapter_config.json").is_file() else None,
        technique=lineage.get("technique"),
        technique_config=_technique_section(lineage.get("config") or {}),
        chat_template=lineage.get("chat_template"),
    )


def _registry_source(text: str, settings: Settings) -> InferenceSource | None:
    registry_dir = Path(settings.paths.registry_dir)
    if not registry_dir.is_dir():
        return None
    from core.infrastructure.registry.store import ModelRegistry, RegistryError

    try:
        version = ModelRegistry(registry_dir).resolve(text)
    except RegistryError:
        return None
    source = registry_version_source(version.path)
    return InferenceSource(**{**source.__dict__, "name": text})


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


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


def quantization_for(source: InferenceSource) -> Any:
    """The bitsandbytes config a QLoRA run was trained with (None for other techniques).

    Args:
        source: The resolved source.

    Returns:
        A ``BitsAndBytesConfig`` or None.
    """
    if source.technique != "qlora" or not source.is_adapter:
        return None
    from core.domain.settings_sections import QLoraTechnique
    from core.infrastructure.techniques.qlora import quantization_config
    from core.infrastructure.training.precision import choose_precision

    fields = QLoraTechnique.model_fields
    technique = QLoraTechnique(**{key: value for key, value in source.technique_config.items() if key in fields})
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

    def _shared_base(self, path: Path, settings: Settings, quantization: Any) -> SharedBase:
        dtype = torch.float32 if quantization is not None else inference_dtype(settings)
        key = (str(Path(path).resolve()), _quantization_key(quantization), str(dtype))
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
        if source.base_model_path is None or not Path(source.base_model_path).is_dir():
            raise ModelNotAvailableError(
                f"{source.name}: the base model {source.base_model_path} of this adapter is not available locally"
            )
        quantization = quantization_for(source)
        shared = self._shared_base(source.base_model_path, settings, quantization)
        adapter_name = f"adapter{len(self._models)}"
        peft_config = PeftConfig.from_pretrained(str(source.artifact_dir))
        with shared.lock:
            if peft_config.is_prompt_learning:
                model = PeftModel.from_pretrained(shared.module, str(source.artifact_dir), adapter_name=adapter_name)
                shared.prefix_models[adapter_name] = model
            elif shared.lora_model is None:
                model = PeftModel.from_pretrained(shared.module, str(source.artifact_dir), adapter_name=adapter_name)
                shared.lora_model = model
            else:
                shared.lora_model.load_adapter(str(source.artifact_dir), adapter_name=adapter_name)
                model = shared.lora_model
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
