"""The OpenAI-compatible API for a run, started from the Export tab in a background process.

The process is ``finetune-studio serve`` (the CLI use case) on 127.0.0.1 with a fresh API key
passed through the environment; the tab shows ready ``curl`` and ``openai`` snippets for it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from loguru import logger

from core.domain.config import Settings
from studio.job_records import plain_config, start_detached, tail_text

READY_TIMEOUT_S = 120.0
HOST = "127.0.0.1"


@dataclass
class ApiEndpoint:
    """A running API: where it listens, its key, and the model name of the chosen run."""

    port: int
    api_key: str
    model: str

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://{HOST}:{self.port}/v1"

    def curl_snippet(self) -> str:
        """A ready ``curl`` call of the chat completions endpoint."""
        body = {"model": self.model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64}
        return (
            f"curl {self.base_url}/chat/completions \\\n"
            f'  -H "Authorization: Bearer {self.api_key}" \\\n'
            '  -H "Content-Type: application/json" \\\n'
            f"  -d '{json.dumps(body)}'"
        )

    def python_snippet(self) -> str:
        """A ready ``openai`` Python client call."""
        return (
            "from openai import OpenAI\n\n"
            f'client = OpenAI(base_url="{self.base_url}", api_key="{self.api_key}")\n'
            "reply = client.chat.completions.create(\n"
            f'    model="{self.model}",\n'
            '    messages=[{"role": "user", "content": "Hello!"}],\n'
            "    max_tokens=64,\n"
            ")\n"
            "print(reply.choices[0].message.content)\n"
        )


class ApiServer:
    """Starts and stops one ``finetune-studio serve`` child process.

    Args:
        state_dir: Folder for the child's config and log (under ``paths.runs_dir``).
        working_dir: The child's working directory.
    """

    def __init__(self, state_dir: Path, working_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.working_dir = working_dir or Path.cwd()
        self.process: subprocess.Popen | None = None
        self.endpoint: ApiEndpoint | None = None

    @property
    def log_path(self) -> Path:
        """The child's combined stdout/stderr."""
        return self.state_dir / "api.log"

    def running(self) -> bool:
        """True while the child process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, settings: Settings, run_name: str, port: int) -> ApiEndpoint:
        """Starts the API and waits until ``/v1/models`` answers and lists the run.

        Args:
            settings: Studio settings (paths; ``serve`` limits).
            run_name: The run whose name clients use as ``model``.
            port: Port on 127.0.0.1.

        Returns:
            The endpoint.

        Raises:
            ValueError: If an API is already running, or the process stops or does not get ready.
        """
        if self.running():
            raise ValueError(f"the API is already running on port {self.endpoint.port}; stop it first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "api-config.yaml"
        config.write_text(yaml.safe_dump(plain_config(settings), sort_keys=False), encoding="utf-8")
        api_key = secrets.token_urlsafe(18)
        command = [sys.executable, "-m", "core.cli", "serve", "--config", str(config), "--host", HOST]
        environment = {**os.environ, "FINETUNE_SERVE__API_KEY": api_key, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("wb") as log_handle:
            self.process = start_detached([*command, "--port", str(port)], self.working_dir, log_handle, environment)
        self.endpoint = ApiEndpoint(port=port, api_key=api_key, model=run_name)
        self._wait_ready(self.endpoint)
        logger.info("API for {} is running on {}", run_name, self.endpoint.base_url)
        return self.endpoint

    def _wait_ready(self, endpoint: ApiEndpoint) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        request = urllib.request.Request(
            f"{endpoint.base_url}/models", headers={"Authorization": f"Bearer {endpoint.api_key}"}
        )
        while time.monotonic() < deadline:
            if not self.running():
                lines = tail_text(self.log_path, 5).strip().splitlines()
                self.process, self.endpoint = None, None
                raise ValueError(f"the API process stopped: {lines[-1] if lines else 'no output'}")
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    models = [item["id"] for item in json.loads(response.read())["data"]]
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.5)
                continue
            if endpoint.model not in models:
                self.stop()
                raise ValueError(f"the API does not serve {endpoint.model!r} (a completed run is needed)")
            return
        self.stop()
        raise ValueError(f"the API did not answer within {READY_TIMEOUT_S:.0f} s; see {self.log_path}")

    def stop(self) -> str:
        """Stops the child process (SIGTERM to its group, SIGKILL after 10 s).

        Returns:
            What happened, in words.
        """
        process, self.process = self.process, None
        endpoint, self.endpoint = self.endpoint, None
        if process is None or process.poll() is not None:
            return "The API is not running."
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        return f"Stopped the API on port {endpoint.port if endpoint else '?'}."
