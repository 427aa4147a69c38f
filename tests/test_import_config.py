"""``finetune-studio import-config``: LLaMA-Factory and axolotl SFT YAML files become validated presets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from core.cli import main
from core.domain.config import load_settings

# Shaped like LLaMA-Factory's examples/train_lora/llama3_lora_sft.yaml, with a local dataset
# registered in data/dataset_info.json and a QLoRA quantization_bit.
LLAMAFACTORY_YAML = """\
### model
model_name_or_path: HuggingFaceTB/SmolLM2-135M-Instruct
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
quantization_bit: 4
lora_rank: 8
lora_alpha: 16
lora_dropout: 0.1
lora_target: q_proj,v_proj

### dataset
dataset: my_support
dataset_dir: data
template: llama3
cutoff_len: 1024
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16

### output
output_dir: saves/smollm2/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true

### train
per_device_train_batch_size: 2
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
"""

# Shaped like axolotl's examples/llama-3/lora-1b.yml, with a local JSONL dataset.
AXOLOTL_YAML = """\
base_model: NousResearch/Llama-3.2-1B

load_in_8bit: false
load_in_4bit: false
strict: false

datasets:
  - path: train.jsonl
    type: alpaca
dataset_prepared_path: last_run_prepared
val_set_size: 0.1
output_dir: ./outputs/lora-out

adapter: lora
lora_model_dir:

sequence_len: 2048
sample_packing: true
pad_to_sequence_len: true

lora_r: 16
lora_alpha: 32
lora_dropout: 0.05
lora_target_modules:
  - gate_proj
  - down_proj
  - up_proj
  - q_proj
  - v_proj
  - k_proj
  - o_proj

wandb_project:
gradient_accumulation_steps: 2
micro_batch_size: 2
num_epochs: 1
optimizer: adamw_8bit
lr_scheduler: cosine
learning_rate: 0.0002

train_on_inputs: false
group_by_length: false
bf16: auto
fp16:
tf32: false

gradient_checkpointing: true
logging_steps: 1
flash_attention: true
warmup_steps: 10
evals_per_epoch: 4
saves_per_epoch: 1
weight_decay: 0.0
special_tokens:
  pad_token: "<|end_of_text|>"
