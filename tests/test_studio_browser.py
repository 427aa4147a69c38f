"""The studio journey in headless Chromium (Debian's ``chromium``), on the embedded 135M model.

Load the demo data and preview it -> start a short LoRA run -> watch the loss curve grow -> reload the
page mid-run and see it continue -> stop -> compare two runs -> chat with the run (streamed) -> the
N-column chat. Screenshots of each tab are saved under ``test-artifacts/studio/``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "studio"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture
def studio(tmp_path: Path, tiny_llama_dir: Path, embedded_model_dir: Path, make_settings):
    from studio.app import close_studio, launch_studio

    settings = make_settings(**{"data.max_samples": 48, "data.max_seq_length": 64})
    blocks, context = launch_studio(settings, host="127.0.0.1", port=0, block=False)
    try:
        yield blocks, context, settings
    finally:
        close_studio(blocks, context)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        try:
            yield tab
        finally:
            browser.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def set_number(page, elem_id: str, value: str) -> None:
    field = page.locator(f"#{elem_id} input")
    field.fill(value)
    field.press("Tab")


def curve_points(page) -> int:
    """Points of the train-loss trace in the Train tab's plotly figure (0 before the first step)."""
    return page.evaluate(
        """() => {
            const plot = document.querySelector('#loss-plot .js-plotly-plot');
            if (!plot || !plot.data) return 0;
            const train = plot.data.find(trace => trace.name === 'train loss');
            return train ? train.x.length : 0;
        }"""
    )


def status_word(page) -> str:
    pill = page.locator("#run-status .status-pill")
    return pill.inner_text() if pill.count() else ""


def load_in_data_tab(page, url: str, path: Path) -> None:
    """Opens the studio's Data tab, names a local file and clicks "Load and preview"."""
    page.goto(url)
    page.get_by_role("tab", name="Data").click()
    page.locator("#data-source label", has_text="path or Hub dataset").click()
    page.get_by_label("Local path or Hub dataset id").fill(str(path))
    page.locator("#load-data").click()


def wait_until(predicate, timeout_s: float, interval_s: float = 0.5, message: str = "") -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out: {message}")


def choose(page, elem_id: str, option: str, timeout_s: float = 30) -> None:
    """Picks a dropdown option, retrying while the choices are still being refreshed."""
    deadline = time.time() + timeout_s
    while True:
        page.locator(f"#{elem_id} input").click()
        item = page.locator(f"#{elem_id} [role=option]", has_text=option)
        try:
            item.first.wait_for(timeout=2_000)
            item.first.click()
            return
        except Exception:
            if time.time() > deadline:
                raise
            page.keyboard.press("Escape")
            time.sleep(0.5)


