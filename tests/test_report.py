"""songfeel.report's plots, tables and report on real vectors: MFCC statistics of 12 demo tracks, labelled by mood."""

from __future__ import annotations

import importlib.util
import math
import re

import librosa
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from songfeel.datasets.demo import tracks_dir
from songfeel.metrics.consistency import consistency_metrics, similarity_matrix
from songfeel.report.common import COST_COLUMNS
from songfeel.report.plots import (
    plot_consistency_by_origin,
    plot_embedding_map,
    plot_leaderboard,
)
from songfeel.report.tables import consistency_summary, neighbour_table
from songfeel.report.write import ReportInputs, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAMPLE_RATE = 22050
SEGMENT_SECONDS = 10.0
EXPECTED_PROJECTION = "UMAP" if importlib.util.find_spec("umap") else "t-SNE"


def assert_png(path):
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = plt.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, (path, image.shape)
    # not a blank canvas
    assert image[..., :3].std() > 0.01, path


@pytest.fixture(scope="module")
def songs():
    """Real vectors and segment embeddings of 12 demo tracks (3 per mood for 4 moods).

    Song vector: z-scored mean and std of 20 MFCCs. Segment embedding: mean MFCC of each 10 s segment.
    """
    moods = sorted(p.name for p in tracks_dir().iterdir() if p.is_dir())[:4]
    paths = [p for mood in moods for p in sorted((tracks_dir() / mood).glob("*.opus"))[:3]]
    assert len(paths) == 12
    vectors, segments = {}, {}
    for path in paths:
        audio, _ = librosa.load(path, sr=SAMPLE_RATE, mono=True)
        mfcc = librosa.feature.mfcc(y=audio, sr=SAMPLE_RATE, n_mfcc=20)
        vectors[path.stem] = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])
        frames_per_segment = int(SEGMENT_SECONDS * SAMPLE_RATE / 512)
        n_segments = mfcc.shape[1] // frames_per_segment
        segments[path.stem] = np.stack([mfcc[:, i * frames_per_segment:(i + 1) * frames_per_segment].mean(axis=1)
                                        for i in range(n_segments)])
    frame = pd.DataFrame(vectors).T.astype(np.float64)
    frame = (frame - frame.mean()) / frame.std()
    labels = pd.Series({p.stem: p.parent.name for p in paths})
    return frame, labels, segments


def brute_force_neighbours(vectors: pd.DataFrame, query: str, k: int) -> tuple[list[str], np.ndarray]:
    values = vectors.to_numpy()
    q = vectors.loc[query].to_numpy()
    cosine = values @ q / (np.linalg.norm(values, axis=1) * np.linalg.norm(q))
    others = [(c, tid) for c, tid in zip(cosine, vectors.index) if tid != query]
    others.sort(key=lambda item: -item[0])
    return [tid for _, tid in others[:k]], np.array([c for c, _ in others[:k]])


# ---------------------------------------------------------------------------
# nearest neighbours


def test_neighbour_table_ranks_by_cosine_like_brute_force(songs):
    vectors, labels, _ = songs
    queries = list(vectors.index[[0, 5, 11]])
    table = neighbour_table(vectors, labels, queries, k=4)
    assert list(table.columns) == ["query", "query_label", "rank", "neighbour", "neighbour_label", "cosine",
                                   "same_label"]
    assert len(table) == 12
    for query in queries:
        rows = table[table["query"] == query]
        expected_ids, expected_cosine = brute_force_neighbours(vectors, query, 4)
        assert rows["neighbour"].tolist() == expected_ids
        np.testing.assert_allclose(rows["cosine"].to_numpy(), expected_cosine, atol=1e-9)
        assert rows["rank"].tolist() == [1, 2, 3, 4]
        assert query not in rows["neighbour"].tolist()
        assert (rows["query_label"] == labels[query]).all()
        assert rows["neighbour_label"].tolist() == labels[expected_ids].tolist()
        assert rows["same_label"].tolist() == [labels[n] == labels[query] for n in expected_ids]
    # real MFCC vectors are not all alike: cosines span a range
    assert table["cosine"].max() - table["cosine"].min() > 0.1


