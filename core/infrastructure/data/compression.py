"""Compressed data files (gzip, bzip2, xz, zstd): recognised by their first bytes, read to the last good byte.

``data.jsonl.gz``, ``data.json.bz2``, ``data.csv.xz`` and ``data.jsonl.zst`` are read like the
uncompressed files. A compressed stream that ends early (a cut download) keeps what decompressed
and says where it stopped, so lenient mode can keep the complete records before the damage.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from dataclasses import dataclass
from pathlib import Path

COMPRESSION_SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}
"""File name suffixes of the compressions read (the suffix before it names the data format)."""

_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileBytes:
    """The (decompressed) bytes of a data file.

    Attributes:
        data: The bytes (what decompressed, when the stream is damaged).
        compression: ``gzip``, ``bzip2``, ``xz``, ``zstd`` or None.
        damage: What went wrong while decompressing (None when the stream was complete).
    """

    data: bytes
    compression: str | None = None
    damage: str | None = None


def compression_of(path: Path) -> str | None:
    """Names the compression of a file from its first bytes (None for an uncompressed file).

    Args:
        path: The file.

    Returns:
        ``gzip``, ``bzip2``, ``xz``, ``zstd`` or None.
    """
    with Path(path).open("rb") as handle:
        head = handle.read(6)
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)


def data_suffix(path: Path) -> str:
    """The suffix naming the data format, under a compression suffix (``a.jsonl.gz`` -> ``.jsonl``).

    Args:
        path: A file name.

    Returns:
        The lower-case suffix.
    """
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_file_bytes(path: Path) -> FileBytes:
    """Reads a file, decompressing it when its first bytes say it is compressed.

    Args:
        path: The file.

    Returns:
        The bytes, the compression, and the damage found (if any).
    """
    path = Path(path)
    compression = compression_of(path)
    if compression is None:
        return FileBytes(path.read_bytes())
    new_decompressor = {
        "gzip": lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS),
        "bzip2": bz2.BZ2Decompressor,
        "xz": lzma.LZMADecompressor,
        "zstd": _zstd_decompressor,
    }[compression]
    chunks: list[bytes] = []
    damage = None
    decompressor = new_decompressor()
    try:
        with path.open("rb") as handle:
            while raw := handle.read(_CHUNK):
                while raw:
                    chunks.append(decompressor.decompress(raw))
                    raw = decompressor.unused_data if decompressor.eof else b""
                    if raw:  # concatenated streams (e.g. several gzip members)
                        decompressor = new_decompressor()
        if not decompressor.eof:
            damage = _damage(compression, sum(map(len, chunks)), EOFError("the compressed stream ends early"))
    except (OSError, EOFError, zlib.error, lzma.LZMAError, *_zstd_errors(compression)) as error:
        damage = _damage(compression, sum(map(len, chunks)), error)
    return FileBytes(b"".join(chunks), compression, damage)


def _zstd_errors(compression: str) -> tuple[type[BaseException], ...]:
    if compression != "zstd":
        return ()
    import zstandard

    return (zstandard.ZstdError,)


def _zstd_decompressor():
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


def _damage(compression: str, decompressed: int, error: BaseException) -> str:
    detail = str(error) or type(error).__name__
    return (
        f"damaged {compression} stream ({detail}) after {decompressed:,} decompressed bytes; "
        "records after that point are lost"
    )
