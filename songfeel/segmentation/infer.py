"""Segmentation of any audio: SSM-Net's pass, its boundaries and labels, and the baseline segmenters."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import soxr
import torch

from songfeel.segmentation.annotations import Segmentation
from songfeel.segmentation.baselines import (
    cosine_ssm,
    foote_novelty,
    foote_segmentation,
    laplacian_segmentation,
)
from songfeel.segmentation.config import feature_config, foote_feature_config, section
from songfeel.segmentation.features import (
    patch_times,
    patches,
    step_start_times,
    structure_features,
)
from songfeel.segmentation.fusion import fuse_novelty
from songfeel.segmentation.peaks import detect_boundaries, label_segments, peak_settings
from songfeel.segmentation.ssmnet import (
    SSMNet,
    SSMNetOutput,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentDetails:
    """What :func:`segment_audio` computed, for plots.

    Attributes:
        times: float64 (n_patches,) SSM frame times in seconds (patch centres).
        ssm: float32 (n_patches, n_patches) estimated SSM, in [0, 1].
        novelty: float32 (n_patches,) estimated novelty curve, in [0, 1].
        embeddings: float32 (n_patches, embedding_dim), unit L2 norm.
        boundaries: float64 (n_boundaries,) picked boundaries in seconds.
        duration: the audio's duration in seconds.
    """

    times: np.ndarray
    ssm: np.ndarray
    novelty: np.ndarray
    embeddings: np.ndarray
    boundaries: np.ndarray
    duration: float


def segmentation_from_outputs(out, times: np.ndarray, duration: float, peaks: Mapping,
                               fine: tuple[np.ndarray, np.ndarray] | None = None, novelty: np.ndarray | None = None,
                               source: str = "ssmnet",
                               label_frames: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Segmentation, dict]:
    """Boundaries picked on a novelty curve of a one-song :class:`SSMNetOutput`, labels by clustering embeddings.

    ``peaks`` is a peak-picking section (``eval.ssmnet`` or ``eval.fusion``):
    :data:`~songfeel.segmentation.peaks.PEAK_KEYS` and ``label_distance``. ``novelty`` (n_frames,),
    on ``times``, replaces SSM-Net's own curve when given (the fused curve of :func:`fused_novelty`).
    ``label_frames``, frame features (n, n_dims) and their times in seconds (n,), replace SSM-Net's
    embeddings for the labels when given (Foote's frames, for ``eval.fusion.labels: foote``).
    """
    novelty = out.novelty[0].detach().cpu().numpy() if novelty is None else np.asarray(novelty)
    embeddings = out.embeddings[0].detach().cpu().numpy()
    fine_steps, fine_starts = fine if fine is not None else (None, None)
    boundaries = detect_boundaries(novelty, times, duration, fine_steps, fine_starts, **peak_settings(peaks))
    features, feature_times = (embeddings, times) if label_frames is None else label_frames
    labels = label_segments(features, feature_times, boundaries, float(peaks["label_distance"]))
    segmentation = Segmentation.from_boundaries(boundaries, labels, duration, source)
    return segmentation, {"novelty": novelty, "embeddings": embeddings, "boundaries": boundaries}


class SSMNetPass(NamedTuple):
    """One song through SSM-Net's front end and network (:func:`run_ssmnet`).

    Attributes:
        out: the :class:`~songfeel.segmentation.ssmnet.SSMNetOutput` of the song (batch of 1).
        times: float64 (n_patches,) SSM frame times in seconds.
        steps: float32 (n_steps, n_mels) the log-mel steps (the fine frames of local refinement).
        starts: float64 (n_steps,) their start times in seconds.
        audio: float32 (n_samples,) the song at ``cfg.features.sample_rate`` Hz.
        duration: the song's length in seconds.
    """

    out: SSMNetOutput
    times: np.ndarray
    steps: np.ndarray
    starts: np.ndarray
    audio: np.ndarray
    duration: float


@torch.no_grad()
def run_ssmnet(model: SSMNet, audio: np.ndarray, sample_rate: int, cfg) -> SSMNetPass:
    """Resample one song to the front end's rate, compute its log-mel steps and patches, run SSM-Net.

    Args:
        model: a trained :class:`SSMNet` matching ``cfg.features``; put in eval mode.
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz of ``audio`` (resampled with soxr to ``cfg.features.sample_rate`` when it differs).
        cfg: the ``structure`` config or a checkpoint's; reads ``features``.

    Returns:
        the :class:`SSMNetPass`.

    Raises:
        ValueError: ``audio`` is not 1-D, holds NaN/Inf, is silent or is shorter than one patch.
    """
    features = feature_config(cfg)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono with shape (n_samples,), got shape {audio.shape}")
    duration = audio.shape[0] / sample_rate
    if sample_rate != features.sample_rate:
        audio = soxr.resample(audio, sample_rate, features.sample_rate, quality="HQ").astype(np.float32)
    steps = structure_features(audio, features)
    song_patches = patches(steps, features)
    model.eval()
    device = next(model.parameters()).device
    out = model(torch.as_tensor(song_patches, device=device)[None])
    return SSMNetPass(out, patch_times(len(song_patches), features), steps, step_start_times(len(steps), features),
                      audio, duration)


#: What the fused method may label segments with: SSM-Net's embeddings or Foote's frame features.
FUSION_LABELS = ("ssmnet", "foote")


def fusion_section(cfg) -> dict:
    """``eval.fusion`` with its defaults, switched on or not: a key it lacks comes from ``eval.ssmnet``
    (``label_distance`` or ``local_window_seconds`` of a tuned choice read back from ``tuning.csv`` over an
    older checkpoint's config, which has no ``eval.fusion``), and without ``labels`` segments are labelled
    with SSM-Net's embeddings."""
    options = section(cfg, "eval")
    return {"labels": "ssmnet", **options["ssmnet"], **(options.get("fusion") or {})}


def fusion_settings(cfg) -> dict | None:
    """:func:`fusion_section` when fusion is switched on (its ``weight`` is set), else None.

    Raises:
        ValueError: the weight lies outside [0, 1], ``labels`` is not one of :data:`FUSION_LABELS`, or
            the feature is not one of ``eval.foote.features``.
    """
    settings = fusion_section(cfg)
    if settings.get("weight") is None:
        return None
    settings["weight"] = float(settings["weight"])
    if not 0.0 <= settings["weight"] <= 1.0:
        raise ValueError(f"eval.fusion.weight must lie in [0, 1], got {settings['weight']}")
    if settings["labels"] not in FUSION_LABELS:
        raise ValueError(f"eval.fusion.labels must be one of {FUSION_LABELS}, got {settings['labels']!r}")
    features = list(section(cfg, "eval")["foote"]["features"])
    if settings["feature"] not in features:
        raise ValueError(f"eval.fusion.feature {settings['feature']!r} is not one of eval.foote.features {features}")
    return settings


def fused_novelty(song: SSMNetPass, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SSM-Net's novelty of one song fused with Foote's on ``eval.fusion.feature``
    (:func:`~songfeel.segmentation.fusion.fuse_novelty`, weight ``eval.fusion.weight``).

    Foote's curve uses ``eval.foote``'s ``hop_seconds``, ``kernel_seconds`` and ``kernel_sigma``.

    Args:
        song: the song's :class:`SSMNetPass`.
        cfg: the ``segmentation`` config or a checkpoint's, with fusion switched on (:func:`fusion_settings`).

    Returns:
        float64 fused novelty on ``song.times``, shape (n_patches,), in [0, 1]; and Foote's standardised
        frame features (n_frames, n_dims) with their start times in seconds (n_frames,).

    Raises:
        ValueError: fusion is off, or as :func:`fusion_settings`.
    """
    fusion = fusion_settings(cfg)
    if fusion is None:
        raise ValueError("eval.fusion.weight is null: the fusion method is switched off")
    foote = section(cfg, "eval")["foote"]
    classic, times, features = foote_novelty(song.audio, feature_config(cfg).sample_rate, fusion["feature"],
                                             float(foote["hop_seconds"]), float(foote["kernel_seconds"]),
                                             float(foote["kernel_sigma"]), foote_feature_config(cfg))
    fused = fuse_novelty(song.out.novelty[0].cpu().numpy(), song.times, classic, times, fusion["weight"])
    return fused, features, times


#: Methods that segment from SSM-Net's pass: its own novelty, or that novelty fused with Foote's.
PASS_METHODS = ("ssmnet", "fusion")


def segment_pass(song: SSMNetPass, cfg, method: str = "ssmnet") -> tuple[Segmentation, SegmentDetails]:
    """Boundaries and labels of one song from its SSM-Net pass (:func:`run_ssmnet`).

    ``method`` ``"ssmnet"`` picks peaks on SSM-Net's novelty with ``eval.ssmnet``; ``"fusion"`` on
    :func:`fused_novelty` with ``eval.fusion``. Segments are labelled by clustering SSM-Net's
    embeddings, or for ``"fusion"`` with ``eval.fusion.labels: foote`` Foote's frame features.

    Returns:
        the segmentation (``source=method``) and :class:`SegmentDetails`.

    Raises:
        ValueError: an unknown ``method``, or fusion asked for while it is off.
    """
    label_frames = None
    if method == "ssmnet":
        peaks, novelty = section(cfg, "eval")["ssmnet"], None
    elif method == "fusion":
        peaks = fusion_settings(cfg)
        novelty, features, times = fused_novelty(song, cfg)
        label_frames = (features, times) if peaks["labels"] == "foote" else None
    else:
        raise ValueError(f"unknown SSM-Net method {method!r}; expected one of {PASS_METHODS}")
    segmentation, arrays = segmentation_from_outputs(song.out, song.times, song.duration, peaks,
                                                      fine=(song.steps, song.starts), novelty=novelty, source=method,
                                                      label_frames=label_frames)
    details = SegmentDetails(times=song.times, ssm=song.out.ssm[0].cpu().numpy(), novelty=arrays["novelty"],
                             embeddings=arrays["embeddings"], boundaries=arrays["boundaries"],
                             duration=song.duration)
    return segmentation, details


def segment_audio(model: SSMNet, audio: np.ndarray, sample_rate: int, cfg,
                  method: str = "ssmnet") -> tuple[Segmentation, SegmentDetails]:
    """Segment one song with SSM-Net: features, patches, SSM and novelty, peaks, labels.

    The audio is resampled (soxr) to ``cfg.features.sample_rate`` when it differs
    (:func:`run_ssmnet`). Boundaries are :func:`~songfeel.segmentation.peaks.detect_boundaries`
    on the novelty curve with ``cfg.eval.ssmnet`` (peak picking, then optional local
    refinement on the log-mel steps); each segment's label clusters its mean embedding
    (:func:`~songfeel.segmentation.peaks.label_segments`). With ``method="fusion"`` the novelty is
    :func:`fused_novelty` and the peak picking ``cfg.eval.fusion`` (:func:`segment_pass`).
    ``model`` is put in eval mode.

    Args:
        model: a trained :class:`SSMNet` matching ``cfg.features``.
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz of ``audio``.
        cfg: the ``structure`` config or a checkpoint's (:func:`load_ssmnet`);
            reads ``features`` and ``eval.ssmnet`` (and ``eval.fusion``, ``eval.foote`` for fusion).
        method: ``"ssmnet"`` or ``"fusion"``.

    Returns:
        the segmentation (covering ``[0, n_samples / sample_rate]`` seconds, ``source=method``)
        and :class:`SegmentDetails`.

    Raises:
        ValueError: ``audio`` is not 1-D, holds NaN/Inf, is silent or is shorter than
            one patch (``cfg.features``: 1.86 s by default); or as :func:`segment_pass`.
    """
    return segment_pass(run_ssmnet(model, audio, sample_rate, cfg), cfg, method)


def baseline_segmenters(cfg) -> dict[str, Callable[[np.ndarray, int], Segmentation]]:
    """The baselines of ``cfg.eval``: ``foote_<feature>`` per Foote feature and ``laplacian``.

    Each maps ``(audio, sample_rate)`` to a :class:`Segmentation`. ``eval.foote.by_feature.<feature>``,
    when present (stage 05 fills it from validation tuning, :mod:`songfeel.segmentation.tuning`),
    overrides ``eval.foote``'s keys for that feature.
    """
    options = section(cfg, "eval")
    foote = dict(options["foote"])
    foote_features = foote.pop("features")
    by_feature = foote.pop("by_feature", None) or {}
    foote["frames"] = foote_feature_config(cfg)
    foote["fine_config"] = feature_config(cfg)  # local refinement searches SSM-Net's own input frames
    segmenters = {}
    for feature in foote_features:
        settings = {**foote, **by_feature.get(feature, {})}
        segmenters[f"foote_{feature}"] = (
            lambda audio, rate, feature=feature, settings=settings: foote_segmentation(
                audio, rate, feature=feature, **settings))
    laplacian = dict(options["laplacian"])
    segmenters["laplacian"] = lambda audio, rate: laplacian_segmentation(audio, rate, **laplacian)
    return segmenters


def foote_audio(audio: np.ndarray, sample_rate: int, cfg, feature: str) -> tuple[Segmentation, SegmentDetails]:
    """Segment one song with Foote novelty on ``feature`` as stage 05 scores it (Foote, ICME 2000).

    The settings are ``cfg.eval.foote`` with ``eval.foote.by_feature[feature]`` over them (the peak
    picking tuned on the validation medleys, :func:`~songfeel.segmentation.tuning.with_tuned_peaks`).

    Args:
        audio: mono samples, shape (n_samples,).
        sample_rate: Hz of ``audio``.
        cfg: the ``segmentation`` config or a checkpoint's; reads ``features`` and ``eval.foote``.
        feature: ``"mfcc"`` or ``"logmel"``, one of ``eval.foote.features``.

    Returns:
        the segmentation (``source="foote_<feature>"``) and :class:`SegmentDetails` for plots:
        Foote's frame times (centres, seconds), the cosine SSM of its frame features, its novelty
        curve scaled to a peak of 1, the frame features and the boundaries.

    Raises:
        ValueError: ``feature`` is not one of ``eval.foote.features``, or the audio is silent, holds
            NaN/Inf or is too short for the features.
    """
    foote = dict(section(cfg, "eval")["foote"])
    if feature not in foote["features"]:
        raise ValueError(f"Foote feature {feature!r} is not one of eval.foote.features {foote['features']}")
    segmentation = baseline_segmenters(cfg)[f"foote_{feature}"](np.asarray(audio, dtype=np.float32), sample_rate)
    settings = {**foote, **(foote.get("by_feature") or {}).get(feature, {})}
    novelty, starts, features = foote_novelty(np.asarray(audio, dtype=np.float32), sample_rate, feature,
                                              float(settings["hop_seconds"]), float(settings["kernel_seconds"]),
                                              float(settings["kernel_sigma"]), foote_feature_config(cfg))
    peak = float(np.max(novelty)) if len(novelty) else 0.0
    details = SegmentDetails(times=starts + float(settings["hop_seconds"]) / 2, ssm=cosine_ssm(features),
                             novelty=novelty / peak if peak > 0 else novelty, embeddings=features,
                             boundaries=segmentation.boundaries(), duration=segmentation.duration)
    return Segmentation(segmentation.intervals, segmentation.labels, segmentation.duration,
                        f"foote_{feature}"), details