def test_studio_journey(studio, page, tiny_llama_dir: Path) -> None:
    from gradio_client import Client

    blocks, _context, _settings = studio
    url = blocks.local_url
    # a second run to compare with: a tiny model queued by script first (it trains while we explore the data)
    client = Client(url, verbose=False)
    client.predict(
        str(tiny_llama_dir), "prefix", "journey-tiny-prefix", "demo", 1e-2, 3, 1, 2, 1, 64, 0, 3, 0, 4, 8, 0.0, 4,
        False, api_name="/start_training",
    )  # fmt: skip

    page.goto(url)
    page.get_by_text("Finetune Studio").first.wait_for()
    assert "Active run" in page.locator("#studio-resources").inner_text()

    # Data: demo data, detected format, paged preview, validation report and the model's view
    page.get_by_role("tab", name="Data").click()
    page.locator("#load-data").click()
    page.locator("#detected-format", has_text="alpaca").wait_for()
    page.get_by_text("page 1 of").wait_for()
    assert page.locator("#preview [role=row]").count() >= 6  # header + a page of records
    page.get_by_role("button", name="Next ▶").click()
    page.get_by_text("page 2 of").wait_for()
    page.locator("#prepare-data").click()
    page.locator("#data-report", has_text="Validation report").wait_for(timeout=120_000)
    page.locator("#model-view .tok-trained").first.wait_for()
    shot(page, "data")

    # Train: a short LoRA run on the embedded model
    page.get_by_role("tab", name="Train").click()
    page.locator("#run-name textarea, #run-name input").first.fill("journey-lora")
    set_number(page, "max-steps", "2000")  # long enough that the Stop below always lands before the end
    set_number(page, "batch-size", "1")
    set_number(page, "max-seq-length", "64")
    set_number(page, "eval-steps", "0")
    set_number(page, "save-steps", "3")
    set_number(page, "sample-every", "0")
    page.locator("#start-button").click()
    page.locator("#train-message", has_text="journey-lora").wait_for()
    page.locator("#queue-table", has_text="journey-lora").wait_for(timeout=30_000)
    shot(page, "train-queue")
    wait_until(lambda: curve_points(page) >= 1, 240, message="the loss curve never showed a step")
    first = curve_points(page)
    shot(page, "train")

    # reload mid-run: the page selects the active run again and the curve keeps growing
    page.reload()
    page.get_by_role("tab", name="Train").click()
    wait_until(lambda: status_word(page) == "training", 30, message="after reload the run is not shown training")
    wait_until(lambda: curve_points(page) > first, 120, message="the curve did not continue after reload")
    assert page.locator("#run-selector input").input_value() == "journey-lora"

    page.locator("#stop-button").click()
    wait_until(lambda: status_word(page) == "stopped", 120, message="the run did not stop")
    shot(page, "train-stopped")

    # Compare the two runs
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-runs label", has_text="journey-lora").click()
    page.locator("#compare-runs label", has_text="journey-tiny-prefix").click()
    page.locator("#compare-table", has_text="trainable parameters").wait_for()
    wait_until(
        lambda: page.evaluate("() => document.querySelector('#compare-plot .js-plotly-plot')?.data?.length || 0") >= 2,
        30,
        message="the overlay does not show both runs",
    )
    shot(page, "compare")

    # Chat with the run: the answer streams in
    page.get_by_role("tab", name="Chat").click()
    choose(page, "chat-target", "run: journey-lora")
    page.locator("#chat-input textarea").fill("Write a short story about a robot who learns to paint.")
    page.locator("#chat-send").click()
    partial: set[str] = set()
    bot = page.locator("#chatbot .bot")
    deadline = time.time() + 120
    while time.time() < deadline and len(partial) < 3:
        text = bot.last.inner_text().strip() if bot.count() else ""
        if text:
            partial.add(text)
        time.sleep(0.1)
    assert len(partial) >= 2, f"the answer did not stream (saw {partial})"
    shot(page, "chat")

    # N columns: one prompt to the run and the base model with the same seed
    page.get_by_role("tab", name="N columns").click()
    page.locator("#column-targets label", has_text="run: journey-lora").click()
    page.locator("#columns-input textarea").fill("What is 2 + 2?")
    page.locator("#columns-send").click()
    columns = page.locator(".chat-column .bot")
    wait_until(
        lambda: columns.count() >= 2 and all(columns.nth(i).inner_text().strip() for i in range(columns.count())),
        120,
        message="not every column answered",
    )
    shot(page, "chat-columns")


def number_value(page, elem_id: str) -> float | None:
    """The number shown in a gr.Number field (None while it is empty or not a number)."""
    text = page.locator(f"#{elem_id} input").input_value().strip()
    try:
        return float(text)
    except ValueError:
        return None


