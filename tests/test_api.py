"""OpenAI-compatible API, exercised with the official ``openai`` client against a real uvicorn server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import MODEL_CACHE
from inference_run_factory import make_run

from core.domain.config import load_settings, settings_from_dict
from core.domain.errors import ConfigError

API_KEY = "test-key-0123456789"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dirs: dict[str, Path]):
    from core.infrastructure.registry.store import ModelRegistry
    from core.infrastructure.serving.app import create_app
    from core.infrastructure.serving.server import BackgroundServer

    root = tmp_path_factory.mktemp("api")
    runs_dir = root / "runs"
    llama = tiny_model_dirs["llama"]
    lora = make_run(runs_dir, "tiny-lora", llama, "lora", seed=11)
    make_run(runs_dir, "tiny-prefix", llama, "prefix", seed=12)
    make_run(runs_dir, "still-training", llama, "lora", status="training")
    ModelRegistry(root / "registry").register("bot", lora)
    settings = settings_from_dict(
        {
            "model": {"name": str(llama)},
            "paths": {
                "runs_dir": str(runs_dir),
                "model_cache": str(MODEL_CACHE),
                "registry_dir": str(root / "registry"),
            },
            "serve": {
                "max_concurrency": 1,
                "max_prompt_tokens": 64,
                "max_tokens_cap": 32,
                "max_request_bytes": 8192,
                "request_timeout_s": 3.0,
            },
        }
    )
    app = create_app(settings, api_key=API_KEY)
    with BackgroundServer(app, port=0) as running:
        yield {"server": running, "app": app, "settings": settings}


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server["server"].base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def _expected(server, model: str, messages, max_tokens: int) -> str:
    predictor = server["app"].state.pool.predictor(model)
    return predictor.generate([messages], max_new_tokens=max_tokens)[0]


def test_models_lists_completed_runs_registered_models_and_the_base(client):
    names = {model.id for model in client.models.list().data}
    assert {"tiny-lora", "tiny-prefix", "bot", "bot:1", "llama"} <= names
    assert "still-training" not in names


def test_chat_completion_and_stream_give_the_greedy_answer(server, client):
    response = client.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=8, temperature=0)
    expected = _expected(server, "tiny-lora", HI, 8)
    assert response.choices[0].message.content == expected
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 8 and response.usage.prompt_tokens > 0

    stream = client.chat.completions.create(
        model="tiny-lora", messages=HI, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert "".join(pieces) == expected and len([p for p in pieces if p]) > 1
    assert finish == "length" and usage.completion_tokens == 8

    registered = client.chat.completions.create(model="bot:1", messages=HI, max_tokens=8, temperature=0)
    assert registered.choices[0].message.content == expected  # the registered copy of the same run
    stopped = client.chat.completions.create(
        model="tiny-lora", messages=HI, max_tokens=8, temperature=0, stop=[expected[3:6]]
    )
    assert stopped.choices[0].message.content == expected[: expected.find(expected[3:6])]
    assert stopped.choices[0].finish_reason == "stop"


def test_completions_batch_prompts_on_a_prefix_adapter_sharing_the_base(server, client):
    response = client.completions.create(
        model="tiny-prefix", prompt=["Hello there", "One two"], max_tokens=5, temperature=0
    )
    predictor = server["app"].state.pool.predictor("tiny-prefix")
    from core.infrastructure.inference.predictor import SamplingOptions

    expected = [
        predictor.complete_ids([predictor.encode(text)], SamplingOptions(max_new_tokens=5))[0].text
        for text in ("Hello there", "One two")
    ]
    assert [choice.text for choice in response.choices] == expected
    lora = server["app"].state.pool.predictor("tiny-lora")
    assert predictor.loaded.shared is lora.loaded.shared  # adapters on one base share it

    streamed = "".join(
        chunk.choices[0].text
        for chunk in client.completions.create(
            model="tiny-prefix", prompt="Hello there", max_tokens=5, stream=True, temperature=0
        )
        if chunk.choices
    )
    assert streamed == expected[0]


def test_wrong_or_missing_key_is_401_everywhere_but_health(server):
    base_url = server["server"].base_url
    wrong = openai.OpenAI(base_url=base_url + "/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=2)
    assert httpx.post(base_url + "/v1/completions", json={"model": "tiny-lora", "prompt": "x"}).status_code == 401
    assert httpx.get(base_url + "/v1/nothing-here").status_code == 401
    health = httpx.get(base_url + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_limits_unknown_models_and_path_names_are_rejected_with_messages(client):
    with pytest.raises(openai.BadRequestError, match="max_tokens=100 exceeds this server's cap of 32"):
        client.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=100)
    with pytest.raises(openai.BadRequestError, match=r"prompt has .* tokens, more than this server's limit of 64"):
        client.chat.completions.create(model="tiny-lora", messages=[{"role": "user", "content": "word " * 100}])
    with pytest.raises(openai.APIStatusError, match="request body exceeds 8192 bytes") as too_large:
        client.chat.completions.create(model="tiny-lora", messages=[{"role": "user", "content": "x" * 10000}])
    assert too_large.value.status_code == 413
    with pytest.raises(openai.NotFoundError, match="model 'no-such-model' not found"):
        client.chat.completions.create(model="no-such-model", messages=HI, max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="still-training", messages=HI, max_tokens=2)
    for escaping in ("../tiny-lora", "/etc/passwd", "..", "tiny-lora/../../x", "bot:1/../../y"):
        with pytest.raises(openai.BadRequestError, match="invalid model name"):
            client.chat.completions.create(model=escaping, messages=HI, max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="tiny-lora", messages=[], max_tokens=2)


def test_saturated_server_answers_429_and_slow_generation_times_out(server, client):
    predictor = server["app"].state.pool.predictor("tiny-lora")
    results: dict[str, object] = {}

    def slow_request() -> None:
        try:
            results["first"] = client.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=4)
        except openai.APIStatusError as error:
            results["first"] = error

    with predictor.loaded.lock:  # the model is busy: the first request holds the only slot and waits
        thread = threading.Thread(target=slow_request)
        thread.start()
        deadline = time.monotonic() + 20
        while server["app"].state.limiter.active == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(openai.RateLimitError, match="server busy"):
            client.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=4)
        assert httpx.get(server["server"].base_url + "/health").status_code == 200  # event loop stays responsive
        thread.join(timeout=20)
    first = results["first"]
    assert isinstance(first, openai.APIStatusError) and first.status_code == 504
    assert "request timeout of 3 s" in first.message
    deadline = time.monotonic() + 10
    while server["app"].state.limiter.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server["app"].state.limiter.active == 0  # the slot is freed once the cancelled generation ends
    assert client.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=2).choices[0].message.content


def test_api_key_comes_from_settings_or_environment_and_non_loopback_requires_one(monkeypatch, tiny_model_dirs):
    from core.application.serve import build_app, resolve_api_key

    monkeypatch.setenv("FINETUNE_SERVE__API_KEY", "from-env")
    assert resolve_api_key(load_settings(), None) == "from-env"
    assert resolve_api_key(load_settings(), "cli-key") == "cli-key"
    monkeypatch.delenv("FINETUNE_SERVE__API_KEY")
    settings = settings_from_dict({"model": {"name": str(tiny_model_dirs["llama"])}})
    with pytest.raises(ConfigError, match=r"serve\.api_key: required when binding to 0\.0\.0\.0"):
        build_app(settings, None, "0.0.0.0")
    assert build_app(settings, None, "127.0.0.1") is not None
