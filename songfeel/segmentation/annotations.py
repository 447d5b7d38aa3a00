"""Structure annotations: a validated :class:`Segmentation` and its file formats.

A segmentation is a list of labelled segments ``[start, end)`` in seconds, as in
mir_eval (https://mir-evaluation.github.io/mir_eval/#module-mir_eval.segment).
Loaders read

* JAMS (https://jams.readthedocs.io), namespaces ``segment_open``,
  ``segment_salami_function`` and ``segment_salami_upper``;
* SALAMI text files (https://github.com/DDMAL/salami-data-public, ``parsed/*.txt``):
  ``time<TAB>label`` lines, each starting a segment that lasts until the next
  line, the last line being ``End``;
* Harmonix Set segment files (https://github.com/urinieto/harmonixset,
  ``dataset/segments/*.txt``): ``time label`` lines, the last one ``end``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jams
import numpy as np

log = logging.getLogger(__name__)

#: JAMS namespaces read by :func:`load_jams`, in order of preference.
SEGMENT_NAMESPACES = ("segment_open", "segment_salami_function", "segment_salami_upper")

#: Labels that close the last segment in SALAMI and Harmonix text files (compared in lower case).
END_LABELS = ("end",)

#: Label of SALAMI's silent segments (at the start and end of most songs).
SALAMI_SILENCE = "Silence"

#: Tolerance (seconds) for comparing segment edges: an overlap shorter than this is rounding.
EDGE_TOLERANCE_SECONDS = 1e-6


@dataclass(frozen=True, eq=False)  # eq on arrays would be ambiguous: compare fields explicitly
class Segmentation:
    """Labelled segments of one song.

    Attributes:
        intervals: float64 array of shape (n_segments, 2): ``[start, end)`` of each
            segment in seconds, sorted, non-overlapping (gaps are allowed), each of
            positive length.
        labels: the label of each segment (``n_segments`` strings); equal labels
            mean repetitions of the same part (e.g. ``A``, ``verse``).
        duration: the song's duration in seconds, at least the last segment's end.
        source: where the annotation comes from (a file path or a name), used in errors.

    Raises:
        ValueError: in construction, when the segments are empty, unsorted,
            overlapping, of non-positive length, outside ``[0, duration]``, or when
            labels and intervals differ in number; the message names ``source``.
    """

    intervals: np.ndarray
    labels: list[str]
    duration: float
    source: str = field(default="")

    def __post_init__(self) -> None:
        intervals = np.asarray(self.intervals, dtype=np.float64)
        object.__setattr__(self, "intervals", intervals)
        object.__setattr__(self, "labels", [str(label) for label in self.labels])
        object.__setattr__(self, "duration", float(self.duration))
        _validate(intervals, self.labels, self.duration, self.source or "<segmentation>")

    @classmethod
    def from_boundaries(
        cls, boundaries: Sequence[float], labels: Sequence[str], duration: float, source: str = ""
    ) -> Segmentation:
        """Contiguous segments from their inner boundaries (seconds), covering ``[0, duration]``.

        Args:
            boundaries: the ``n_segments - 1`` inner boundary times in seconds, increasing.
            labels: ``n_segments`` labels.
            duration: song duration in seconds.
            source: name used in errors.

        Raises:
            ValueError: as for :class:`Segmentation`.
        """
        edges = np.concatenate([[0.0], np.asarray(boundaries, dtype=np.float64), [float(duration)]])
        return cls(np.stack([edges[:-1], edges[1:]], axis=1), list(labels), duration, source)

    @property
    def n_segments(self) -> int:
        return int(self.intervals.shape[0])

    def boundaries(self) -> np.ndarray:
        """Inner boundaries in seconds, shape (n,): every segment edge strictly inside ``(0, duration)``."""
        edges = np.unique(self.intervals.ravel())
        # An end and the next start that differ by rounding (e.g. time + duration in JAMS) are one boundary.
        edges = edges[np.concatenate([[True], np.diff(edges) > EDGE_TOLERANCE_SECONDS])]
        inner = (edges > EDGE_TOLERANCE_SECONDS) & (edges < self.duration - EDGE_TOLERANCE_SECONDS)
        return edges[inner]

    def filled(self, gap_label: str = "__gap") -> Segmentation:
        """The same segments, with every gap in ``[0, duration]`` turned into a ``gap_label`` segment.

        mir_eval's pairwise and NCE scores need segments that cover the whole song.
        """
        intervals, labels, cursor = [], [], 0.0
        for (start, end), label in zip(self.intervals, self.labels, strict=True):
            if start > cursor + EDGE_TOLERANCE_SECONDS:
                intervals.append((cursor, start))
                labels.append(gap_label)
            intervals.append((max(start, cursor), end))
            labels.append(label)
            cursor = end
        if self.duration > cursor + EDGE_TOLERANCE_SECONDS:
            intervals.append((cursor, self.duration))
            labels.append(gap_label)
        return Segmentation(np.asarray(intervals), labels, self.duration, self.source)


def _validate(intervals: np.ndarray, labels: list[str], duration: float, source: str) -> None:
    if intervals.ndim != 2 or intervals.shape[1] != 2 or intervals.shape[0] == 0:
        raise ValueError(f"{source}: intervals must have shape (n_segments >= 1, 2), got {intervals.shape}")
    if len(labels) != intervals.shape[0]:
        raise ValueError(f"{source}: {intervals.shape[0]} segments but {len(labels)} labels")
    if not np.isfinite(intervals).all() or not np.isfinite(duration):
        raise ValueError(f"{source}: segment times and duration must be finite")
    lengths = intervals[:, 1] - intervals[:, 0]
    if (lengths <= 0).any():
        bad = int(np.flatnonzero(lengths <= 0)[0])
        raise ValueError(f"{source}: segment {bad} {tuple(intervals[bad])} has non-positive length")
    if (np.diff(intervals[:, 0]) < 0).any():
        raise ValueError(f"{source}: segments are not sorted by start time")
    overlap = intervals[:-1, 1] - intervals[1:, 0]
    if (overlap > EDGE_TOLERANCE_SECONDS).any():
        bad = int(np.flatnonzero(overlap > EDGE_TOLERANCE_SECONDS)[0])
        raise ValueError(f"{source}: segment {bad} ends at {intervals[bad, 1]:.3f} s, "
                         f"after segment {bad + 1} starts at {intervals[bad + 1, 0]:.3f} s")
    if intervals[0, 0] < 0:
        raise ValueError(f"{source}: the first segment starts before 0 s ({intervals[0, 0]:.3f} s)")
    if intervals[-1, 1] > duration + EDGE_TOLERANCE_SECONDS:
        raise ValueError(f"{source}: the last segment ends at {intervals[-1, 1]:.3f} s, "
                         f"after the song's duration {duration:.3f} s")


# --- JAMS --------------------------------------------------------------------------------------


def load_jams(path: str | Path, namespaces: Sequence[str] = SEGMENT_NAMESPACES, index: int = 0) -> Segmentation:
    """Read the segments of a JAMS file.

    The first namespace of ``namespaces`` that the file holds is used, and its
    ``index``-th annotation. The duration is the file's ``file_metadata.duration``,
    else the annotation's, else the last segment's end.

    Args:
        path: a ``.jams`` file.
        namespaces: JAMS segment namespaces to look for, in order of preference.
        index: which annotation of that namespace (several annotators).

    Returns:
        the :class:`Segmentation`, with ``source`` the path.

    Raises:
        ValueError: the file cannot be read, holds none of ``namespaces``, has fewer
            than ``index + 1`` such annotations, or its segments are invalid.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # jsonschema's, inside jams 0.3.5
            document = jams.load(str(path), validate=False)
    except (OSError, ValueError, jams.JamsError) as exc:
        raise ValueError(f"{path}: cannot read JAMS: {exc}") from exc
    for namespace in namespaces:
        found = document.annotations.search(namespace=f"^{namespace}$")
        if not found:
            continue
        if index >= len(found):
            raise ValueError(f"{path}: {len(found)} {namespace} annotation(s), no index {index}")
        annotation = found[index]
        intervals, labels = annotation.to_interval_values()
        duration = document.file_metadata.duration or annotation.duration
        if not duration:
            duration = float(np.max(intervals[:, 1])) if len(intervals) else 0.0
        order = np.argsort(intervals[:, 0], kind="stable") if len(intervals) else []
        intervals = _snap_touching_edges(intervals[order])
        return Segmentation(intervals, [labels[i] for i in order], float(duration), str(path))
    raise ValueError(f"{path}: no annotation in namespaces {list(namespaces)}")


