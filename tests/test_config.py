"""Config is the single source (issue 23): every option of every config group composes, the objects built from
the composed config carry conf's values field by field, and no config field or function parameter has a numeric
default that duplicates a conf key."""

from __future__ import annotations

import dataclasses
import inspect
import numbers
from collections.abc import Callable, Mapping

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from songfeel import corpora, losses, sampler, store
from songfeel.augment import LogMelAugment
from songfeel.features import FeatureConfig
from songfeel.hashing import config_hash
from songfeel.models import heads
from songfeel.models.embedder import SongEmbedder, build_embedder
from songfeel.models.embedder import model_config as embedder_config
from songfeel.models.encoder import WindowEncoder
from songfeel.segmentation import baselines, medleys, peaks, scoring, ssmnet, training
from songfeel.segmentation.baselines import FooteFeatureConfig
from songfeel.segmentation.config import (
    feature_config,
    foote_feature_config,
    model_config,
    section,
    train_config,
)
from songfeel.segmentation.dataset import medley_options, sampler_options
from songfeel.segmentation.features import StructureFeatureConfig
from songfeel.segmentation.ssmnet import SSMNetConfig, SSMNetTrainConfig
from songfeel.teacher import musicnn
from songfeel.teacher.stage import teacher_config_hash, write_teacher_store

CONF = REPO / "conf"
#: Every config group (a folder of conf/) and every option of it (a file of that folder).
GROUPS = sorted(path.name for path in CONF.iterdir() if path.is_dir())
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose("config", overrides=list(overrides))


def plain(node) -> dict:
    """A config section as plain containers (resolved)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def assert_fields_are(obj, values: Mapping, names=None) -> None:
    """Each dataclass field of ``obj`` (or each of ``names``) equals conf's value (lists compare as tuples)."""
    for name in names or [f.name for f in dataclasses.fields(obj)]:
        expected, actual = values[name], getattr(obj, name)
        if isinstance(expected, list):
            expected, actual = tuple(expected), tuple(actual)
        assert actual == expected, f"{type(obj).__name__}.{name} = {actual!r}, conf says {expected!r}"


def test_every_group_has_options_and_the_defaults_name_real_files():
    assert {"features", "segmentation", "model", "head", "window", "loss", "augment", "teacher"} <= set(GROUPS)
    for entry in OmegaConf.load(CONF / "config.yaml").defaults:
        if not OmegaConf.is_dict(entry):
            continue
        for group, option in entry.items():
            group = str(group).removeprefix("optional ").removeprefix("override ")
            if option is not None and group in GROUPS:
                assert (CONF / group / f"{option}.yaml").is_file(), f"{group}={option}"


@pytest.fixture(scope="module", params=OPTIONS, ids=[f"{group}={option}" for group, option in OPTIONS])
def composed(request) -> tuple[str, str, DictConfig]:
    group, option = request.param
    cfg = compose_config(f"{group}={option}")
    return group, option, cfg


def leaves(node, prefix=()) -> dict[tuple, object]:
    if isinstance(node, dict):
        return {key: value for name, child in node.items() for key, value in leaves(child, (*prefix, name)).items()}
    return {prefix: node}


def test_the_option_is_the_one_composed(composed):
    """Every value the option's file sets (its own, not what it extends) is in the composed config, unresolved."""
    group, option, cfg = composed
    own = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"), resolve=False)
    own.pop("defaults", None)
    composed_raw = OmegaConf.to_container(cfg if group == "experiment" else cfg[group], resolve=False)
    assert own
    for path, value in leaves(own).items():
        node = composed_raw
        for part in path:
            node = node[part]
        assert node == value, f"{group}={option}: {'.'.join(map(str, path))}"


def test_stage_02s_front_end_carries_conf(composed):
    _, _, cfg = composed
    assert_fields_are(FeatureConfig.from_mapping(cfg.features), plain(cfg.features))


