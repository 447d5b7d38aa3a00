"""Plots, tables and the Markdown report of stage 05 (evaluation).

Every plot is a PNG at :data:`DPI` dots per inch, with labelled axes (units where
they have one), a title and fonts of at least 8 pt; the figure is closed after
saving. Inputs are long-format tables built by the caller; their columns are
listed in each function's docstring. Missing values (a method that cannot score
a triplet source, a song with one segment) are dropped and counted, never
averaged.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from songfeel.native import not_measured_note  # noqa: E402

log = logging.getLogger(__name__)

DPI = 110
MAX_MAP_LABELS = 20
KIND_COLOURS = {"variant": "tab:blue", "baseline": "tab:orange"}
OTHER_KIND_COLOUR = "tab:grey"
ORIGIN_COLOURS = {"human": "tab:green", "ai": "tab:purple"}
CHANCE_2WAY = 1 / 2
CHANCE_ODD_ONE_OUT = 1 / 3

SCORE_COLUMNS = ("method", "kind", "split", "source", "n_triplets", "accuracy", "ci_low", "ci_high",
                 "odd_one_out", "odd_one_out_ci_low", "odd_one_out_ci_high")
RETRIEVAL_COLUMNS = ("method", "kind", "split", "k", "n_songs", "precision_at_k", "map")
CONSISTENCY_METRICS = ("sdc", "vendi_score", "vendi_per_segment",
                     "matched_sdc", "matched_vendi_score", "matched_vendi_per_segment")
CONSISTENCY_COLUMNS = ("method", "track_id", "corpus", "origin", "label", "n_segments", *CONSISTENCY_METRICS)
COST_COLUMNS = ("method", "kind", "n_parameters", "size_bytes_fp32", "onnx_bytes", "audio_seconds", "seconds",
                "x_real_time", "ratio_vs_mecomp")
HISTORY_COLUMNS = ("epoch", "train_loss", "val_accuracy")
NEIGHBOUR_COLUMNS = ("query", "query_label", "rank", "neighbour", "neighbour_label", "cosine", "same_label")

_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 10,
}


# ---------------------------------------------------------------------------
# helpers


def _style():
    return plt.rc_context(_STYLE)


def _save(fig, path: Path | str) -> Path:
    """Save ``fig`` as a PNG at ``path`` (parents created) and close it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    log.info("wrote %s", path)
    return path


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing} (has {list(frame.columns)})")


def _is_empty(frame: pd.DataFrame | None) -> bool:
    return frame is None or len(frame) == 0