def _snap_touching_edges(intervals: np.ndarray) -> np.ndarray:
    """Set each end within rounding of the next start to that start (JAMS stores time + duration)."""
    intervals = np.array(intervals, dtype=np.float64).reshape(-1, 2)
    touching = np.abs(intervals[:-1, 1] - intervals[1:, 0]) <= EDGE_TOLERANCE_SECONDS
    intervals[:-1, 1][touching] = intervals[1:, 0][touching]
    return intervals


def write_jams(
    segmentation: Segmentation,
    path: str | Path,
    namespace: str = "segment_open",
    title: str = "",
    annotator: str = "songfeel",
    sandbox: Mapping | None = None,
) -> Path:
    """Write ``segmentation`` as a JAMS file (validated against the JAMS schema).

    Args:
        segmentation: the segments to write.
        path: the ``.jams`` file to (over)write.
        namespace: JAMS segment namespace; ``segment_open`` accepts any label.
        title: the song's title, in ``file_metadata``.
        annotator: name stored in the annotation's ``annotation_metadata.annotator``.
        sandbox: JSON-serialisable extra fields stored in the annotation's sandbox
            (e.g. how a medley was made).

    Returns:
        the path written.

    Raises:
        jams.SchemaError: a label is not allowed by ``namespace``.
    """
    path = Path(path)
    document = jams.JAMS()
    document.file_metadata.duration = segmentation.duration
    document.file_metadata.title = title
    annotation = jams.Annotation(namespace=namespace, duration=segmentation.duration)
    annotation.annotation_metadata.annotator = {"name": annotator}
    annotation.annotation_metadata.data_source = segmentation.source
    if sandbox:
        annotation.sandbox.update(**dict(sandbox))
    for (start, end), label in zip(segmentation.intervals, segmentation.labels, strict=True):
        annotation.append(time=float(start), duration=float(end - start), value=label, confidence=None)
    document.annotations.append(annotation)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        document.save(str(path))
    return path