def test_neighbour_table_excludes_the_query_by_id_not_by_value(songs):
    vectors, labels, _ = songs
    query = vectors.index[2]
    copy = vectors.loc[[query]].rename(index={query: "copy-of-" + query})
    with_copy = pd.concat([vectors, copy])
    table = neighbour_table(with_copy, labels, [query], k=len(with_copy) + 5)
    assert len(table) == len(with_copy) - 1  # k is cut to the other songs
    assert table.iloc[0]["neighbour"] == "copy-of-" + query
    assert table.iloc[0]["cosine"] == pytest.approx(1.0)
    assert math.isnan(table.iloc[0]["neighbour_label"]) and not table.iloc[0]["same_label"]
    assert query not in set(table["neighbour"])


def test_neighbour_table_unknown_query(songs):
    vectors, labels, _ = songs
    with pytest.raises(KeyError, match="no-such-track"):
        neighbour_table(vectors, labels, [vectors.index[0], "no-such-track"])


# ---------------------------------------------------------------------------
# embedding map


def test_embedding_map_writes_a_png_and_names_the_projection(songs, tmp_path):
    vectors, labels, _ = songs
    path = tmp_path / "map.png"
    assert plot_embedding_map(vectors, labels, path, "MFCC statistics") == EXPECTED_PROJECTION
    assert_png(path)
    assert plt.get_fignums() == []  # the figure was closed


def test_embedding_map_uses_pca_below_five_songs(songs, tmp_path):
    vectors, labels, _ = songs
    path = tmp_path / "small.png"
    assert plot_embedding_map(vectors.iloc[:4], labels, path, "four songs") == "PCA"
    assert_png(path)


def test_embedding_map_refuses_too_few_songs_and_nan(songs, tmp_path):
    vectors, labels, _ = songs
    with pytest.raises(ValueError, match="at least 3 songs"):
        plot_embedding_map(vectors.iloc[:2], labels, tmp_path / "two.png", "two")
    broken = vectors.copy()
    broken.iloc[3, 0] = np.nan
    with pytest.raises(ValueError, match=re.escape(str(vectors.index[3]))):
        plot_embedding_map(broken, labels, tmp_path / "nan.png", "nan")
    assert not (tmp_path / "two.png").exists() and not (tmp_path / "nan.png").exists()


# ---------------------------------------------------------------------------
# leaderboard


def make_scores(vectors, labels) -> pd.DataFrame:
    """Scores with accuracies measured on real label triplets of the MFCC vectors (anchor, positive of
    the same mood, negative of another), so that the numbers are real if not from a trained model."""
    unit = vectors.to_numpy() / np.linalg.norm(vectors.to_numpy(), axis=1, keepdims=True)
    cosine = unit @ unit.T
    ids = list(vectors.index)
    correct = [cosine[a, p] > cosine[a, n]
               for a in range(len(ids)) for p in range(len(ids)) for n in range(len(ids))
               if a != p and labels[ids[a]] == labels[ids[p]] and labels[ids[n]] != labels[ids[a]]]
    accuracy = float(np.mean(correct))
    rows = []
    for method, kind, shift in (("mfcc", "baseline", 0.0), ("chunked-gru", "variant", 0.1),
                                ("random-init", "baseline", -0.2)):
        for split, source in (("test", "label"), ("val", "label"), ("test", "self")):
            acc = min(max(accuracy + shift, 0.0), 1.0)
            rows.append({"method": method, "kind": kind, "split": split, "source": source,
                         "n_triplets": len(correct), "accuracy": acc, "ci_low": max(acc - 0.05, 0),
                         "ci_high": min(acc + 0.05, 1), "odd_one_out": acc * 0.8,
                         "odd_one_out_ci_low": acc * 0.8 - 0.04, "odd_one_out_ci_high": acc * 0.8 + 0.04})
    scores = pd.DataFrame(rows)
    # mfcc cannot score odd-one-out on self triplets
    scores.loc[(scores["method"] == "mfcc") & (scores["source"] == "self"),
               ["odd_one_out", "odd_one_out_ci_low", "odd_one_out_ci_high"]] = np.nan
    return scores


def test_leaderboard_plot_and_missing_split(songs, tmp_path):
    vectors, labels, _ = songs
    scores = make_scores(vectors, labels)
    path = tmp_path / "board.png"
    plot_leaderboard(scores, path, split="test", source="self")  # a NaN odd-one-out is drawn as n/a
    assert_png(path)
    with pytest.raises(ValueError, match=r"split='val', source='human'"):
        plot_leaderboard(scores, tmp_path / "none.png", split="val", source="human")
    with pytest.raises(ValueError, match=r"split='train'"):
        plot_leaderboard(scores, tmp_path / "none.png", split="train")
    assert not (tmp_path / "none.png").exists()


