"""OpenAI-compatible API, exercised with the official ``openai`` client against a real uvicorn server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from inference_run_factory import make_run, serving_settings

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
    settings = serving_settings(
        llama,
        root,
        max_concurrency=1,
        max_queue=1,
        queue_timeout_s=1.0,
        max_prompt_tokens=64,
        max_tokens_cap=32,
        max_request_bytes=8192,
        request_timeout_s=3.0,
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


def test_busy_server_queues_then_answers_429_beyond_the_queue_and_slow_generation_times_out(server, client):
    predictor = server["app"].state.pool.predictor("tiny-lora")
    admission = server["app"].state.admission
    results: dict[str, object] = {}

    def request(key: str) -> None:
        try:
            results[key] = client.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=4)
        except openai.APIStatusError as error:
            results[key] = error

    def wait_until(condition) -> None:
        deadline = time.monotonic() + 20
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)

    with predictor.loaded.lock:  # the model is busy: the first request holds the only slot and waits
        first = threading.Thread(target=request, args=("first",))
        first.start()
        wait_until(lambda: admission.active == 1)
        queued = threading.Thread(target=request, args=("queued",))
        queued.start()
        wait_until(lambda: admission.queued == 1)  # the second request waits in the queue (max_queue 1)
        with pytest.raises(openai.RateLimitError, match="waiting queue is full") as refused:
            client.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=4)
        assert refused.value.response.headers["Retry-After"] == "1"
        assert httpx.get(server["server"].base_url + "/health").status_code == 200  # event loop stays responsive
        queued.join(timeout=20)  # no slot within queue_timeout_s (1 s): 429
        first.join(timeout=20)
    assert isinstance(results["queued"], openai.RateLimitError)
    assert "no generation slot freed within 1 s" in results["queued"].message
    assert isinstance(results["first"], openai.APIStatusError) and results["first"].status_code == 504
    assert "request timeout of 3 s" in results["first"].message
    wait_until(lambda: admission.active == 0 and admission.queued == 0)
    assert (admission.active, admission.queued) == (0, 0)  # the slot is freed once the cancelled generation ends
    assert client.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=2).choices[0].message.content


def test_a_queued_request_runs_when_the_slot_frees(server, client):
    predictor = server["app"].state.pool.predictor("tiny-lora")
    admission = server["app"].state.admission
    results: dict[str, object] = {}

    def request(key: str) -> None:
        results[key] = client.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=2, temperature=0)

    threads = [threading.Thread(target=request, args=(key,)) for key in ("one", "two")]
    with predictor.loaded.lock:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while (admission.active, admission.queued) != (1, 1) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (admission.active, admission.queued) == (1, 1)
    for thread in threads:
        thread.join(timeout=20)
    assert results["one"].choices[0].message.content == results["two"].choices[0].message.content


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


@pytest.fixture(scope="module")
def batching(server):
    """A second server on the same models with room for concurrent requests (batches of up to 8)."""
    from core.infrastructure.serving.app import create_app
    from core.infrastructure.serving.server import BackgroundServer

    serve = {"max_concurrency": 16, "max_batch_size": 8, "batch_wait_ms": 20, "request_timeout_s": 60}
    settings = server["settings"].model_copy(update={"serve": server["settings"].serve.model_copy(update=serve)})
    app = create_app(settings, pool=server["app"].state.pool, api_key=API_KEY)
    with BackgroundServer(app, port=0) as running:
        client = openai.OpenAI(base_url=running.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
        yield {"app": app, "client": client, "base_url": running.base_url}


def _ask(client: openai.OpenAI, request: dict) -> tuple[list[str], list[str], int, int]:
    """Sends one request; returns (texts, finish reasons, prompt tokens, completion tokens)."""
    kind, stream = request["kind"], request.get("stream", False)
    fields = {key: value for key, value in request.items() if key not in ("kind", "stream")}
    create = client.chat.completions.create if kind == "chat" else client.completions.create
    if not stream:
        response = create(model="tiny-lora", temperature=0, **fields)
        texts = [c.message.content if kind == "chat" else c.text for c in response.choices]
        reasons = [choice.finish_reason for choice in response.choices]
        return texts, reasons, response.usage.prompt_tokens, response.usage.completion_tokens
    pieces, reason, usage = [], None, None
    for chunk in create(
        model="tiny-lora", temperature=0, stream=True, stream_options={"include_usage": True}, **fields
    ):
        if chunk.choices:
            choice = chunk.choices[0]
            pieces.append((choice.delta.content if kind == "chat" else choice.text) or "")
            reason = choice.finish_reason or reason
        usage = chunk.usage or usage
    return ["".join(pieces)], [reason], usage.prompt_tokens, usage.completion_tokens


def _batch_of_requests(stop: str) -> list[dict]:
    story = [{"role": "user", "content": "Tell me a story about a cat"}]
    return [
        {"kind": "chat", "messages": HI, "max_tokens": 8},
        {"kind": "chat", "messages": story, "max_tokens": 3},
        {"kind": "chat", "messages": HI, "max_tokens": 8, "stop": [stop]},
        {"kind": "text", "prompt": "Hello there", "max_tokens": 5},
        {"kind": "text", "prompt": ["One two", "Three four five six"], "max_tokens": 6},  # two rows
        {"kind": "chat", "messages": story, "max_tokens": 8, "stream": True},
        {"kind": "text", "prompt": "Hello there", "max_tokens": 4, "stream": True},
    ]  # 8 rows: exactly one full batch


def test_concurrent_greedy_requests_are_batched_and_answer_as_if_sent_one_at_a_time(server, batching):
    app, client = batching["app"], batching["client"]
    stop = _expected(server, "tiny-lora", HI, 8)[3:6]
    requests = _batch_of_requests(stop)
    one_at_a_time = [_ask(client, request) for request in requests]
    assert one_at_a_time[2][1] == ["stop"] and one_at_a_time[2][3] < 8  # the stop string ended it early
    predictor = app.state.pool.predictor("tiny-lora")
    batcher = app.state.batchers.for_predictor(predictor, "tiny-lora")
    answers: dict[int, object] = {}

    def ask(index: int, request: dict) -> None:
        answers[index] = _ask(client, request)

    log = app.state.batchers.log
    batches_before = log.batches
    with predictor.loaded.lock:  # the model is busy: requests queue up and then run as one batch
        blocker = threading.Thread(target=ask, args=(-1, requests[0]))
        blocker.start()  # taken by the worker, which then waits for the lock
        deadline = time.monotonic() + 20
        while (log.batches == batches_before or batcher.waiting) and time.monotonic() < deadline:
            time.sleep(0.01)
        threads = [threading.Thread(target=ask, args=item) for item in enumerate(requests)]
        for thread in threads:
            thread.start()
        while batcher.waiting < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert batcher.waiting == 8
    for thread in [blocker, *threads]:
        thread.join(timeout=60)
    assert [answers[index] for index in range(len(requests))] == one_at_a_time
    assert answers[-1] == one_at_a_time[0]
    assert list(log.sizes)[-2:] == [1, 8]  # the blocker alone, then every queued row together
    _, reasons, _, completion_tokens = answers[1]
    assert reasons == ["length"] and completion_tokens == 3  # its own max_tokens, not the batch's 8
    assert answers[4][1] == ["length", "length"] and answers[4][3] == 12  # usage sums both prompts
    assert answers[6][1] == ["length"] and answers[6][3] == 4
    health = httpx.get(batching["base_url"] + "/health", timeout=10).json()
    assert health["batching"]["largest_recent_batch"] == 8 and health["active_generations"] == 0


def test_seeded_sampling_runs_alone_and_reproduces_under_concurrency(batching):
    from core.infrastructure.inference.predictor import SamplingOptions
    from core.infrastructure.serving.batcher import batch_key

    assert batch_key(SamplingOptions(temperature=0, seed=3)) == batch_key(
        SamplingOptions(max_new_tokens=2, stop=("x",))
    )
    assert batch_key(SamplingOptions(temperature=0.7)) == batch_key(SamplingOptions(temperature=0.7, max_new_tokens=9))
    assert batch_key(SamplingOptions(temperature=0.7)) != batch_key(SamplingOptions(temperature=0.8))
    assert batch_key(SamplingOptions(temperature=0.7, seed=1)) is None

    client = batching["client"]

    def sample() -> str:
        return (
            client.chat.completions.create(model="tiny-lora", messages=HI, max_tokens=8, temperature=1.0, seed=7)
            .choices[0]
            .message.content
        )

    alone = sample()
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(sample())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [alone] * 4


def test_a_row_cancelled_mid_batch_stops_alone_and_the_rest_of_the_batch_is_unaffected(server):
    import asyncio

    from core.infrastructure.inference.predictor import SamplingOptions
    from core.infrastructure.serving.batcher import BatchLog, ModelBatcher
    from core.infrastructure.serving.rows import Row, RowChannel

    predictor = server["app"].state.pool.predictor("tiny-lora")
    prompts = [predictor.render(HI), predictor.render([{"role": "user", "content": "Tell me a story"}])]
    options = SamplingOptions(max_new_tokens=8)
    alone = [predictor.complete_ids([ids], options)[0] for ids in prompts]

    class CancelAfterFirstToken(RowChannel):
        def token(self, token_id: int) -> None:
            super().token(token_id)
            rows[1].cancel.set()  # the client of row 1 goes away during generation

    async def run_batch() -> list:
        loop = asyncio.get_running_loop()
        channels = [RowChannel(loop, streaming=False), CancelAfterFirstToken(loop, streaming=True)]
        rows.extend(
            Row(ids, options, threading.Event(), channel) for ids, channel in zip(prompts, channels, strict=True)
        )
        batcher = ModelBatcher(predictor, max_batch_size=4, wait_s=0.05, log=log, name="test")
        try:
            batcher.submit(rows)
            return [await asyncio.wait_for(channel.completion(), 60) for channel in channels]
        finally:
            batcher.close()

    rows: list = []
    log = BatchLog()
    kept, cancelled = asyncio.run(run_batch())
    assert list(log.sizes) == [2]
    assert kept == alone[0]
    assert cancelled.finish_reason == "cancelled" and cancelled.completion_tokens == 1
