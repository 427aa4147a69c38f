"""Overrides merge into the preset's technique, identically from the CLI, the environment and YAML.

Every ``--config PRESET key=value`` line of README.md and Quickstart.md is also run here: each
key takes effect and the technique stays the preset's unless the line names another one.
"""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from core.domain.config import ConfigError, load_settings, resolve_override_key

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESETS = REPO_ROOT / "examples" / "configs"

# (preset, override, technique expected, path of the field, value expected)
DOCUMENTED_OVERRIDES = [
    ("smollm2-qlora.yaml", "rank=32", "qlora", "technique.rank", 32),
    ("smollm2-qlora.yaml", "quant_type=fp4", "qlora", "technique.quant_type", "fp4"),
    ("smollm2-qlora.yaml", "technique.quant_type=fp4", "qlora", "technique.quant_type", "fp4"),
    ("smollm2-qlora.yaml", "load_in_8bit=true", "qlora", "technique.load_in_8bit", True),
    ("smollm2-prefix.yaml", "num_virtual_tokens=32", "prefix", "technique.num_virtual_tokens", 32),
    ("smollm2-lora.yaml", "rank=32", "lora", "technique.rank", 32),
    ("smollm2-lora.yaml", "learning_rate=2e-4", "lora", "training.learning_rate", 2e-4),
    ("smollm2-lora.yaml", "max_steps=20", "lora", "training.max_steps", 20),
]


def _scalar(raw: str):
    value = yaml.safe_load(raw)
    try:
        return float(value) if isinstance(value, str) else value  # YAML 1.1 reads 2e-4 as a string
    except ValueError:
        return value


def _field(settings, dotted: str):
    value = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _by_cli(preset: Path, override: str, monkeypatch, tmp_path):
    return load_settings(preset, [override], read_environment=False)


def _by_environment(preset: Path, override: str, monkeypatch, tmp_path):
    key, value = override.split("=", 1)
    path = resolve_override_key(key)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("FINETUNE_" + "__".join(part.upper() for part in path), value)
    return load_settings(preset)


def _by_yaml(preset: Path, override: str, monkeypatch, tmp_path):
    key, value = override.split("=", 1)
    data = yaml.safe_load(preset.read_text(encoding="utf-8"))
    cursor = data
    path = resolve_override_key(key)
    for part in path[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[path[-1]] = _scalar(value)
    edited = tmp_path / preset.name
    edited.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_settings(edited, read_environment=False)


def _by_bare_environment(preset: Path, override: str, monkeypatch, tmp_path):
    """``FINETUNE_RANK=32``: the key spelled as on the command line (a dotted key uses ``__``)."""
    key, value = override.split("=", 1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINETUNE_" + key.replace(".", "__").upper(), value)
    return load_settings(preset)


def _by_bare_yaml(preset: Path, override: str, monkeypatch, tmp_path):
    """``rank: 32`` at the top level of the preset: the key spelled as on the command line."""
    key, value = override.split("=", 1)
    data = yaml.safe_load(preset.read_text(encoding="utf-8"))
    if "." in key:
        section, field = key.split(".", 1)
        data.setdefault(section, {})[field] = _scalar(value)
    else:
        data[key] = _scalar(value)
        for section in data.values():  # the key moves from its section to the top level
            if isinstance(section, dict):
                section.pop(key, None)
    edited = tmp_path / preset.name
    edited.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_settings(edited, read_environment=False)


SOURCES = [_by_cli, _by_environment, _by_bare_environment, _by_yaml, _by_bare_yaml]


@pytest.mark.parametrize("source", SOURCES, ids=["cli", "environment", "bare-environment", "yaml", "bare-yaml"])
@pytest.mark.parametrize(("preset", "override", "technique", "field", "expected"), DOCUMENTED_OVERRIDES)
def test_override_takes_effect_on_the_presets_technique(
    source, preset, override, technique, field, expected, monkeypatch, tmp_path
):
    settings = source(PRESETS / preset, override, monkeypatch, tmp_path)
    assert settings.technique.name == technique
    assert _field(settings, field) == pytest.approx(expected)
    untouched = load_settings(PRESETS / preset, read_environment=False)
    for name, value in untouched.technique.model_dump().items():
        if f"technique.{name}" != field:
            assert getattr(settings.technique, name) == value, f"{name} changed by {override}"


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        (
            "smollm2-lora.yaml",
            ["quant_type=fp4"],
            "technique.quant_type: does not apply to technique 'lora'; it is a setting of qlora",
        ),
        (
            "smollm2-qlora.yaml",
            ["num_virtual_tokens=32"],
            "technique.num_virtual_tokens: does not apply to technique 'qlora'; it is a setting of prefix",
        ),
        (
            "smollm2-qlora.yaml",
            ["technique=lora", "quant_type=fp4"],
            "technique.quant_type: does not apply to technique 'lora'",
        ),
    ],
)
def test_a_key_of_another_technique_is_an_error_naming_both(preset, overrides, message):
    with pytest.raises(ConfigError) as error:
        load_settings(PRESETS / preset, overrides, read_environment=False)
    assert message in str(error.value)


