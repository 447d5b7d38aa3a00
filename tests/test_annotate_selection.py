"""Which question to ask: coverage, repeats, and the uncertainty mode on real numbers."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from songfeel.annotate.clips import build_library
from songfeel.annotate.selection import (
    annotator_rng,
    choose_songs,
    load_embeddings,
    pairwise_distances,
    repeat_positions,
    rotate,
    uncertainty_margin,
)


def test_pairwise_distances_and_margin_on_worked_numbers():
    # On a line at 0, 1, 2: d(0,1) = 1, d(0,2) = 2, d(1,2) = 1. The two closest pairs tie:
    # the first or the last point could be the odd one out, so the model cannot decide.
    line = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(pairwise_distances(line), [1.0, 2.0, 1.0])
    assert uncertainty_margin(line) == 0.0
    # A tight pair and a far point: d = 0.1, 5, 4.9 -> (4.9 - 0.1) / 4.9.
    clear = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0]])
    assert uncertainty_margin(clear) == pytest.approx(4.8 / 4.9)
    # A 3-4-5 right triangle: d = 3, 4, 5 -> (4 - 3) / 4.
    assert uncertainty_margin(np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])) == pytest.approx(0.25)
    # Equilateral (every pair as close) and identical points: 0.
    equilateral = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    assert uncertainty_margin(equilateral) == pytest.approx(0.0, abs=1e-12)
    assert uncertainty_margin(np.ones((3, 4))) == 0.0
    with pytest.raises(ValueError):
        uncertainty_margin(np.ones((2, 4)))


def test_repeat_positions():
    positions = repeat_positions("a" * 32, total=20, fraction=0.1, min_gap=3, seed=0)
    assert len(positions) == 2 and all(4 <= p <= 20 for p in positions)
    assert positions == repeat_positions("a" * 32, total=20, fraction=0.1, min_gap=3, seed=0)
    draws = {repeat_positions(f"{i:032x}", total=20, fraction=0.1, min_gap=3, seed=0) for i in range(50)}
    assert len(draws) > 10  # listeners get their repeats at different places
    assert len(repeat_positions("b" * 32, total=100, fraction=0.1, min_gap=3, seed=0)) == 10
    assert repeat_positions("b" * 32, total=20, fraction=0.0, min_gap=3, seed=0) == frozenset()
    assert repeat_positions("b" * 32, total=3, fraction=0.5, min_gap=3, seed=0) == frozenset()


def test_rotate_moves_every_clip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rotated = rotate(["a", "b", "c"], rng)
        assert sorted(rotated) == ["a", "b", "c"] and all(x != y for x, y in zip(rotated, ["a", "b", "c"]))


def test_least_asked_songs_first_covers_the_demo_evenly_within_splits(demo_manifest):
    splits = dict(zip(demo_manifest["track_id"], demo_manifest["split"]))
    exposures = Counter({t: 0 for t in splits})
    for n in range(300):
        songs = choose_songs(exposures, splits, set(), annotator_rng(0, "listener", n))
        assert len(set(songs)) == 3 and len({splits[s] for s in songs}) == 1
        assert exposures[songs[0]] == min(exposures.values())  # it starts from a least-asked song
        exposures.update(songs)
    counts = np.array(list(exposures.values()))
    assert counts.sum() == 900 and counts.max() - counts.min() <= 2


def test_choose_songs_avoids_questions_asked_before_and_needs_three_songs_per_split():
    splits = {"a": "train", "b": "train", "c": "train", "d": "train", "x": "test", "y": "test"}
    exposures = {t: 0 for t in splits}
    rng = np.random.default_rng(0)
    asked = set()
    for _ in range(4):  # the four questions of a, b, c, d
        songs = choose_songs(exposures, splits, asked, rng)
        assert frozenset(songs) not in asked and set(songs) <= {"a", "b", "c", "d"}
        asked.add(frozenset(songs))
    assert len(asked) == 4
    assert set(choose_songs(exposures, splits, asked, rng)) <= {"a", "b", "c", "d"}  # all asked: one again
    assert choose_songs({"x": 0, "y": 0}, splits, set(), rng) is None
    mixed = choose_songs({"a": 0, "b": 0, "x": 0}, splits, set(), rng, same_split=False)
    assert set(mixed) == {"a", "b", "x"}


def brute_force_least_sure(first, companions, vectors):
    """The oracle: every pair of companions with ``first``, the smallest margin."""
    return min(itertools.combinations(companions, 2),
               key=lambda pair: uncertainty_margin(np.stack([vectors[first], vectors[pair[0]], vectors[pair[1]]])))


def test_uncertainty_mode_picks_the_pair_with_nearly_equal_distances():
    # s0 is the least asked. s1 and s2 lie at distances 1 and 1.02 from it (margin 0.0196...),
    # s3, s4 are a tight pair far away, s5 alone: every other question is far more certain.
    vectors = {"s0": np.array([0.0, 0.0]), "s1": np.array([1.0, 0.0]), "s2": np.array([0.0, 1.02]),
               "s3": np.array([9.0, 9.0]), "s4": np.array([9.1, 9.0]), "s5": np.array([-6.0, 3.0])}
    exposures = {"s0": 0, "s1": 3, "s2": 3, "s3": 3, "s4": 3, "s5": 3}
    splits = dict.fromkeys(vectors, "train")
    songs = choose_songs(exposures, splits, set(), np.random.default_rng(0), embeddings=vectors)
    assert songs[0] == "s0" and set(songs[1:]) == {"s1", "s2"}
    # d(s0,s1) = 1, d(s0,s2) = 1.02, d(s1,s2) = sqrt(1 + 1.02^2) = 1.4284: margin = 0.02 / 1.02.
    assert uncertainty_margin(np.stack([vectors[s] for s in songs])) == pytest.approx(0.02 / 1.02)
    assert set(brute_force_least_sure("s0", ["s1", "s2", "s3", "s4", "s5"], vectors)) == {"s1", "s2"}
    # Once asked, the next least sure question of s0 follows.
    again = choose_songs(exposures, splits, {frozenset(songs)}, np.random.default_rng(0), embeddings=vectors)
    pairs = [p for p in itertools.combinations(["s1", "s2", "s3", "s4", "s5"], 2) if set(p) != {"s1", "s2"}]
    expected = min(pairs, key=lambda p: uncertainty_margin(np.stack([vectors["s0"], vectors[p[0]], vectors[p[1]]])))
    assert again[0] == "s0" and set(again[1:]) == set(expected)


def test_uncertainty_mode_on_real_audio_features(demo_manifest, tmp_path):
    """Embeddings from the real snippets (mean MFCCs): the choice matches a brute-force oracle."""
    import librosa

    rows = demo_manifest[demo_manifest["split"] == "train"].head(10)
    library = build_library(rows, tmp_path, snippet_seconds=10.0, sample_rate=22050)
    vectors = {}
    for clip in library.clips.values():
        audio, rate = sf.read(clip.path, dtype="float32")
        mfcc = librosa.feature.mfcc(y=audio, sr=rate, n_mfcc=13)
        vectors[clip.track_id] = mfcc.mean(axis=1)
    ids = sorted(vectors)
    splits = dict.fromkeys(ids, "train")
    margins = {q: uncertainty_margin(np.stack([vectors[t] for t in q])) for q in itertools.combinations(ids, 3)}
    assert len(set(np.round(list(margins.values()), 9))) > 100  # real, varied numbers
    rng_ids = np.random.default_rng(1)
    for trial in range(5):
        exposures = {t: int(rng_ids.integers(2, 6)) for t in ids}
        first = ids[trial]
        exposures[first] = 0
        songs = choose_songs(exposures, splits, set(), np.random.default_rng(trial), embeddings=vectors, pool=12)
        assert songs[0] == first
        oracle = brute_force_least_sure(first, [t for t in ids if t != first], vectors)
        assert set(songs[1:]) == set(oracle)
    # A smaller pool keeps to the least-asked companions.
    exposures = {t: i for i, t in enumerate(ids)}
    songs = choose_songs(exposures, splits, set(), np.random.default_rng(0), embeddings=vectors, pool=3)
    assert songs[0] == ids[0] and set(songs[1:]) <= set(ids[1:4])
    assert set(songs[1:]) == set(brute_force_least_sure(ids[0], ids[1:4], vectors))


def test_load_embeddings(tmp_path):
    ids = ["demo:a", "demo:b", "fma:000002"]
    matrix = np.arange(12, dtype=float).reshape(3, 4) / 7
    frame = pd.DataFrame(matrix, columns=[f"e{i}" for i in range(4)])
    frame.insert(0, "track_id", ids)
    frame.to_csv(tmp_path / "e.csv", index=False)
    np.savez(tmp_path / "e.npz", track_ids=np.array(ids), embeddings=matrix)
    for name in ("e.csv", "e.npz"):
        loaded = load_embeddings(tmp_path / name)
        assert list(loaded) == ids
        np.testing.assert_allclose(np.stack([loaded[t] for t in ids]), matrix)
    frame.iloc[1, 2] = np.nan
    frame.to_csv(tmp_path / "nan.csv", index=False)
    np.savez(tmp_path / "short.npz", track_ids=np.array(ids[:2]), embeddings=matrix)
    np.save(tmp_path / "e.npy", matrix)
    for name, message in (("nan.csv", "NaN"), ("short.npz", "2 track ids"), ("e.npy", ".csv or .npz")):
        with pytest.raises(ValueError, match=message):
            load_embeddings(tmp_path / name)