def test_train_form_survives_reload(studio, page) -> None:
    """The Train form is kept in the browser: after a reload it shows the technique and values the user set."""
    from studio.form_state import FORM_STORAGE_KEY
    from studio.training_form import technique_defaults

    blocks, _context, _settings = studio
    page.goto(blocks.local_url)
    page.locator("#start-button").wait_for()

    def stored() -> str | None:
        return page.evaluate(f"() => localStorage.getItem({FORM_STORAGE_KEY!r})")

    # choosing a technique fills its defaults (from the server); then the user edits some of them
    page.locator("#technique label", has_text="prefix").click()
    prefix_rate = technique_defaults("prefix")["learning_rate"]
    wait_until(lambda: number_value(page, "learning-rate") == prefix_rate, 30, message="prefix defaults not shown")
    page.locator("#virtual-tokens").wait_for()
    set_number(page, "learning-rate", "0.00042")
    set_number(page, "max-steps", "7")
    set_number(page, "virtual-tokens", "9")
    time.sleep(0.5)
    before = stored()
    page.locator("#run-name textarea, #run-name input").first.fill("kept-name")
    page.locator("#run-name textarea, #run-name input").first.press("Tab")
    wait_until(lambda: stored() not in {None, before}, 10, message="the form was not saved in localStorage")

    page.reload()
    page.locator("#start-button").wait_for()
    wait_until(lambda: number_value(page, "learning-rate") == 0.00042, 30, message="learning rate not restored")
    assert number_value(page, "max-steps") == 7
    assert page.locator("#technique input[value=prefix]").is_checked()
    assert page.locator("#virtual-tokens").is_visible() and number_value(page, "virtual-tokens") == 9
    assert page.locator("#run-name textarea, #run-name input").first.input_value() == "kept-name"
    time.sleep(1.0)  # a late technique-defaults event must not overwrite the restored values
    assert number_value(page, "learning-rate") == 0.00042


def test_a_question_answer_csv_is_mapped_in_the_data_tab_and_trained_on(studio, page, tmp_path: Path) -> None:
    """A CSV no format fits: the Data tab shows its columns, maps them, prepares it, and the run trains on it."""
    from core.domain.manifest import RunManifest, read_metrics

    blocks, context, _settings = studio
    csv_file = tmp_path / "faq.csv"
    rows = [f"What is item {index}?,Item {index} is a thing number {index}." for index in range(30)]
    csv_file.write_text("question,answer\n" + "\n".join(rows) + "\n", encoding="utf-8")

    load_in_data_tab(page, blocks.local_url, csv_file)
    page.locator("#detected-format", has_text="Using custom").wait_for()
    assert "question" in page.locator("#data-columns").inner_text()
    assert page.locator("#map-instruction input").input_value() == "question"
    assert page.locator("#map-output input").input_value() == "answer"
    page.locator("#preview", has_text="What is item 0?").wait_for()
    page.locator("#prepare-data").click()
    page.locator("#data-report", has_text="Validation report").wait_for(timeout=120_000)
    page.locator("#model-view .tok-trained").first.wait_for()
    shot(page, "data-mapped-csv")

    page.get_by_role("tab", name="Train").click()
    assert page.locator("#dataset textarea, #dataset input").first.input_value() == str(csv_file)
    page.locator("#run-name textarea, #run-name input").first.fill("faq-csv")
    for elem_id, value in (("max-steps", "2"), ("batch-size", "2"), ("max-seq-length", "64")):
        set_number(page, elem_id, value)
    for elem_id in ("eval-steps", "save-steps", "sample-every"):
        set_number(page, elem_id, "0")
    page.locator("#start-button").click()
    page.locator("#train-message", has_text="faq-csv").wait_for()
    run_dir = context.runs_dir / "faq-csv"
    wait_until(
        lambda: (run_dir / "manifest.json").exists() and RunManifest.load(run_dir).status in ("completed", "failed"),
        300,
        message="the run did not finish",
    )
    manifest = RunManifest.load(run_dir)
    assert manifest.status == "completed", manifest.error
    assert manifest.config["data"]["format"] == "custom"
    assert manifest.config["data"]["field_mapping"] == {"instruction": "question", "output": "answer"}
    assert [row["step"] for row in read_metrics(run_dir) if "loss" in row] == [1, 2]


