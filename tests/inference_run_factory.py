"""Builds real run directories (contract shape) with PEFT adapters on tiny models, for inference tests.

Shared by tests/test_inference_*.py, test_merge.py, test_registry.py and test_api.py. A run made
here is what training writes: ``final/`` with a PEFT adapter (or a whole model) and the tokenizer,
``chat_template.jinja`` and a completed ``manifest.json`` naming the base model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


def _family(base_dir: Path) -> str:
    import json

    model_type = json.loads((Path(base_dir) / "config.json").read_text())["model_type"]
    return {"llama": "llama", "mistral": "mistral", "phi": "phi", "gpt2": "gpt2"}[model_type]


def make_run(
    runs_dir: Path,
    name: str,
    base_dir: Path,
    technique: str = "lora",
    seed: int = 0,
    scale: float = 0.5,
    chat_template: str | None = None,
    status: str = "completed",
) -> Path:
    """Creates ``runs_dir/name`` holding a perturbed (non-no-op) adapter or full model.

    Args:
        runs_dir: Runs directory.
        name: Run name.
        base_dir: Base model directory (a tiny model or the embedded model).
        technique: ``lora``, ``dora``, ``qlora``, ``prefix`` or ``full``.
        seed: Seed of the perturbation.
        scale: Standard deviation of the random adapter weights.
        chat_template: Chat template to train with (default: the tokenizer's).
        status: Manifest status.

    Returns:
        The run directory.
    """
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from core.domain.config import settings_from_dict
    from core.domain.manifest import CHAT_TEMPLATE_FILE, RunManifest
    from core.domain.techniques import traits_for

    run_dir = Path(runs_dir) / name
    final_dir = run_dir / "final"
    family = _family(base_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    technique_section: dict = {"name": "lora" if technique == "dora" else technique}
    quantization = None
    if technique in {"lora", "dora", "qlora"}:
        technique_section.update(rank=4, alpha=8.0, target_modules=TARGETS[family], use_dora=technique == "dora")
    if technique == "qlora":
        technique_section.update(compute_dtype="float32", quant_type="nf4", double_quant=True)
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        )
    if technique == "prefix":
        technique_section.update(num_virtual_tokens=4)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, quantization_config=quantization)
    generator = torch.Generator().manual_seed(seed)
    if technique == "full":
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
        model.save_pretrained(final_dir, safe_serialization=True)
    else:
        if technique == "prefix":
            peft_config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
        else:
            peft_config = LoraConfig(
                task_type="CAUSAL_LM",
                r=4,
                lora_alpha=8,
                lora_dropout=0.0,
                target_modules=TARGETS[family],
                use_dora=technique == "dora",
                fan_in_fan_out=family == "gpt2",
            )
        torch.manual_seed(seed)  # peft initialises adapters from the global generator: same run whatever ran before
        peft_model = get_peft_model(model, peft_config)
        with torch.no_grad():
            for parameter_name, parameter in peft_model.named_parameters():
                if parameter.requires_grad:
                    noise = torch.randn(parameter.shape, generator=generator) * scale
                    if "lora_magnitude" in parameter_name:
                        parameter.mul_(1.0 + 0.1 * noise.abs())
                    else:
                        parameter.add_(noise)
        peft_model.save_pretrained(final_dir)
    tokenizer.save_pretrained(final_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CHAT_TEMPLATE_FILE).write_text(tokenizer.chat_template, encoding="utf-8")
    settings = settings_from_dict(
        {
            "run_name": name,
            "model": {"name": str(base_dir)},
            "technique": technique_section,
            "paths": {"runs_dir": str(runs_dir)},
            "monitoring": {"tensorboard": False},
        }
    )
    RunManifest(
        run_name=name,
        status=status,
        config=settings.to_plain_dict(),
        data_fingerprint="fingerprint-test-0001",
        chat_template=tokenizer.chat_template,
        technique=dataclasses.asdict(traits_for(technique_section["name"])),
        base_model_path=str(base_dir),
        metrics={"final_eval_loss": 1.25, "initial_eval_loss": 2.5},
        final_path="final",
    ).save(run_dir)
    return run_dir


def reference_greedy(model: torch.nn.Module, prompt_ids: list[int], steps: int) -> list[int]:
    """Greedy decoding by repeated full forward passes (no KV cache): the reference for generate().

    Args:
        model: Any causal LM (a PeftModel included).
        prompt_ids: Prompt token ids.
        steps: Tokens to generate.

    Returns:
        The generated token ids.
    """
    current = torch.tensor([prompt_ids])
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=current, attention_mask=torch.ones_like(current)).logits[:, -1]
            current = torch.cat([current, logits.argmax(-1, keepdim=True)], 1)
    return current[0, len(prompt_ids) :].tolist()


def serving_settings(model_dir: Path, root: Path, **serve: Any):
    """Settings of a test API server on ``model_dir`` with runs and registry under ``root``.

    Args:
        model_dir: The base model.
        root: Folder holding ``runs/`` and ``registry/``.
        **serve: ``serve.*`` values.

    Returns:
        Validated settings.
    """
    from conftest import MODEL_CACHE

    from core.domain.config import settings_from_dict

    paths = {"runs_dir": str(root / "runs"), "model_cache": str(MODEL_CACHE), "registry_dir": str(root / "registry")}
    return settings_from_dict({"model": {"name": str(model_dir)}, "paths": paths, "serve": serve})
