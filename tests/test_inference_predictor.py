"""Loading runs for inference and generating: batched/streamed decoding equals a no-cache greedy reference."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from conftest import MODEL_CACHE
from inference_run_factory import make_run, reference_greedy

from core.domain.config import settings_from_dict
from core.domain.errors import ModelNotAvailableError
from core.domain.prompts import ALPACA_TEMPLATE

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name three colours of the rainbow."}],
    [{"role": "user", "content": "What is the capital of France? Answer in one word please."}],
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs: dict[str, Path]) -> dict:
    root = tmp_path_factory.mktemp("inference-runs")
    runs_dir = root / "runs"
    llama = tiny_model_dirs["llama"]
    for technique in ("lora", "dora", "prefix", "qlora", "full"):
        # A prefix of four virtual tokens needs larger values to move a hidden-size-64 model's greedy answer.
        make_run(runs_dir, f"tiny-{technique}", llama, technique, seed=1, scale=2.0 if technique == "prefix" else 0.5)
    make_run(runs_dir, "tiny-alpaca", llama, "lora", seed=2, chat_template=ALPACA_TEMPLATE)
    settings = settings_from_dict(
        {
            "model": {"name": str(llama)},
            "paths": {
                "runs_dir": str(runs_dir),
                "model_cache": str(MODEL_CACHE),
                "registry_dir": str(root / "registry"),
                "data_dir": str(root / "data"),
            },
        }
    )
    return {"settings": settings, "runs_dir": runs_dir, "base": llama}


@pytest.fixture(scope="module")
def cache():
    from core.infrastructure.inference.loading import InferenceCache

    return InferenceCache()


def _reference_texts(loaded, prompts, steps):
    from core.infrastructure.inference.predictor import Predictor

    predictor = Predictor(loaded)
    texts = []
    with loaded.activated() as module:
        for messages in prompts:
            ids = reference_greedy(module, predictor.render(messages), steps)
            texts.append(predictor.tokenizer.decode(ids, skip_special_tokens=True))
    return texts


@pytest.mark.parametrize("target", ["tiny-lora", "tiny-dora", "tiny-prefix", "tiny-qlora", "tiny-full", "base"])
def test_batched_left_padded_generation_equals_the_unbatched_greedy_reference(runs, cache, target):
    from core.infrastructure.inference.predictor import Predictor, SamplingOptions

    name = str(runs["base"]) if target == "base" else target
    loaded = cache.load(name, runs["settings"])
    predictor = Predictor(loaded)
    prompt_ids = [predictor.render(messages) for messages in PROMPTS]
    assert len({len(ids) for ids in prompt_ids}) == 3  # different lengths: the batch is left padded
    completions = predictor.complete_ids(prompt_ids, SamplingOptions(max_new_tokens=6))
    assert [completion.text for completion in completions] == _reference_texts(loaded, PROMPTS, 6)
    assert all(c.completion_tokens == 6 and c.finish_reason == "length" for c in completions)
    assert [c.prompt_tokens for c in completions] == [len(ids) for ids in prompt_ids]


def test_adapters_share_one_base_and_each_matches_its_standalone_model(runs, cache):
    from core.infrastructure.inference.loading import load_for_inference

    settings = runs["settings"]
    names = ["tiny-lora", "tiny-dora", "tiny-prefix", str(runs["base"]), "tiny-lora"]
    shared = [cache.load(name, settings) for name in names]
    assert len({id(loaded.shared.module) for loaded in shared}) == 1  # one base in memory
    ids = torch.tensor([shared[0].tokenizer("The quick brown fox")["input_ids"]])
    outputs = {}
    for name, loaded in zip(names, shared, strict=True):
        standalone = load_for_inference(name, settings)  # fresh weights, no sharing
        with loaded.activated() as module, torch.no_grad():
            mixed = module(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        with standalone.activated() as module, torch.no_grad():
            alone = module(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        torch.testing.assert_close(mixed, alone)
        outputs[name] = mixed
    assert not torch.allclose(outputs["tiny-lora"], outputs[str(runs["base"])])  # adapters are not no-ops
    assert not torch.allclose(outputs["tiny-dora"], outputs["tiny-lora"])
    assert not torch.allclose(outputs["tiny-prefix"], outputs[str(runs["base"])])


def test_stream_yields_the_same_text_as_generate_and_respects_stop_strings(runs, cache):
    from core.infrastructure.inference.predictor import Predictor

    predictor = Predictor(cache.load("tiny-lora", runs["settings"]))
    full = predictor.generate([PROMPTS[2]], max_new_tokens=10)[0]
    stream = predictor.stream(PROMPTS[2], max_new_tokens=10)
    chunks = list(stream)
    assert len(chunks) > 1 and "".join(chunks) == full
    assert stream.finish_reason == "length" and stream.completion_tokens == 10

    stop = full[len(full) // 2 : len(full) // 2 + 3]
    expected = full[: full.find(stop)]
    stopped = predictor.stream(PROMPTS[2], max_new_tokens=10, stop=[stop])
    assert "".join(stopped) == expected and stopped.finish_reason == "stop"
    assert predictor.generate([PROMPTS[2]], max_new_tokens=10, stop=[stop]) == [expected]


def test_generation_stops_at_eos(runs, cache):
    from core.infrastructure.inference.predictor import Predictor, SamplingOptions

    loaded = cache.load("tiny-lora", runs["settings"])
    free = Predictor(loaded)
    prompt = free.render(PROMPTS[1])
    with loaded.activated() as module:
        greedy = reference_greedy(module, prompt, 5)
    # declare the third greedy token an end-of-sequence token: generation must stop right there
    predictor = Predictor(loaded, eos_token_ids=[greedy[2]])
    completion = predictor.complete_ids([prompt], SamplingOptions(max_new_tokens=5))[0]
    assert completion.finish_reason == "stop" and completion.completion_tokens == 3
    assert completion.text == free.tokenizer.decode(greedy[:2], skip_special_tokens=True)


def test_sampling_is_reproducible_with_a_seed_and_cancel_stops_generation(runs, cache):
    from core.infrastructure.inference.predictor import Predictor, SamplingOptions

    predictor = Predictor(cache.load("tiny-lora", runs["settings"]))
    prompt = predictor.render(PROMPTS[0])
    sample = SamplingOptions(max_new_tokens=12, temperature=1.5, seed=3)
    first = predictor.complete_ids([prompt], sample)[0].text
    assert predictor.complete_ids([prompt], sample)[0].text == first
    others = {predictor.complete_ids([prompt], SamplingOptions(12, 1.5, 1.0, seed))[0].text for seed in (4, 5, 6)}
    assert others - {first}

    cancel = threading.Event()
    cancel.set()
    cancelled = predictor.complete_ids([prompt], SamplingOptions(max_new_tokens=50), cancel_event=cancel)[0]
    assert cancelled.completion_tokens <= 1 and cancelled.finish_reason in {"cancelled", "length"}


def test_each_run_answers_with_its_own_chat_template(runs, cache):
    from core.infrastructure.inference.predictor import Predictor

    loaded = cache.load("tiny-alpaca", runs["settings"])
    assert loaded.chat_template == ALPACA_TEMPLATE
    rendered = loaded.tokenizer.decode(Predictor(loaded).render(PROMPTS[0]))
    assert "### Instruction:\nhi" in rendered and rendered.endswith("### Response:\n")
    chatml = cache.load("tiny-lora", runs["settings"])
    assert "<|im_start|>user\nhi<|im_end|>" in chatml.tokenizer.decode(Predictor(chatml).render(PROMPTS[0]))


def test_targets_resolve_by_name_directory_and_model_and_fail_clearly(runs, tmp_path):
    from core.infrastructure.inference.targets import resolve_inference_target

    settings = runs["settings"]
    by_name = resolve_inference_target("tiny-qlora", settings)
    by_dir = resolve_inference_target(runs["runs_dir"] / "tiny-qlora", settings)
    assert by_name == by_dir and by_name.technique == "qlora" and by_name.is_adapter
    assert by_name.base_model_path == runs["base"]
    base = resolve_inference_target(None, settings)
    assert base.artifact_dir == runs["base"] and not base.is_adapter and base.technique is None
    full = resolve_inference_target("tiny-full", settings)
    assert full.technique == "full" and not full.is_adapter

    make_run(runs["runs_dir"], "unfinished", runs["base"], "lora", status="training")
    import shutil

    shutil.rmtree(runs["runs_dir"] / "unfinished" / "final")
    with pytest.raises(ModelNotAvailableError, match="no final model yet"):
        resolve_inference_target("unfinished", settings)
    with pytest.raises(ModelNotAvailableError):
        resolve_inference_target("no-such-model-anywhere-xyz", settings)
    with pytest.raises(ModelNotAvailableError, match="not a run, model or adapter"):
        resolve_inference_target(tmp_path, settings)


def test_qlora_run_is_served_on_a_quantized_base(runs, cache):
    loaded = cache.load("tiny-qlora", runs["settings"])
    base = loaded.shared.module
    assert getattr(base, "is_loaded_in_4bit", False) or any(
        parameter.__class__.__name__ == "Params4bit" for parameter in base.parameters()
    )


def test_training_samples_keep_the_prefix_of_prefix_tuning(runs, cache):
    from core.infrastructure.data.tokenize import render_prompt_ids
    from core.infrastructure.training.callbacks import generate_samples

    loaded = cache.load("tiny-prefix", runs["settings"])
    tokenizer = loaded.tokenizer
    with loaded.activated() as module:
        sample = generate_samples(module, tokenizer, ["Say hello."], max_new_tokens=6)[0]["output"]
        prompt_ids = render_prompt_ids(tokenizer, [{"role": "user", "content": "Say hello."}])
        with_prefix_ids = reference_greedy(module, prompt_ids, 6)
        without_prefix_ids = reference_greedy(module.get_base_model(), prompt_ids, 6)
    assert with_prefix_ids != without_prefix_ids  # the prefix changes the answer...
    assert sample == tokenizer.decode(with_prefix_ids, skip_special_tokens=True).strip()  # ...and the samples show it
