"""The models an API server can answer with: completed runs, registered models and the base model.

Names are matched exactly against the listing -- a request never turns a model name into a path,
so ``../`` or absolute paths cannot reach outside ``paths.runs_dir`` or ``paths.registry_dir``.
Adapters on the same base model share one loaded base (see
:class:`~core.infrastructure.inference.loading.InferenceCache`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from core.domain.config import Settings
from core.domain.manifest import FINAL_DIR, MANIFEST_FILE, RunManifest
from core.infrastructure.inference.loading import InferenceCache
from core.infrastructure.inference.predictor import Predictor
from core.infrastructure.inference.targets import registry_version_source, resolve_inference_target

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,199}$")


class InvalidModelNameError(ValueError):
    """A model name that could address a path (``..``, absolute, backslashes) or has odd characters."""


class UnknownModelError(KeyError):
    """No run, registered model or base model has this name."""


@dataclass(frozen=True)
class ModelEntry:
    """One selectable model.

    Attributes:
        name: The name clients send.
        kind: ``run``, ``registry`` or ``base``.
        location: Run directory, registry version directory, or the base model name.
        created: Unix time (for ``/v1/models``).
    """

    name: str
    kind: str
    location: str
    created: int


def check_model_name(name: str) -> str:
    """Rejects names that could escape the runs or registry directory.

    Args:
        name: The requested model name.

    Returns:
        The name.

    Raises:
        InvalidModelNameError: For ``..``, absolute paths, backslashes or unexpected characters.
    """
    if ".." in name or name.startswith(("/", "~")) or "\\" in name or "\x00" in name or not SAFE_NAME.match(name):
        raise InvalidModelNameError(f"invalid model name {name!r}")
    return name


class ModelPool:
    """Lists and loads the models a server answers with.

    Args:
        settings: Settings (paths, base model).
        cache: Shared inference cache (default: a new one).
    """

    def __init__(self, settings: Settings, cache: InferenceCache | None = None) -> None:
        self.settings = settings
        self.cache = cache or InferenceCache()
        self._predictors: dict[str, Predictor] = {}
        self._lock = threading.Lock()

    def entries(self) -> dict[str, ModelEntry]:
        """Every selectable model, by name (runs first, then registry, then the base model)."""
        entries: dict[str, ModelEntry] = {}
        runs_dir = Path(self.settings.paths.runs_dir)
        if runs_dir.is_dir():
            for run_dir in sorted(path for path in runs_dir.iterdir() if (path / MANIFEST_FILE).is_file()):
                try:
                    manifest = RunManifest.load(run_dir)
                except (OSError, ValueError):
                    continue
                if manifest.status == "completed" and (run_dir / (manifest.final_path or FINAL_DIR)).is_dir():
                    created = int((run_dir / MANIFEST_FILE).stat().st_mtime)
                    entries[run_dir.name] = ModelEntry(run_dir.name, "run", str(run_dir), created)
        registry_dir = Path(self.settings.paths.registry_dir)
        if (registry_dir / "index.sqlite").is_file():
            from core.infrastructure.registry.store import ModelRegistry

            registry = ModelRegistry(registry_dir)
            for version in registry.list():
                created = int(version.path.stat().st_mtime) if version.path.exists() else 0
                entries.setdefault(
                    version.reference, ModelEntry(version.reference, "registry", str(version.path), created)
                )
            for name in registry.names():
                current = registry.resolve(name)
                entries.setdefault(name, ModelEntry(name, "registry", str(current.path), 0))
        base = self.settings.model.name
        base_name = Path(base).name if Path(base).is_absolute() or base.startswith(".") else base
        entries.setdefault(base_name, ModelEntry(base_name, "base", base, 0))
        return entries

    def predictor(self, name: str) -> Predictor:
        """The predictor for a model name (loaded on first use).

        Args:
            name: A name from :meth:`entries`.

        Returns:
            The predictor.

        Raises:
            InvalidModelNameError: For unsafe names.
            UnknownModelError: For names that are not listed.
        """
        check_model_name(name)
        entry = self.entries().get(name)
        if entry is None:
            raise UnknownModelError(name)
        with self._lock:
            key = f"{entry.kind}:{entry.location}"
            if key not in self._predictors:
                if entry.kind == "registry":
                    source = registry_version_source(Path(entry.location))
                else:
                    source = resolve_inference_target(entry.location, self.settings)
                logger.info("Loading model {} for the API", name)
                self._predictors[key] = Predictor(self.cache.load_source(source, self.settings))
            return self._predictors[key]
