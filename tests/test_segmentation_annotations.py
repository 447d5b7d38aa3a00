"""Segmentation validation and the JAMS, SALAMI and Harmonix loaders, on small hand-written files."""

from __future__ import annotations

import jams
import numpy as np
import pytest

from songfeel.segmentation.annotations import (
    Segmentation,
    load_annotation,
    load_harmonix,
    load_jams,
    load_salami,
    write_jams,
)

# jams 0.3.5 validates with an API that jsonschema 4.26 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Passing a schema to Validator:DeprecationWarning")

SALAMI_TEXT = (
    "0.000000000\tSilence\n0.500000000\tA\n10.250000000\tB\n20.000000000\tA\n"
    "29.500000000\tSilence\n30.0\tEnd\n"
)


def test_segmentation_from_boundaries_gives_contiguous_segments_and_inner_boundaries():
    seg = Segmentation.from_boundaries([2.0, 4.0], ["A", "B", "A"], 6.0, "song")
    np.testing.assert_array_equal(seg.intervals, [[0, 2], [2, 4], [4, 6]])
    np.testing.assert_array_equal(seg.boundaries(), [2.0, 4.0])
    assert seg.n_segments == 3 and seg.duration == 6.0


@pytest.mark.parametrize(
    ("intervals", "labels", "duration", "cause"),
    [
        ([[0, 5], [4, 8]], ["A", "B"], 8.0, "after segment 1 starts"),
        ([[0, 5], [5, 5]], ["A", "B"], 8.0, "non-positive length"),
        ([[4, 6], [0, 2]], ["A", "B"], 8.0, "not sorted"),
        ([[0, 5]], ["A", "B"], 8.0, "1 segments but 2 labels"),
        ([[0, 5], [5, 9]], ["A", "B"], 8.0, "after the song's duration"),
        (np.zeros((0, 2)), [], 8.0, "n_segments >= 1"),
    ],
)
def test_invalid_segmentation_raises_naming_source_and_cause(intervals, labels, duration, cause):
    with pytest.raises(ValueError, match=cause) as info:
        Segmentation(np.asarray(intervals, dtype=float), labels, duration, "bad.txt")
    assert str(info.value).startswith("bad.txt:")


def test_filled_turns_gaps_into_segments():
    seg = Segmentation(np.array([[1.0, 3.0], [4.0, 6.0]]), ["A", "B"], 8.0, "gappy")
    filled = seg.filled("gap")
    np.testing.assert_array_equal(filled.intervals, [[0, 1], [1, 3], [3, 4], [4, 6], [6, 8]])
    assert filled.labels == ["gap", "A", "gap", "B", "gap"]
    np.testing.assert_array_equal(seg.boundaries(), [1, 3, 4, 6])


def test_load_salami_reads_segments_until_end(tmp_path):
    path = tmp_path / "textfile1_uppercase.txt"
    path.write_text(SALAMI_TEXT + "31.0\tA\n")  # after End: ignored
    seg = load_salami(path)
    np.testing.assert_allclose(seg.intervals, [[0, 0.5], [0.5, 10.25], [10.25, 20], [20, 29.5], [29.5, 30]])
    assert seg.labels == ["Silence", "A", "B", "A", "Silence"]
    assert seg.duration == 30.0 and seg.source == str(path)


