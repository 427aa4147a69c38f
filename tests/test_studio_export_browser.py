"""The Export tab in headless Chromium, on a finished LoRA run of the tiny llama checkpoint.

Merge (verification shown) -> download the merged model as a zip -> export a verified GGUF ->
register a version and see it in the registry -> preview the Hub upload (dry run) and see a real
push refused offline -> start the OpenAI-compatible API and call it with the real ``openai``
client, running the Python snippet the tab shows -> stop it. Screenshots of the tab, empty and
filled, go to ``test-artifacts/studio/``.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import pytest
from inference_run_factory import make_run
from test_studio_browser import page, pytestmark, shot  # noqa: F401 (the page fixture; browser, slow, chromium marks)

RUN = "export-run"


@pytest.fixture
def studio(tmp_path: Path, tiny_llama_dir: Path, make_settings):
    from studio.app import close_studio, launch_studio

    settings = make_settings()
    make_run(Path(settings.paths.runs_dir), RUN, tiny_llama_dir, "lora", seed=5, scale=0.02)
    blocks, context = launch_studio(settings, host="127.0.0.1", port=0, block=False)
    try:
        yield blocks, context, settings
    finally:
        close_studio(blocks, context)


def test_export_tab_merges_downloads_exports_registers_and_serves(studio, page, tmp_path) -> None:  # noqa: F811
    from openai import OpenAI

    from studio.app import free_port

    blocks, context, _settings = studio
    page.goto(blocks.local_url)
    page.get_by_role("tab", name="Export").click()
    page.locator("#export-summary", has_text=f"{RUN}").wait_for()
    assert page.locator("#export-run input").input_value() == RUN
    shot(page, "export-empty")

    page.locator("#export-merge").click()
    page.locator("#export-merge-result", has_text="Verification passed").wait_for(timeout=180_000)
    page.locator("#export-summary", has_text="Merged: yes").wait_for()

    page.locator("#export-zip-merged").click()
    link = page.locator(f'#export-download a[download="{RUN}-merged.zip"]')
    link.first.wait_for()
    with page.expect_download() as download_info:
        link.first.click()
    archive = tmp_path / "merged.zip"
    download_info.value.save_as(archive)
    names = zipfile.ZipFile(archive).namelist()
    assert f"{RUN}-merged/model.safetensors" in names and f"{RUN}-merged/lineage.json" in names
    assert not any(".finetune-studio-output" in name for name in names)

    page.locator("#export-gguf").click()
    page.locator("#export-gguf-result", has_text="Verification passed").wait_for(timeout=300_000)
    folder = Path(page.locator("#export-gguf-folder textarea, #export-gguf-folder input").first.input_value())
    assert (folder / f"{RUN}-f16.gguf").is_file() and (folder / "verification.json").is_file()

    page.locator("#export-register-name textarea, #export-register-name input").first.fill("tiny-bot")
    page.locator("#export-register").click()
    page.locator("#export-register-result", has_text="tiny-bot:1").wait_for()
    page.locator("#export-registry", has_text="tiny-bot:1").wait_for()
    page.locator("#export-version-details", has_text="lora").wait_for()

    page.locator("#export-repo textarea, #export-repo input").first.fill("someone/tiny-bot")
    page.locator("#export-push-preview").click()
    page.locator("#export-push-listing", has_text="adapter_model.safetensors").wait_for()
    assert "someone/tiny-bot (private)" in page.locator("#export-push-listing").inner_text()
    page.locator("#export-push").click()
    page.get_by_text("HF_HUB_OFFLINE is set").first.wait_for()  # a real push is refused offline, in words

    port = free_port()
    page.locator("#export-api-port input").fill(str(port))
    page.locator("#export-api-port input").press("Tab")
    page.locator("#export-api-start").click()
    page.locator("#export-api-status", has_text="Running on").wait_for(timeout=150_000)
    endpoint = context.api_server.endpoint
    assert endpoint is not None and endpoint.port == port
    assert f"http://127.0.0.1:{port}/v1" in page.locator("#export-api-python").inner_text()

    client = OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key)
    reply = client.chat.completions.create(
        model=RUN, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, temperature=0
    )
    # the tiny random model answers 8 tokens of whatever it likes (often newlines)
    assert reply.model == RUN and reply.usage.completion_tokens == 8 and reply.choices[0].message.content
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(endpoint.python_snippet(), {})  # the snippet the tab shows, as a user would paste it
    assert len(printed.getvalue()) > 1  # the answer and print's newline
    shot(page, "export")

    page.locator("#export-api-stop").click()
    page.locator("#export-api-status", has_text="Stopped the API").wait_for()
    assert not context.api_server.running()
