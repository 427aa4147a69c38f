"""Running the API with uvicorn: in the foreground (``finetune-studio serve``) or in a background thread."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI
from loguru import logger


def uvicorn_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration (logging stays with loguru; no access log).

    Args:
        app: The application.
        host: Bind address.
        port: Port (0 picks a free one).

    Returns:
        The config.
    """
    return uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, timeout_keep_alive=5)


def run_server(app: FastAPI, host: str, port: int) -> None:
    """Serves until interrupted (Ctrl+C / SIGTERM).

    Args:
        app: The application.
        host: Bind address.
        port: Port.
    """
    uvicorn.Server(uvicorn_config(app, host, port)).run()


class BackgroundServer:
    """A uvicorn server in a daemon thread, for tests, benchmarks and the studio.

    Use as a context manager; :attr:`port` is the bound port (pass 0 for a free one).

    Args:
        app: The application.
        host: Bind address.
        port: Port (0 picks a free one).
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = uvicorn.Server(uvicorn_config(app, host, port))
        self.host = host
        self.port = port
        self._thread = threading.Thread(target=self.server.run, name="api-server", daemon=True)

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        """Starts serving and waits until the socket is bound.

        Args:
            timeout_s: Longest wait.

        Returns:
            This server.

        Raises:
            RuntimeError: If the server did not start in time.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        logger.info("API server listening on {}", self.base_url)
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        """Asks the server to exit and waits for its thread.

        Args:
            timeout_s: Longest wait.
        """
        self.server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
