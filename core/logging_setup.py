"""The one place where logging is configured: loguru to stderr (and a run's log file).

Standard-library loggers (transformers, peft, accelerate, datasets, uvicorn) are routed into
loguru, so every message ends up in the same sinks with the same format.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from loguru import logger

_STDERR_SINK_ID: int | None = None
_FILE_SINKS: dict[Path, int] = {}

LOG_FORMAT = "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> <cyan>{name}</cyan> {message}"


class _CurrentStderr:
    """A stream that always writes to the *current* ``sys.stderr``.

    Binding the sink to the object ``sys.stderr`` held at configure time breaks when that object is
    later closed or swapped (pytest's capture, Gradio workers, notebooks): loguru then reports
    "I/O operation on closed file" for every message. Looking ``sys.stderr`` up on each write keeps
    the sink valid whatever replaced it.
    """

    def write(self, message: str) -> None:
        """Writes one formatted log message."""
        stream = sys.stderr
        if stream is not None and not getattr(stream, "closed", False):
            stream.write(message)

    def flush(self) -> None:
        """Flushes the current stderr, if it is still open."""
        stream = sys.stderr
        if stream is not None and not getattr(stream, "closed", False):
            stream.flush()

    def isatty(self) -> bool:
        """Lets loguru colour output only on a terminal."""
        stream = sys.stderr
        return bool(stream is not None and not getattr(stream, "closed", False) and stream.isatty())


class _InterceptHandler(logging.Handler):
    """Forwards standard-library log records to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = logging.currentframe(), 2
        while frame and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


class _OptionalKernelNotice(logging.Filter):
    """Turns bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" into a debug line.

    bitsandbytes tries an optional Hub-downloaded CPU kernel at import on AVX512-BF16 machines and warns
    when it is absent; its built-in kernel is then used and QLoRA runs correctly, so the warning only
    alarms users (and the optional kernel would need the network).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Lets every other record through unchanged."""
        if str(record.msg).startswith("Failed to load CPU gemm_4bit_forward"):
            logger.debug("bitsandbytes uses its built-in CPU 4-bit kernel (optional kernels-community one absent)")
            return False
        return True


def _quiet_library_output() -> None:
    """Keeps library output a newcomer would read as failure out of the terminal and log files.

    - Progress bars only on a terminal: redirected to a file (a studio job's log, CI), tqdm's
      carriage-return redraws become one giant line. ``TQDM_DISABLE`` is tqdm's own switch
      (read when tqdm is first imported, which every entry point does after this call).
    - peft reads transformers' deprecated ``model.is_gradient_checkpointing`` on every adapter
      load (peft_model.py), which warns ``FutureWarning`` once per process; the model's own API is
      not involved, so the warning says nothing to the user.
    """
    if not _CurrentStderr().isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def configure_logging(level: str = "INFO") -> None:
    """Configures loguru's stderr sink and routes standard-library logging into it.

    Safe to call more than once; the last level wins.

    Args:
        level: Minimum level shown on stderr.
    """
    global _STDERR_SINK_ID
    _quiet_library_output()
    if _STDERR_SINK_ID is not None:
        logger.remove(_STDERR_SINK_ID)
    else:
        logger.remove()
    _STDERR_SINK_ID = logger.add(_CurrentStderr(), level=level, format=LOG_FORMAT, enqueue=False)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.WARNING, force=True)
    for name in ("transformers", "peft", "accelerate", "datasets", "uvicorn", "uvicorn.error", "trl"):
        library_logger = logging.getLogger(name)
        library_logger.handlers = [_InterceptHandler()]
        library_logger.propagate = False
        library_logger.setLevel(logging.WARNING)
    bitsandbytes_cpu_logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(existing, _OptionalKernelNotice) for existing in bitsandbytes_cpu_logger.filters):
        bitsandbytes_cpu_logger.addFilter(_OptionalKernelNotice())


def add_file_sink(path: Path, level: str = "DEBUG") -> int:
    """Also writes logs to a file (e.g. ``runs/<name>/train.log``).

    Args:
        path: Log file.
        level: Minimum level written.

    Returns:
        The loguru sink id, for :func:`remove_file_sink`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path in _FILE_SINKS:
        return _FILE_SINKS[path]
    sink_id = logger.add(path, level=level, format="{time:YYYY-MM-DD HH:mm:ss} {level: <7} {name} {message}")
    _FILE_SINKS[path] = sink_id
    return sink_id


def remove_file_sink(path: Path) -> None:
    """Stops writing logs to a file added with :func:`add_file_sink`.

    Args:
        path: The log file.
    """
    sink_id = _FILE_SINKS.pop(Path(path), None)
    if sink_id is not None:
        logger.remove(sink_id)
