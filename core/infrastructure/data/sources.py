"""Where input data comes from: the bundled demo, a local file or directory, or a Hub dataset id."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from core.domain.errors import ConfigError, DataValidationError
from core.infrastructure.data.demo import DEMO_FILES, demo_path
from core.infrastructure.data.problems import unreadable
from core.infrastructure.data.readers import RawRecord, iter_records, list_data_files

DEMO_NAMES = {"demo": "alpaca", "demo-alpaca": "alpaca", "demo-sharegpt": "sharegpt"}
"""Dataset names that resolve to the bundled demo dataset (variant by name)."""


@dataclass
class InputSource:
    """A resolved dataset input.

    Attributes:
        name: What the user named (shown in messages).
        path: Local file or directory (demo and local inputs).
        hub_id: Hub dataset id (Hub inputs).
        hub_split: Split read from the Hub.
    """

    name: str
    path: Path | None = None
    hub_id: str | None = None
    hub_split: str = "train"
    _hub_dataset: Any = field(default=None, repr=False)

    @property
    def is_hub(self) -> bool:
        """True for Hub dataset ids."""
        return self.hub_id is not None

    def _load_hub(self) -> Any:
        if self._hub_dataset is None:
            from datasets import load_dataset

            try:
                self._hub_dataset = load_dataset(self.hub_id, split=self.hub_split)
            except Exception as error:
                first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ConfigError(
                    f"data.dataset: {self.hub_id!r} is not a local file or directory and could not be loaded "
                    f"from the Hugging Face Hub ({first_line}); check the path, or the name and your network"
                ) from error
        return self._hub_dataset

    def digest(self, hasher: Any) -> None:
        """Feeds the input's identity and content into a hash object (``hashlib`` or ``xxhash``).

        Args:
            hasher: A hash object (``update``).
        """
        if self.path is not None:
            read_bytes_digest(self.path, hasher)
        else:
            dataset = self._load_hub()
            hasher.update(f"{self.hub_id}|{self.hub_split}|{getattr(dataset, '_fingerprint', '')}".encode())

    def read(self) -> list[RawRecord]:
        """Reads every record.

        Returns:
            Raw records with their sources.
        """
        return list(self.records())

    def records(self) -> Iterator[RawRecord]:
        """Yields every record, reading as it goes (a JSON Lines file line by line).

        Yields:
            Raw records with their sources.
        """
        if self.path is not None:
            yield from iter_records(self.path)
            return
        dataset = self._load_hub()
        logger.info("Read {} rows from Hub dataset {} (split {})", len(dataset), self.hub_id, self.hub_split)
        for index, row in enumerate(dataset):
            yield RawRecord(dict(row), f"{self.hub_id}[{index}]")

    def fingerprint(self) -> str:
        """Short hash of the input alone (used in messages and tests)."""
        hasher = hashlib.sha256()
        self.digest(hasher)
        return hasher.hexdigest()[:16]


def resolve_input(dataset: str | Path, hub_split: str = "train") -> InputSource:
    """Resolves a dataset name.

    Args:
        dataset: ``demo`` (or ``demo-sharegpt``), a local path, or a Hub id ``owner/name``.
        hub_split: Split to read from the Hub.

    Returns:
        The input source.

    Raises:
        ConfigError: If the name is neither the demo, an existing path, nor a Hub-like id.
    """
    name = str(dataset)
    if name in DEMO_NAMES:
        path = demo_path(DEMO_NAMES[name])
        if not path.is_file():
            raise ConfigError(
                f"data.dataset: the bundled demo file {path} is missing; "
                f"regenerate it with python -m core.infrastructure.data.demo ({', '.join(DEMO_FILES.values())})"
            )
        return InputSource(name, path=path)
    local = Path(name).expanduser()
    if local.exists():
        return InputSource(name, path=local)
    looks_like_hub = name.count("/") == 1 and not name.startswith((".", "/", "~")) and Path(name).suffix == ""
    if looks_like_hub:
        return InputSource(name, hub_id=name, hub_split=hub_split)
    raise ConfigError(f"data.dataset: {name}: no such file or directory (nor 'demo' or a Hub dataset id owner/name)")


def read_bytes_digest(path: Path | str, hasher: Any) -> None:
    """Feeds the names and bytes of every data file under ``path`` into a hash object (``update``).

    Args:
        path: File or directory.
        hasher: A hash object (``update``).

    Raises:
        DataValidationError: If a data file cannot be read (nothing can be prepared from it).
    """
    path = Path(path)
    for file in list_data_files(path):
        hasher.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        try:
            with file.open("rb") as handle:
                for chunk in iter(lambda handle=handle: handle.read(1 << 20), b""):
                    hasher.update(chunk)
        except OSError as error:
            raise DataValidationError([str(unreadable(f"{file}:1", error))]) from None