def safe_name(method: str) -> str:
    """``method`` as used in plot file names: runs of characters other than ``A-Za-z0-9._-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(method)).strip("_") or "unnamed"


def _unit_vectors(vectors: pd.DataFrame, name: str = "vectors") -> np.ndarray:
    """Rows of ``vectors`` scaled to unit L2 norm, float64.

    Raises:
        ValueError: duplicate track ids, a non-finite value or an all-zero row (naming up to 5 track ids).
    """
    if vectors.index.has_duplicates:
        duplicated = vectors.index[vectors.index.duplicated()].unique().tolist()[:5]
        raise ValueError(f"{name}: duplicate track ids {duplicated}")
    values = vectors.to_numpy(dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"{name}: expected (n_songs, dim) with dim >= 1, got shape {values.shape}")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} songs have NaN or infinite values, e.g. "
                         f"{vectors.index[bad].tolist()[:5]}")
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        raise ValueError(f"{name}: {int(zero.sum())} songs have an all-zero vector (no cosine), e.g. "
                         f"{vectors.index[zero].tolist()[:5]}")
    return values / norms


def _percent_ci(value: float, low: float, high: float) -> str:
    """``"71.2 [65.0-77.1]"`` (percent), ``"n/a"`` for a missing value."""
    if pd.isna(value):
        return "n/a"
    if pd.isna(low) or pd.isna(high):
        return f"{100 * value:.1f}"
    return f"{100 * value:.1f} [{100 * low:.1f}-{100 * high:.1f}]"


def _fmt(value, spec: str) -> str:
    return "n/a" if pd.isna(value) else format(value, spec)


def _n_triplets_text(values: pd.Series) -> str:
    values = values.dropna().astype(int)
    if values.empty:
        return "?"
    low, high = values.min(), values.max()
    return f"{low}" if low == high else f"{low}-{high}"


# ---------------------------------------------------------------------------
# triplet accuracy


def _accuracy_errors(rows: pd.DataFrame, value: str, low: str, high: str) -> np.ndarray:
    """(2, n) non-negative error-bar lengths; 0 where the CI is missing."""
    lower = (rows[value] - rows[low]).clip(lower=0).fillna(0).to_numpy(dtype=float)
    upper = (rows[high] - rows[value]).clip(lower=0).fillna(0).to_numpy(dtype=float)
    return np.vstack([lower, upper])


def plot_leaderboard(scores: pd.DataFrame, path: Path | str, split: str = "test", source: str = "label") -> Path:
    """Horizontal bars of triplet accuracy per method for one split and triplet source.

    Two panels: 2-way accuracy (which of two songs is closer to the anchor; chance 1/2) and
    odd-one-out accuracy (chance 1/3), each with its 95 % bootstrap CI as error bars. Methods
    are sorted by 2-way accuracy, best on top, coloured by ``kind``.

    Args:
        scores: one row per method, split and source, columns ``method, kind, split, source,
            n_triplets, accuracy, ci_low, ci_high, odd_one_out, odd_one_out_ci_low,
            odd_one_out_ci_high``; ``kind`` is ``"variant"`` or ``"baseline"``; accuracies and
            CI bounds are fractions in [0, 1] (``odd_one_out*`` may be NaN).
        path: the PNG to write (parent folders are created).
        split: ``"val"`` or ``"test"``.
        source: the triplet source, ``"label"``, ``"self"`` or ``"human"``.

    Returns:
        ``path``.

    Raises:
        ValueError: a column is missing, no row has this ``split`` and ``source`` (the message
            names both and lists the pairs present), or a method has more than one row.
    """
    _require_columns(scores, SCORE_COLUMNS, "scores")
    rows = scores[(scores["split"] == split) & (scores["source"] == source)]
    if rows.empty:
        present = sorted({(str(a), str(b)) for a, b in zip(scores["split"], scores["source"])})
        raise ValueError(f"no scores for split={split!r}, source={source!r}; present (split, source): {present}")
    duplicated = rows["method"][rows["method"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"scores for split={split!r}, source={source!r} have several rows for methods {duplicated}")
    rows = rows.sort_values(["accuracy", "method"], ascending=[True, False], na_position="first")
    rows = rows.reset_index(drop=True)
    y = np.arange(len(rows))
    colours = [KIND_COLOURS.get(kind, OTHER_KIND_COLOUR) for kind in rows["kind"]]
    n_text = _n_triplets_text(rows["n_triplets"])
    per_method_n = rows["n_triplets"].nunique(dropna=False) > 1
    tick_labels = [f"{m} (n={_fmt(n, '.0f')})" if per_method_n else str(m)
                   for m, n in zip(rows["method"], rows["n_triplets"])]

    panels = [
        ("accuracy", "ci_low", "ci_high", CHANCE_2WAY, "2-way: which of two is closer", "chance 1/2"),
        ("odd_one_out", "odd_one_out_ci_low", "odd_one_out_ci_high", CHANCE_ODD_ONE_OUT,
         "odd-one-out of three", "chance 1/3"),
    ]
    with _style():
        fig, axes = plt.subplots(1, 2, sharey=True, figsize=(10, 1.6 + 0.38 * len(rows)), layout="constrained")
        for ax, (value, low, high, chance, title, chance_label) in zip(axes, panels):
            values = rows[value].to_numpy(dtype=float)
            ax.barh(y, np.nan_to_num(values), xerr=_accuracy_errors(rows, value, low, high), color=colours,
                    height=0.7, capsize=3, error_kw={"elinewidth": 1, "ecolor": "black"})
            ax.axvline(chance, color="grey", linestyle="--", linewidth=1)
            for yi, v in enumerate(values):
                # the value sits inside its bar, at the left, clear of the CI whiskers
                if np.isnan(v):
                    ax.text(0.01, yi, "n/a", va="center", fontsize=8)
                else:
                    ax.text(0.01, yi, f"{v:.2f}", va="center", fontsize=8, color="white", fontweight="bold")
            ax.set_xlim(0, 1)
            ax.set_xlabel("accuracy (fraction of triplets correct)")
            ax.set_title(title)
            ax.grid(axis="x", alpha=0.3)
            ax.legend(handles=_kind_handles(rows["kind"]) +
                      [Line2D([], [], color="grey", linestyle="--", label=chance_label)],
                      loc="lower right", framealpha=0.9)
        axes[0].set_yticks(y, tick_labels)
        axes[0].set_ylabel("method")
        fig.suptitle(f"Triplet accuracy with 95 % CI: split {split}, {source} triplets, n_triplets = {n_text}")
    return _save(fig, path)


def _kind_handles(kinds: pd.Series) -> list:
    present = list(dict.fromkeys(kinds))
    ordered = [k for k in KIND_COLOURS if k in present] + [k for k in present if k not in KIND_COLOURS]
    return [Patch(color=KIND_COLOURS.get(k, OTHER_KIND_COLOUR), label=str(k)) for k in ordered]


# ---------------------------------------------------------------------------
# embedding map


def _group_labels(labels: pd.Series, max_labels: int = MAX_MAP_LABELS) -> pd.Series:
    """Keep the ``max_labels - 1`` most frequent labels and call the rest ``"other"`` (when there are more)."""
    counts = labels.value_counts()
    if len(counts) <= max_labels:
        return labels
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    keep = {label for label, _ in ranked[: max_labels - 1]}
    return labels.where(labels.isin(keep), "other")


def _label_colours(n_labels: int) -> list:
    """Distinct colours without greys (kept for "other"): tab10, or tab20 less its greys plus two of tab20b."""
    if n_labels <= 9:
        return [plt.get_cmap("tab10")(i) for i in range(10) if i != 7]
    tab20, tab20b = plt.get_cmap("tab20"), plt.get_cmap("tab20b")
    return [tab20(i) for i in range(20) if i not in (14, 15)] + [tab20b(1), tab20b(9)]


def _project_2d(unit: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    n = len(unit)
    if n < 5:
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(unit), "PCA"
    if importlib.util.find_spec("umap") is not None:
        try:
            import umap

            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed)
            return reducer.fit_transform(unit), "UMAP"
        except ImportError as error:
            log.warning("umap is installed but does not import (%s); using t-SNE", error)
    from sklearn.manifold import TSNE

    # Euclidean distance on unit vectors is a monotonic function of cosine distance.
    tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
    return tsne.fit_transform(unit), "t-SNE"


def plot_embedding_map(vectors: pd.DataFrame, labels: pd.Series, path: Path | str, title: str, seed: int = 0) -> str:
    """2-D map of whole-song embeddings, one dot per song, coloured by label.

    The projection is UMAP (cosine metric) when the package ``umap`` imports, else t-SNE
    (scikit-learn, on L2-normalised vectors, perplexity ``min(30, (n_songs - 1) / 3)``,
    ``init="pca"``, seeded), and PCA when there are fewer than 5 songs. Its coordinates have no
    unit; the axes are named after the method (``"t-SNE 1"``, ``"t-SNE 2"``). With more than
    :data:`MAX_MAP_LABELS` labels, the less frequent ones are drawn as ``"other"``.

    Args:
        vectors: (n_songs, dim) embeddings indexed by track id; any scale (rows are L2-normalised).
        labels: track id -> label string; songs without one are drawn as ``"unlabelled"``.
        path: the PNG to write.
        title: the plot title (the method, song count and projection are appended).
        seed: seed of the projection.

    Returns:
        the projection used: ``"UMAP"``, ``"t-SNE"`` or ``"PCA"``.

    Raises:
        ValueError: fewer than 3 songs, fewer than 2 dimensions, NaN or infinite values, all-zero
            vectors or duplicate track ids.
    """
    if len(vectors) < 3:
        raise ValueError(f"an embedding map needs at least 3 songs, got {len(vectors)}")
    if vectors.shape[1] < 2:
        raise ValueError(f"an embedding map needs at least 2 dimensions, got {vectors.shape[1]}")
    unit = _unit_vectors(vectors)
    song_labels = labels.reindex(vectors.index)
    n_missing = int(song_labels.isna().sum())
    if n_missing:
        log.warning("%d of %d songs have no label; drawn as 'unlabelled'", n_missing, len(vectors))
    song_labels = _group_labels(song_labels.fillna("unlabelled").astype(str))
    coords, method = _project_2d(unit, seed)

    counts = song_labels.value_counts()
    order = sorted(counts.index, key=lambda label: (label in ("other", "unlabelled"), -counts[label], label))
    palette = _label_colours(len(order))
    with _style():
        fig, ax = plt.subplots(figsize=(7.5, 5.5), layout="constrained")
        for i, label in enumerate(order):
            mask = (song_labels == label).to_numpy()
            if label in ("other", "unlabelled"):
                style = {"color": "dimgrey", "marker": "x", "linewidths": 0.8}
            else:
                style = {"color": palette[i % len(palette)], "marker": "o", "edgecolors": "black", "linewidths": 0.3}
            ax.scatter(coords[mask, 0], coords[mask, 1], s=22, alpha=0.85, label=f"{label} ({int(mask.sum())})",
                       **style)
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.set_title(f"{title}\n{method} of {len(vectors)} songs ({unit.shape[1]}-d, cosine)")
        ax.legend(title="label (n songs)", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    _save(fig, path)
    return method


# ---------------------------------------------------------------------------
# consistency


def _consistency_columns(matched: bool) -> tuple[str, str]:
    prefix = "matched_" if matched else ""
    return f"{prefix}sdc", f"{prefix}vendi_per_segment"


def plot_consistency_by_origin(consistency: pd.DataFrame, path: Path | str, method: str, matched: bool = True,
                             matched_segments: int | None = None) -> Path:
    """Histograms of SDC and of Vendi score per segment for one method, human vs AI songs overlaid.

    Density-normalised, semi-transparent histograms on shared bins; the legend gives, per
    origin, the number of songs plotted, their median and the number of NaN songs dropped.

    Args:
        consistency: one row per method and song, columns ``method, track_id, corpus, origin,
            label, n_segments, sdc, vendi_score, vendi_per_segment, matched_sdc,
            matched_vendi_score, matched_vendi_per_segment``; ``origin`` is ``"human"`` or ``"ai"``;
            SDC is a mean cosine similarity in [-1, 1]; Vendi per segment is in (0, 1]; NaN allowed.
        path: the PNG to write.
        method: the method whose rows are plotted.
        matched: plot the ``matched_*`` columns (the first N segments of every song), else the
            whole-song ones.
        matched_segments: N, for the title only.

    Returns:
        ``path``.

    Raises:
        ValueError: a column is missing or ``method`` has no rows.
    """
    sdc_column, vendi_column = _consistency_columns(matched)
    _require_columns(consistency, ("method", "origin", sdc_column, vendi_column), "consistency")
    rows = consistency[consistency["method"] == method]
    if rows.empty:
        raise ValueError(f"consistency has no rows for method {method!r}; methods: "
                         f"{sorted(map(str, consistency['method'].unique()))}")
    origins = [o for o in ORIGIN_COLOURS if o in set(rows["origin"])]
    origins += sorted(str(o) for o in rows["origin"].dropna().unique() if o not in ORIGIN_COLOURS)
    if matched:
        scope = f"first {matched_segments} segments of each song" if matched_segments else "matched length"
    else:
        scope = "whole songs"
    panels = [(sdc_column, "SDC (mean cosine similarity)"), (vendi_column, "Vendi score / n_segments")]
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
        for ax, (column, xlabel) in zip(axes, panels):
            finite = rows[column].dropna().to_numpy(dtype=float)
            if finite.size == 0:
                ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
            else:
                bins = np.histogram_bin_edges(finite, bins=min(20, max(5, int(np.sqrt(finite.size)) + 1)))
                if bins[0] == bins[-1]:
                    bins = np.linspace(bins[0] - 0.05, bins[0] + 0.05, 6)
                for origin in origins:
                    values = rows.loc[rows["origin"] == origin, column]
                    n_nan = int(values.isna().sum())
                    values = values.dropna().to_numpy(dtype=float)
                    if values.size == 0:
                        continue
                    label = f"{origin}: n={values.size}, median {np.median(values):.3f}"
                    if n_nan:
                        label += f" ({n_nan} NaN dropped)"
                    ax.hist(values, bins=bins, density=True, alpha=0.5, label=label,
                            color=ORIGIN_COLOURS.get(origin), edgecolor="black", linewidth=0.4)
                    ax.axvline(np.median(values), color=ORIGIN_COLOURS.get(origin, "black"), linestyle="--",
                               linewidth=1)
                ax.legend(loc="best")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("probability density (1 / unit of x)")
        fig.suptitle(f"{method}: SDC and Vendi score, human vs AI ({scope}); dashed lines are medians")
    return _save(fig, path)


def consistency_summary(consistency: pd.DataFrame) -> pd.DataFrame:
    """Song-consistency statistics per method, origin and label.

    Args:
        consistency: as for :func:`plot_consistency_by_origin` (needs ``method, origin, label`` and the
            six metric columns ``sdc, vendi_score, vendi_per_segment, matched_sdc,
            matched_vendi_score, matched_vendi_per_segment``).

    Returns:
        one row per ``method, origin, label`` (NaN keys kept as groups) with ``n_songs`` (rows),
        ``n_nan`` (songs whose ``sdc`` is NaN) and, for each metric ``X``, ``median_X`` and
        ``mean_X`` over the songs where ``X`` is not NaN (NaN when none is).

    Raises:
        ValueError: a column is missing.
    """
    keys = ["method", "origin", "label"]
    _require_columns(consistency, [*keys, *CONSISTENCY_METRICS], "consistency")
    stats = [f"{stat}_{metric}" for metric in CONSISTENCY_METRICS for stat in ("median", "mean")]
    columns = [*keys, "n_songs", "n_nan", *stats]
    if consistency.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in consistency.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, key))
        row["n_songs"] = len(group)
        row["n_nan"] = int(group["sdc"].isna().sum())
        for metric in CONSISTENCY_METRICS:
            values = group[metric].dropna().astype(float)
            row[f"median_{metric}"] = float(values.median()) if len(values) else float("nan")
            row[f"mean_{metric}"] = float(values.mean()) if len(values) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------
# nearest neighbours


def neighbour_table(vectors: pd.DataFrame, labels: pd.Series, queries: Sequence[str], k: int = 5) -> pd.DataFrame:
    """The ``k`` nearest other songs of each query by cosine similarity.

    Args:
        vectors: (n_songs, dim) embeddings indexed by track id (unique); rows need not be normalised.
        labels: track id -> label string; a song without one gets NaN and ``same_label`` False.
        queries: track ids of ``vectors``.
        k: neighbours per query; more than ``n_songs - 1`` is cut to ``n_songs - 1`` with a warning.

    Returns:
        ``k`` rows per query, in query order: ``query, query_label, rank`` (1 = nearest),
        ``neighbour, neighbour_label, cosine`` (in [-1, 1]) and ``same_label``. The query itself is
        never its own neighbour (by track id; a duplicate song under another id is). Ties keep
        the order of ``vectors``.

    Raises:
        KeyError: a query is not a track id of ``vectors`` (named in the message).
        ValueError: ``k < 1``, fewer than 2 songs, NaN, all-zero vectors or duplicate track ids.
    """
    if isinstance(queries, str):
        queries = [queries]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    missing = [q for q in queries if q not in vectors.index]
    if missing:
        raise KeyError(f"queries not in vectors ({len(vectors)} songs): {missing[:5]}")
    if len(vectors) < 2:
        raise ValueError(f"nearest neighbours need at least 2 songs, got {len(vectors)}")
    unit = _unit_vectors(vectors)
    if k > len(vectors) - 1:
        log.warning("k=%d > %d other songs; using k=%d", k, len(vectors) - 1, len(vectors) - 1)
        k = len(vectors) - 1
    song_labels = labels.reindex(vectors.index)
    ids = vectors.index.to_numpy()
    positions = vectors.index.get_indexer(list(queries))
    rows = []
    for query, position in zip(queries, positions):
        cosine = unit @ unit[position]
        cosine[position] = -np.inf
        nearest = np.argsort(-cosine, kind="stable")[:k]
        query_label = song_labels.iloc[position]
        for rank, j in enumerate(nearest, start=1):
            neighbour_label = song_labels.iloc[j]
            rows.append({
                "query": query,
                "query_label": query_label,
                "rank": rank,
                "neighbour": ids[j],
                "neighbour_label": neighbour_label,
                "cosine": float(np.clip(cosine[j], -1.0, 1.0)),
                "same_label": bool(pd.notna(query_label) and query_label == neighbour_label),
            })
    return pd.DataFrame(rows, columns=list(NEIGHBOUR_COLUMNS))


# ---------------------------------------------------------------------------
# training and SSMs


def plot_training_curves(histories: Sequence[Path | str], path: Path | str) -> Path:
    """Training loss and validation triplet accuracy per epoch, one line per run.

    Args:
        histories: ``history.csv`` files with columns ``epoch, train_loss, val_accuracy`` (accuracy
            a fraction in [0, 1]); each line is named after the file's folder (the run).
        path: the PNG to write.

    Returns:
        ``path``.

    Raises:
        ValueError: no histories, or a file lacks a column (named).
        FileNotFoundError: a history file does not exist.
    """
    if not histories:
        raise ValueError("no training histories to plot")
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
        try:
            for history in histories:
                history = Path(history)
                frame = pd.read_csv(history)
                _require_columns(frame, HISTORY_COLUMNS, str(history))
                name = history.parent.name
                axes[0].plot(frame["epoch"], frame["train_loss"], marker=".", label=name)
                axes[1].plot(frame["epoch"], frame["val_accuracy"], marker=".", label=name)
        except Exception:
            plt.close(fig)
            raise
        axes[0].set(xlabel="epoch", ylabel="training loss (weighted triplet + NT-Xent)", title="Training loss")
        axes[1].axhline(CHANCE_2WAY, color="grey", linestyle="--", linewidth=1, label="chance 1/2")
        axes[1].set(xlabel="epoch", ylabel="val triplet accuracy (fraction)", ylim=(0, 1),
                    title="Validation triplet accuracy")
        for ax in axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[1].legend(title="run", loc="lower right")
        fig.suptitle(f"Training curves of {len(histories)} runs")
    return _save(fig, path)


def plot_ssms(example_ssms: Mapping[str, Mapping[str, np.ndarray]], path: Path | str,
              segment_seconds: float | None = None) -> Path:
    """Segment self-similarity matrices of a few songs (rows: methods, columns: songs).

    Args:
        example_ssms: method -> {track_id: (n_segments, n_segments) cosine SSM, values in [-1, 1]}.
        path: the PNG to write.
        segment_seconds: segment length, shown in the axis labels when given.

    Returns:
        ``path``.

    Raises:
        ValueError: no SSM at all, or an SSM that is not a square 2-D array (method and track named).
    """
    methods = sorted(m for m in example_ssms if example_ssms[m])
    if not methods:
        raise ValueError("no SSMs to plot")
    for method in methods:
        for track_id, ssm in example_ssms[method].items():
            shape = np.shape(ssm)
            if len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0:
                raise ValueError(f"SSM of {method!r}, track {track_id!r} is not square: shape {shape}")
    n_cols = max(len(example_ssms[m]) for m in methods)
    axis_label = "segment" if segment_seconds is None else f"segment ({segment_seconds:g} s each)"
    with _style():
        fig, axes = plt.subplots(len(methods), n_cols, figsize=(2.9 * n_cols + 1.2, 2.8 * len(methods) + 0.6),
                                 squeeze=False, layout="constrained")
        image = None
        for i, method in enumerate(methods):
            items = sorted(example_ssms[method].items(), key=lambda item: str(item[0]))
            for j in range(n_cols):
                ax = axes[i][j]
                if j >= len(items):
                    ax.axis("off")
                    continue
                track_id, ssm = items[j]
                ssm = np.asarray(ssm, dtype=float)
                n = ssm.shape[0]
                image = ax.imshow(ssm, vmin=-1, vmax=1, cmap="magma", origin="upper",
                                  extent=(0.5, n + 0.5, n + 0.5, 0.5), interpolation="nearest")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
                ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
                ax.set_title(f"{method}\n{track_id}", fontsize=8)
                ax.set_xlabel(axis_label)
                ax.set_ylabel(axis_label)
        fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
        fig.suptitle("Segment self-similarity matrices")
    return _save(fig, path)


# ---------------------------------------------------------------------------
# report


def _leaderboard_table(rows: pd.DataFrame, not_measured: Mapping[str, str] | None = None) -> str:
    rows = rows.sort_values(["accuracy", "method"], ascending=[False, True], na_position="last")
    table = pd.DataFrame({
        "method": rows["method"].astype(str),
        "kind": rows["kind"].astype(str),
        "n_triplets": [_fmt(n, ".0f") for n in rows["n_triplets"]],
        "2-way accuracy, % [95 % CI]": [_percent_ci(*v) for v in
                                        zip(rows["accuracy"], rows["ci_low"], rows["ci_high"])],
        "odd-one-out accuracy, % [95 % CI]": [_percent_ci(*v) for v in zip(
            rows["odd_one_out"], rows["odd_one_out_ci_low"], rows["odd_one_out_ci_high"])],
    })
    if "diff_vs_reference" in rows and rows["diff_vs_reference"].notna().any():
        # the paired difference to MECOMP's model on the same triplets (songfeel.benchmark.paired_difference)
        for prefix, name in (("", "2-way"), ("ooo_", "odd-one-out")):
            if f"{prefix}diff_vs_reference" in rows:
                table[f"{name} vs mecomp, pp [paired 95 % CI]"] = [
                    "-" if pd.isna(d) else f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                    for d, lo, hi in zip(rows[f"{prefix}diff_vs_reference"], rows[f"{prefix}diff_ci_low"],
                                         rows[f"{prefix}diff_ci_high"])]
    table = _append_not_measured(table, "2-way accuracy, % [95 % CI]", not_measured)
    return table.to_markdown(index=False, disable_numparse=True,
                             colalign=("left", "left") + ("right",) * (table.shape[1] - 2))


def _accuracy_pivot(scores: pd.DataFrame, value: str, low: str, high: str,
                    not_measured: Mapping[str, str] | None = None) -> str:
    frame = scores.assign(
        column=scores["split"].astype(str) + " / " + scores["source"].astype(str),
        cell=[_percent_ci(*v) + ("" if pd.isna(n) else f" (n={int(n)})")
              for v, n in zip(zip(scores[value], scores[low], scores[high]), scores["n_triplets"])],
    )
    order = sorted(frame["column"].unique(), key=lambda c: (not c.startswith("test"), c))
    pivot = frame.pivot_table(index=["method", "kind"], columns="column", values="cell", aggfunc="first")
    pivot = pivot.reindex(columns=order).fillna("-").reset_index()
    pivot.columns.name = None
    pivot = _append_not_measured(pivot, order[0], not_measured) if order else pivot
    return pivot.to_markdown(index=False, disable_numparse=True)


def _retrieval_table(retrieval: pd.DataFrame, not_measured: Mapping[str, str] | None = None) -> str:
    rows = retrieval.sort_values(["split", "k", "map"], ascending=[True, True, False], na_position="last")
    table = pd.DataFrame({
        "method": rows["method"].astype(str),
        "kind": rows["kind"].astype(str),
        "split": rows["split"].astype(str),
        "k": [_fmt(v, ".0f") for v in rows["k"]],
        "n_songs": [_fmt(v, ".0f") for v in rows["n_songs"]],
        "precision@k": [_fmt(v, ".3f") for v in rows["precision_at_k"]],
        "mAP": [_fmt(v, ".3f") for v in rows["map"]],
    })
    table = _append_not_measured(table, "precision@k", not_measured)
    return table.to_markdown(index=False, disable_numparse=True, colalign=("left",) * 3 + ("right",) * 4)


def _cost_table(cost: pd.DataFrame) -> str:
    table = pd.DataFrame({
        "method": cost["method"].astype(str),
        "kind": cost["kind"].astype(str),
        "parameters": [_fmt(v, ",.0f") for v in cost["n_parameters"]],
        "size fp32 (kB)": [_fmt(v / 1000, ",.1f") for v in cost["size_bytes_fp32"]],
        "ONNX (kB)": [_fmt(v / 1000, ",.1f") for v in cost["onnx_bytes"]],
        "audio (s)": [_fmt(v, ",.0f") for v in cost["audio_seconds"]],
        "time (s)": [_fmt(v, ",.2f") for v in cost["seconds"]],
        "x real time": [_fmt(v, ",.0f") for v in cost["x_real_time"]],
        "speed vs MECOMP": [_fmt(v, ".2f") for v in cost["ratio_vs_mecomp"]],
    })
    return table.to_markdown(index=False, disable_numparse=True, colalign=("left",) * 2 + ("right",) * 7)


def _consistency_tables(consistency: pd.DataFrame) -> list[str]:
    """Median consistency metrics per method and origin, then per method, origin and label."""
    medians = [f"median_{metric}" for metric in CONSISTENCY_METRICS]
    out = []
    tables = (("Medians by origin (all labels):", consistency.assign(label="all"), ["method", "origin"]),
              ("Medians by origin and label:", consistency, ["method", "origin", "label"]))
    for title, frame, keys in tables:
        summary = consistency_summary(frame)[[*keys, "n_songs", "n_nan", *medians]]
        summary = summary.rename(columns={c: c.removeprefix("median_") for c in medians})
        out += [title, "", summary.to_markdown(index=False, floatfmt=".3f"), ""]
    return out


def _append_not_measured(table: pd.DataFrame, note_column: str, not_measured: Mapping[str, str] | None) -> pd.DataFrame:
    """A table of strings with one more row per method of ``not_measured`` (method -> cause) that it
    lacks: the method, kind "baseline", "not measured on this machine: <cause>" in ``note_column``
    and "-" elsewhere, so that a baseline that could not run never goes silently missing."""
    present = set(table["method"]) if "method" in table else set()
    rows = [{column: ("baseline" if column == "kind" else not_measured_note(cause) if column == note_column
                      else method if column == "method" else "-") for column in table.columns}
            for method, cause in (not_measured or {}).items() if method not in present]
    return pd.concat([table, pd.DataFrame(rows, columns=table.columns)], ignore_index=True) if rows else table


def _image(alt: str, relative: str) -> str:
    return f"![{alt}]({relative})"


def write_report(results_dir: Path | str, *, scores: pd.DataFrame | None, retrieval: pd.DataFrame | None,
                 consistency: pd.DataFrame | None, cost: pd.DataFrame | None, histories: Sequence[Path | str],
                 example_ssms: Mapping[str, Mapping[str, np.ndarray]] | None,
                 maps: Mapping[str, tuple[pd.DataFrame, pd.Series]] | None, neighbours: pd.DataFrame | None,
                 extra_sections: Iterable[tuple[str, str]] = (), segment_seconds: float = 10.0,
                 matched_segments: int = 3, not_measured: Mapping[str, str] | None = None) -> Path:
    """Write the plots under ``results_dir/plots/`` and ``results_dir/report.md``.

    Plots written (``<method>`` passed through :func:`safe_name`):

    * ``leaderboard.png``: test split, label triplets (:func:`plot_leaderboard`);
    * ``leaderboard_<split>_<source>.png`` for every other split and source in ``scores``;
    * ``training_curves.png`` (:func:`plot_training_curves`), ``ssm_examples.png`` (:func:`plot_ssms`);
    * ``embedding_map_<method>.png`` for each entry of ``maps`` (:func:`plot_embedding_map`);
    * ``consistency_origin_<method>.png`` for each method of ``consistency`` with both human and AI
      songs (:func:`plot_consistency_by_origin`, matched length).

    ``report.md`` has the sections Leaderboard, Triplet accuracy by split and source, Retrieval,
    Cost, Training curves, SSM examples, Embedding maps, Structure, Nearest neighbours, then each
    of ``extra_sections``. Image links are relative (``plots/...``). An empty or ``None`` input
    gives a sentence instead of its plot or table; an embedding map that cannot be drawn (e.g.
    fewer than 3 songs) is logged and explained in the report.

    Args:
        results_dir: folder of the report (created).
        scores: see :func:`plot_leaderboard`.
        retrieval: columns ``method, kind, split, k, n_songs, precision_at_k, map`` (fractions).
        consistency: see :func:`plot_consistency_by_origin`.
        cost: columns ``method, kind, n_parameters, size_bytes_fp32, onnx_bytes`` (bytes),
            ``audio_seconds, seconds`` (s), ``x_real_time`` (audio seconds per wall second),
            ``ratio_vs_mecomp`` (NaN where not applicable).
        histories: ``history.csv`` paths, see :func:`plot_training_curves`.
        example_ssms: method -> {track_id: (n, n) SSM}.
        maps: method -> (vectors (n_songs, dim) indexed by track id, labels Series).
        neighbours: a table from :func:`neighbour_table`.
        extra_sections: ``(title, markdown_text)`` pairs appended as sections.
        segment_seconds: segment length of the consistency metrics, in seconds.
        matched_segments: N, the number of first segments of the matched-length metrics.
        not_measured: method -> cause, for baselines that could not run on this machine
            (e.g. bliss on a CPU without AVX-512): listed under "Baselines not measured on
            this machine" and as rows "not measured on this machine: <cause>" in the
            leaderboard, accuracy and retrieval tables.

    Returns:
        the path of ``report.md``.

    Raises:
        ValueError: a non-empty table lacks a column.
    """
    results_dir = Path(results_dir)
    plots = results_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for frame, columns, name in ((scores, SCORE_COLUMNS, "scores"), (retrieval, RETRIEVAL_COLUMNS, "retrieval"),
                                 (consistency, CONSISTENCY_COLUMNS, "consistency"), (cost, COST_COLUMNS, "cost"),
                                 (neighbours, NEIGHBOUR_COLUMNS, "neighbours")):
        if not _is_empty(frame):
            _require_columns(frame, columns, name)
    lines = ["# songfeel report", "",
             "Generated by stage 05 (`05_evaluate.py`). Validation and test songs are disjoint from training. "
             "Accuracies are fractions of triplets answered correctly, in percent in the tables, with 95 % "
             "bootstrap confidence intervals in brackets; chance is 50 % for 2-way and 33.3 % for odd-one-out.",
             ""]

    if not_measured:
        lines += ["## Baselines not measured on this machine", "",
                  "These baselines could not run here; their rows in the tables below say so.", "",
                  *(f"- **{method}**: {cause}" for method, cause in not_measured.items()), ""]

    # Leaderboard and accuracy by split and source.
    lines += ["## Leaderboard", ""]
    other_plots = []
    if _is_empty(scores):
        lines += ["No triplet scores.", ""]
    else:
        pairs = sorted({(str(s), str(t)) for s, t in zip(scores["split"], scores["source"])})
        main = scores[(scores["split"] == "test") & (scores["source"] == "label")]
        if main.empty:
            lines += [f"No test scores on label triplets (present: {', '.join(f'{s}/{t}' for s, t in pairs)}).", ""]
        else:
            plot_leaderboard(scores, plots / "leaderboard.png", "test", "label")
            lines += ["Test split, label triplets, best first.", "", _leaderboard_table(main, not_measured), "",
                      _image("test triplet accuracy, label triplets", "plots/leaderboard.png"), ""]
        for split, source in pairs:
            if (split, source) != ("test", "label"):
                name = f"leaderboard_{safe_name(split)}_{safe_name(source)}.png"
                plot_leaderboard(scores, plots / name, split, source)
                other_plots.append((f"{split} split, {source} triplets", f"plots/{name}"))

    lines += ["## Triplet accuracy by split and source", ""]
    if _is_empty(scores):
        lines += ["No triplet scores.", ""]
    else:
        lines += ["2-way accuracy, % [95 % CI] (n triplets); `-`: the method cannot score that source.", "",
                  _accuracy_pivot(scores, "accuracy", "ci_low", "ci_high", not_measured), "",
                  "Odd-one-out accuracy, % [95 % CI] (n triplets).", "",
                  _accuracy_pivot(scores, "odd_one_out", "odd_one_out_ci_low", "odd_one_out_ci_high", not_measured),
                  ""]
        for alt, relative in other_plots:
            lines += [_image(alt, relative), ""]

    lines += ["## Retrieval", ""]
    if _is_empty(retrieval):
        lines += ["No retrieval results.", ""]
    else:
        lines += ["Precision at k and mean average precision of same-label songs among the nearest "
                  "neighbours (cosine), within one split.", "", _retrieval_table(retrieval, not_measured), ""]

    lines += ["## Cost", ""]
    if _is_empty(cost):
        lines += ["No cost measurements.", ""]
    else:
        lines += ["Sizes in kB (1 kB = 1000 bytes); x real time = seconds of audio embedded per second of "
                  "wall time; speed vs MECOMP = this method's x real time / MECOMP's on the same songs in the same run (2.0: twice as fast).", "",
                  _cost_table(cost), ""]

    lines += ["## Training curves", ""]
    if not histories:
        lines += ["No training histories.", ""]
    else:
        plot_training_curves(histories, plots / "training_curves.png")
        lines += [_image("training curves", "plots/training_curves.png"), ""]

    lines += ["## SSM examples", ""]
    if not example_ssms or not any(example_ssms.values()):
        lines += ["No example SSMs.", ""]
    else:
        plot_ssms(example_ssms, plots / "ssm_examples.png", segment_seconds)
        lines += [f"Cosine similarity between the embeddings of the {segment_seconds:g} s segments of a few "
                  "test songs.", "", _image("segment SSMs", "plots/ssm_examples.png"), ""]

    lines += ["## Embedding maps", ""]
    if not maps:
        lines += ["No embedding maps.", ""]
    for method, (vectors, labels) in (maps or {}).items():
        name = f"embedding_map_{safe_name(method)}.png"
        try:
            projection = plot_embedding_map(vectors, labels, plots / name, f"Song embeddings: {method}")
        except ValueError as error:
            log.warning("no embedding map for %s: %s", method, error)
            lines += [f"{method}: no map ({error}).", ""]
            continue
        lines += [f"{method}: {projection} of {len(vectors)} songs.", "", _image(f"{method} embedding map",
                                                                                 f"plots/{name}"), ""]

    lines += ["## Structure", "",
              f"Each song is cut into {segment_seconds:g} s segments and every segment is embedded. "
              "**SDC** (structural derivation consistency) is the mean cosine similarity between the first "
              "segment and every later one (higher: later parts stay close to the opening). The **Vendi score** "
              "(q = 1; Friedman & Dieng, arXiv 2210.02410) is the exponential of the Shannon entropy of the "
              "eigenvalues of the segment cosine similarity matrix divided by n: the effective number of "
              "distinct segments, from 1 to n_segments. **Vendi / n_segments** divides it by the number of "
              "segments because the raw score grows with song length. "
              f"To compare songs of different lengths, the **matched** metrics use only the first "
              f"{matched_segments} segments ({matched_segments * segment_seconds:g} s) of every song. "
              "Songs with a single segment have no SDC or Vendi score: they are counted in `n_nan` and left "
              "out of medians and means, never averaged.", ""]
    if _is_empty(consistency):
        lines += ["No consistency metrics.", ""]
    else:
        lines += _consistency_tables(consistency)
        both = [m for m, group in consistency.groupby("method", sort=True)
                if {"human", "ai"} <= set(group["origin"].dropna())]
        if not both:
            lines += ["No method has both human and AI songs, so there is no human-vs-AI comparison.", ""]
        for method in both:
            name = f"consistency_origin_{safe_name(method)}.png"
            plot_consistency_by_origin(consistency, plots / name, method, matched=True, matched_segments=matched_segments)
            lines += [_image(f"{method}: consistency, human vs AI", f"plots/{name}"), ""]

    lines += ["## Nearest neighbours", ""]
    if _is_empty(neighbours):
        lines += ["No nearest-neighbour table.", ""]
    else:
        lines += ["The nearest other songs of a few queries by cosine similarity of their embeddings.", "",
                  neighbours.to_markdown(index=False, floatfmt=".3f"), ""]

    for title, text in extra_sections:
        lines += [f"## {title}", "", text.rstrip(), ""]

    report = results_dir / "report.md"
    report.write_text("\n".join(lines))
    log.info("wrote report to %s", report)
    return report
