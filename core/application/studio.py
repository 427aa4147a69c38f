"""Use case ``studio``: open the Gradio studio on localhost with the embedded model and demo data selected.

The studio itself lives in the top-level ``studio`` package (a user interface on top of ``core``);
this use case only resolves the settings and hands them over, importing the package lazily so
that nothing in ``core`` depends on the user interface at import time.
"""

from __future__ import annotations

import argparse
import importlib

from loguru import logger

from core.domain.config import load_settings


def run(arguments: argparse.Namespace) -> int:
    """Launches the studio and serves it until interrupted.

    Args:
        arguments: Parsed CLI arguments: ``--config``, overrides, ``--host`` and ``--port``.

    Returns:
        0 when the studio was closed normally.
    """
    settings = load_settings(arguments.config, arguments.overrides)
    host = getattr(arguments, "host", None) or settings.studio.host
    port = getattr(arguments, "port", None)
    port = settings.studio.port if port is None else port
    logger.info(
        "Opening Finetune Studio on http://{}:{} (model {}, dataset {})",
        host,
        port,
        settings.model.name,
        settings.data.dataset_label(),
    )
    studio_app = importlib.import_module("studio.app")
    studio_app.launch_studio(settings, host=host, port=port, block=True)
    return 0
