"""The plots of stage 05's report (evaluation).

Every plot is a PNG at :data:`DPI` dots per inch, with labelled axes (units where
they have one), a title and fonts of at least 8 pt; the figure is closed after
saving. Inputs are long-format tables built by the caller; their columns are
listed in each function's docstring (and in :mod:`songfeel.report.common`). Missing
values (a method that cannot score a triplet source, a song with one segment) are
dropped and counted, never averaged.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from songfeel.report.common import (  # noqa: E402
    HISTORY_COLUMNS,
    SCORE_COLUMNS,
    fmt,
    require_columns,
    unit_vectors,
)

log = logging.getLogger(__name__)

DPI = 110
MAX_MAP_LABELS = 20
KIND_COLOURS = {"variant": "tab:blue", "baseline": "tab:orange"}
OTHER_KIND_COLOUR = "tab:grey"
ORIGIN_COLOURS = {"human": "tab:green", "ai": "tab:purple"}
CHANCE_2WAY = 1 / 2
CHANCE_ODD_ONE_OUT = 1 / 3

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
    require_columns(scores, SCORE_COLUMNS, "scores")
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
    tick_labels = [f"{m} (n={fmt(n, '.0f')})" if per_method_n else str(m)
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
    unit = unit_vectors(vectors)
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
    require_columns(consistency, ("method", "origin", sdc_column, vendi_column), "consistency")
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
                require_columns(frame, HISTORY_COLUMNS, str(history))
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
