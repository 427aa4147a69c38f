"""sha256 of files and directory trees (checkpoint manifests, registry versions)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks.

    Args:
        path: The file.

    Returns:
        Hex digest.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_checksums(directory: Path) -> dict[str, str]:
    """sha256 of every file under a directory.

    Args:
        directory: The directory.

    Returns:
        ``{relative posix path: hex digest}``, sorted by path.
    """
    root = Path(directory)
    return {path.relative_to(root).as_posix(): sha256_file(path) for path in sorted(root.rglob("*")) if path.is_file()}