def test_load_salami_can_drop_silence(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text(SALAMI_TEXT)
    seg = load_salami(path, keep_silence=False)
    assert seg.labels == ["A", "B", "A"]
    np.testing.assert_allclose(seg.boundaries(), [0.5, 10.25, 20.0, 29.5])
    assert seg.duration == 30.0


def test_load_salami_without_end_needs_a_duration(tmp_path):
    path = tmp_path / "no_end.txt"
    path.write_text("0.0\tA\n5.0\tB\n")
    with pytest.raises(ValueError, match=r"no_end.txt: no 'End' line"):
        load_salami(path)
    seg = load_salami(path, duration=9.0)
    np.testing.assert_allclose(seg.intervals, [[0, 5], [5, 9]])


def test_load_salami_drops_zero_length_segments_and_rejects_bad_lines(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("0.0\tA\n4.0\tB\n4.0\tC\n8.0\tEnd\n")
    seg = load_salami(path)
    assert seg.labels == ["A", "C"]
    np.testing.assert_allclose(seg.intervals, [[0, 4], [4, 8]])
    bad = tmp_path / "bad.txt"
    bad.write_text("0.0\tA\nfour\tB\n8.0\tEnd\n")
    with pytest.raises(ValueError, match="line 2"):
        load_salami(bad)
    backwards = tmp_path / "backwards.txt"
    backwards.write_text("0.0\tA\n6.0\tB\n5.0\tC\n8.0\tEnd\n")
    with pytest.raises(ValueError, match="times decrease"):
        load_salami(backwards)


def test_load_harmonix_reads_space_separated_segments(tmp_path):
    path = tmp_path / "0001_song.txt"
    path.write_text("1.2 intro\n8.0 verse\n24.5 chorus\n40.0 verse\n56.0 end\n")
    seg = load_harmonix(path)
    np.testing.assert_allclose(seg.intervals, [[1.2, 8], [8, 24.5], [24.5, 40], [40, 56]])
    assert seg.labels == ["intro", "verse", "chorus", "verse"]
    assert seg.duration == 56.0
    assert seg.filled().labels[0] == "__gap"


def test_write_jams_round_trips_segments_and_sandbox(tmp_path):
    seg = Segmentation.from_boundaries([7.3, 15.1, 22.9], ["A", "B", "A", "C"], 30.5, "medley")
    path = write_jams(seg, tmp_path / "m.jams", title="m", sandbox={"pattern": "ABAC"})
    back = load_jams(path)
    np.testing.assert_allclose(back.intervals, seg.intervals, atol=1e-9)
    assert back.labels == seg.labels and back.duration == 30.5
    np.testing.assert_allclose(back.boundaries(), [7.3, 15.1, 22.9])
    document = jams.load(str(path), validate=False)
    assert document.annotations[0].sandbox.pattern == "ABAC"


def test_load_jams_prefers_segment_open_and_reads_salami_namespaces(tmp_path):
    document = jams.JAMS()
    document.file_metadata.duration = 20.0
    function = jams.Annotation(namespace="segment_salami_function", duration=20.0)
    function.append(time=0.0, duration=12.0, value="verse")
    function.append(time=12.0, duration=8.0, value="chorus")
    upper = jams.Annotation(namespace="segment_salami_upper", duration=20.0)
    upper.append(time=0.0, duration=20.0, value="A")
    document.annotations.extend([function, upper])
    path = tmp_path / "salami.jams"
    document.save(str(path))
    assert load_jams(path).labels == ["verse", "chorus"]
    assert load_jams(path, namespaces=("segment_salami_upper",)).labels == ["A"]
    open_path = write_jams(Segmentation.from_boundaries([5.0], ["x", "y"], 20.0), tmp_path / "open.jams")
    assert load_jams(open_path).labels == ["x", "y"]


def test_load_jams_errors_name_the_file(tmp_path):
    beats = jams.JAMS()
    beats.file_metadata.duration = 5.0
    beats.annotations.append(jams.Annotation(namespace="beat", duration=5.0))
    path = tmp_path / "beats.jams"
    beats.save(str(path))
    with pytest.raises(ValueError, match="beats.jams: no annotation"):
        load_jams(path)
    corrupt = tmp_path / "corrupt.jams"
    corrupt.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt.jams: cannot read JAMS"):
        load_jams(corrupt)


def test_load_annotation_tells_the_formats_apart(tmp_path):
    truth = Segmentation.from_boundaries([12.5, 40.0], ["intro", "verse", "chorus"], 61.0)
    salami = tmp_path / "textfile1_functions.txt"
    salami.write_text("0.0\tintro\n12.5\tverse\n40.0\tchorus\n61.0\tEnd\n")
    harmonix = tmp_path / "0001_song.txt"
    harmonix.write_text("0.0 intro\n12.5 verse\n40.0 chorus\n61.0 end\n")
    jams_path = write_jams(truth, tmp_path / "song.jams")
    for path in (salami, harmonix, jams_path):
        loaded = load_annotation(path)
        np.testing.assert_allclose(loaded.intervals, truth.intervals)
        assert loaded.labels == truth.labels and loaded.duration == pytest.approx(61.0)
    # A forced format wins over the guess; a Harmonix file read as SALAMI has no tab-separated lines.
    with pytest.raises(ValueError, match="0001_song.txt"):
        load_annotation(harmonix, "salami")
    with pytest.raises(ValueError, match=r"suffix '\.csv'"):
        load_annotation(tmp_path / "song.csv")
    with pytest.raises(ValueError, match="unknown annotation format 'mirex'"):
        load_annotation(salami, "mirex")
    with pytest.raises(ValueError, match="missing.txt"):
        load_annotation(tmp_path / "missing.txt")