# --- SALAMI and Harmonix text files ------------------------------------------------------------


def load_salami(path: str | Path, keep_silence: bool = True, duration: float | None = None) -> Segmentation:
    """Read a SALAMI annotation text file (``parsed/textfile<N>_<level>.txt``).

    Each line is ``time<TAB>label``; a segment lasts from its time to the next
    line's time. The ``End`` line closes the last segment (lines after it are
    ignored). ``Silence`` segments stay segments (as in mir_eval's SALAMI
    evaluations) unless ``keep_silence`` is False, which leaves gaps in their place.
    Zero-length segments (two lines with the same time) are dropped with a warning.

    Args:
        path: the text file.
        keep_silence: keep ``Silence`` segments as labelled segments.
        duration: the song's duration in seconds, to close the last segment when
            the file has no ``End`` line; the ``End`` time otherwise.

    Raises:
        ValueError: the file is unreadable, a line is malformed, times decrease, or
            there is no ``End`` line and no ``duration``.
    """
    rows = _read_timed_labels(Path(path), separator="\t")
    segmentation = _segments_from_onsets(rows, duration, str(path))
    if keep_silence:
        return segmentation
    keep = [label.lower() != SALAMI_SILENCE.lower() for label in segmentation.labels]
    if not any(keep):
        raise ValueError(f"{path}: every segment is {SALAMI_SILENCE}")
    labels = [label for label, k in zip(segmentation.labels, keep, strict=True) if k]
    return Segmentation(segmentation.intervals[keep], labels, segmentation.duration, segmentation.source)


