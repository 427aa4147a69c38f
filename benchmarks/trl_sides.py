"""The TRL sides of the training benchmark: ``SFTTrainer`` tuned as a capable user would, and with its defaults.

Both train the same model with the same LoRA adapters, data, precision, steps and optimisation
hyper-parameters as ours (learning rate, schedule, warm-up, seed).

* ``trl_tuned``: what TRL's docs advise for speed: ``packing=True`` with the ``bfd`` strategy
  (best-fit decreasing; in TRL 1.x this makes batches padding-free: packed sequences are
  flattened with position ids reset, no padding), ``max_length`` = our ``data.max_seq_length``,
  no gradient checkpointing (ours has none either), the data in prompt/completion form so the
  loss is on the answers only (``completion_only_loss``, like ours), and a per-device batch
  size (packed sequences per step) chosen so its tokens per optimizer step match ours
  (:func:`tuned_batch_size`; both sides' measured tokens per step are reported).
* ``trl_defaults``: a plain ``SFTTrainer`` script on a ``messages`` dataset: no packing,
  gradient checkpointing on, loss on every token, batch size = ours (in examples).

On a CPU both pass ``use_cpu=True``: transformers rejects ``bf16=True`` on a CPU otherwise ("Your
setup doesn't support bf16/gpu"), and ``precision=auto`` picks bf16 on CPUs with AMX or
AVX512-BF16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.throughput_probe import ThroughputProbe
from benchmarks.training_harness import eval_rows


def tuned_batch_size(data_dir: Path, ours_batch_size: int, max_length: int) -> dict[str, Any]:
    """Packed sequences per step that give the tuned TRL side the tokens per step ours trains on.

    Ours concatenates ``ours_batch_size`` examples per step (padding-free), so its expected tokens
    per step are ``ours_batch_size`` x the mean example length. TRL's BFD packing fills sequences of
    up to ``max_length`` tokens; packing the same token lengths the same way gives the mean tokens
    per packed sequence, and the batch size is the ratio, rounded (at least 1).

    Args:
        data_dir: Benchmark prepared directory (its tokenized train split).
        ours_batch_size: Our ``training.per_device_batch_size`` (examples per step).
        max_length: ``data.max_seq_length`` (TRL's ``max_length``).

    Returns:
        ``batch_size`` and the expected tokens per step of both sides.
    """
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    from core.infrastructure.data.prepared import load_prepared

    lengths = [min(len(ids), max_length) for ids in load_prepared(data_dir).tokenized("train")["input_ids"]]
    packed = pack_dataset(Dataset.from_dict({"input_ids": [[0] * length for length in lengths]}), max_length, "bfd")
    tokens_per_packed_sequence = sum(lengths) / max(len(packed), 1)
    ours_tokens_per_step = ours_batch_size * sum(lengths) / max(len(lengths), 1)
    batch_size = max(1, round(ours_tokens_per_step / tokens_per_packed_sequence))
    return {
        "batch_size": batch_size,
        "expected_ours_tokens_per_step": round(ours_tokens_per_step, 1),
        "expected_trl_tokens_per_step": round(batch_size * tokens_per_packed_sequence, 1),
        "tokens_per_packed_sequence": round(tokens_per_packed_sequence, 1),
    }


def _messages(message: Any) -> dict[str, str]:
    return {"role": message.role, "content": message.content}


def messages_dataset(data_dir: Path) -> Any:
    """The train split as a conversational ``messages`` dataset (TRL tokenizes it itself).

    Args:
        data_dir: Benchmark prepared directory.

    Returns:
        A ``datasets.Dataset`` with a ``messages`` column.
    """
    from datasets import Dataset

    from core.infrastructure.data.prepared import load_prepared

    conversations = load_prepared(data_dir).conversations("train")
    return Dataset.from_list(
        [{"messages": [_messages(message) for message in conversation.messages]} for conversation in conversations]
    )


def prompt_completion_dataset(data_dir: Path) -> Any:
    """The train split as conversational prompt/completion pairs: the last assistant turn is the completion.

    TRL trains on the completion only for this format (``completion_only_loss`` defaults to True),
    as ours trains on the answers only. The demo conversations have a single assistant turn, so
    nothing trained by ours is left out.

    Args:
        data_dir: Benchmark prepared directory.

    Returns:
        A ``datasets.Dataset`` with ``prompt`` and ``completion`` columns.
    """
    from datasets import Dataset

    from core.infrastructure.data.prepared import load_prepared

    records = []
    for conversation in load_prepared(data_dir).conversations("train"):
        messages = [_messages(message) for message in conversation.messages]
        last = max(index for index, message in enumerate(messages) if message["role"] == "assistant")
        records.append({"prompt": messages[:last], "completion": messages[last : last + 1]})
    return Dataset.from_list(records)


def sft_arguments(spec: dict[str, Any], batch_size: int, **tuned: Any) -> Any:
    """The ``SFTConfig`` both TRL sides share, plus the side's own settings.

    Args:
        spec: The child spec (``hyper``, ``precision``, ``cuda``, ``work_dir``).
        batch_size: ``per_device_train_batch_size``.
        **tuned: Further ``SFTConfig`` fields of the side (packing, max length, checkpointing).

    Returns:
        The ``SFTConfig``.
    """
    from trl import SFTConfig

    hyper = spec["hyper"]
    return SFTConfig(
        output_dir=str(Path(spec["work_dir"]) / f"trl-output-{spec['side']}"),
        per_device_train_batch_size=batch_size,
        max_steps=hyper["max_steps"],
        learning_rate=hyper["learning_rate"],
        lr_scheduler_type=hyper["lr_scheduler"],
        warmup_steps=hyper["warmup"],
        seed=hyper["seed"],
        bf16=spec["precision"] == "bf16",
        fp16=spec["precision"] == "fp16",
        use_cpu=not spec["cuda"],
        report_to="none",
        **tuned,
    )


def checkpointing_field(enabled: bool) -> dict[str, bool]:
    """The gradient checkpointing setting under the name the installed transformers uses.

    Args:
        enabled: Whether to recompute activations during the backward pass.

    Returns:
        ``{"activation_checkpointing": enabled}`` (transformers 5.x) or ``{"gradient_checkpointing": enabled}``.
    """
    from trl import SFTConfig

    fields = SFTConfig.__dataclass_fields__
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return {name: enabled}


def model_for_technique(spec: dict[str, Any]) -> Any:
    """The model argument of ``SFTTrainer``: the path (CPU benchmark) or a model loaded for ``spec["technique"]``.

    The GPU checks (:mod:`benchmarks.gpu_checks`) set ``technique`` (``lora``, ``qlora`` or
    ``full``) and ``attn_implementation``; the model is then loaded as TRL's recipes do: LoRA on
    weights in the training dtype, QLoRA on NF4 weights (double quantization, compute in the
    training dtype), Full on float32 master weights (mixed precision by autocast).

    Args:
        spec: The child spec.

    Returns:
        A model path or a loaded ``PreTrainedModel``.
    """
    technique = spec.get("technique")
    if technique is None:
        return spec["model_path"]
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    compute_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec["precision"], torch.float32)
    options: dict[str, Any] = {"dtype": torch.float32 if technique == "full" else compute_dtype}
    if technique == "qlora":
        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
        options["device_map"] = {"": 0}
    return AutoModelForCausalLM.from_pretrained(
        spec["model_path"], attn_implementation=spec.get("attn_implementation", "sdpa"), **options
    )


def lora_config(spec: dict[str, Any]) -> Any:
    """The LoRA config of ours (None for full finetuning).

    Args:
        spec: The child spec (``lora``, optional ``technique``).

    Returns:
        A ``peft.LoraConfig`` or None.
    """
    from peft import LoraConfig

    if spec.get("technique") == "full":
        return None
    lora = spec["lora"]
    return LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["target_modules"],
        task_type="CAUSAL_LM",
    )


def train_with_trl(spec: dict[str, Any], train_dataset: Any, arguments: Any) -> dict[str, Any]:
    """Trains one TRL side with the probe attached and returns its figures.

    Args:
        spec: The child spec (``model_path``, ``lora``, ``data_dir``, ``eval_samples``, ``pad_token_id``).
        train_dataset: The side's dataset.
        arguments: The side's ``SFTConfig``.

    Returns:
        The probe's figures and the side's settings.
    """
    import torch
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from core.infrastructure.data.prepared import load_prepared

    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    tokenizer.chat_template = load_prepared(Path(spec["data_dir"])).chat_template
    probe = ThroughputProbe(eval_rows(Path(spec["data_dir"]), spec["eval_samples"]), spec["pad_token_id"])
    trainer = SFTTrainer(
        model=model_for_technique(spec),
        args=arguments,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(spec),
        callbacks=[probe],
    )
    trainer.train()
    return {
        **probe.summary(),
        "precision": spec["precision"],
        "technique": spec.get("technique", "lora"),
        "batch_size": arguments.per_device_train_batch_size,
        "gradient_checkpointing": bool(
            getattr(arguments, "activation_checkpointing", None) or getattr(arguments, "gradient_checkpointing", None)
        ),
        "packing": arguments.packing,
        "packing_strategy": arguments.packing_strategy if arguments.packing else None,
        "padding_free": bool(getattr(trainer, "padding_free", arguments.padding_free)),
        "max_length": arguments.max_length,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "torch_threads": torch.get_num_threads(),
    }


def run_trl_tuned(spec: dict[str, Any]) -> dict[str, Any]:
    """TRL as a capable user configures it: BFD packing (padding-free), no checkpointing, answers-only loss.

    Args:
        spec: The child spec, with ``trl_tuned_batch_size`` and ``max_length``.

    Returns:
        The side's figures.
    """
    arguments = sft_arguments(
        spec,
        spec["trl_tuned_batch_size"],
        packing=True,
        packing_strategy="bfd",
        max_length=spec["max_length"],
        **checkpointing_field(False),
    )
    return train_with_trl(spec, prompt_completion_dataset(Path(spec["data_dir"])), arguments)


def run_trl_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """A plain ``SFTTrainer`` script: TRL's defaults on a ``messages`` dataset, batch size = ours.

    Args:
        spec: The child spec.

    Returns:
        The side's figures.
    """
    arguments = sft_arguments(spec, spec["hyper"]["batch_size"])
    return train_with_trl(spec, messages_dataset(Path(spec["data_dir"])), arguments)


TRL_SIDES = {"trl_tuned": run_trl_tuned, "trl_defaults": run_trl_defaults}
"""TRL sides by name, run by :func:`benchmarks.training_harness.child_main`."""
