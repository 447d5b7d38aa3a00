import json

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

import songfeel.train as train_module
from songfeel.embed import triplet_accuracy_on_store, triplet_excerpts
from songfeel.models.embedder import build_embedder, load_checkpoint
from songfeel.store import FeatureStore
from songfeel.train import crop_frame_range, select_device, train_variant
from songfeel.triplets import build_triplets

from conftest import REPO


@pytest.fixture(scope="module")
def tiny_triplets(tmp_path_factory, small_store):
    store_path, rows = small_store
    durations = dict(zip(rows["track_id"], rows["duration_seconds"] - 0.1))
    table, _ = build_triplets(rows, durations, ["mood", "style"], 1, 3, excerpt_seconds=8.0, seed=0)
    path = tmp_path_factory.mktemp("triplets") / "triplets.csv"
    table.to_csv(path, index=False)
    return path


def _cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return compose("config", overrides=[f"paths.data={tmp_path}", "train.epochs=2", "train.batch_size=8",
                                            "train.crop_windows=[2,4]", f"paths.results={tmp_path}/results", *overrides])


def test_training_writes_a_run_folder_and_is_seeded(tmp_path, small_store, tiny_triplets):
    store_path, _ = small_store
    cfg = _cfg(tmp_path, "head=attention", "window=sliding")
    first = train_variant(cfg, store_path, tiny_triplets, tmp_path / "a")
    second = train_variant(cfg, store_path, tiny_triplets, tmp_path / "b")
    timing = ("train_seconds",)
    assert {k: v for k, v in first.items() if k not in timing} == {k: v for k, v in second.items() if k not in timing}
    assert first["variant"] == "sliding-attention"
    assert 0.0 <= first["val_triplet_accuracy"] <= 1.0
    history = pd.read_csv(tmp_path / "a" / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert history["train_loss"].notna().all()
    assert json.loads((tmp_path / "a" / "metrics.json").read_text()) == first
    model, meta = load_checkpoint(tmp_path / "a" / "model.pt")
    assert meta["variant"] == "sliding-attention" and meta["epoch"] == first["best_epoch"]


def test_training_without_validation_triplets_fails_clearly(tmp_path, small_store, tiny_triplets):
    store_path, _ = small_store
    table = pd.read_csv(tiny_triplets)
    only_train = tmp_path / "train_only.csv"
    table[table["split"] == "train"].to_csv(only_train, index=False)
    with pytest.raises(ValueError, match="need train and val triplets"):
        train_variant(_cfg(tmp_path), store_path, only_train, tmp_path / "run")


def _without_timing(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns=["seconds"])


@pytest.mark.parametrize("ema", ["train.ema_decay=null", "train.ema_decay=0.9"])
def test_an_interrupted_run_resumes_from_its_last_epoch(tmp_path, small_store, tiny_triplets, monkeypatch, ema):
    store_path, _ = small_store
    cfg = _cfg(tmp_path, "train.epochs=3", "train.patience=10", ema)
    per_epoch = 1 if ema.endswith("null") else 2  # with the average, the raw weights are validated too
    whole = train_variant(cfg, store_path, tiny_triplets, tmp_path / "whole")

    calls = {"n": 0}
    real = train_module.triplet_accuracy_on_store

    def crash_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * per_epoch + 1:
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "triplet_accuracy_on_store", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_variant(cfg, store_path, tiny_triplets, tmp_path / "resumed")
    assert len(pd.read_csv(tmp_path / "resumed" / "history.csv")) == 2
    monkeypatch.setattr(train_module, "triplet_accuracy_on_store", real)
    resumed = train_variant(cfg, store_path, tiny_triplets, tmp_path / "resumed")
    assert calls["n"] == 2 * per_epoch + 1  # the rerun validated epoch 3 only (through the real function)
    assert resumed["val_triplet_accuracy"] == whole["val_triplet_accuracy"]
    pd.testing.assert_frame_equal(_without_timing(pd.read_csv(tmp_path / "resumed" / "history.csv")),
                                  _without_timing(pd.read_csv(tmp_path / "whole" / "history.csv")))
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    if per_epoch == 2:
        a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)["ema"]
        b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["ema"]
        for key in a:
            torch.testing.assert_close(a[key], b[key])


def test_no_early_stop_before_min_epochs(tmp_path, small_store, tiny_triplets):
    store_path, _ = small_store
    # patience 0 stops after any epoch; min_epochs holds it back until epoch 3
    stopped = train_variant(_cfg(tmp_path, "train.epochs=5", "train.patience=0"), store_path, tiny_triplets,
                            tmp_path / "a")
    held = train_variant(_cfg(tmp_path, "train.epochs=5", "train.patience=0", "train.min_epochs=3"), store_path,
                         tiny_triplets, tmp_path / "b")
    assert stopped["epochs_run"] == 1 and held["epochs_run"] == 3


