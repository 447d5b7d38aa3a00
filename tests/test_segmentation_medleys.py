"""Medleys of real demo songs: exact boundaries, repeats, splits, skipped sources, and Foote on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.signal
import soundfile as sf
from conftest import foote_settings, segmentation_conf

from songfeel.audio import load_audio
from songfeel.segmentation.annotations import load_jams
from songfeel.segmentation.baselines import foote_segmentation
from songfeel.segmentation.dataset import medley_options, sampler_options
from songfeel.segmentation.evaluation import score
from songfeel.segmentation.medleys import (
    MANIFEST_COLUMNS,
    SECTION_RMS,
    SOURCE_COLUMNS,
    Excerpt,
    MedleySampler,
    build_medleys,
    build_splits,
    equal_power_fades,
    random_pattern,
    render_medley,
)

pytestmark = pytest.mark.filterwarnings("ignore:Passing a schema to Validator:DeprecationWarning")

#: conf/segmentation/default.yaml's medleys: the options of build_medleys and of MedleySampler.
MEDLEYS, SAMPLER = medley_options(segmentation_conf()), sampler_options(segmentation_conf())
SAMPLE_RATE = MEDLEYS["sample_rate"]


def test_random_pattern_repeats_without_immediate_repetition():
    rng = np.random.default_rng(0)
    for _ in range(50):
        pattern = random_pattern(int(rng.integers(3, 9)), rng, MEDLEYS["repeat_probability"])
        assert pattern[0] == "A"
        assert all(a != b for a, b in zip(pattern[:-1], pattern[1:], strict=True))
        assert len(set(pattern)) < len(pattern)
        letters = list(dict.fromkeys(pattern))
        assert letters == [chr(ord("A") + k) for k in range(len(letters))]  # new letters in order
    with pytest.raises(ValueError):
        random_pattern(2, rng, MEDLEYS["repeat_probability"])


def test_equal_power_fades_keep_power_constant():
    fade_in, fade_out = equal_power_fades(1000)
    np.testing.assert_allclose(fade_in**2 + fade_out**2, 1.0, atol=1e-6)
    assert fade_in[0] < 0.01 and fade_out[-1] < 0.01 and np.all(np.diff(fade_in) > 0)


def test_render_medley_crossfades_around_exact_boundaries():
    rng = np.random.default_rng(1)
    sources = {"x": rng.normal(0, 0.3, 8000).astype(np.float32), "y": rng.normal(0, 0.05, 8000).astype(np.float32)}
    sample_rate, crossfade = 1000, 0.2  # 100 samples each side of a boundary
    excerpts = {"A": Excerpt("x", 1.0, 2.0), "B": Excerpt("y", 3.0, 1.5)}
    mix, edges = render_medley("ABA", excerpts, sample_rate, crossfade, sources)
    np.testing.assert_allclose(edges, [0.0, 2.0, 3.5, 5.5])
    assert mix.shape == (5500,)
    gain_x = SECTION_RMS / np.sqrt(np.mean(sources["x"][1000:3000] ** 2))
    gain_y = SECTION_RMS / np.sqrt(np.mean(sources["y"][3000:4500] ** 2))
    # Away from crossfades each section is its excerpt, scaled to the common RMS; A repeats exactly.
    np.testing.assert_allclose(mix[:1900], gain_x * sources["x"][1000:2900], rtol=1e-5)
    np.testing.assert_allclose(mix[2100:3400], gain_y * sources["y"][3100:4400], rtol=1e-5)
    np.testing.assert_allclose(mix[3600:], gain_x * sources["x"][1100:3000], rtol=1e-5)
    # At the boundary both sections sound at about 1/sqrt(2) (equal power), centred on 2.0 s.
    fade_in, fade_out = equal_power_fades(200)
    expected = fade_out[100] * gain_x * sources["x"][3000] + fade_in[100] * gain_y * sources["y"][3000]
    assert mix[2000] == pytest.approx(expected, rel=1e-5)
    assert fade_in[99] < np.sqrt(0.5) < fade_in[100]


@pytest.fixture(scope="module")
def sources(demo_paths, tmp_path_factory):
    """Six real demo songs of different moods and styles, plus a corrupt and a too-short file."""
    folder = tmp_path_factory.mktemp("sources")
    chosen = [next(p for p in demo_paths if key in p) for key in (
        "calm_acoustic", "energetic_electronic", "happy_acoustic", "nostalgic_electronic",
        "tender_acoustic", "happy_electronic")]
    corrupt = folder / "corrupt.flac"
    corrupt.write_bytes(b"not audio at all")
    short = folder / "short.wav"
    sf.write(short, load_audio(chosen[0], SAMPLE_RATE)[: 3 * SAMPLE_RATE], SAMPLE_RATE)
    return chosen, [str(corrupt), str(short)]


@pytest.fixture(scope="module")
def medleys(sources, tmp_path_factory):
    songs, broken = sources
    out = tmp_path_factory.mktemp("medleys")
    manifest, skipped = build_medleys(songs + broken, out, n_medleys=2, seed=7, **{
        **MEDLEYS, "n_sections": (4, 5), "section_seconds": (6.0, 9.0), "same_song_probability": 0.0})
    return out, manifest, skipped


def test_broken_sources_are_skipped_and_reported(medleys, sources):
    out, _, skipped = medleys
    assert sorted(skipped["path"]) == sorted(sources[1])
    usable = pd.read_csv(out / "sources.csv")
    assert list(usable.columns) == list(SOURCE_COLUMNS) and sorted(usable["path"]) == sorted(sources[0])
    assert usable["duration_seconds"].between(20.0, 40.0).all()  # the demo songs last about 30 s
    assert skipped.set_index("path").loc[sources[1][1], "error"].startswith("lasts 3.00 s")
    pd.testing.assert_frame_equal(pd.read_csv(out / "skipped.csv"), skipped)


def test_medley_files_manifest_and_jams_agree(medleys, sources):
    out, manifest, _ = medleys
    assert list(manifest.columns) == list(MANIFEST_COLUMNS) and len(manifest) == 2
    sections = pd.read_csv(out / "sections.csv")
    for row in manifest.itertuples():
        audio, rate = sf.read(row.audio_path)
        assert rate == SAMPLE_RATE and audio.ndim == 1
        assert len(audio) / rate == pytest.approx(row.duration_seconds)
        reference = load_jams(row.jams_path)
        assert "".join(reference.labels) == row.pattern
        assert reference.duration == pytest.approx(row.duration_seconds)
        mine = sections[sections["medley_id"] == row.medley_id]
        np.testing.assert_allclose(reference.boundaries(), mine["start_seconds"].iloc[1:], atol=1e-9)
        assert (mine["end_seconds"] - mine["start_seconds"]).between(6.0, 9.0).all()
        assert set(row.sources.split(";")) <= set(sources[0])
        # With same_song_probability = 0, each letter comes from its own song.
        assert row.n_source_songs == len(set(row.pattern))


def test_medleys_are_reproducible_from_the_seed(medleys, sources, tmp_path):
    _, manifest, _ = medleys
    again, _ = build_medleys(sources[0], tmp_path, n_medleys=1, seed=7, **{
        **MEDLEYS, "n_sections": (4, 5), "section_seconds": (6.0, 9.0), "same_song_probability": 0.0})
    assert again.loc[0, "pattern"] == manifest.loc[0, "pattern"]
    assert again.loc[0, "sources"] == manifest.loc[0, "sources"]
    np.testing.assert_array_equal(sf.read(again.loc[0, "audio_path"])[0], sf.read(manifest.loc[0, "audio_path"])[0])


def test_foote_finds_medley_boundaries_of_different_real_songs(medleys):
    _, manifest, _ = medleys
    hit_rates = []
    for row in manifest.itertuples():
        reference = load_jams(row.jams_path)
        estimate = foote_segmentation(load_audio(row.audio_path, SAMPLE_RATE), SAMPLE_RATE, feature="mfcc",
                                      **foote_settings(kernel_seconds=8.0))
        hit_rates.append(score(reference, estimate)["hr_3f_trim"])
    assert np.mean(hit_rates) >= 0.6, hit_rates


def test_build_splits_keeps_splits_disjoint_by_song(sources, tmp_path):
    songs, _ = sources
    half = len(songs) // 2
    splits = {"train": sorted(map(str, songs[:half])), "test": sorted(map(str, songs[half:]))}
    manifest, skipped = build_splits(splits, tmp_path, {"train": 1, "test": 1}, seed=2,
                                     **{**MEDLEYS, "n_sections": (3, 3), "section_seconds": (5.0, 6.0)})
    assert skipped.empty and sorted(manifest["split"]) == ["test", "train"]
    for row in manifest.itertuples():
        assert set(row.sources.split(";")) <= set(splits[row.split])
    assert (tmp_path / "train" / "train_0000.flac").is_file() and (tmp_path / "manifest.csv").is_file()


def test_render_medley_applies_section_gains_in_db():
    rng = np.random.default_rng(2)
    sources = {"x": rng.normal(0, 0.3, 8000).astype(np.float32), "y": rng.normal(0, 0.05, 8000).astype(np.float32)}
    excerpts = {"A": Excerpt("x", 1.0, 2.0), "B": Excerpt("y", 3.0, 1.5)}
    plain, _ = render_medley("ABA", excerpts, 1000, 0.2, sources)
    louder, _ = render_medley("ABA", excerpts, 1000, 0.2, sources, gains_db=[0.0, 6.0, -6.0])
    np.testing.assert_allclose(louder[:1900], plain[:1900], rtol=1e-6)
    np.testing.assert_allclose(louder[2100:3400], plain[2100:3400] * 10 ** (6 / 20), rtol=1e-5)
    np.testing.assert_allclose(louder[3600:], plain[3600:] * 10 ** (-6 / 20), rtol=1e-5)
    with pytest.raises(ValueError, match="one value per section"):
        render_medley("ABA", excerpts, 1000, 0.2, sources, gains_db=[0.0, 1.0])


@pytest.fixture(scope="module")
def sampler(sources):
    songs, broken = sources
    return MedleySampler(songs + broken, **{**SAMPLER, "n_sections": (4, 6), "section_seconds": (6.0, 9.0),
                                            "crossfade_seconds": (0.2, 1.5), "gain_db": 4.0, "seed": 3},
                         progress=False)


def test_sampler_draws_seeded_medleys_with_exact_boundaries(sampler, sources):
    assert sorted(sampler.audio) == sorted(sources[0])
    assert sorted(sampler.skipped["path"]) == sorted(sources[1])
    audio, reference = sampler.draw((1, 0))
    again, same = sampler.draw((1, 0))
    other, different = sampler.draw((2, 0))
    np.testing.assert_array_equal(audio, again)
    np.testing.assert_array_equal(reference.intervals, same.intervals)
    assert len(audio) != len(other) or not np.array_equal(reference.intervals, different.intervals)
    for key in [(e, i) for e in range(3) for i in range(4)]:
        audio, reference = sampler.draw(key)
        assert audio.dtype == np.float32 and np.abs(audio).max() <= 0.99
        assert reference.duration == pytest.approx(len(audio) / SAMPLE_RATE)
        assert 4 <= reference.n_segments <= 6 and len(set(reference.labels)) < reference.n_segments
        lengths = np.diff(reference.intervals, axis=1)[:, 0]
        assert ((lengths > 6.0 - 1e-3) & (lengths < 9.0 + 1e-3)).all()


def test_sampler_sections_are_the_source_excerpts_at_their_gain(sampler):
    """Between crossfades a medley section is a scaled copy of a real source excerpt, at -4..+4 dB of the RMS."""
    audio, reference = sampler.draw((0, 5))
    start, end = reference.intervals[1]
    middle = audio[int((start + 1.0) * SAMPLE_RATE) : int((end - 1.0) * SAMPLE_RATE)]
    rms_db = 20 * np.log10(np.sqrt(np.mean(middle.astype(np.float64) ** 2)) / SECTION_RMS)
    assert -4.5 < rms_db < 4.5
    probe = middle[: SAMPLE_RATE // 4].astype(np.float64)
    best = 0.0
    for source in sampler.audio.values():
        source = source.astype(np.float64)
        dots = scipy.signal.correlate(source, probe, mode="valid", method="fft")
        energy = np.concatenate([[0.0], np.cumsum(source**2)])
        norms = np.sqrt(np.maximum(energy[len(probe):] - energy[: -len(probe)], 1e-12)) * np.linalg.norm(probe)
        best = max(best, float((dots / norms).max()))
    assert best > 0.999  # float16 storage keeps the waveform


def test_sampler_rejects_bad_ranges_and_no_usable_source(sources):
    with pytest.raises(ValueError, match="crossfade_seconds"):
        MedleySampler(sources[0], **{**SAMPLER, "crossfade_seconds": (1.0, 7.0), "section_seconds": (6.0, 9.0)},
                      progress=False)
    with pytest.raises(ValueError, match="gain_db"):
        MedleySampler(sources[0], **{**SAMPLER, "gain_db": -1.0}, progress=False)
    with pytest.raises(ValueError, match="no usable source"):
        MedleySampler(sources[1], **{**SAMPLER, "section_seconds": (6.0, 9.0)}, progress=False)


def test_sampler_never_cuts_a_section_from_silence(sources, tmp_path):
    """A real song followed by 60 s of digital silence (like the ambient effects some game packages ship):
    the silent half is never a section."""
    song = load_audio(sources[0][0], SAMPLE_RATE)
    padded = tmp_path / "song_then_silence.wav"
    sf.write(padded, np.concatenate([song, np.zeros(60 * SAMPLE_RATE, dtype=np.float32)]), SAMPLE_RATE)
    # One crossfade length and no gain: this test was written for them (not conf's train.augment).
    sampler = MedleySampler([padded], **{**SAMPLER, "n_sections": (3, 4), "section_seconds": (6.0, 8.0),
                                         "crossfade_seconds": (0.5, 0.5), "gain_db": 0.0,
                                         "same_song_probability": 1.0, "seed": 0}, progress=False)
    music_end = len(song) / SAMPLE_RATE
    for index in range(10):
        audio, reference = sampler.draw((0, index))
        rates = [np.sqrt(np.mean(audio[int(a * SAMPLE_RATE) + 4000 : int(b * SAMPLE_RATE) - 4000] ** 2))
                 for a, b in reference.intervals]
        assert min(rates) > 0.05  # every section is music, scaled to about SECTION_RMS
    assert music_end < sampler.durations[str(padded)] - 50