def test_segmentation_objects_carry_conf(composed):
    _, _, cfg = composed
    structure = cfg.segmentation
    features, model, train = plain(structure.features), plain(structure.model), plain(structure.train)
    front_end = feature_config(structure)
    assert_fields_are(front_end, features)
    net = model_config(structure)
    assert_fields_are(net, model, [f.name for f in dataclasses.fields(SSMNetConfig)
                                   if f.name not in ("n_mels", "patch_steps", "patch_hop_seconds")])
    # The patch shape and the SSM frame period are the front end's, derived from conf's features.
    assert (net.n_mels, net.patch_steps) == (features["n_mels"], features["patch_steps"])
    assert net.patch_hop_seconds == front_end.patch_hop_seconds == pytest.approx(
        features["patch_hop_steps"] * max(1, int(features["step_seconds"] * features["sample_rate"]
                                                 / features["hop_length"] + 1e-9))
        * features["hop_length"] / features["sample_rate"])
    assert_fields_are(train_config(structure), train)
    evaluation = section(structure, "eval")
    assert_fields_are(foote_feature_config(structure), evaluation["foote"]["frames"])
    for method in ("ssmnet", "foote"):
        settings = peaks.peak_settings(evaluation[method])
        assert settings == {key: evaluation[method][key] for key in peaks.PEAK_KEYS}
    medley = plain(structure.medleys)
    options = medley_options(structure)
    assert {key: list(value) if isinstance(value, tuple) else value for key, value in options.items()} == {
        key: medley[key] for key in options}
    sampler = sampler_options(structure)
    assert sampler == {
        "sample_rate": features["sample_rate"], "n_sections": tuple(medley["n_sections"]),
        "section_seconds": tuple(medley["section_seconds"]),
        "crossfade_seconds": tuple(train["augment"]["crossfade_seconds"]),
        "same_song_probability": medley["same_song_probability"],
        "repeat_probability": medley["repeat_probability"], "gain_db": train["augment"]["gain_db"],
        "seed": train["seed"]}


def test_the_embedder_carries_conf(composed):
    _, _, cfg = composed
    features = FeatureConfig.from_mapping(cfg.features)
    model = build_embedder(cfg, features)
    window, student, head = plain(cfg.window), plain(cfg.model), plain(cfg.head)
    assert model.window_frames == features.seconds_to_frames(window["window_seconds"])
    assert model.hop_frames == features.seconds_to_frames(window["hop_seconds"])
    assert model.input_norm.num_features == features.n_mels
    # The stem convolution, then the pointwise convolution of each depthwise-separable block.
    pointwise = [layer for layer in model.encoder.modules()
                 if isinstance(layer, torch.nn.Conv2d) and layer.kernel_size == (1, 1)]
    channels = [model.encoder.net[0].out_channels] + [conv.out_channels for conv in pointwise]
    assert channels == student["encoder_channels"]
    assert model.projection.out_features == student["embedding_dim"]
    assert type(model.head).__name__ == head["_target_"].rsplit(".", 1)[1]
    if isinstance(model.head, heads.GRUHead):
        assert (model.head.gru.hidden_size, model.head.gru.num_layers) == (head["hidden_size"], head["num_layers"])
    else:
        assert (model.head.out_dim, model.head.num_heads, model.head.ff[0].out_features) == (
            head["model_dim"], head["num_heads"], head["ff_dim"])
    # A checkpoint rebuilds the model from exactly these three groups.
    assert embedder_config(cfg) == {"window": window, "model": student, "head": head}


def test_augmentation_carries_conf(composed):
    _, _, cfg = composed
    augment = LogMelAugment.from_mapping(cfg.augment, cfg.features)
    assert_fields_are(augment, plain(cfg.augment), [f.name for f in dataclasses.fields(LogMelAugment)
                                                   if f.name != "features"])
    assert augment.features == FeatureConfig.from_mapping(cfg.features)


