"""The scan cache of local libraries: earlier probe results in a JSON file, reused while a file's
size and mtime are unchanged (:mod:`songfeel.datasets.local`)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)


class ScanCache:
    """Probe results of earlier scans, in a JSON file.

    Entries are keyed by the scan root, then by the path relative to it, and
    hold the file's size (bytes) and mtime (ns) with its probe result or skip
    reason. An entry is reused only while size and mtime are unchanged, and
    only for the same root and probe settings.
    """

    VERSION = 1

    def __init__(self, path: str | Path | None, settings: Mapping) -> None:
        """Load the cache at ``path`` (None: an in-memory cache that is never saved).

        A cache file that cannot be read or parsed is logged and ignored.
        """
        self.path = Path(path) if path is not None else None
        self.settings = dict(settings)  # the probe settings, with their version (local.scan_files)
        self.roots: dict[str, dict] = self._load()

    def _load(self) -> dict[str, dict]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("%s: ignoring the unreadable scan cache (%s)", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != self.VERSION:
            log.info("%s: scan cache of another version, ignored", self.path)
            return {}
        roots = data.get("roots")
        return roots if isinstance(roots, dict) else {}

    def entries(self, root: str) -> dict[str, dict]:
        """The cached entries of ``root`` made with the current settings ({} if none)."""
        cached = self.roots.get(root)
        if not isinstance(cached, dict) or cached.get("settings") != self.settings:
            return {}
        files = cached.get("files")
        return files if isinstance(files, dict) else {}

    def replace(self, root: str, files: dict[str, dict]) -> None:
        """Make ``files`` the entries of ``root``, dropping its earlier ones."""
        self.roots[root] = {"settings": self.settings, "files": files}

    def save(self) -> None:
        """Write the cache atomically (no-op for an in-memory cache).

        Raises:
            OSError: the cache folder or file cannot be written.
        """
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": self.VERSION, "roots": self.roots}, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)


def file_signature(path: Path) -> dict[str, int] | None:
    """``{"size": bytes, "mtime_ns": ns}`` of ``path``, or None if it cannot be stat'ed."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