# ---------------------------------------------------------------------------
# consistency


def test_consistency_summary_counts_nan_songs_and_does_not_average_them():
    nan = float("nan")
    consistency = pd.DataFrame({
        "method": ["m"] * 5,
        "track_id": ["a", "b", "c", "d", "e"],
        "corpus": ["x"] * 5,
        "origin": ["human", "human", "human", "ai", "ai"],
        "label": ["calm"] * 5,
        "n_segments": [4, 3, 1, 5, 2],
        "sdc": [0.2, 0.6, nan, 0.5, 0.9],
        "vendi_score": [2.0, 1.5, nan, 3.0, 1.2],
        "vendi_per_segment": [0.5, 0.5, nan, 0.6, 0.6],
        "matched_sdc": [0.3, 0.5, nan, 0.4, nan],
        "matched_vendi_score": [1.8, 1.4, nan, 2.0, nan],
        "matched_vendi_per_segment": [0.9, 0.7, nan, 1.0, nan],
    })
    summary = consistency_summary(consistency).set_index("origin")
    human, ai = summary.loc["human"], summary.loc["ai"]
    assert (human["n_songs"], human["n_nan"]) == (3, 1)
    assert (ai["n_songs"], ai["n_nan"]) == (2, 0)
    # NaN dropped, neither propagated nor counted as 0: (0.2 + 0.6) / 2, not / 3
    assert human["mean_sdc"] == pytest.approx(0.4)
    assert human["median_sdc"] == pytest.approx(0.4)
    assert human["mean_vendi_score"] == pytest.approx(1.75)
    assert ai["mean_matched_sdc"] == pytest.approx(0.4)  # ai's matched NaN is dropped too
    assert ai["median_matched_vendi_per_segment"] == pytest.approx(1.0)
    assert ai["mean_sdc"] == pytest.approx(0.7)


def make_consistency(vectors, labels, segments) -> pd.DataFrame:
    """Real consistency metrics of the MFCC segment embeddings, under two methods; the demo songs are all AI
    generated, so half are called human here to exercise the comparison."""
    rows = []
    for i, track_id in enumerate(vectors.index):
        full = consistency_metrics(segments[track_id])
        matched = consistency_metrics(segments[track_id][:2])
        row = {"track_id": track_id, "corpus": "AI demo (immich-memories-music)",
               "origin": "human" if i % 2 else "ai", "label": labels[track_id],
               "n_segments": full["n_segments"], "sdc": full["sdc"], "vendi_score": full["vendi_score"],
               "vendi_per_segment": full["vendi_per_segment"], "matched_sdc": matched["sdc"],
               "matched_vendi_score": matched["vendi_score"],
               "matched_vendi_per_segment": matched["vendi_per_segment"]}
        rows.append({"method": "mfcc", **row})
        rows.append({"method": "only-ai/v2", **row, "origin": "ai"})
    consistency = pd.DataFrame(rows)
    # one song with a single segment
    single = consistency_metrics(segments[vectors.index[0]][:1])
    consistency.loc[0, ["n_segments", "sdc", "vendi_score", "vendi_per_segment"]] = [
        1, single["sdc"], single["vendi_score"], single["vendi_per_segment"]]
    return consistency


def test_consistency_by_origin_plot(songs, tmp_path):
    vectors, labels, segments = songs
    consistency = make_consistency(vectors, labels, segments)
    assert consistency["sdc"].isna().sum() == 1
    path = tmp_path / "origin.png"
    plot_consistency_by_origin(consistency, path, "mfcc", matched=False)
    assert_png(path)
    with pytest.raises(ValueError, match="'absent'"):
        plot_consistency_by_origin(consistency, tmp_path / "absent.png", "absent")


# ---------------------------------------------------------------------------
# the report


