"""Anchor/positive/negative triplets, written by stage 03 as one CSV.

Each member of a triplet is an excerpt: a track id and a start and end time in
seconds. Columns::

    triplet_id, split, kind, detail,
    anchor_track, anchor_start_s, anchor_end_s,
    positive_track, positive_start_s, positive_end_s,
    negative_track, negative_start_s, negative_end_s

``kind`` is the triplet's source of evidence:

* ``label``: anchor and positive share their most specific label (with FMA,
  a genre of genres_all before genre_top; ``detail`` names it), the negative
  differs at the top label; whole tracks;
* ``self``: anchor and positive are two non-overlapping excerpts of one track,
  the negative an excerpt of another track;
* ``human``: a listener's odd-one-out answer: the two songs not chosen are
  anchor and positive, the odd one out is the negative; whole tracks;
  ``detail`` is ``votes=<majority>/<answers>``.

All three members of a triplet come from the same split, and the splits are
track-disjoint, as assigned in the manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from songfeel import manifest as manifest_io

log = logging.getLogger(__name__)

ROLES = ("anchor", "positive", "negative")
COLUMNS = ("triplet_id", "split", "kind", "detail") + tuple(
    f"{role}_{field}" for role in ROLES for field in ("track", "start_s", "end_s")
)


def label_chains(tracks: pd.DataFrame, label_columns: Sequence[str], hierarchy_column: str | None) -> pd.Series:
    """Per track, its labels from the most general to the most specific.

    The first element joins ``label_columns`` (e.g. ``"calm/acoustic"``, or
    FMA's genre_top); a ``hierarchy_column`` (e.g. FMA's ``genres``, joined by
    ``|``, most general first) adds the finer labels. A track with an empty
    label column gets an empty chain and takes no part in label triplets.
    """
    known = tracks.loc[:, list(label_columns)].astype(str).ne("").all(axis=1)
    top = manifest_io.label_key(tracks, label_columns)
    chains = []
    for index, label in top.items():
        if not known[index]:
            chains.append(())
            continue
        chain = [label]
        if hierarchy_column:
            chain += [g for g in str(tracks.at[index, hierarchy_column]).split("|") if g and g not in chain]
        chains.append(tuple(chain))
    return pd.Series(chains, index=tracks.index)


def label_triplets(
    tracks: pd.DataFrame,
    durations: Mapping[str, float],
    label_columns: Sequence[str],
    per_anchor: int,
    rng: np.random.Generator,
    hierarchy_column: str | None = None,
) -> list[dict]:
    """Label triplets within each split: whole-track excerpts.

    The positive shares the anchor's most specific label that another track of
    the split has (with a hierarchy: FMA's genres_all before genre_top); the
    negative differs from the anchor at the top label. The shared label is
    recorded in ``detail``.

    Args:
        tracks: manifest rows (needs ``track_id``, ``split`` and ``label_columns``).
        durations: seconds of stored audio per track id.
        label_columns: the top label (e.g. mood and style, or genre).
        per_anchor: triplets drawn per anchor track.
        rng: random generator.
        hierarchy_column: optional column of finer labels, ``|``-joined, most general first.

    Returns:
        rows of the triplet table (without ``triplet_id``); none when ``per_anchor`` is 0 or
        there are no ``label_columns`` (an unlabelled library, trained by self-supervision and
        distillation alone).
    """
    if per_anchor <= 0 or not label_columns:
        return []
    rows = []
    chains = label_chains(tracks, label_columns, hierarchy_column)
    for split, part in tracks.groupby("split", sort=True):
        part_chains = {t: c for t, c in zip(part["track_id"], chains.loc[part.index]) if c}
        members: dict[str, list[str]] = {}
        for track, chain in part_chains.items():
            for label in chain:
                members.setdefault(label, []).append(track)
        ids = list(part_chains)
        tops = np.array([part_chains[t][0] for t in ids])
        for anchor, chain in part_chains.items():
            if (tops == chain[0]).all():
                continue
            shared, positives = _most_specific_positives(anchor, chain, members, part_chains)
            if not positives:
                continue
            for _ in range(per_anchor):
                positive = positives[rng.integers(len(positives))]
                negative = _draw_other(ids, tops, chain[0], rng)
                rows.append(_row(split, "label", [(t, 0.0, durations[t]) for t in (anchor, positive, negative)],
                                 detail=shared))
    return rows


def _most_specific_positives(anchor, chain, members, chains) -> tuple[str, list[str]]:
    """The anchor's most specific label shared by another track of the same top label, and those tracks."""
    for label in reversed(chain):
        positives = [t for t in members[label] if t != anchor and chains[t][0] == chain[0]]
        if positives:
            return label, positives
    return "", []


def _draw_other(ids: list[str], tops: np.ndarray, top: str, rng: np.random.Generator, tries: int = 64) -> str:
    """A random track whose top label differs from ``top`` (rejection sampling, then an exact fallback)."""
    for _ in range(tries):
        i = int(rng.integers(len(ids)))
        if tops[i] != top:
            return ids[i]
    others = np.flatnonzero(tops != top)
    return ids[int(others[rng.integers(len(others))])]


def self_supervised_triplets(
    tracks: pd.DataFrame,
    durations: Mapping[str, float],
    excerpt_seconds: float,
    per_track: int,
    rng: np.random.Generator,
) -> list[dict]:
    """Self-supervised triplets: two excerpts of one track and one of another.

    The anchor and positive excerpts do not overlap. Tracks shorter than two
    excerpts are left out (and logged).

    Args:
        tracks: manifest rows (needs ``track_id`` and ``split``).
        durations: seconds of stored audio per track id.
        excerpt_seconds: length of every excerpt, in seconds.
        per_track: triplets drawn per anchor track.
        rng: random generator.
    """
    rows = []
    for split, part in tracks.groupby("split", sort=True):
        ids = part["track_id"].tolist()
        usable = [t for t in ids if durations[t] >= 2 * excerpt_seconds]
        for t in sorted(set(ids) - set(usable)):
            log.info("no self-supervised triplets for %s: shorter than 2 x %.1f s", t, excerpt_seconds)
        if len(usable) < 2:
            continue
        for anchor in usable:
            others = [t for t in usable if t != anchor]
            for _ in range(per_track):
                first, second = _two_disjoint_starts(durations[anchor], excerpt_seconds, rng)
                negative = others[rng.integers(len(others))]
                neg_start = rng.uniform(0.0, durations[negative] - excerpt_seconds)
                members = [
                    (anchor, first, first + excerpt_seconds),
                    (anchor, second, second + excerpt_seconds),
                    (negative, neg_start, neg_start + excerpt_seconds),
                ]
                rows.append(_row(split, "self", members))
    return rows


def _two_disjoint_starts(duration: float, length: float, rng: np.random.Generator) -> tuple[float, float]:
    """Start times (s) of two non-overlapping excerpts of ``length`` s in ``duration`` s, in random order."""
    slack = duration - 2 * length
    gap_before, gap_between = np.sort(rng.uniform(0.0, slack, size=2))
    first = gap_before
    second = length + gap_between
    return (first, second) if rng.random() < 0.5 else (second, first)


def _row(split: str, kind: str, members, detail: str = "") -> dict:
    row = {"split": split, "kind": kind, "detail": detail}
    for role, (track, start, end) in zip(ROLES, members):
        row[f"{role}_track"] = track
        row[f"{role}_start_s"] = round(float(start), 3)
        row[f"{role}_end_s"] = round(float(end), 3)
    return row


HUMAN_COLUMNS = ("song1", "song2", "song3", "odd_one_out", "annotator")


def normalise_track_id(value) -> str:
    """A manifest track id from an answer file: bare integers are FMA ids (``2`` -> ``fma:000002``)."""
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return f"fma:{int(text):06d}" if text.isdigit() else text


def read_human_answers(path: str | Path) -> pd.DataFrame:
    """Read odd-one-out answers, one row per answer, columns ``song1, song2, song3, odd_one_out, annotator``.

    Two formats are accepted:

    * songfeel's: ``song1, song2, song3, odd_one_out, annotator``, where
      ``odd_one_out`` is one of the three track ids, or empty for "can't decide";
    * MECOMP's (``mecomp_human_triplets.csv`` of mecomp-nextgen-analysis):
      ``song1, song2, song3, anchor, positive`` with FMA ids and 1-based
      positions; the odd one out is the third position. Unanswered rows (no
      anchor) are left out.

    Track ids are normalised with :func:`normalise_track_id`.

    Raises:
        ValueError: the file has neither format, or an answer names a song
            that is not one of its three (the message names the file and row).
    """
    path = Path(path)
    frame = pd.read_csv(path, dtype=str).fillna("")
    songs = ["song1", "song2", "song3"]
    if not set(songs) <= set(frame.columns):
        raise ValueError(f"{path}: expected columns song1, song2, song3 and odd_one_out or anchor, positive")
    for column in songs:
        frame[column] = frame[column].map(normalise_track_id)
    if {"anchor", "positive"} <= set(frame.columns):
        frame = frame[(frame["anchor"] != "") & (frame["positive"] != "")].copy()
        odd = []
        for index, row in frame.iterrows():
            positions = {int(float(row["anchor"])), int(float(row["positive"]))}
            if len(positions) != 2 or not positions <= {1, 2, 3}:
                raise ValueError(f"{path}: row {index + 2}: anchor and positive must be two of positions 1-3")
            odd.append(row[f"song{({1, 2, 3} - positions).pop()}"])
        frame["odd_one_out"] = odd
        frame["annotator"] = frame["annotator"] if "annotator" in frame.columns else ""
    elif "odd_one_out" in frame.columns:
        decided = frame["odd_one_out"] != ""
        frame.loc[decided, "odd_one_out"] = frame.loc[decided, "odd_one_out"].map(normalise_track_id)
        wrong = decided & ~frame.apply(lambda r: r["odd_one_out"] in (r["song1"], r["song2"], r["song3"]), axis=1)
        if wrong.any():
            raise ValueError(f"{path}: row {int(wrong.idxmax()) + 2}: odd_one_out is not one of the three songs")
        if "annotator" not in frame.columns:
            frame["annotator"] = ""
    else:
        raise ValueError(f"{path}: expected an odd_one_out column, or anchor and positive columns")
    return frame.loc[:, list(HUMAN_COLUMNS)].reset_index(drop=True)


def resolve_human_answers(answers: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """One odd one out per question (an unordered set of three songs), by majority.

    "Can't decide" answers do not vote. A question whose top votes tie is
    dropped and counted.

    Returns:
        the resolved questions (``song_a, song_b, odd_one_out, votes, answers``;
        ``song_a < song_b`` are the pair), and counts: ``answers``,
        ``undecided_answers``, ``questions``, ``tied_questions``, ``resolved_questions``.
    """
    votes: dict[tuple[str, ...], dict[str, int]] = {}
    answered: dict[tuple[str, ...], int] = {}
    undecided = 0
    for row in answers.itertuples(index=False):
        question = tuple(sorted((row.song1, row.song2, row.song3)))
        answered[question] = answered.get(question, 0) + 1
        tally = votes.setdefault(question, {})
        if row.odd_one_out == "":
            undecided += 1
            continue
        tally[row.odd_one_out] = tally.get(row.odd_one_out, 0) + 1
    rows, tied = [], 0
    for question, tally in sorted(votes.items()):
        if not tally:
            continue
        ranked = sorted(tally.items(), key=lambda item: -item[1])
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            tied += 1
            continue
        odd = ranked[0][0]
        pair = sorted(set(question) - {odd})
        rows.append({"song_a": pair[0], "song_b": pair[1], "odd_one_out": odd,
                     "votes": ranked[0][1], "answers": answered[question]})
    stats = {
        "answers": len(answers),
        "undecided_answers": undecided,
        "questions": len(votes),
        "tied_questions": tied,
        "resolved_questions": len(rows),
    }
    return pd.DataFrame(rows, columns=["song_a", "song_b", "odd_one_out", "votes", "answers"]), stats


def human_triplets(
    resolved: pd.DataFrame, splits: Mapping[str, str], durations: Mapping[str, float]
) -> tuple[list[dict], dict[str, int]]:
    """Whole-track triplets from resolved odd-one-out questions: the pair is anchor and positive.

    A question with a song that has no features, or whose songs lie in more
    than one split, is dropped and counted: triplets never cross splits.

    Returns:
        rows of the triplet table and counts ``dropped_missing_tracks``, ``dropped_cross_split``.
    """
    rows, missing, crossing = [], 0, 0
    for question in resolved.itertuples(index=False):
        members = (question.song_a, question.song_b, question.odd_one_out)
        if not all(t in durations and t in splits for t in members):
            missing += 1
            continue
        if len({splits[t] for t in members}) > 1:
            crossing += 1
            continue
        detail = f"votes={question.votes}/{question.answers}"
        rows.append(_row(splits[members[0]], "human", [(t, 0.0, durations[t]) for t in members], detail=detail))
    return rows, {"dropped_missing_tracks": missing, "dropped_cross_split": crossing}


def build_triplets(
    tracks: pd.DataFrame,
    durations: Mapping[str, float],
    label_columns: Sequence[str],
    label_per_anchor: int,
    self_per_track: int,
    excerpt_seconds: float,
    seed: int,
    hierarchy_column: str | None = None,
    human_answers: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Label, self-supervised and human triplets for every split.

    Only tracks present in ``durations`` (i.e. in the feature store) are used.

    Args:
        human_answers: odd-one-out answers from :func:`read_human_answers`, or None.

    Returns:
        the triplet table (see the module docstring), sorted by split and kind,
        and a report: triplets per ``split/kind`` and the human answers' counts.
    """
    rng = np.random.default_rng(seed)
    tracks = tracks[tracks["track_id"].isin(list(durations))]
    rows = label_triplets(tracks, durations, label_columns, label_per_anchor, rng, hierarchy_column)
    rows += self_supervised_triplets(tracks, durations, excerpt_seconds, self_per_track, rng)
    report: dict = {}
    if human_answers is not None:
        resolved, report["human"] = resolve_human_answers(human_answers)
        human_rows, dropped = human_triplets(resolved, dict(zip(tracks["track_id"], tracks["split"])), durations)
        report["human"].update(dropped)
        rows += human_rows
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "triplet_id"])
    table = table.sort_values(["split", "kind"], kind="stable").reset_index(drop=True)
    table.insert(0, "triplet_id", np.arange(len(table)))
    report["triplets"] = summary(table)
    return table, report


def summary(table: pd.DataFrame) -> dict[str, int]:
    """Number of triplets per ``split/kind``."""
    counts = table.groupby(["split", "kind"]).size()
    return {f"{split}/{kind}": int(n) for (split, kind), n in counts.items()}
