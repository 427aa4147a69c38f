"""Local, versioned model registry: a directory tree plus a SQLite index safe for concurrent writers.

Layout under ``paths.registry_dir``::

    index.sqlite                 one row per version (WAL journal, writes in IMMEDIATE transactions)
    <name>/v<N>/version.json     metadata: lineage, sha256 checksums, creation time, stage
    <name>/v<N>/model/           the artifact: a PEFT adapter + tokenizer, or a whole model

Registering copies the artifact into a private staging directory first (slow, outside any lock),
then allocates the next version number, renames the staging directory into place and inserts the
index row inside one ``BEGIN IMMEDIATE`` transaction, so concurrent writers (threads or processes)
never get the same version and readers never see a half-copied version.

References: ``name`` (the ``production`` version if one is promoted, else the newest),
``name:3`` (version 3) or ``name@staging`` (the version in that stage).

This module imports no torch, so registry commands start fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from core.domain.manifest import write_json_atomic
from core.infrastructure.checksums import directory_checksums
from core.infrastructure.registry.artifacts import RegistryError, describe_source, validate_name

INDEX_FILE = "index.sqlite"
VERSION_FILE = "version.json"
ARTIFACT_DIR = "model"
STAGES = ("none", "staging", "production", "archived")
REFERENCE_PATTERN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,99})(?::(?P<version>\d+)|@(?P<stage>[a-z]+))?$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    stage TEXT NOT NULL DEFAULT 'none',
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    path TEXT NOT NULL,
    lineage TEXT NOT NULL,
    checksums TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (name, version)
)
"""


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model.

    Attributes:
        name: Registered model name.
        version: Version number (1, 2, ...).
        stage: ``none``, ``staging``, ``production`` or ``archived``.
        kind: ``adapter`` (needs its base model) or ``model`` (standalone).
        created_at: ISO timestamp.
        path: Version directory.
        lineage: Base model, dataset fingerprint, technique, config, metrics, chat template, run name.
        checksums: sha256 of each artifact file, by path relative to ``model/``.
        source: Where it was registered from.
    """

    name: str
    version: int
    stage: str
    kind: str
    created_at: str
    path: Path
    lineage: dict[str, Any] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def reference(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def artifact_dir(self) -> Path:
        """The directory holding the adapter or model files."""
        return self.path / ARTIFACT_DIR

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (for ``registry show`` and ``version.json``)."""
        return {
            "name": self.name,
            "version": self.version,
            "stage": self.stage,
            "kind": self.kind,
            "created_at": self.created_at,
            "path": str(self.path),
            "lineage": self.lineage,
            "checksums": self.checksums,
            "source": self.source,
        }