def test_a_failed_validation_replaces_the_previous_files_report(studio, page, tmp_path: Path) -> None:
    """Prepare a good file, then a bad one: the report shows the bad file's problems, not the old report."""
    import json

    blocks, _context, _settings = studio

    def conversations(count: int) -> list[dict]:
        return [
            {"conversations": [{"from": "human", "value": f"Question {n}?"}, {"from": "gpt", "value": f"Answer {n}."}]}
            for n in range(count)
        ]

    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text("".join(json.dumps(record) + "\n" for record in conversations(30)))
    broken = conversations(8)
    broken[2]["conversations"][1]["value"] = "   "
    bad.write_text("".join(json.dumps(record) + "\n" for record in broken))

    page.goto(blocks.local_url)
    page.get_by_role("tab", name="Data").click()
    page.locator("#data-source label", has_text="path or Hub dataset").click()
    for path in (good, bad):
        page.get_by_label("Local path or Hub dataset id").fill(str(path))
        page.locator("#load-data").click()
        page.locator("#preview", has_text="Question 1?").wait_for()
        page.locator("#prepare-data").click()
        if path is good:
            page.locator("#data-report", has_text="Validation report").wait_for(timeout=120_000)
    page.locator("#data-report", has_text="Validation failed").wait_for(timeout=120_000)
    report = page.locator("#data-report").inner_text()
    assert "bad.jsonl:3: conversations[1].value: empty or whitespace-only response" in report
    assert "Validation report" not in report and "Lenient" in report
    shot(page, "data-validation-failed")


