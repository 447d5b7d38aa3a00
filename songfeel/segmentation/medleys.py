"""A structure benchmark from real recordings, needing no annotation download: medleys.

A medley concatenates sections cut from real full-length songs in a pattern with
repeats (e.g. ``A B A C B``): a repeated letter reuses the very same excerpt, so
its boundaries and labels are known exactly. Successive sections are joined by an
equal-power crossfade (``sin``/``cos`` gains, whose squares sum to 1) and the
boundary is the centre of the crossfade. Each section is scaled to the same RMS
level, and with probability ``same_song_probability`` a new letter is cut from a
song the medley already uses (another part of it), so that neither loudness nor
timbre alone gives the boundaries away.

Each split's medleys are cut only from that split's source songs (:func:`build_splits`; the
pipeline passes the manifest's own split), so that no recording is heard in two splits. Every random choice comes from a seeded ``numpy.random.Generator``.

Outputs of :func:`build_medleys`, under ``out_dir``:

* ``<medley_id>.flac`` (or ``.wav``): mono audio at ``sample_rate``;
* ``<medley_id>.jams``: the segments (namespace ``segment_open``), with the
  pattern and the source of each section in the annotation's sandbox;
* ``manifest.csv``: one row per medley, columns :data:`MANIFEST_COLUMNS`;
* ``sections.csv``: one row per section, columns :data:`SECTION_COLUMNS`;
* ``sources.csv``: the usable sources, columns :data:`SOURCE_COLUMNS`;
* ``skipped.csv``: the sources that could not be used, columns ``path, error``.

:class:`MedleySampler` draws medleys of the same kind in memory, with random
crossfade lengths and section levels, so that SSM-Net can train on fresh medleys
every epoch (data augmentation) while the written ones stay a fixed benchmark.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from songfeel.audio import load_audio
from songfeel.errors import AudioError
from songfeel.segmentation.annotations import Segmentation, write_jams

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("medley_id", "split", "audio_path", "jams_path", "duration_seconds",
                    "n_sections", "pattern", "n_source_songs", "sources")
SECTION_COLUMNS = ("medley_id", "section", "label", "start_seconds", "end_seconds",
                   "source_path", "source_start_seconds")
SKIPPED_COLUMNS = ("path", "error")
SOURCE_COLUMNS = ("path", "duration_seconds")

#: RMS level (linear, about -20 dBFS) to which every section is scaled.
SECTION_RMS = 0.1

#: Attempts at drawing an excerpt that does not overlap the song's other excerpts.
EXCERPT_ATTEMPTS = 20

#: RMS (linear, -80 dBFS) under which :class:`MedleySampler` treats an excerpt as silence and draws again:
#: some game-soundtrack files are ambient effects with long silent stretches.
SILENT_RMS = 1e-4

#: Draws of a whole medley :class:`MedleySampler` tries before giving up on a key.
MEDLEY_ATTEMPTS = 20


@dataclass(frozen=True)
class Excerpt:
    """A section's audio: ``source_path`` from ``start_seconds`` for ``length_seconds`` (plus crossfade margins)."""

    source_path: str
    start_seconds: float
    length_seconds: float


def random_pattern(n_sections: int, rng: np.random.Generator, repeat_probability: float) -> str:
    """A section pattern such as ``ABACB``: starts with ``A``, no letter twice in a row, at least one repeat.

    Each next section reuses an earlier letter (other than the previous one) with
    probability ``repeat_probability``, else takes a new letter.

    Raises:
        ValueError: ``n_sections < 3`` (a repeat needs a different section between).
    """
    if n_sections < 3:
        raise ValueError(f"a pattern with a repeat needs at least 3 sections, got {n_sections}")
    while True:
        pattern = "A"
        for _ in range(n_sections - 1):
            reusable = sorted(set(pattern) - {pattern[-1]})
            if reusable and rng.random() < repeat_probability:
                pattern += reusable[int(rng.integers(len(reusable)))]
            else:
                pattern += string.ascii_uppercase[len(set(pattern))]
        if len(set(pattern)) < len(pattern) and len(set(pattern)) <= 26:
            return pattern


