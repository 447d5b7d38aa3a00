import json

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from songfeel.models.embedder import load_checkpoint
from songfeel.train import train_variant
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
                                            "train.crop_seconds=[2.0,4.0]", *overrides])


def test_training_writes_a_run_folder_and_is_seeded(tmp_path, small_store, tiny_triplets):
    store_path, _ = small_store
    cfg = _cfg(tmp_path, "head=attention", "window=sliding")
    first = train_variant(cfg, store_path, tiny_triplets, tmp_path / "a")
    second = train_variant(cfg, store_path, tiny_triplets, tmp_path / "b")
    assert first == second
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