class ModelRegistry:
    """The registry under one root directory.

    Args:
        root: ``paths.registry_dir``.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.root / INDEX_FILE, timeout=60.0, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=60000")
            connection.execute("PRAGMA synchronous=NORMAL")
            yield connection
        finally:
            connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @staticmethod
    def _row(row: tuple) -> RegisteredVersion:
        name, version, stage, kind, created_at, path, lineage, checksums, source = row
        return RegisteredVersion(
            name=name,
            version=int(version),
            stage=stage,
            kind=kind,
            created_at=created_at,
            path=Path(path),
            lineage=json.loads(lineage),
            checksums=json.loads(checksums),
            source=source,
        )

    def register(self, name: str, source: Path | str, extra_lineage: dict[str, Any] | None = None) -> RegisteredVersion:
        """Registers a run, merged model or adapter directory as the next version of ``name``.

        Args:
            name: Registered model name.
            source: Run directory, merged/full model directory or adapter directory.
            extra_lineage: Additional lineage fields (e.g. the Hub repo it was pulled from).

        Returns:
            The new version.

        Raises:
            RegistryError: For an invalid name or source.
        """
        validate_name(name)
        artifact, kind, lineage = describe_source(Path(source))
        lineage = {**lineage, **(extra_lineage or {})}
        model_root = self.root / name
        model_root.mkdir(parents=True, exist_ok=True)
        staging = model_root / f".staging-{uuid.uuid4().hex}"
        try:
            shutil.copytree(artifact, staging / ARTIFACT_DIR, ignore=shutil.ignore_patterns(".*"))
            checksums = directory_checksums(staging / ARTIFACT_DIR)
            created_at = datetime.now(UTC).isoformat()
            with self._transaction() as connection:
                latest = connection.execute("SELECT MAX(version) FROM versions WHERE name = ?", (name,)).fetchone()[0]
                version_number = int(latest or 0) + 1
                destination = model_root / f"v{version_number}"
                if destination.exists():  # left over by a crash between rename and commit
                    shutil.rmtree(destination)
                registered = RegisteredVersion(
                    name, version_number, "none", kind, created_at, destination, lineage, checksums, str(source)
                )
                write_json_atomic(staging / VERSION_FILE, registered.to_dict())
                os.replace(staging, destination)
                try:
                    connection.execute(
                        "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            name,
                            version_number,
                            "none",
                            kind,
                            created_at,
                            str(destination),
                            json.dumps(lineage, default=str),
                            json.dumps(checksums),
                            str(source),
                        ),
                    )
                except BaseException:
                    shutil.rmtree(destination, ignore_errors=True)
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("Registered {} version {} ({}) from {}", name, version_number, kind, source)
        return registered

    def list(self, name: str | None = None) -> list[RegisteredVersion]:
        """Lists versions, newest last per name.

        Args:
            name: Only this model's versions (default: every model).

        Returns:
            The versions.
        """
        with self._connect() as connection:
            if name is None:
                rows = connection.execute("SELECT * FROM versions ORDER BY name, version").fetchall()
            else:
                rows = connection.execute("SELECT * FROM versions WHERE name = ? ORDER BY version", (name,)).fetchall()
        return [self._row(row) for row in rows]

    def names(self) -> list[str]:
        """Registered model names."""
        with self._connect() as connection:
            return [row[0] for row in connection.execute("SELECT DISTINCT name FROM versions ORDER BY name")]

    def show(self, name: str, version: int | None = None) -> RegisteredVersion:
        """One version (default: the one ``name`` resolves to).

        Args:
            name: Registered model name.
            version: Version number.

        Returns:
            The version.

        Raises:
            RegistryError: If it does not exist.
        """
        return self.resolve(name if version is None else f"{name}:{version}")

    def resolve(self, reference: str) -> RegisteredVersion:
        """Finds the version a reference names: ``name``, ``name:3`` or ``name@stage``.

        Args:
            reference: The reference.

        Returns:
            The version.

        Raises:
            RegistryError: If the reference is malformed or names nothing.
        """
        match = REFERENCE_PATTERN.match(reference or "")
        if match is None or ".." in reference:
            raise RegistryError(f"{reference!r}: not a registry reference (name, name:VERSION or name@STAGE)")
        name, version, stage = match.group("name"), match.group("version"), match.group("stage")
        with self._connect() as connection:
            if version is not None:
                row = connection.execute(
                    "SELECT * FROM versions WHERE name = ? AND version = ?", (name, int(version))
                ).fetchone()
            elif stage is not None:
                row = connection.execute(
                    "SELECT * FROM versions WHERE name = ? AND stage = ? ORDER BY version DESC LIMIT 1", (name, stage)
                ).fetchone()
            else:
                row = connection.execute(
                    "SELECT * FROM versions WHERE name = ? ORDER BY (stage = 'production') DESC, version DESC LIMIT 1",
                    (name,),
                ).fetchone()
        if row is None:
            raise RegistryError(f"{reference!r}: no such registered model version; see `finetune-studio registry list`")
        return self._row(row)

    def promote(self, name: str, version: int, stage: str) -> RegisteredVersion:
        """Moves a version to a stage; the version previously in ``staging``/``production`` is archived.

        Args:
            name: Registered model name.
            version: Version number.
            stage: ``staging``, ``production``, ``archived`` or ``none``.

        Returns:
            The updated version.

        Raises:
            RegistryError: For an unknown version or stage.
        """
        if stage not in STAGES:
            raise RegistryError(f"{stage!r}: unknown stage; choose one of {list(STAGES)}")
        self.show(name, version)
        with self._transaction() as connection:
            if stage in {"staging", "production"}:
                connection.execute(
                    "UPDATE versions SET stage = 'archived' WHERE name = ? AND stage = ? AND version != ?",
                    (name, stage, version),
                )
            connection.execute("UPDATE versions SET stage = ? WHERE name = ? AND version = ?", (stage, name, version))
        updated = self.show(name, version)
        write_json_atomic(updated.path / VERSION_FILE, updated.to_dict())
        logger.info("{} version {} is now in stage {}", name, version, stage)
        return updated

    def delete(self, name: str, version: int | None = None) -> list[RegisteredVersion]:
        """Deletes one version, or every version of a model.

        Args:
            name: Registered model name.
            version: Version number (None: all versions).

        Returns:
            The deleted versions.

        Raises:
            RegistryError: If nothing matches.
        """
        victims = [self.show(name, version)] if version is not None else self.list(name)
        if not victims:
            raise RegistryError(f"{name!r}: no such registered model")
        with self._transaction() as connection:
            for victim in victims:
                connection.execute("DELETE FROM versions WHERE name = ? AND version = ?", (victim.name, victim.version))
        for victim in victims:
            trash = victim.path.with_name(f".deleted-{victim.path.name}-{uuid.uuid4().hex}")
            if victim.path.exists():
                os.replace(victim.path, trash)
                shutil.rmtree(trash, ignore_errors=True)
        model_root = self.root / name
        if model_root.is_dir() and not any(model_root.iterdir()):
            model_root.rmdir()
        logger.info("Deleted {} ({} version(s))", name, len(victims))
        return victims

    def verify(self, name: str, version: int) -> list[str]:
        """Recomputes checksums of a version's files.

        Args:
            name: Registered model name.
            version: Version number.

        Returns:
            Problems found (empty when every file matches).
        """
        registered = self.show(name, version)
        actual = directory_checksums(registered.artifact_dir)
        problems = [f"{path}: missing" for path in registered.checksums if path not in actual]
        problems += [
            f"{path}: checksum mismatch"
            for path, digest in registered.checksums.items()
            if path in actual and actual[path] != digest
        ]
        problems += [f"{path}: not in the registered file list" for path in actual if path not in registered.checksums]
        return problems
