"""Exceptions raised by songfeel. Each one names the file and the cause."""

from __future__ import annotations

from pathlib import Path


class SongfeelError(Exception):
    """Base class of every songfeel error."""


class AudioError(SongfeelError):
    """A track could not be turned into usable audio.

    Attributes:
        path: the audio file.
        cause: a short, human-readable reason.
    """

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class AudioDecodeError(AudioError):
    """The file is missing, corrupt or in a format that cannot be decoded."""


class AudioTooShortError(AudioError):
    """The decoded audio is shorter than the minimum the pipeline needs."""


class SilentAudioError(AudioError):
    """The decoded audio is digital silence, so it carries no 'feel'."""


class ManifestError(SongfeelError):
    """A manifest file is missing columns or holds invalid rows."""


class ExportParityError(SongfeelError):
    """ONNX Runtime and torch disagree on the exported model."""
