"""Structure evaluation on a user's annotated songs (JAMS, SALAMI, Harmonix), skipping the bad ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_structure_config as tiny_config

from songfeel.errors import ManifestError
from songfeel.segmentation import annotated
from songfeel.segmentation.annotations import load_jams
from songfeel.segmentation.checkpoint import load_ssmnet
from songfeel.segmentation.dataset import build_medley_benchmark, load_medley_songs
from songfeel.segmentation.evaluation import SCORE_KEYS
from songfeel.segmentation.scoring import SKIPPED_SONG_COLUMNS
from songfeel.segmentation.training import train_ssmnet

pytestmark = pytest.mark.filterwarnings("ignore:Passing a schema to Validator:DeprecationWarning",
                                        "ignore:Estimated intervals are empty:UserWarning")
torch.set_num_threads(1)

METHODS = ["ssmnet", "foote_mfcc", "foote_logmel", "laplacian"]


@pytest.fixture(scope="module")
def benchmark(demo_manifest, tmp_path_factory):
    """Medleys of two real demo songs per split."""
    sources = demo_manifest.groupby("split", group_keys=False).head(2).reset_index(drop=True)
    out = tmp_path_factory.mktemp("medleys")
    medleys, skipped = build_medley_benchmark(sources, out, tiny_config())
    return out, medleys, skipped


@pytest.fixture(scope="module")
def trained(benchmark, tmp_path_factory):
    _, medleys, _ = benchmark
    cfg = tiny_config(epochs=2)
    songs = {split: load_medley_songs(medleys[medleys["split"] == split], cfg, progress=False)
             for split in ("train", "validation")}
    path = tmp_path_factory.mktemp("model") / "ssmnet.pt"
    history = train_ssmnet(songs["train"], songs["validation"], cfg, path, progress=False)
    return history, path


@pytest.fixture(scope="module")
def annotated_list(benchmark, tmp_path_factory):
    """Test medleys listed as a user's songs, with their annotations as JAMS, SALAMI and Harmonix text,
    plus a corrupt audio file and a missing annotation."""
    _, medleys, _ = benchmark
    folder = tmp_path_factory.mktemp("annotated")
    rows = []
    for medley in medleys[medleys["split"] == "test"].itertuples():
        reference = load_jams(medley.jams_path)
        onsets = list(zip(reference.intervals[:, 0], reference.labels, strict=True))
        salami = folder / f"{medley.medley_id}_salami.txt"
        salami.write_text("".join(f"{t:.6f}\t{label}\n" for t, label in onsets) + f"{reference.duration:.6f}\tEnd\n")
        harmonix = folder / f"{medley.medley_id}_harmonix.txt"
        harmonix.write_text("".join(f"{t:.6f} {label}\n" for t, label in onsets) + f"{reference.duration:.6f} end\n")
        for kind, path in (("jams", medley.jams_path), ("salami", salami.name), ("harmonix", harmonix.name)):
            rows.append({"song_id": f"{medley.medley_id}_{kind}", "audio_path": medley.audio_path,
                         "annotation_path": path, "format": "auto"})
    (folder / "corrupt.flac").write_bytes(b"no audio here")
    rows.append({"song_id": "corrupt", "audio_path": "corrupt.flac", "annotation_path": rows[0]["annotation_path"],
                 "format": "jams"})
    rows.append({"song_id": "unannotated", "audio_path": rows[0]["audio_path"], "annotation_path": "nowhere.jams",
                 "format": ""})
    path = folder / "songs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, medleys[medleys["split"] == "test"]


def test_annotated_songs_are_scored_alike_in_every_format_and_bad_ones_skipped(trained, annotated_list, tmp_path):
    _, checkpoint = trained
    songs_csv, test_medleys = annotated_list
    model, config = load_ssmnet(checkpoint)  # the checkpoint alone carries the baselines' settings
    metrics, summary, skipped = annotated.evaluate_song_list(model, config, songs_csv, tmp_path / "out",
                                                             progress=False)
    assert list(skipped.columns) == list(SKIPPED_SONG_COLUMNS)
    assert dict(zip(skipped["song_id"], skipped["error"], strict=True)).keys() == {"corrupt", "unannotated"}
    assert "corrupt.flac" in skipped.set_index("song_id").loc["corrupt", "error"]
    assert "nowhere.jams" in skipped.set_index("song_id").loc["unannotated", "error"]
    per_song = pd.read_csv(tmp_path / "out" / "per_song.csv")
    assert list(dict.fromkeys(per_song["method"])) == METHODS
    assert (summary["n_songs"] == 3 * len(test_medleys)).all()
    for medley_id in test_medleys["medley_id"]:
        for method in METHODS:
            rows = per_song[(per_song["method"] == method) & per_song["song_id"].str.startswith(medley_id)]
            assert len(rows) == 3
            np.testing.assert_allclose(rows[list(SCORE_KEYS)].to_numpy(), rows[list(SCORE_KEYS)].iloc[[0] * 3],
                                       atol=1e-5)  # the text files round the times to 1 us
    assert metrics["ssmnet/n_songs"] == 3 * len(test_medleys)
    assert metrics["foote_mfcc/hr_3f_trim"] == pytest.approx(summary.loc["foote_mfcc", "hr_3f_trim"], abs=1e-6)
    assert metrics["ssmnet_minus_foote_mfcc/hr_3f_trim_diff"] == pytest.approx(
        summary.loc["ssmnet", "hr_3f_trim"] - summary.loc["foote_mfcc", "hr_3f_trim"], abs=1e-5)
    assert "ssmnet minus" in (tmp_path / "out" / "summary.md").read_text()
    assert pd.read_csv(tmp_path / "out" / "skipped.csv")["song_id"].tolist() == ["corrupt", "unannotated"]


def test_song_list_errors_name_the_file(tmp_path):
    bad = tmp_path / "songs.csv"
    bad.write_text("audio,annotation\nx.flac,x.jams\n")
    with pytest.raises(ManifestError, match=r"songs.csv: the song list lacks columns \['audio_path'"):
        annotated.read_song_list(bad)
    bad.write_text("audio_path,annotation_path,song_id\na.flac,a.jams,s\nb.flac,b.jams,s\n")
    with pytest.raises(ManifestError, match="song_id repeated"):
        annotated.read_song_list(bad)
    with pytest.raises(ManifestError, match="missing.csv"):
        annotated.read_song_list(tmp_path / "missing.csv")
    bad.write_text("audio_path,annotation_path\nmusic/a.flac,/abs/a.txt\n")
    songs = annotated.read_song_list(bad)
    assert songs.loc[0, "song_id"] == "a" and songs.loc[0, "format"] == "auto"
    assert songs.loc[0, "audio_path"] == str(tmp_path / "music/a.flac")
    assert songs.loc[0, "annotation_path"] == "/abs/a.txt"


def test_annotated_command_writes_results_or_fails_in_one_line(trained, annotated_list, tmp_path, capsys):
    _, checkpoint = trained
    songs_csv, test_medleys = annotated_list
    assert annotated.main([str(songs_csv), "--model", str(checkpoint), "--out-dir", str(tmp_path / "ok"),
                           "--plots", "1", "--quiet"]) == 0
    assert "| ssmnet | " in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == sorted([*annotated.OUTPUT_FILES, "plots"])
    assert len(list((tmp_path / "ok" / "plots").glob("*.png"))) == 1
    broken = tmp_path / "broken.csv"
    broken.write_text(f"audio_path,annotation_path\n{songs_csv.parent / 'corrupt.flac'},x.jams\n")
    assert annotated.main([str(broken), "--model", str(checkpoint), "--out-dir", str(tmp_path / "no"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none of the 1 songs could be scored" in err and "corrupt.flac" in err
