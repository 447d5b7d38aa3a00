from collections import Counter

import numpy as np
import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from songfeel.embed import triplet_excerpts
from songfeel.sampler import (
    Crop,
    PaddedTripletCollate,
    StochasticMux,
    TripletSample,
    TripletStream,
    collate_triplets,
    split_quota,
)
from songfeel.store import FeatureStore
from songfeel.triplets import build_triplets


@pytest.fixture(scope="module")
def triplets(small_store):
    """Excerpt triplets of every split (the sampler does not care): 9 anchor tracks."""
    store_path, rows = small_store
    durations = dict(zip(rows["track_id"], rows["duration_seconds"] - 0.1))
    table, _ = build_triplets(rows, durations, ["mood", "style"], 1, 3, excerpt_seconds=8.0, seed=0)
    with FeatureStore(store_path) as store:
        return triplet_excerpts(table, store)


#: The stream's options as stage 04 sets them from conf/train/default.yaml (the gain is the augmentation's there).
TRAIN = OmegaConf.load(REPO / "conf/train/default.yaml")
STAGE_04 = {"gain_db": 0.0, "n_active": TRAIN.n_active, "stream_rate": TRAIN.stream_rate,
            "samples_per_epoch": TRAIN.samples_per_epoch, "crop_group": TRAIN.batch_size, "seed": TRAIN.seed}


def _stream(small_store, triplets, **kwargs) -> TripletStream:
    options = {"crop_frames": (86, 172), "gain_db": 6.0, "n_active": 3, "stream_rate": 4, "seed": 0,
               "samples_per_epoch": None, "crop_group": 1} | kwargs
    return TripletStream(small_store[0], triplets, **options)


def _keys(samples) -> list[tuple]:
    """What identifies a sample: per crop, its track, offset, length and gain."""
    return [tuple((c.track_id, c.offset, c.frames.shape[0], c.gain_db) for c in s.crops) for s in samples]


def _identity(batch):
    return batch


def test_crops_lie_inside_their_excerpts_and_match_the_store(small_store, triplets):
    stream = _stream(small_store, triplets, samples_per_epoch=60)
    samples = list(stream)
    known = set(triplets)
    gains = []
    with FeatureStore(small_store[0]) as store:
        for sample in samples:
            assert isinstance(sample, TripletSample)
            assert (sample.anchor.excerpt, sample.positive.excerpt, sample.negative.excerpt) in known
            for crop in sample.crops:
                track, start, stop = crop.excerpt
                length = crop.frames.shape[0]
                assert crop.track_id == track
                assert start <= crop.offset and crop.offset + length <= stop
                assert min(86, stop - start) <= length <= 172
                assert crop.frames.dtype == np.float32 and crop.frames.shape[1] == store.config.n_mels
                shift = crop.frames - store.logmel(track, crop.offset, crop.offset + length)
                np.testing.assert_allclose(shift, crop.gain_db, atol=1e-3)
                assert abs(crop.gain_db) <= 6.0
                gains.append(crop.gain_db)
    assert np.std(gains) > 1.0  # the gain is random, not one constant
    offsets = {c.offset - c.excerpt[1] for s in samples for c in s.crops}
    assert len(offsets) > 20  # and so is the offset inside the excerpt


def test_an_epoch_yields_exactly_samples_per_epoch(small_store, triplets):
    assert len(list(_stream(small_store, triplets))) == len(triplets)
    stream = _stream(small_store, triplets, samples_per_epoch=50)
    assert len(list(stream)) == 50
    for workers in (0, 2):
        loader = DataLoader(stream, batch_size=8, num_workers=workers, collate_fn=collate_triplets)
        batches = list(loader)
        assert sum(b[0].shape[0] for b in batches) == 50
        assert len(batches) == stream.batches_per_epoch(8, workers)


def test_seed_and_epoch_select_the_stream(small_store, triplets):
    first = _keys(_stream(small_store, triplets, samples_per_epoch=40))
    again = _stream(small_store, triplets, samples_per_epoch=40)
    assert _keys(again) == first
    assert _keys(again) == first  # iterating twice in one epoch repeats it
    again.set_epoch(1)
    second_epoch = _keys(again)
    assert second_epoch != first
    again.set_epoch(1)
    assert _keys(again) == second_epoch
    assert _keys(_stream(small_store, triplets, samples_per_epoch=40, seed=1)) != first