def test_the_teacher_config_carries_conf(composed):
    _, _, cfg = composed
    teacher = plain(cfg.teacher)
    assert teacher_config_hash(cfg.teacher) == teacher_config_hash(teacher)
    for key, other in (("model", "MSD_musicnn"), ("outputs", ["tags"]), ("patch_hop_seconds", 0.75),
                       ("target_lufs", -20.0)):
        assert teacher_config_hash({**teacher, key: other}) != teacher_config_hash(teacher), key
    assert teacher_config_hash(teacher) != config_hash(teacher)  # the targets' version is part of it


def test_the_loss_and_crop_settings_carry_conf(composed):
    from songfeel.train import crop_frame_range, distillation_weights

    _, _, cfg = composed
    loss = plain(cfg.loss)
    assert distillation_weights(cfg.loss) == (loss["distill_weight"], loss["relational_weight"])
    features = FeatureConfig.from_mapping(cfg.features)
    low, high = crop_frame_range(cfg, features)
    window, hop = (features.seconds_to_frames(cfg.window[key]) for key in ("window_seconds", "hop_seconds"))
    assert (low, high) == tuple(window + (n - 1) * hop for n in cfg.train.crop_windows)


# --- no code default duplicates a conf key ---------------------------------------------------------------------


def conf_keys(*sections: str) -> dict[str, object]:
    """The keys of conf sections (``group/option:dotted.path``) with their values, over every option of a group
    when the option is ``*``."""
    keys = {}
    for spec in sections:
        where, _, path = spec.partition(":")
        group, option = where.split("/")
        for file in sorted((CONF / group).glob(f"{option}.yaml")):
            node = OmegaConf.to_container(OmegaConf.load(file), resolve=False)
            for part in filter(None, path.split(".")):
                node = node[part]
            keys.update({key: value for key, value in node.items() if key != "defaults"})
    return keys


def is_numeric(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Number):
        return True
    return isinstance(value, (tuple, list)) and bool(value) and all(is_numeric(v) for v in value)