def test_the_weight_average_is_validated_and_checkpointed(tmp_path, small_store, tiny_triplets):
    store_path, _ = small_store
    cfg = _cfg(tmp_path, "train.epochs=2", "train.patience=10", "train.ema_decay=0.5", "augment=none")
    metrics = train_variant(cfg, store_path, tiny_triplets, tmp_path / "run")
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert {"val_accuracy", "val_accuracy_raw"} <= set(history.columns)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    best = torch.load(tmp_path / "run" / "model.pt", weights_only=False)
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    if metrics["best_epoch"] == 2:  # the checkpoint holds the averaged weights, not the raw ones
        for key, value in best["state_dict"].items():
            torch.testing.assert_close(value, averaged[key])
    differs = [key for key in averaged if averaged[key].is_floating_point()
               and not torch.equal(averaged[key], last["state_dict"][key])]
    assert differs  # the average is not the last step's weights
    model = build_embedder(cfg, FeatureStore(store_path).config)
    model.load_state_dict(best["state_dict"])
    table = pd.read_csv(tiny_triplets)
    with FeatureStore(store_path) as store:
        val = triplet_excerpts(table[table["split"] == "val"], store)
        assert triplet_accuracy_on_store(model, store, val, 8) == pytest.approx(metrics["val_triplet_accuracy"])


def test_a_weight_average_decay_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="ema_decay"):
        train_module.weight_average(torch.nn.Linear(2, 2), 1.5)


def test_a_changed_configuration_does_not_resume(tmp_path, small_store, tiny_triplets, caplog):
    store_path, _ = small_store
    train_variant(_cfg(tmp_path, "train.epochs=1"), store_path, tiny_triplets, tmp_path / "run")
    with caplog.at_level("WARNING"):
        train_variant(_cfg(tmp_path, "train.epochs=1", "loss.margin=0.5"), store_path, tiny_triplets, tmp_path / "run")
    assert "written by another configuration" in caplog.text


def test_tiny_training_reduces_the_loss_and_beats_chance_on_training_triplets(tmp_path, small_store, tiny_triplets):
    store_path, _ = small_store
    cfg = _cfg(tmp_path, "train.epochs=8", "train.patience=8", "train.samples_per_epoch=64", "train.lr=3e-3",
               "augment=none")
    train_variant(cfg, store_path, tiny_triplets, tmp_path / "run")
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["train_loss"].iloc[-3:].mean() < 0.8 * history["train_loss"].iloc[:2].mean()
    model = build_embedder(cfg, FeatureStore(store_path).config)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["state_dict"]
    model.load_state_dict(state)
    table = pd.read_csv(tiny_triplets)
    with FeatureStore(store_path) as store:
        train = triplet_excerpts(table[table["split"] == "train"], store)
        trained = triplet_accuracy_on_store(model, store, train, 8)
        untrained = triplet_accuracy_on_store(build_embedder(cfg, store.config), store, train, 8)
    assert trained > 0.75 and trained > untrained  # chance is 0.5


@pytest.mark.parametrize("windows, window, expected", [
    ("[20,60]", "chunked", (43 * 20, 43 * 60)),   # 1 s windows (43 frames), no overlap
    ("[20,60]", "sliding", (43 + 19 * 22, 43 + 59 * 22)),  # 1 s windows every 0.5 s (22 frames)
])
def test_crop_lengths_are_counted_in_windows(tmp_path, feature_config, windows, window, expected):
    cfg = _cfg(tmp_path, f"train.crop_windows={windows}", f"window={window}")
    assert crop_frame_range(cfg, feature_config) == expected


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="must be auto, cpu or cuda"):
        select_device("tpu")


@pytest.mark.parametrize("width, channels, suffix", [("small", [8, 16, 32], "-small"), ("default", [16, 32, 64], ""),
                                                     ("wide", [32, 64, 128], "-wide")])
def test_student_width_names_its_run_and_builds_that_encoder(tmp_path, small_store, width, channels, suffix):
    store_path, _ = small_store
    cfg = _cfg(tmp_path, f"model={width}", "loss=distill", "train.epochs=1")
    assert cfg.train.out_dir == f"{tmp_path}/runs/chunked-gru{suffix}-distill"
    with FeatureStore(store_path) as store:
        model = build_embedder(cfg, store.config)
    convolutions = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1]
    assert convolutions[0] == channels[0] and max(convolutions) == channels[-1]
    assert sum(p.numel() for p in model.parameters()) * 4 < 1_000_000  # every width fits the 1 MB budget (fp32)