def test_workers_shard_anchor_tracks_without_duplicates(small_store, triplets):
    stream = _stream(small_store, triplets, samples_per_epoch=200, n_active=8, stream_rate=2)
    stream.set_epoch(3)
    per_worker = [list(stream.iter_worker(w, 2)) for w in range(2)]
    anchors = [{s.anchor.track_id for s in samples} for samples in per_worker]
    assert anchors[0].isdisjoint(anchors[1])
    assert anchors[0] | anchors[1] == {t[0][0] for t in triplets} == set(stream.anchors)
    assert [len(s) for s in per_worker] == stream.quotas(2)

    loader = DataLoader(stream, batch_size=None, num_workers=2, collate_fn=_identity)
    loaded = list(loader)
    assert len(loaded) == 200  # each worker yields its share, not the whole epoch
    assert Counter(_keys(loaded)) == Counter(_keys(per_worker[0] + per_worker[1]))
    assert _keys(list(loader)) == _keys(loaded)  # reproducible for a given num_workers


def test_more_workers_than_anchors_still_yield_one_epoch(small_store, triplets):
    few = [t for t in triplets if t[0][0] in sorted({t[0][0] for t in triplets})[:2]]
    stream = _stream(small_store, few, samples_per_epoch=30)
    assert stream.quotas(3)[2] == 0
    loader = DataLoader(stream, batch_size=None, num_workers=3, collate_fn=_identity)
    assert len(list(loader)) == 30


def _crop(track: str, frames: np.ndarray) -> Crop:
    return Crop(track, (track, 0, 1000), 0, 0.0, frames)


def test_collate_trims_every_crop_to_the_shortest():
    rng = np.random.default_rng(0)
    lengths = [(50, 40, 60), (70, 55, 45)]
    samples = [TripletSample(*(_crop("t", rng.normal(size=(n, 64)).astype(np.float32)) for n in row))
               for row in lengths]
    anchor, positive, negative = collate_triplets(samples)
    for k, role in enumerate((anchor, positive, negative)):
        assert role.shape == (2, 40, 64) and role.dtype == torch.float32
        for b, sample in enumerate(samples):
            np.testing.assert_array_equal(role[b].numpy(), sample[k].frames[:40])
    with pytest.raises(ValueError, match="no samples"):
        collate_triplets([])


def test_a_batch_shares_one_crop_length_with_crop_group(small_store, triplets):
    stream = _stream(small_store, triplets, samples_per_epoch=64, crop_group=8)
    samples = list(stream)
    for begin in range(0, 64, 8):
        assert len({c.frames.shape[0] for s in samples[begin : begin + 8] for c in s.crops}) == 1
    assert len({s.anchor.frames.shape[0] for s in samples}) > 1  # but batches differ
    batch = next(iter(DataLoader(stream, batch_size=8, collate_fn=collate_triplets)))
    assert [x.shape[0] for x in batch] == [8, 8, 8]
    assert batch[0].shape[1] == samples[0].anchor.frames.shape[0]


class _CountingStream:
    """An endless stream that counts how many of its kind are open."""

    open_now = 0

    def __init__(self, key: int) -> None:
        self.key, self.closed = key, False
        _CountingStream.open_now += 1

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, int]:
        assert not self.closed
        return self.key, _CountingStream.open_now

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            _CountingStream.open_now -= 1


def test_mux_keeps_only_n_active_streams_open():
    _CountingStream.open_now = 0
    mux = StochasticMux(list(range(10)), _CountingStream, [1.0] * 10, n_active=3, rate=10,
                        rng=np.random.default_rng(0))
    draws = iter(mux)
    items = []
    for _ in range(4000):
        items.append(next(draws))
        assert len(mux.active_keys) == len(set(mux.active_keys)) == 3  # three distinct streams
    assert max(open_now for _, open_now in items) == 3 == mux.max_open
    assert 300 <= mux.n_opened <= 500  # mean lifetime of 10 draws: about 400 streams for 4000 draws
    assert set(Counter(key for key, _ in items)) == set(range(10))
    draws.close()
    assert _CountingStream.open_now == 0


def test_mux_chooses_new_streams_by_weight():
    mux = StochasticMux(["a", "b", "c"], lambda key: iter(lambda: key, None), [8.0, 1.0, 1.0], n_active=1, rate=1,
                        rng=np.random.default_rng(0))
    draws = iter(mux)
    counts = Counter(next(draws) for _ in range(3000))
    assert counts["a"] > 5 * counts["b"] and counts["a"] > 5 * counts["c"]