def probe_sources(paths: Sequence[str | Path], sample_rate: int, min_seconds: float
                  ) -> tuple[dict[str, float], pd.DataFrame]:
    """Decode each source once: duration in seconds of the usable ones, and the skipped ones.

    Returns:
        ``{path: duration_seconds}`` and a DataFrame ``path, error`` of the sources that
        fail to decode, are silent or last less than ``min_seconds`` (each one logged).
    """
    durations, skipped = {}, []
    for path in paths:
        try:
            audio = load_audio(path, sample_rate, min_seconds=min_seconds)
        except AudioError as exc:
            log.warning("medleys: skipping source %s", exc)
            skipped.append({"path": str(path), "error": exc.cause})
            continue
        durations[str(path)] = len(audio) / sample_rate
    return durations, pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))


def draw_excerpts(pattern: str, durations: Mapping[str, float], rng: np.random.Generator,
                  section_seconds: tuple[float, float], margin_seconds: float,
                  same_song_probability: float,
                  accept: Callable[[Excerpt], bool] | None = None) -> dict[str, Excerpt]:
    """One excerpt per distinct letter of ``pattern``.

    A letter's source is, with probability ``same_song_probability``, a song already
    used by this medley (an excerpt not overlapping its others), else a song not
    yet used (any song once all are used). Lengths are uniform in ``section_seconds``,
    shortened to what the song holds; ``margin_seconds`` of audio must exist on
    both sides of an excerpt for the crossfades. With ``accept``, a drawn excerpt it
    refuses (e.g. silence) counts as a failed attempt, like an overlapping one.

    Returns:
        letter -> :class:`Excerpt`.

    Raises:
        ValueError: no source is long enough for the shortest section, or ``accept``
            refused every attempt at a section.
    """
    shortest = section_seconds[0] + 2 * margin_seconds
    songs = sorted(path for path, duration in durations.items() if duration >= shortest)
    if not songs:
        raise ValueError(f"no source lasts the {shortest:.1f} s a section needs")
    excerpts: dict[str, Excerpt] = {}
    for letter in dict.fromkeys(pattern):
        used = sorted({e.source_path for e in excerpts.values()})
        excerpt = None
        if used and rng.random() < same_song_probability:
            excerpt = _excerpt_beside(used[int(rng.integers(len(used)))], excerpts.values(), durations, rng,
                                      section_seconds, margin_seconds, accept)
        if excerpt is None:
            fresh = [song for song in songs if song not in used] or songs
            song = fresh[int(rng.integers(len(fresh)))]
            excerpt = _excerpt_beside(song, excerpts.values(), durations, rng, section_seconds, margin_seconds,
                                      accept)
        if excerpt is None:  # every part of the song is taken: overlap is allowed rather than failing
            song = songs[int(rng.integers(len(songs)))]
            excerpt = _excerpt_beside(song, [], durations, rng, section_seconds, margin_seconds, accept)
        if excerpt is None:  # only with ``accept``: without it an excerpt of the shortest length always fits
            raise ValueError(f"no acceptable excerpt for section {letter} in {EXCERPT_ATTEMPTS} attempts")
        excerpts[letter] = excerpt
    return excerpts


def _excerpt_beside(song: str, taken, durations: Mapping[str, float], rng: np.random.Generator,
                    section_seconds: tuple[float, float], margin_seconds: float,
                    accept: Callable[[Excerpt], bool] | None = None) -> Excerpt | None:
    """A random excerpt of ``song`` not overlapping the ``taken`` excerpts of that song (and accepted), or None."""
    duration = durations[song]
    others = [(e.start_seconds - margin_seconds, e.start_seconds + e.length_seconds + margin_seconds)
              for e in taken if e.source_path == song]
    for _ in range(EXCERPT_ATTEMPTS):
        length = min(rng.uniform(*section_seconds), duration - 2 * margin_seconds)
        if length < section_seconds[0]:
            return None
        start = rng.uniform(margin_seconds, duration - margin_seconds - length)
        span = (start - margin_seconds, start + length + margin_seconds)
        if all(span[1] <= a or span[0] >= b for a, b in others):
            excerpt = Excerpt(song, float(start), float(length))
            if accept is None or accept(excerpt):
                return excerpt
    return None