def defaults_of(target) -> dict[str, object]:
    """The default of every dataclass field, or of every parameter of a function or a class's ``__init__``."""
    if dataclasses.is_dataclass(target):
        found = {}
        for field in dataclasses.fields(target):
            if field.default is not dataclasses.MISSING:
                found[field.name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                found[field.name] = field.default_factory()
        return found
    function = target.__init__ if inspect.isclass(target) else target
    return {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


SEGMENTATION = "segmentation/default"
#: Each config dataclass and each function that takes conf's knobs, with the conf sections it takes them from.
CONFIGURED: list[tuple[Callable | type, tuple[str, ...]]] = [
    (FeatureConfig, ("features/*:",)),
    (StructureFeatureConfig, (f"{SEGMENTATION}:features",)),
    (SSMNetConfig, (f"{SEGMENTATION}:model", f"{SEGMENTATION}:features")),
    (SSMNetTrainConfig, (f"{SEGMENTATION}:train",)),
    (ssmnet.SSMNet, (f"{SEGMENTATION}:model",)),
    (training.fit_songs, (f"{SEGMENTATION}:train",)),
    (FooteFeatureConfig, (f"{SEGMENTATION}:eval.foote.frames",)),
    (baselines.frame_features, (f"{SEGMENTATION}:eval.foote", f"{SEGMENTATION}:eval.foote.frames")),
    (baselines.foote_novelty, (f"{SEGMENTATION}:eval.foote",)),
    (baselines.foote_segmentation, (f"{SEGMENTATION}:eval.foote",)),
    (baselines.laplacian_segmentation, (f"{SEGMENTATION}:eval.laplacian",)),
    (baselines.fine_features, (f"{SEGMENTATION}:features",)),
    (peaks.pick_peaks, (f"{SEGMENTATION}:eval.ssmnet", f"{SEGMENTATION}:eval.foote")),
    (peaks.detect_boundaries, (f"{SEGMENTATION}:eval.ssmnet", f"{SEGMENTATION}:eval.foote")),
    (peaks.refine_boundaries, (f"{SEGMENTATION}:eval.ssmnet",)),
    (peaks.label_segments, (f"{SEGMENTATION}:eval.ssmnet",)),
    (medleys.random_pattern, (f"{SEGMENTATION}:medleys",)),
    (medleys.build_medleys, (f"{SEGMENTATION}:medleys",)),
    (medleys.MedleySampler, (f"{SEGMENTATION}:medleys", f"{SEGMENTATION}:train.augment", f"{SEGMENTATION}:train")),
    (scoring.summarize, (f"{SEGMENTATION}:eval",)),
    (scoring.paired_differences, (f"{SEGMENTATION}:eval",)),
    (LogMelAugment, ("augment/*:",)),
    (store.write_store, ("features/*:",)),
    (heads.GRUHead, ("head/gru:",)),
    (heads.AttentionHead, ("head/attention:",)),
    (SongEmbedder, ("model/*:",)),
    (losses.nt_xent_loss, ("loss/*:",)),
    (losses.mined_triplet_loss, ("loss/*:",)),
    (sampler.TripletStream, ("train/default:", "augment/*:")),
    (musicnn.normalise_loudness, ("teacher/musicnn:",)),
    (write_teacher_store, ("teacher/musicnn:",)),
    (corpora.human_soundtrack_songs, ("eval/default:reference",)),
]

#: Parameters that take a conf knob that is not a number, or a conf knob under another name: none may have a
#: default either.
NO_DEFAULT = [
    (baselines.frame_features, "feature"),  # eval.foote.features
    (baselines.checkerboard_kernel, "sigma"),  # eval.foote.kernel_sigma
    (peaks.refine_boundaries, "radius_seconds"),  # local_radius_seconds
    (peaks.refine_boundaries, "window_seconds"),  # local_window_seconds
    (peaks.label_segments, "distance_threshold"),  # label_distance
    (medleys.build_medleys, "audio_format"),  # medleys.audio_format
    (scoring.summarize, "n_resamples"),  # eval.bootstrap_resamples
    (scoring.paired_differences, "n_resamples"),
    (WindowEncoder, "channels"),  # model.encoder_channels
    (losses.mined_triplet_loss, "mining"),  # loss.mining
    (sampler.TripletStream, "crop_group"),  # train.batch_size
    (sampler.TripletStream, "samples_per_epoch"),  # train.samples_per_epoch (null: every triplet)
    (store.write_store, "dtype"),  # features.dtype
    (store.write_store, "backend"),  # features.backend
    (store.write_store, "dask_address"),  # features.dask_address
]


@pytest.mark.parametrize(("target", "sections"), [
    pytest.param(target, sections, id=target.__qualname__)
    for target, sections in CONFIGURED])
def test_no_numeric_default_duplicates_a_conf_key(target, sections):
    keys = conf_keys(*sections)
    assert keys, sections
    duplicated = {name: default for name, default in defaults_of(target).items()
                  if name in keys and is_numeric(default)}
    assert not duplicated, f"{target.__qualname__} defaults {duplicated}: conf ({', '.join(sections)}) sets them"


@pytest.mark.parametrize(("target", "name"), NO_DEFAULT, ids=[f"{t.__qualname__}.{n}" for t, n in NO_DEFAULT])
def test_no_other_conf_knob_has_a_default(target, name):
    assert name in inspect.signature(target).parameters
    assert name not in defaults_of(target), f"{target.__qualname__}({name}=...) takes a conf knob: no default"


def test_the_introspection_sees_a_duplicated_default():
    """The check is not vacuous: a dataclass or a function that defaults a conf key is caught."""

    @dataclasses.dataclass(frozen=True)
    class Shadow:
        patch_steps: int = 40

    def shadow(audio, kernel_seconds: float = 12.0, feature: str = "mfcc"):
        return audio

    assert defaults_of(Shadow) == {"patch_steps": 40}
    assert "patch_steps" in conf_keys(f"{SEGMENTATION}:features")
    assert defaults_of(shadow) == {"kernel_seconds": 12.0, "feature": "mfcc"}
    assert is_numeric(defaults_of(shadow)["kernel_seconds"]) and not is_numeric("mfcc") and not is_numeric(True)
    assert is_numeric((4, 8)) and not is_numeric(())