def test_stream_reads_only_n_active_anchors_between_replacements(small_store, triplets):
    stream = _stream(small_store, triplets, samples_per_epoch=60, n_active=2, stream_rate=1e9)
    assert len({s.anchor.track_id for s in stream}) == 2
    stream = _stream(small_store, triplets, samples_per_epoch=300, n_active=2, stream_rate=3)
    assert len({s.anchor.track_id for s in stream}) == 9  # retired streams make room for the others


def test_split_quota_is_proportional_and_exact():
    assert split_quota(10, [1, 1, 1]) == [4, 3, 3]
    assert split_quota(7, [3, 0, 1]) == [5, 0, 2]
    assert sum(split_quota(1001, [5, 7, 11, 13])) == 1001


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"triplets": []}, "empty"),
        ({"triplets": [(("a", 5, 5), ("b", 0, 9), ("c", 0, 9))]}, "empty excerpt"),
        ({"crop_frames": (0, 10)}, "crop_frames"),
        ({"crop_frames": (20, 10)}, "crop_frames"),
        ({"n_active": 0}, "n_active"),
        ({"stream_rate": 0.5}, "stream_rate"),
        ({"samples_per_epoch": 0}, "samples_per_epoch"),
        ({"gain_db": -1.0}, "gain_db"),
    ],
)
def test_bad_arguments_fail_clearly(small_store, triplets, kwargs, message):
    options = {"triplets": triplets, "crop_frames": (10, 20), **STAGE_04} | kwargs
    with pytest.raises(ValueError, match=message):
        TripletStream(small_store[0], **options)


def test_views_are_independent_crops_of_the_anchor_track(small_store, triplets):
    stream = _stream(small_store, triplets, samples_per_epoch=40, views=True)
    samples = list(stream)
    with FeatureStore(small_store[0]) as store:
        for sample in samples:
            assert len(sample.crops) == 4
            view = sample.view
            assert view.track_id == sample.anchor.track_id
            assert view.excerpt == (view.track_id, 0, store.n_frames(view.track_id))  # drawn from the whole track
    assert sum(s.view.offset != s.anchor.offset for s in samples) > 30


def test_padded_collate_stacks_roles_with_lengths_groups_and_tracks(small_store, triplets):
    stream = _stream(small_store, triplets, samples_per_epoch=8, views=True, crop_group=1)
    samples = list(stream)
    groups = {track: i for i, track in enumerate(sorted({c.track_id for s in samples for c in s.crops}))}
    batch = PaddedTripletCollate(groups)(samples)
    assert batch.n_roles == 4
    assert batch.frames.shape[0] == batch.lengths.shape[0] == 4 * len(samples)
    for role in range(4):
        for i, sample in enumerate(samples):
            row = role * len(samples) + i
            crop = sample.crops[role]
            n = crop.frames.shape[0]
            assert batch.lengths[row] == n
            np.testing.assert_array_equal(batch.frames[row, :n].numpy(), crop.frames)
            # padding repeats the crop itself, so the padded tail holds real values of the song
            tail = batch.frames[row, n:].numpy()
            np.testing.assert_array_equal(tail, np.tile(crop.frames, (len(tail) // n + 1, 1))[: len(tail)])
            assert batch.groups[row] == groups[crop.track_id]
    anchors = batch.tracks[: len(samples)]
    views = batch.tracks[3 * len(samples):]
    assert torch.equal(anchors, views)  # the view shares its anchor's track index


def test_augment_is_applied_to_every_crop(small_store, triplets):
    def shift(frames, rng):
        return frames[::2] - 10.0  # halves the length and lowers the level: visibly applied

    stream = _stream(small_store, triplets, samples_per_epoch=10, gain_db=0.0, augment=shift)
    with FeatureStore(small_store[0]) as store:
        for sample in stream:
            for crop in sample.crops:
                track, start, stop = crop.excerpt
                original = store.logmel(track, crop.offset, crop.offset + min(stop - start, 172))
                assert crop.frames.shape[0] <= (original.shape[0] + 1) // 2
                np.testing.assert_allclose(crop.frames, original[::2][: crop.frames.shape[0]] - 10.0, atol=1e-3)