def test_a_killed_run_shows_interrupted_with_the_way_out(studio, page) -> None:
    """A run whose training process died (kill -9, OOM) is not shown as training forever."""
    import json
    import socket
    import subprocess
    import sys

    import psutil

    from core.domain.manifest import RunManifest

    blocks, _context, settings = studio
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(child.pid).create_time()
    child.wait()
    run_dir = Path(settings.paths.runs_dir) / "killed-run"
    run_dir.mkdir(parents=True)
    process = {"pid": child.pid, "host": socket.gethostname(), "started": started}
    RunManifest(run_name="killed-run", status="training", process=process).save(run_dir)
    rows = [{"step": 0, "eval_loss": 1.3}, {"step": 1, "loss": 1.4, "tokens_per_second": 90.0, "elapsed_s": 5.0}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    page.goto(blocks.local_url)
    page.locator("#start-button").wait_for()
    choose(page, "run-selector", "killed-run")
    wait_until(lambda: status_word(page) == "interrupted", 30, message=f"status shown: {status_word(page)!r}")
    assert "press Resume to continue" in page.locator("#run-status").inner_text()
    assert page.locator("#resume-button").is_visible()
    shot(page, "train-interrupted")


def test_screenshots_are_small_pngs() -> None:
    """The README screenshots in assets/screenshots are PNGs of modest size."""
    folder = Path(__file__).resolve().parents[1] / "assets" / "screenshots"
    if not folder.exists():
        pytest.skip("no README screenshots yet")
    for path in folder.glob("*"):
        assert path.suffix == ".png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size < 400_000, f"{path.name} is too large for the README"


def copy_best_screenshots() -> None:  # used by hand: python -c "from tests.test_studio_browser import ..."
    target = Path(__file__).resolve().parents[1] / "assets" / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("data", "train", "compare", "chat-columns"):
        source = ARTIFACTS / f"{name}.png"
        if source.exists():
            shutil.copyfile(source, target / f"studio-{name}.png")


def test_chat_stop_ends_generation_and_the_context_is_shown(studio, page) -> None:
    """Stop halts the answer on the server (no generation thread left), and the chat stays usable."""
    import threading

    blocks, _context, _settings = studio

    def generating() -> bool:
        return any(thread.name == "generate-stream" and thread.is_alive() for thread in threading.enumerate())

    page.goto(blocks.local_url)
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-max-tokens input[type=number]").fill("512")
    page.locator("#chat-max-tokens input[type=number]").press("Enter")
    page.locator("#chat-input textarea").fill("Write a very long story about a lighthouse keeper and the sea.")
    page.locator("#chat-send").click()
    bot = page.locator("#chatbot .bot")
    wait_until(lambda: bot.count() and len(bot.last.inner_text().strip()) > 30, 120, message="no answer streamed")
    assert generating()
    page.locator("#chat-stop").click()
    wait_until(lambda: not generating(), 10, message="generation went on after Stop")
    # the chunk the server sent before the thread ended may still be on its way to the browser
    shown = [bot.last.inner_text()]
    wait_until(lambda: shown.append(bot.last.inner_text()) or shown[-1] == shown[-2], 5, message="chat kept changing")
    stopped_text = shown[-1]
    time.sleep(2)
    assert bot.last.inner_text() == stopped_text, "the answer kept growing after Stop"
    assert len(stopped_text.split()) < 300, "Stop landed only after the whole answer"
    context_note = page.locator("#chat-context").inner_text()
    assert "Context:" in context_note and "of 8,192 tokens" in context_note, context_note
    shot(page, "chat-stopped")

    # the chat is usable again, and a message longer than the window is refused in plain words
    page.locator("#chat-input textarea").fill("word " * 10_000)
    page.locator("#chat-send").click()
    page.get_by_text("the model reads at most 8,192").first.wait_for(timeout=60_000)
    page.locator("#chat-input textarea").fill("Say hello.")
    page.locator("#chat-send").click()
    wait_until(lambda: bot.count() >= 2 and bot.last.inner_text().strip(), 120, message="no second answer")


def test_a_short_prompt_beside_a_long_answer_is_shown_at_the_top_of_its_preview_row(
    studio, page, tmp_path: Path
) -> None:
    """Gradio centres table cells vertically; a long answer made its row taller than the preview, hiding the prompt."""
    blocks, _context, _settings = studio
    data = tmp_path / "long-answer.jsonl"
    answer = " ".join(f"Sentence {index} of a long answer that goes on and on." for index in range(120))
    data.write_text(json.dumps({"instruction": "Short question?", "output": answer}) + "\n", encoding="utf-8")

    load_in_data_tab(page, blocks.local_url, data)
    page.locator("#preview", has_text="Short question?").wait_for()
    boxes = page.evaluate(
        """() => {
            const leaves = [...document.querySelectorAll('#preview .body-cell span')];
            const find = text => leaves.find(span => span.innerText.startsWith(text)).getBoundingClientRect();
            const prompt = find('Short question?'), answer = find('Sentence 0 of');
            const table = document.querySelector('#preview').getBoundingClientRect();
            return {prompt: prompt.top, answer: answer.top, answer_bottom: answer.bottom, table: table.bottom};
        }"""
    )
    assert boxes["answer_bottom"] > boxes["table"]  # the answer is taller than the preview
    assert abs(boxes["prompt"] - boxes["answer"]) < 5 and boxes["prompt"] < boxes["table"], boxes
    shot(page, "data-long-answer-preview")


def test_skipped_records_show_their_reason_on_one_line_beside_long_problems(studio, page, tmp_path: Path) -> None:
    """Markdown cells may break anywhere: squeezed by long problems, 'broken_order' broke into three lines."""
    blocks, _context, _settings = studio
    records = [
        {"conversations": [{"from": "human", "value": f"Question {n}?"}, {"from": "gpt", "value": f"Answer {n}."}]}
        for n in range(6)
    ]
    broken = [  # an answer first: broken_order, with a long problem text
        {"conversations": [{"from": "gpt", "value": f"Answer {n} first."}, {"from": "human", "value": "Question?"}]}
        for n in range(3)
    ]
    data = tmp_path / "with-skipped-records.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in [*records, *broken]), encoding="utf-8")

    load_in_data_tab(page, blocks.local_url, data)
    page.locator("#preview", has_text="Question 1?").wait_for()
    page.get_by_label("Lenient (skip bad records, report them)").check()
    page.locator("#prepare-data").click()
    page.locator("#data-report", has_text="Skipped records").wait_for(timeout=120_000)
    cells = page.evaluate(
        """() => {
            const table = [...document.querySelectorAll('#data-report table')].pop();
            const [source, reason] = table.querySelectorAll('tbody tr:first-child td');
            const range = document.createRange();
            range.selectNodeContents(reason);
            return {reason: reason.innerText, reason_lines: range.getClientRects().length,
                    source: source.innerText, source_width: source.getBoundingClientRect().width};
        }"""
    )
    assert cells["reason"] == "broken_order" and cells["source"].replace("\n", "").endswith(".jsonl:7"), cells
    assert cells["reason_lines"] == 1, cells
    assert cells["source_width"] >= 140, cells
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#data-report").screenshot(path=str(ARTIFACTS / "data-skipped-records.png"))