def load_harmonix(path: str | Path, duration: float | None = None) -> Segmentation:
    """Read a Harmonix Set segments file (``dataset/segments/<id>.txt``).

    Each line is ``time label`` (whitespace-separated); a segment lasts from its
    time to the next line's time and the ``end`` line closes the last segment.
    A first segment starting after 0 s leaves a gap at the start.

    Args:
        path: the text file.
        duration: the song's duration in seconds, used when there is no ``end`` line.

    Raises:
        ValueError: as for :func:`load_salami`.
    """
    rows = _read_timed_labels(Path(path), separator=None)
    return _segments_from_onsets(rows, duration, str(path))


def _read_timed_labels(path: Path, separator: str | None) -> list[tuple[float, str]]:
    """``(time, label)`` of each non-empty, non-comment line, up to and including the end line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(separator, 1) if separator else line.split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"{path}: line {number} {line!r} is not 'time label'")
        try:
            time = float(parts[0])
        except ValueError:
            raise ValueError(f"{path}: line {number}: {parts[0]!r} is not a time in seconds") from None
        rows.append((time, parts[1].strip()))
        if parts[1].strip().lower() in END_LABELS:
            break
    if not rows:
        raise ValueError(f"{path}: no segment lines")
    return rows


def _segments_from_onsets(rows: list[tuple[float, str]], duration: float | None, source: str) -> Segmentation:
    """Segments from ``(onset, label)`` rows: each lasts to the next onset; an end row closes the last."""
    times = np.array([time for time, _ in rows])
    if (np.diff(times) < 0).any():
        bad = int(np.flatnonzero(np.diff(times) < 0)[0])
        raise ValueError(f"{source}: times decrease at entry {bad + 1} ({times[bad]} s then {times[bad + 1]} s)")
    labels = [label for _, label in rows]
    if labels[-1].lower() in END_LABELS:
        end = times[-1]
        times, labels = times[:-1], labels[:-1]
    elif duration is not None:
        end = float(duration)
    else:
        raise ValueError(f"{source}: no 'End' line and no duration given")
    if len(labels) == 0:
        raise ValueError(f"{source}: no segment before the end line")
    edges = np.append(times, end)
    lengths = np.diff(edges)
    if (lengths <= 0).any():
        log.warning("%s: dropping %d zero-length segment(s)", source, int((lengths <= 0).sum()))
    keep = lengths > 0
    intervals = np.stack([edges[:-1], edges[1:]], axis=1)[keep]
    song_duration = max(float(end), float(duration or 0.0))
    return Segmentation(intervals, [label for label, k in zip(labels, keep, strict=True) if k], song_duration, source)


#: Annotation formats of :func:`load_annotation`, and the file suffix that ``"auto"`` maps to each.
ANNOTATION_FORMATS = ("jams", "salami", "harmonix")


def load_annotation(path: str | Path, fmt: str = "auto", duration: float | None = None) -> Segmentation:
    """Read a structure annotation in any supported format.

    ``fmt="auto"`` reads ``.jams`` files as JAMS and ``.txt`` files as SALAMI when
    they hold a tab, else as Harmonix (whitespace-separated).

    Args:
        path: the annotation file.
        fmt: ``"auto"``, or one of :data:`ANNOTATION_FORMATS`.
        duration: the song's duration in seconds, to close the last segment of a
            text file without an end line (ignored for JAMS).

    Raises:
        ValueError: an unknown format, a suffix ``"auto"`` cannot place, or an unreadable
            or malformed file (the message names it).
    """
    path = Path(path)
    fmt = (fmt or "auto").lower()
    if fmt == "auto":
        if path.suffix.lower() == ".jams":
            fmt = "jams"
        elif path.suffix.lower() in (".txt", ".lab"):
            try:
                fmt = "salami" if "\t" in path.read_text(encoding="utf-8", errors="replace") else "harmonix"
            except OSError as exc:
                raise ValueError(f"{path}: cannot read annotation: {exc.strerror or exc}") from exc
        else:
            raise ValueError(f"{path}: cannot tell the annotation format from the suffix {path.suffix!r} "
                             f"(give one of {ANNOTATION_FORMATS})")
    if fmt == "jams":
        return load_jams(path)
    if fmt == "salami":
        return load_salami(path, duration=duration)
    if fmt == "harmonix":
        return load_harmonix(path, duration=duration)
    raise ValueError(f"{path}: unknown annotation format {fmt!r}; use 'auto' or one of {ANNOTATION_FORMATS}")
