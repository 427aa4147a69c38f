"""Domain layer: configuration validation and sources, catalog, technique traits, layering."""

import subprocess
import sys
from pathlib import Path

import pytest

from core.domain.catalog import CATALOG, EMBEDDED_MODEL_NAME, defaults_for_model_type, find_entry
from core.domain.config import ConfigError, load_settings, parse_overrides
from core.domain.techniques import TECHNIQUE_TRAITS

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_domain_imports_no_torch_or_transformers():
    code = (
        "import sys, core.domain.config, core.domain.catalog, core.domain.techniques, core.domain.manifest, "
        "core.domain.prompts, core.domain.records, core.domain.memory, core.cli; core.cli.build_parser(); "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'datasets', 'bitsandbytes') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, f"heavy modules imported: {result.stdout} {result.stderr}"


def test_cli_overrides_switch_technique_and_set_fields():
    settings = load_settings(None, ["learning_rate=2e-4", "technique=qlora", "rank=8"], read_environment=False)
    assert settings.training.learning_rate == pytest.approx(2e-4)
    assert settings.technique.name == "qlora"
    assert settings.technique.rank == 8
    assert settings.technique.quant_type == "nf4"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["learning_rate=-1"], "training.learning_rate: Input should be greater than 0 (got -1)"),
        (
            ["technique=dora2"],
            "technique: unknown technique 'dora2'; allowed values: 'full', 'lora', 'qlora', 'prefix', 'ia3'",
        ),
        (
            ["technique=prefix", "gradient_checkpointing=true"],
            "training.gradient_checkpointing: technique=prefix",
        ),
        (["no_such_key=1"], "no_such_key: unknown setting"),
        (["rank=0"], "technique.rank: Input should be greater than or equal to 1 (got 0)"),
    ],
)
def test_invalid_values_name_the_field(overrides, expected):
    with pytest.raises(ConfigError) as error:
        load_settings(None, overrides, read_environment=False)
    assert expected in str(error.value)


def test_source_priority_cli_over_env_over_yaml(tmp_path, monkeypatch):
    preset = tmp_path / "preset.yaml"
    preset.write_text("technique:\n  name: lora\n  rank: 4\ntraining:\n  learning_rate: 0.1\n  num_epochs: 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINETUNE_TRAINING__LEARNING_RATE", "0.01")
    assert load_settings(preset).training.learning_rate == pytest.approx(0.01)
    assert load_settings(preset).training.num_epochs == 3
    assert load_settings(preset).technique.rank == 4
    assert load_settings(preset, ["learning_rate=0.001"]).training.learning_rate == pytest.approx(0.001)
    switched = load_settings(preset, ["technique=prefix"])
    assert switched.technique.name == "prefix"


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FINETUNE_TRAINING__SEED=7\n")
    assert load_settings().training.seed == 7


def test_every_preset_in_examples_validates():
    presets = sorted((REPO_ROOT / "examples" / "configs").glob("*.yaml"))
    assert presets, "examples/configs must hold YAML presets"
    for preset in presets:
        load_settings(preset, read_environment=False)


def test_parse_overrides_keeps_identifiers_verbatim():
    assert parse_overrides(["model.name=1e3"]) == {"model": {"name": "1e3"}}


def test_catalog_lookup_and_fallback():
    assert find_entry("smollm2").name == EMBEDDED_MODEL_NAME
    assert find_entry("openai-community/gpt2").architecture.fan_in_fan_out is True
    assert find_entry("unknown/model") is None
    assert defaults_for_model_type("mistral").family == "mistral"
    assert defaults_for_model_type("falcon").lora_target_modules == ("all-linear",)
    assert {"llama-2-7b", "llama-3.2-1b-instruct", "mistral-7b", "phi-2", "gpt2"} <= set(CATALOG)


def test_technique_union_traits_and_registry_agree():
    from typing import get_args

    from core.domain.settings_sections import TechniqueSettings

    union_names = {variant.model_fields["name"].default for variant in get_args(get_args(TechniqueSettings)[0])}
    assert union_names == set(TECHNIQUE_TRAITS)


def test_cli_takes_overrides_before_and_after_options():
    from core.cli import build_parser, split_overrides

    parser = build_parser()
    kept, overrides = split_overrides(parser, ["train", "lr=1", "--run-name", "y", "technique=qlora"])
    assert kept == ["train", "--run-name", "y"] and overrides == ["lr=1", "technique=qlora"]
    kept, overrides = split_overrides(parser, ["generate", "--prompt", "a=b", "k=v"])
    assert kept == ["generate", "--prompt", "a=b"] and overrides == ["k=v"]


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


LAYER_RULES = {
    "studio": ("core.application", "core.domain", "core.logging_setup"),
    "core/domain": ("core.domain",),
    "core/application": ("core.application", "core.domain", "core.infrastructure", "core.logging_setup"),
}
"""Folder -> the ``core`` packages its modules may import (the studio reaches the engine through use cases)."""


@pytest.mark.parametrize("folder", sorted(LAYER_RULES))
def test_layers_import_only_what_they_may(folder):
    allowed = LAYER_RULES[folder]
    violations = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {module}"
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        for line, module in _imported_modules(path)
        if (module == "core" or module.startswith("core.")) and not module.startswith(allowed)
    ]
    assert not violations, "imports across the layers:\n" + "\n".join(violations)