def equal_power_fades(n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Fade-in ``sin(pi/2 t)`` and fade-out ``cos(pi/2 t)`` gains over ``n_samples`` (squares sum to 1)."""
    phase = (np.arange(n_samples, dtype=np.float64) + 0.5) / max(n_samples, 1) * (np.pi / 2)
    return np.sin(phase).astype(np.float32), np.cos(phase).astype(np.float32)


def _cut(source: np.ndarray, begin: int, end: int) -> np.ndarray:
    """A float32 copy of ``source[begin:end]``, zero-padded where the range leaves the source (rounding)."""
    piece = np.zeros(end - begin, dtype=np.float32)
    inside = source[max(begin, 0) : min(end, len(source))]
    piece[max(-begin, 0) : max(-begin, 0) + len(inside)] = inside
    return piece


def render_medley(pattern: str, excerpts: Mapping[str, Excerpt], sample_rate: int,
                  crossfade_seconds: float, source_audio: Mapping[str, np.ndarray],
                  gains_db: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mix the sections of ``pattern`` with equal-power crossfades centred on the boundaries.

    Section ``k`` sounds over ``[b_k - c/2, b_{k+1} + c/2]`` (``c`` the crossfade,
    ``b`` the boundaries, without the margins at the medley's two ends), its audio
    taken from its source around the excerpt and scaled to :data:`SECTION_RMS`
    times ``gains_db[k]`` (in dB; None for 0 dB everywhere).

    Returns:
        float32 mono audio, shape (n_samples,), peak at most 0.99; and the section
        edges in seconds, shape (n_sections + 1,), from 0 to the duration.
    """
    half = int(round(crossfade_seconds * sample_rate / 2))
    lengths = [int(round(excerpts[letter].length_seconds * sample_rate)) for letter in pattern]
    edges = np.concatenate([[0], np.cumsum(lengths)])
    mix = np.zeros(edges[-1], dtype=np.float32)
    fade_in, fade_out = equal_power_fades(2 * half)
    gains = np.zeros(len(pattern)) if gains_db is None else np.asarray(gains_db, dtype=np.float64)
    if gains.shape != (len(pattern),):
        raise ValueError(f"gains_db needs one value per section ({len(pattern)}), got shape {gains.shape}")
    for k, letter in enumerate(pattern):
        excerpt = excerpts[letter]
        source = source_audio[excerpt.source_path]
        start = int(round(excerpt.start_seconds * sample_rate))
        pre = half if k > 0 else 0
        post = half if k < len(pattern) - 1 else 0
        piece = _cut(source, start - pre, start + lengths[k] + post)
        rms = float(np.sqrt(np.mean(piece[pre : pre + lengths[k]] ** 2)))
        piece *= np.float32(SECTION_RMS * 10 ** (gains[k] / 20) / max(rms, 1e-6))
        if pre:
            piece[: 2 * half] *= fade_in
        if post:
            piece[-2 * half :] *= fade_out
        mix[edges[k] - pre : edges[k] - pre + len(piece)] += piece
    peak = float(np.abs(mix).max())
    if peak > 0.99:
        mix *= np.float32(0.99 / peak)
    return mix, edges / sample_rate


def build_medleys(
    source_paths: Sequence[str | Path],
    out_dir: str | Path,
    n_medleys: int,
    seed: int,
    *,
    sample_rate: int,
    n_sections: tuple[int, int],
    section_seconds: tuple[float, float],
    crossfade_seconds: float,
    same_song_probability: float,
    repeat_probability: float,
    audio_format: str,
    split: str = "test",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Make ``n_medleys`` medleys from ``source_paths`` (one split's songs) and write them to ``out_dir``.

    The medleys' shape comes from the ``medleys`` section of ``conf/segmentation/default.yaml``
    (:func:`songfeel.segmentation.dataset.build_medley_benchmark` passes it).

    Medley ``i`` draws everything from ``numpy.random.default_rng([seed, i])``, so it
    does not depend on how many medleys are made. Sources that fail to decode or are
    shorter than one section plus the crossfade are skipped (logged and listed).

    Args:
        source_paths: real full-length songs, in any format :func:`songfeel.audio.load_audio` reads.
        out_dir: output folder (created).
        n_medleys: number of medleys.
        seed: the seed.
        sample_rate: Hz of the written audio.
        n_sections: inclusive range of the number of sections per medley (>= 3).
        section_seconds: range of section lengths in seconds (before the song's own limit).
        crossfade_seconds: crossfade length in seconds; the boundary is its centre.
        same_song_probability: chance that a new letter is cut from a song the medley already uses.
        repeat_probability: chance that a section repeats an earlier letter (:func:`random_pattern`).
        audio_format: ``"flac"`` or ``"wav"``.
        split: name stored in the manifest and the medley ids (``<split>_<i:04d>``).

    Returns:
        the manifest (columns :data:`MANIFEST_COLUMNS`) and the skipped sources (``path, error``),
        also written as ``manifest.csv``, ``sections.csv`` and ``skipped.csv`` in ``out_dir``,
        beside ``sources.csv`` (the usable sources and their durations).

    Raises:
        ValueError: no usable source, or invalid ranges.
    """
    if n_sections[0] < 3 or n_sections[0] > n_sections[1] or not 0 < section_seconds[0] <= section_seconds[1]:
        raise ValueError(f"invalid n_sections {n_sections} or section_seconds {section_seconds}")
    if not 0 <= crossfade_seconds < section_seconds[0]:
        raise ValueError(f"crossfade_seconds {crossfade_seconds} must be in [0, {section_seconds[0]})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    margin = crossfade_seconds / 2
    durations, skipped = probe_sources(source_paths, sample_rate, section_seconds[0] + 2 * margin)
    skipped.to_csv(out_dir / "skipped.csv", index=False)
    pd.DataFrame({"path": list(durations), "duration_seconds": list(durations.values())},
                 columns=list(SOURCE_COLUMNS)).to_csv(out_dir / "sources.csv", index=False)
    if not durations:
        raise ValueError(f"no usable source among {len(source_paths)} (see {out_dir / 'skipped.csv'})")
    rows, sections = [], []
    for index in range(n_medleys):
        rng = np.random.default_rng([seed, index])
        pattern = random_pattern(int(rng.integers(n_sections[0], n_sections[1] + 1)), rng, repeat_probability)
        excerpts = draw_excerpts(pattern, durations, rng, section_seconds, margin, same_song_probability)
        medley_id = f"{split}_{index:04d}"
        row, medley_sections = _write_medley(medley_id, split, pattern, excerpts, out_dir, sample_rate,
                                             crossfade_seconds, audio_format)
        rows.append(row)
        sections.extend(medley_sections)
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    manifest.to_csv(out_dir / "manifest.csv", index=False)
    pd.DataFrame(sections, columns=list(SECTION_COLUMNS)).to_csv(out_dir / "sections.csv", index=False)
    log.info("medleys: %d %s medleys in %s from %d sources (%d skipped)",
             len(manifest), split, out_dir, len(durations), len(skipped))
    return manifest, skipped


def _write_medley(medley_id: str, split: str, pattern: str, excerpts: Mapping[str, Excerpt], out_dir: Path,
                  sample_rate: int, crossfade_seconds: float, audio_format: str) -> tuple[dict, list[dict]]:
    """Render one medley, write its audio and JAMS; its manifest row and section rows."""
    sources = sorted({e.source_path for e in excerpts.values()})
    source_audio = {path: load_audio(path, sample_rate) for path in sources}
    audio, edges = render_medley(pattern, excerpts, sample_rate, crossfade_seconds, source_audio)
    duration = len(audio) / sample_rate
    segmentation = Segmentation.from_boundaries(edges[1:-1], list(pattern), duration, medley_id)
    audio_path = out_dir / f"{medley_id}.{audio_format}"
    sf.write(audio_path, audio, sample_rate)
    section_rows = [
        {"medley_id": medley_id, "section": k, "label": letter, "start_seconds": float(edges[k]),
         "end_seconds": float(edges[k + 1]), "source_path": excerpts[letter].source_path,
         "source_start_seconds": excerpts[letter].start_seconds}
        for k, letter in enumerate(pattern)
    ]
    jams_path = write_jams(segmentation, out_dir / f"{medley_id}.jams", title=medley_id, annotator="songfeel.medleys",
                           sandbox={"pattern": pattern, "crossfade_seconds": crossfade_seconds,
                                    "sections": [{k: r[k] for k in ("label", "source_path", "source_start_seconds")}
                                                 for r in section_rows]})
    row = {"medley_id": medley_id, "split": split, "audio_path": str(audio_path), "jams_path": str(jams_path),
           "duration_seconds": duration, "n_sections": len(pattern), "pattern": pattern,
           "n_source_songs": len(sources), "sources": ";".join(sources)}
    return row, section_rows


def build_splits(
    sources_by_split: Mapping[str, Sequence[str | Path]],
    out_dir: str | Path,
    n_medleys: Mapping[str, int],
    seed: int,
    **medley_options,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build each split's medleys from its own source songs in ``out_dir/<split>``.

    Split ``k`` (in ``sources_by_split`` order) is seeded with ``seed + 1000 (k + 1)``.

    Args:
        sources_by_split: split name -> its source songs (disjoint across splits).
        out_dir: output folder; ``manifest.csv`` and ``skipped.csv`` cover every split.
        n_medleys: split name -> number of medleys (splits absent or 0 are not built).
        **medley_options: passed to :func:`build_medleys`.

    Returns:
        the manifest of all medleys and the skipped sources (with a ``split`` column).
    """
    out_dir = Path(out_dir)
    manifests, skipped = [], []
    for position, (split, paths) in enumerate(sources_by_split.items()):
        if not n_medleys.get(split):
            continue
        log.info("%d %s medleys from %d source songs", n_medleys[split], split, len(paths))
        manifest, split_skipped = build_medleys(paths, out_dir / split, n_medleys[split], seed + 1000 * (position + 1),
                                                split=split, **medley_options)
        manifests.append(manifest)
        skipped.append(split_skipped.assign(split=split))
    manifest = pd.concat(manifests, ignore_index=True) if manifests else pd.DataFrame(columns=list(MANIFEST_COLUMNS))
    skipped_all = (pd.concat(skipped, ignore_index=True) if skipped
                   else pd.DataFrame(columns=[*SKIPPED_COLUMNS, "split"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(out_dir / "manifest.csv", index=False)
    skipped_all.to_csv(out_dir / "skipped.csv", index=False)
    return manifest, skipped_all


class MedleySampler:
    """Medleys drawn in memory from one split's source songs: fresh training data every epoch.

    Its settings come from conf (:func:`songfeel.segmentation.dataset.medley_sampler`).
    The generator is :func:`build_medleys`'s (:func:`random_pattern`,
    :func:`draw_excerpts`, :func:`render_medley`) with two augmentations per medley:
    the crossfade length is uniform in ``crossfade_seconds`` and each section's level
    is moved by a gain uniform in ``[-gain_db, +gain_db]`` dB, so that neither a fixed
    fade shape nor equal loudness marks the boundaries. A draw with a silent section
    (RMS below :data:`SILENT_RMS`) is replaced by the next draw of the same generator. The sources are decoded once
    (at ``sample_rate``) and kept in memory as float16, about 2.6 MB per minute of audio
    at 22050 Hz. Medley ``key`` draws everything from ``numpy.random.default_rng([seed, *key])``.

    Args:
        source_paths: real songs of one split (:func:`songfeel.audio.load_audio` formats).
        sample_rate: Hz of the medleys.
        n_sections: inclusive range of sections per medley (>= 3).
        section_seconds: range of section lengths, in seconds.
        crossfade_seconds: range of crossfade lengths, in seconds (low <= high < shortest section).
        same_song_probability: chance that a new letter is cut from a song the medley already uses.
        repeat_probability: chance that a section repeats an earlier letter.
        gain_db: largest level change of a section, in dB (>= 0).
        seed: the seed.
        progress: show a tqdm bar while decoding.

    Raises:
        ValueError: invalid ranges, or no source decodes to at least one section plus the
            crossfade margins (the skipped sources are in :attr:`skipped`).
    """

    def __init__(self, source_paths: Sequence[str | Path], *, sample_rate: int, n_sections: tuple[int, int],
                 section_seconds: tuple[float, float], crossfade_seconds: tuple[float, float],
                 same_song_probability: float, repeat_probability: float, gain_db: float, seed: int,
                 progress: bool = True) -> None:
        n_sections = (int(n_sections[0]), int(n_sections[1]))
        section_seconds = (float(section_seconds[0]), float(section_seconds[1]))
        crossfade_seconds = (float(crossfade_seconds[0]), float(crossfade_seconds[1]))
        if n_sections[0] < 3 or n_sections[0] > n_sections[1] or not 0 < section_seconds[0] <= section_seconds[1]:
            raise ValueError(f"invalid n_sections {n_sections} or section_seconds {section_seconds}")
        if not 0 <= crossfade_seconds[0] <= crossfade_seconds[1] < section_seconds[0]:
            raise ValueError(f"crossfade_seconds {crossfade_seconds} must be a range in [0, {section_seconds[0]})")
        if gain_db < 0:
            raise ValueError(f"gain_db must be >= 0, got {gain_db}")
        self.sample_rate, self.n_sections, self.section_seconds = int(sample_rate), n_sections, section_seconds
        self.crossfade_seconds, self.gain_db, self.seed = crossfade_seconds, float(gain_db), int(seed)
        self.same_song_probability, self.repeat_probability = float(same_song_probability), float(repeat_probability)
        self.margin_seconds = crossfade_seconds[1] / 2
        self.audio: dict[str, np.ndarray] = {}
        skipped = []
        for path in tqdm(sorted({str(p) for p in source_paths}), desc="decode medley sources", unit="song",
                         disable=not progress):
            try:
                audio = load_audio(path, self.sample_rate, min_seconds=section_seconds[0] + 2 * self.margin_seconds)
            except AudioError as exc:
                log.warning("medley sampler: skipping source %s", exc)
                skipped.append({"path": path, "error": exc.cause})
                continue
            self.audio[path] = audio.astype(np.float16)
        self.skipped = pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))
        if not self.audio:
            raise ValueError(f"no usable source among {len(source_paths)} for the medley sampler")
        self.durations = {path: len(audio) / self.sample_rate for path, audio in self.audio.items()}

    def draw(self, key: Sequence[int]) -> tuple[np.ndarray, Segmentation]:
        """The medley of ``key`` (e.g. ``(epoch, index)``).

        Returns:
            float32 mono audio of shape (n_samples,) at :attr:`sample_rate`, and its
            segmentation (exact boundaries at the crossfade centres, one letter per section).

        Raises:
            ValueError: :data:`MEDLEY_ATTEMPTS` draws all held a silent section.
        """
        rng = np.random.default_rng([self.seed, *(int(k) for k in key)])
        for _ in range(MEDLEY_ATTEMPTS):
            pattern = random_pattern(int(rng.integers(self.n_sections[0], self.n_sections[1] + 1)), rng,
                                     self.repeat_probability)
            try:
                excerpts = draw_excerpts(pattern, self.durations, rng, self.section_seconds, self.margin_seconds,
                                         self.same_song_probability, accept=self._audible)
            except ValueError:
                continue
            break
        else:
            raise ValueError(f"medley {tuple(key)}: {MEDLEY_ATTEMPTS} draws all held a silent section "
                             f"(RMS below {SILENT_RMS})")
        crossfade = float(rng.uniform(*self.crossfade_seconds))
        gains = rng.uniform(-self.gain_db, self.gain_db, len(pattern)) if self.gain_db else None
        # render_medley copies each section into float32 (_cut): no need to convert whole songs.
        audio, edges = render_medley(pattern, excerpts, self.sample_rate, crossfade, self.audio, gains)
        name = "medley_" + "_".join(str(int(k)) for k in key)
        return audio, Segmentation.from_boundaries(edges[1:-1], list(pattern), len(audio) / self.sample_rate, name)

    def _audible(self, excerpt: Excerpt) -> bool:
        """Whether the excerpt's RMS reaches :data:`SILENT_RMS`."""
        begin = int(round(excerpt.start_seconds * self.sample_rate))
        piece = self.audio[excerpt.source_path][begin : begin + int(round(excerpt.length_seconds * self.sample_rate))]
        return piece.size > 0 and float(np.sqrt(np.mean(piece.astype(np.float64) ** 2))) >= SILENT_RMS
