"""Content hashes of files and configs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tqdm.auto import tqdm


def sha1_file(path: str | Path, chunk_bytes: int = 1 << 20, progress: bool = True) -> str:
    """SHA1 of a file's bytes as 40 lowercase hex digits, with a progress bar unless ``progress`` is False.

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    digest = hashlib.sha1()
    with open(path, "rb") as fh, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                      desc=f"sha1 {path.name}", leave=False, disable=not progress) as bar:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def sha1_text(text: str) -> str:
    """SHA1 of a UTF-8 string, 40 hex digits."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def config_hash(mapping: dict) -> str:
    """A short, stable hash (16 hex digits) of a JSON-serialisable mapping, key order ignored."""
    return sha1_text(json.dumps(mapping, sort_keys=True, default=str))[:16]
