"""The one logging configuration: stderr sink that survives a swapped stream, library notices routed."""

from __future__ import annotations

import io
import logging
import sys

from loguru import logger

from core.logging_setup import configure_logging


def test_stderr_sink_follows_the_current_stream_even_after_the_old_one_closed(monkeypatch):
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("INFO")
    logger.info("into the first stream")
    first.close()  # what pytest's capture does between tests
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logger.info("into the second stream")
    assert "into the second stream" in second.getvalue()
    assert "Logging error" not in second.getvalue()


def test_library_warnings_reach_loguru_but_the_optional_bnb_kernel_notice_does_not(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("INFO")
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning(
        "Failed to load CPU gemm_4bit_forward from kernels-community: %s.", "No module named 'kernels'"
    )
    logging.getLogger("transformers").warning("a real library warning")
    text = stream.getvalue()
    assert "a real library warning" in text
    assert "gemm_4bit_forward" not in text