"""


def _llamafactory_project(root: Path) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    records = [{"question": f"q{index}", "answer": f"a{index}"} for index in range(3)]
    (data / "support.json").write_text(json.dumps(records), encoding="utf-8")
    info = {"my_support": {"file_name": "support.json", "columns": {"prompt": "question", "response": "answer"}}}
    (data / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    config = root / "llama3_lora_sft.yaml"
    config.write_text(LLAMAFACTORY_YAML, encoding="utf-8")
    return config


def _comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


def test_llamafactory_config_becomes_a_valid_preset(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    config = _llamafactory_project(tmp_path / "project")
    output = tmp_path / "imported.yaml"

    assert main(["import-config", str(config), "--output", str(output)]) == 0

    preset = yaml.safe_load(output.read_text(encoding="utf-8"))
    assert preset["model"] == {"name": "smollm2-135m-instruct", "trust_remote_code": True}
    assert preset["technique"] == {
        "name": "qlora",
        "rank": 8,
        "alpha": 16,
        "dropout": 0.1,
        "target_modules": ["q_proj", "v_proj"],
    }
    assert preset["data"]["dataset"] == "project/data/support.json"
    assert preset["data"]["format"] == "custom"
    assert preset["data"]["field_mapping"] == {"instruction": "question", "output": "answer"}
    assert preset["data"]["max_seq_length"] == 1024 and preset["data"]["max_samples"] == 1000
    assert preset["training"] == {
        "per_device_batch_size": 2,
        "gradient_accumulation_steps": 8,
        "learning_rate": 1.0e-4,
        "num_epochs": 3.0,
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.1,
        "precision": "bf16",
        "logging_steps": 10,
        "save_steps": 500,
    }
    settings = load_settings(output, read_environment=False)
    assert settings.technique.name == "qlora" and settings.training.effective_batch_size == 16

    comments = "\n".join(_comment_lines(output.read_text(encoding="utf-8")))
    console = capfd.readouterr().err
    unmapped = {"template", "overwrite_cache", "preprocessing_num_workers", "output_dir", "plot_loss"}
    unmapped |= {"overwrite_output_dir", "ddp_timeout"}
    for key in unmapped:
        assert f"#   {key}:" in comments and f"Not mapped: {key}:" in console
    assert "7 key(s)" in comments
    for key in ("learning_rate", "lora_rank", "cutoff_len", "dataset", "stage"):
        assert f"#   {key}:" not in comments


def test_axolotl_config_becomes_a_valid_preset_and_lists_what_it_could_not_map(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_text('{"instruction": "hi", "output": "hello"}\n', encoding="utf-8")
    config = tmp_path / "lora-1b.yml"
    config.write_text(AXOLOTL_YAML, encoding="utf-8")

    assert main(["import-config", str(config)]) == 0
    captured = capfd.readouterr()
    preset = yaml.safe_load(captured.out)
    assert preset["model"] == {"name": "NousResearch/Llama-3.2-1B", "attn_implementation": "flash_attention_2"}
    assert preset["technique"]["name"] == "lora" and preset["technique"]["rank"] == 16
    assert preset["technique"]["alpha"] == 32 and preset["technique"]["dropout"] == 0.05
    assert preset["technique"]["target_modules"][:2] == ["gate_proj", "down_proj"]
    assert preset["data"] == {
        "dataset": "train.jsonl",
        "format": "alpaca",
        "max_seq_length": 2048,
        "train_on_prompt": False,
        "validation_fraction": 0.1,
    }
    training = preset["training"]
    assert training["per_device_batch_size"] == 2 and training["gradient_accumulation_steps"] == 2
    assert training["learning_rate"] == 0.0002 and training["num_epochs"] == 1
    assert training["packing"] == "on" and training["precision"] == "auto"
    assert training["gradient_checkpointing"] is True and training["lr_scheduler"] == "cosine"

    expected = {"optimizer", "warmup_steps", "strict", "dataset_prepared_path", "output_dir", "tf32"}
    expected |= {"pad_to_sequence_len", "evals_per_epoch", "saves_per_epoch", "special_tokens"}
    comments = _comment_lines(captured.out)
    listed = {line.split(":", 1)[0].strip("# ") for line in comments[2:]}
    assert listed == expected
    for key in expected:
        assert f"Not mapped: {key}:" in captured.err
    assert "lora_model_dir" not in captured.out  # empty keys set nothing and are not listed
    (tmp_path / "preset.yaml").write_text(captured.out, encoding="utf-8")
    assert load_settings(tmp_path / "preset.yaml", read_environment=False).data.max_seq_length == 2048


def test_unknown_format_bad_yaml_and_existing_output_are_clear_errors(tmp_path, capfd):
    unknown = tmp_path / "other.yaml"
    unknown.write_text("epochs: 3\nmodel: x\n", encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text("base_model: [unclosed\n", encoding="utf-8")
    dpo = tmp_path / "dpo.yaml"
    dpo.write_text("model_name_or_path: gpt2\nstage: dpo\nfinetuning_type: lora\n", encoding="utf-8")

    assert main(["import-config", str(unknown)]) == 2
    assert "not a LLaMA-Factory or axolotl SFT config" in capfd.readouterr().err
    assert main(["import-config", str(dpo)]) == 2
    assert "only stage: sft" in capfd.readouterr().err

    existing = tmp_path / "mine.yaml"
    existing.write_text("mine", encoding="utf-8")
    config = _llamafactory_project(tmp_path / "lf")
    assert main(["import-config", str(config), "--output", str(existing)]) == 2
    assert "--overwrite" in capfd.readouterr().err and existing.read_text(encoding="utf-8") == "mine"

    result = subprocess.run(
        [sys.executable, "-m", "core.cli", "import-config", str(broken)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "invalid YAML" in result.stderr and "Traceback" not in result.stderr