def test_write_report_writes_every_declared_plot_and_links_only_existing_files(songs, tmp_path):
    vectors, labels, segments = songs
    scores = make_scores(vectors, labels)
    retrieval = pd.DataFrame({"method": ["mfcc", "chunked-gru"], "kind": ["baseline", "variant"],
                              "split": ["test", "test"], "k": [5, 5], "n_songs": [12, 12],
                              "precision_at_k": [0.4, 0.5], "map": [0.45, 0.55]})
    cost = pd.DataFrame({"method": ["chunked-gru", "mecomp"], "kind": ["variant", "baseline"],
                         "n_parameters": [61234, np.nan], "size_bytes_fp32": [244936, np.nan],
                         "onnx_bytes": [250123, 1_500_000], "audio_seconds": [360.0, 360.0],
                         "seconds": [0.29, 3.1], "x_real_time": [1234.56, 116.1], "ratio_vs_mecomp": [0.094, 1.0]})
    histories = []
    for run, slope in (("chunked-gru", 0.1), ("sliding-attention", 0.05)):
        (tmp_path / "runs" / run).mkdir(parents=True)
        history = tmp_path / "runs" / run / "history.csv"
        pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.8, 0.7],
                      "val_accuracy": [0.5, 0.5 + slope, 0.5 + 2 * slope]}).to_csv(history, index=False)
        histories.append(history)
    ssms = {"mfcc": {t: similarity_matrix(segments[t]) for t in vectors.index[:2]}}
    maps = {"mfcc": (vectors, labels), "tiny": (vectors.iloc[:2], labels)}
    neighbours = neighbour_table(vectors, labels, [vectors.index[0]], k=3)
    results = tmp_path / "results"

    path = write_report(results, ReportInputs(
        scores=scores, retrieval=retrieval, consistency=make_consistency(vectors, labels, segments), cost=cost,
        histories=histories, example_ssms=ssms, maps=maps, neighbours=neighbours,
        extra_sections=[("Held-out benchmark", "All good.")], segment_seconds=SEGMENT_SECONDS, matched_segments=2))

    assert path == results / "report.md"
    plots = {p.name for p in (results / "plots").iterdir()}
    assert plots == {"leaderboard.png", "leaderboard_test_self.png", "leaderboard_val_label.png",
                     "training_curves.png", "ssm_examples.png", "embedding_map_mfcc.png",
                     "consistency_origin_mfcc.png"}
    for name in plots:
        assert_png(results / "plots" / name)
    text = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(f"plots/{name}" for name in plots)
    for link in links:
        assert (results / link).is_file()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == ["Leaderboard", "Triplet accuracy by split and source", "Retrieval", "Cost",
                        "Training curves", "SSM examples", "Embedding maps", "Structure", "Nearest neighbours",
                        "Held-out benchmark"]
    best = scores[(scores["method"] == "chunked-gru") & (scores["split"] == "test") & (scores["source"] == "label")]
    best = best.iloc[0]
    expected = f"{100 * best['accuracy']:.1f} [{100 * best['ci_low']:.1f}-{100 * best['ci_high']:.1f}]"
    leaderboard = text.split("## Leaderboard")[1].split("##")[0]
    assert expected in leaderboard
    assert leaderboard.index("chunked-gru") < leaderboard.index("random-init")  # best first
    cost_section = text.split("## Cost")[1].split("##")[0]
    cells = {cell.strip() for line in cost_section.splitlines() for cell in line.split("|")}
    assert {"1,235", "116"} <= cells  # x real time with 0 decimals
    assert {"244.9", "1,500.0", "n/a"} <= cells  # sizes in kB; NaN shown as n/a
    assert "tiny: no map" in text  # two songs: explained, not a crash
    assert "All good." in text
    assert neighbours.iloc[0]["neighbour"] in text.split("## Nearest neighbours")[1]


def test_write_report_with_empty_inputs_writes_sentences(tmp_path):
    only_ai = pd.DataFrame({"method": ["m"], "track_id": ["t"], "corpus": ["c"], "origin": ["ai"], "label": ["x"],
                            "n_segments": [3], "sdc": [0.5], "vendi_score": [1.5], "vendi_per_segment": [0.5],
                            "matched_sdc": [0.5], "matched_vendi_score": [1.5], "matched_vendi_per_segment": [0.5]})
    path = write_report(tmp_path, ReportInputs(scores=pd.DataFrame(), retrieval=None, consistency=only_ai,
                                               cost=pd.DataFrame(columns=COST_COLUMNS), histories=[],
                                               example_ssms={}, maps={}, neighbours=None))
    text = path.read_text()
    assert list((tmp_path / "plots").iterdir()) == []
    assert "](" not in text
    for sentence in ("No triplet scores.", "No retrieval results.", "No cost measurements.",
                     "No training histories.", "No example SSMs.", "No embedding maps.",
                     "no human-vs-AI comparison", "No nearest-neighbour table."):
        assert sentence in text