def test_switching_technique_drops_only_the_presets_foreign_fields(monkeypatch, tmp_path):
    switched = load_settings(PRESETS / "smollm2-qlora.yaml", ["technique=lora"], read_environment=False)
    assert switched.technique.name == "lora" and switched.technique.rank == 16
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINETUNE_TECHNIQUE__NAME", "prefix")
    assert load_settings(PRESETS / "smollm2-qlora.yaml").technique.name == "prefix"


def _documented_command_lines() -> list[tuple[str, str, str | None]]:
    """(document, command line, the ``# ERROR`` line that follows it in the docs or None)."""
    found = []
    for document in ("README.md", "Quickstart.md"):
        lines = (REPO_ROOT / document).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            command = line.split("  #")[0].strip()
            if "--config examples/configs/" in command and re.search(r"\s[\w.]+=\S", command):
                following = lines[number + 1] if number + 1 < len(lines) else ""
                error = (
                    following.removeprefix("# ERROR ").split("   (exit")[0] if following.startswith("# ERROR") else None
                )
                found.append((document, command, error))
    return found


@pytest.mark.parametrize(("document", "line", "error"), _documented_command_lines())
def test_every_documented_override_line_applies_each_key(document, line, error, monkeypatch, tmp_path):
    words = shlex.split(line)
    program = next(i for i, word in enumerate(words) if word.endswith("finetune-studio") or word == "$CLI")
    environment, arguments = words[:program], words[program + 1 :]
    preset = REPO_ROOT / arguments[arguments.index("--config") + 1]
    overrides = [word for word in arguments if re.fullmatch(r"[a-z_][\w.]*=.+", word)]
    monkeypatch.chdir(tmp_path)
    for assignment in environment:
        monkeypatch.setenv(*assignment.split("=", 1))
    if error is not None:
        with pytest.raises(ConfigError) as raised:
            load_settings(preset, overrides)
        assert str(raised.value) == error, f"{document}: {line}"
        return
    settings = load_settings(preset, overrides)
    named = [value for key, value in (o.split("=", 1) for o in overrides) if key == "technique"]
    expected = named[-1] if named else yaml.safe_load(preset.read_text())["technique"]["name"]
    assert settings.technique.name == expected, f"{document}: {line}"
    for assignment in [*overrides, *environment]:
        key, value = assignment.split("=", 1)
        if key.startswith("FINETUNE_"):
            key = key.removeprefix("FINETUNE_").lower().replace("__", ".")
        if key != "technique":
            assert _field(settings, ".".join(resolve_override_key(key))) == pytest.approx(_scalar(value))


def test_bare_keys_mean_the_same_in_yaml_environment_and_cli(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "bare.yaml"
    preset.write_text("learning_rate: 3.0e-4\nrank: 8\nmax_steps: 5\n", encoding="utf-8")
    from_yaml = load_settings(preset, read_environment=False)
    from_cli = load_settings(None, ["learning_rate=3e-4", "rank=8", "max_steps=5"], read_environment=False)
    for name, value in (("FINETUNE_LEARNING_RATE", "3e-4"), ("FINETUNE_RANK", "8"), ("FINETUNE_MAX_STEPS", "5")):
        monkeypatch.setenv(name, value)
    from_environment = load_settings(None)
    for settings in (from_yaml, from_cli, from_environment):
        assert settings.training.learning_rate == pytest.approx(3e-4)
        assert (settings.technique.rank, settings.training.max_steps) == (8, 5)


def test_a_bare_key_given_twice_or_unknown_in_yaml_is_an_error(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("learning_rate: 3.0e-4\ntraining:\n  learning_rate: 1.0e-3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="learning_rate is given twice"):
        load_settings(twice, read_environment=False)
    typo = tmp_path / "typo.yaml"
    typo.write_text("lerning_rate: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="lerning_rate: unknown setting"):
        load_settings(typo, read_environment=False)


def test_each_non_default_setting_says_where_it_came_from(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINETUNE_MAX_STEPS", "7")
    monkeypatch.setenv("FINETUNE_TRAINING__SEED", "3")
    preset = PRESETS / "smollm2-qlora.yaml"
    lines = load_settings(preset, ["rank=32"]).explained()
    assert f"technique.name = 'qlora' (preset {preset})" in lines
    assert "technique.rank = 32 (command line)" in lines
    assert "training.max_steps = 7 (environment FINETUNE_MAX_STEPS)" in lines
    assert "training.seed = 3 (environment FINETUNE_TRAINING__SEED)" in lines
    assert f"training.learning_rate = 0.001 (preset {preset})" in lines
    assert not any(line.startswith(("training.optimizer", "technique.quant_type")) for line in lines)  # defaults
