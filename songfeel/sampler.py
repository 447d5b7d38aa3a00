"""Out-of-core training triplets: random crops streamed from the feature store.

Training never loads a whole track. Triplets are grouped by anchor track into
one *stream* per anchor (an endless random draw of that anchor's triplets). A
stochastic multiplexer keeps ``n_active`` streams open, draws every sample from
one of them at random, and retires a stream after a random number of draws,
opening a fresh one in its place. Each drawn triplet then becomes three random
crops (anchor, positive, negative), each read from the HDF5 store as a single
frame range ``[offset, offset + length)`` with a random gain added.

Keeping few tracks active at a time gives the data loader locality (a few
tracks' chunks are hot in the HDF5 cache) while the random lifetimes still mix
every anchor into an epoch. The idea is that of pescador's ``StochasticMux``
(Brian McFee, Eric Humphrey, Christopher Jacoby et al., "pescador",
https://github.com/pescadores/pescador, doi:10.5281/zenodo.400700), used for
Brian McFee's crema training. songfeel keeps its own small, independent
:class:`StochasticMux` rather than depend on pescador, because pescador 3.0.0
cannot give the same sampling law (anchors opened in proportion to their
triplets, and never one anchor in two open slots: either way of using pescador
gives up one of the two) and draws 4 to 5 times slower, as
``benchmarks/bench_mux.py`` measures (figures in :class:`StochasticMux`).

Use with a :class:`torch.utils.data.DataLoader` and :func:`collate_triplets`::

    train = cfg.train  # conf/train/default.yaml
    stream = TripletStream("data/features.h5", triplets, crop_frames=(172, 430), gain_db=6.0,
                           n_active=train.n_active, stream_rate=train.stream_rate,
                           samples_per_epoch=train.samples_per_epoch, crop_group=16, seed=train.seed)
    loader = DataLoader(stream, batch_size=16, num_workers=2, collate_fn=collate_triplets)
    for epoch in range(epochs):
        stream.set_epoch(epoch)
        for anchor, positive, negative in loader:  # each (batch, frames, n_mels) float32, dB
            ...

With workers, anchor streams are sharded across workers (each anchor track
belongs to exactly one worker), every worker opens its own
:class:`~songfeel.store.FeatureStore`, and its random generator is seeded from
``(seed, epoch, worker id)``: a run is reproducible for a given ``num_workers``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from songfeel.embed import Excerpt
from songfeel.store import FeatureStore

log = logging.getLogger(__name__)

#: A triplet of excerpts: (anchor, positive, negative).
Triplet = tuple[Excerpt, Excerpt, Excerpt]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Crop(NamedTuple):
    """One random crop of an excerpt.

    Attributes:
        track_id: the track read.
        excerpt: the (track_id, start_frame, stop_frame) excerpt the crop lies in.
        offset: first frame of the crop, absolute in the track (``excerpt[1] <= offset``).
        gain_db: the gain added to every value of the crop, in dB.
        frames: (length, n_mels) float32 log-mel in dB, gain included; ``offset + length <= excerpt[2]``.
    """

    track_id: str
    excerpt: Excerpt
    offset: int
    gain_db: float
    frames: np.ndarray


class TripletSample(NamedTuple):
    """One training sample: a crop of each member of a triplet (their lengths may differ).

    ``view`` is a second, independent crop of the anchor's whole track (for the
    NT-Xent loss on two excerpts of one track), or None when views are off.
    """

    anchor: Crop
    positive: Crop
    negative: Crop
    view: Crop | None = None

    @property
    def crops(self) -> tuple[Crop, ...]:
        """The crops present: anchor, positive, negative and, if drawn, the view."""
        return tuple(crop for crop in self if crop is not None)


class _Slot(Generic[K, T]):
    """An open stream of the multiplexer and the draws it has left."""

    __slots__ = ("key", "stream", "remaining")

    def __init__(self, key: K, stream: Iterator[T], remaining: int) -> None:
        self.key, self.stream, self.remaining = key, stream, remaining


class StochasticMux(Generic[K, T]):
    """Multiplex endless streams, keeping only ``n_active`` of them open at once.

    Every draw picks one active stream uniformly at random (with replacement)
    and yields its next item. A stream is retired (its iterator closed) after
    ``1 + Poisson(rate - 1)`` draws, so its mean lifetime is ``rate`` draws
    and at least one; it is replaced by a stream chosen among the inactive keys
    with probability proportional to ``weights``. A stream that ends early is
    retired early. The multiplexer itself never ends; take what you need with
    :func:`itertools.islice`.

    The idea is pescador's ``StochasticMux`` (Brian McFee, Eric Humphrey,
    Christopher Jacoby et al., https://github.com/pescadores/pescador,
    doi:10.5281/zenodo.400700). songfeel keeps this class instead because
    pescador 3.0.0 opens a new stream uniformly over its pool, and its
    ``weights`` only bias the draws among the streams already open: each
    opening serves about ``rate`` draws whatever its weight.
    ``benchmarks/bench_mux.py`` compares the two in one run with the same
    seeds, at stage 04's ``n_active`` 8 and ``rate`` 16 (``results/bench_mux.md``,
    2026-12-07), this class as :meth:`TripletStream.mux` builds it:

    - one pescador stream per anchor with ``weights`` = triplet counts: on 500
      anchors of 5, 20 or 35 triplets (10 000 draws per epoch), a triplet of the
      35-triplet anchors is drawn 0.15 times as often as one of the 5-triplet
      anchors (this class: 1.00);
    - one pescador stream per triplet, each opening its anchor's stream (so that
      uniform opening follows the triplet counts): an anchor then fills several
      open slots at once (up to 4 of 8 on 9 anchors of 3-4 triplets), and a
      160-draw epoch reaches 7.75 of the 9 anchors on average and all 9 in 37 of
      200 epochs (this class, which never opens an open key again: 8.97 and 195
      of 200);
    - pescador's draws took 4 to 5 times as long (30-54 µs against 6-10 µs,
      on a loaded machine).

    The law here follows ``weights`` only when the keys far outnumber
    ``n_active``: a new stream is chosen among the inactive keys, so with 8 of
    9 anchors open the choice is nearly forced, and in the 9-anchor table a
    triplet of a 4-triplet anchor is drawn 0.80 times as often as one of a
    3-triplet anchor (pescador's per-anchor weights: 0.95; its per-triplet pool:
    0.99).

    Args:
        keys: one key per stream (e.g. an anchor track id); distinct.
        open_stream: opens the stream of a key; called again each time a key is reactivated.
        weights: per key, a non-negative weight for choosing the next stream (not all zero).
        n_active: streams open at once (at most ``len(keys)`` are).
        rate: mean number of draws from a stream before it is retired, >= 1.
        rng: the random generator of every choice.

    Attributes:
        n_opened: streams opened so far (a key reopened counts again).
        max_open: the most streams that were open at the same time.

    Raises:
        ValueError: no keys, duplicate keys, a weight count that does not match,
            negative or all-zero weights, ``n_active < 1`` or ``rate < 1``.
    """

    def __init__(
        self,
        keys: Sequence[K],
        open_stream: Callable[[K], Iterator[T]],
        weights: Sequence[float],
        n_active: int,
        rate: float,
        rng: np.random.Generator,
    ) -> None:
        weights = np.asarray(weights, dtype=np.float64)
        if not keys:
            raise ValueError("StochasticMux: no streams")
        if len(set(keys)) != len(keys):
            raise ValueError("StochasticMux: stream keys must be distinct")
        if weights.shape != (len(keys),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"StochasticMux: need {len(keys)} non-negative weights, not all zero")
        if n_active < 1:
            raise ValueError(f"StochasticMux: n_active must be >= 1, got {n_active}")
        if rate < 1:
            raise ValueError(f"StochasticMux: rate must be >= 1 draw, got {rate}")
        self.keys = list(keys)
        self.weights = weights
        self.open_stream = open_stream
        self.n_active = min(n_active, len(self.keys))
        self.rate = float(rate)
        self.rng = rng
        self.n_opened = 0
        self.max_open = 0
        self._active: list[_Slot[K, T]] = []

    @property
    def active_keys(self) -> list[K]:
        """Keys of the streams open now, in slot order."""
        return [slot.key for slot in self._active]

    def __iter__(self) -> Iterator[T]:
        self._active = []
        try:
            while len(self._active) < self.n_active:
                self._active.append(self._activate())
            while True:
                index = int(self.rng.integers(len(self._active)))
                slot = self._active[index]
                item = next(slot.stream, _EXHAUSTED)
                if item is not _EXHAUSTED:
                    slot.remaining -= 1
                    yield item
                if item is _EXHAUSTED or slot.remaining <= 0:
                    self._retire(index)
        finally:
            for slot in self._active:
                _close(slot.stream)
            self._active = []

    def _lifetime(self) -> int:
        """Draws a stream serves before it is retired: 1 + Poisson(rate - 1), mean ``rate``."""
        return 1 + int(self.rng.poisson(self.rate - 1.0))

    def _activate(self) -> _Slot[K, T]:
        """Open the stream of a key that is not active, chosen by weight."""
        open_keys = set(self.active_keys)
        candidates = [i for i, key in enumerate(self.keys) if key not in open_keys]
        weights = self.weights[candidates]
        if weights.sum() <= 0:  # only zero-weight keys left: choose uniformly
            weights = np.ones(len(candidates))
        key = self.keys[candidates[int(self.rng.choice(len(candidates), p=weights / weights.sum()))]]
        self.n_opened += 1
        self.max_open = max(self.max_open, len(open_keys) + 1)
        return _Slot(key, iter(self.open_stream(key)), self._lifetime())

    def _retire(self, index: int) -> None:
        """Close the stream in slot ``index`` and open a fresh one there (possibly the same key)."""
        slot = self._active.pop(index)
        _close(slot.stream)
        self._active.insert(index, self._activate())


_EXHAUSTED = object()


def _close(stream: Iterator) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def group_by_anchor(triplets: Sequence[Triplet]) -> dict[str, list[Triplet]]:
    """Triplets grouped by anchor track id, keys sorted, triplets in their input order."""
    groups: dict[str, list[Triplet]] = {}
    for triplet in triplets:
        groups.setdefault(triplet[0][0], []).append(triplet)
    return {key: groups[key] for key in sorted(groups)}


def split_quota(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into non-negative integers proportional to ``weights`` (largest remainder).

    The parts sum to ``total``; ties go to the earlier weight.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if len(weights) == 0 or weights.sum() <= 0:
        return [0] * len(weights)
    exact = total * weights / weights.sum()
    parts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - parts), kind="stable")
    parts[order[: total - int(parts.sum())]] += 1
    return parts.tolist()


#: An augmentation of a crop: (frames (n_frames, n_mels) dB, rng) -> frames (n_frames', n_mels) dB.
Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def random_crop(store: FeatureStore, excerpt: Excerpt, length: int, gain_db: float,
                rng: np.random.Generator, augment: Augment | None = None) -> Crop:
    """A crop of ``min(length, excerpt length)`` frames at a random offset inside ``excerpt``.

    Args:
        store: an open feature store.
        excerpt: (track_id, start_frame, stop_frame).
        length: wanted crop length in frames.
        gain_db: the gain is uniform in ``[-gain_db, gain_db]`` dB, added to every value.
        rng: the random generator of offset, gain and augmentation.
        augment: applied to the crop after the gain (e.g. :class:`songfeel.augment.LogMelAugment`);
            it may change the number of frames (tempo).

    Returns:
        the crop; its ``frames`` are (length, n_mels) float32 dB (another length if ``augment`` stretches time).
    """
    track_id, start, stop = excerpt
    length = min(length, stop - start)
    offset = start + int(rng.integers(0, stop - start - length + 1))
    gain = float(rng.uniform(-gain_db, gain_db))
    frames = store.logmel(track_id, offset, offset + length) + np.float32(gain)
    if augment is not None:
        frames = augment(frames, rng)
    return Crop(track_id, excerpt, offset, gain, frames.astype(np.float32, copy=False))


def _anchor_stream(triplets: Sequence[Triplet], rng: np.random.Generator) -> Iterator[Triplet]:
    """The endless stream of one anchor track: its triplets drawn at random, with replacement."""
    while True:
        yield triplets[int(rng.integers(len(triplets)))]


class TripletStream(IterableDataset):
    """Training triplets as random crops, streamed out of core from the feature store.

    Per sample: one triplet is drawn through a :class:`StochasticMux` over the
    anchor-track streams (``n_active`` open, mean lifetime ``stream_rate``
    draws, a new stream chosen among the closed ones with probability proportional
    to its number of triplets: with many more anchors than open streams every
    triplet is about equally likely, while with nearly all anchors open the choice
    is nearly forced (the demo's 9 anchors, 8 open: a 4-triplet anchor's triplets
    get 0.80 of the draws of a 3-triplet anchor's, ``benchmarks/bench_mux.py``); a crop length
    is drawn uniformly in ``crop_frames`` (one length per ``crop_group``
    consecutive samples); then anchor, positive and negative are each cropped
    to that length (clipped to the excerpt) at a random offset inside their
    excerpt, and get their own random gain, uniform in ``±gain_db`` dB.

    An epoch yields exactly ``samples_per_epoch`` :class:`TripletSample` in
    total, whatever the number of workers. With DataLoader workers, the anchor
    tracks (sorted) are dealt round-robin to the workers, each worker yields a
    share of the epoch proportional to its triplets, opens its own
    :class:`FeatureStore` when it starts iterating, and seeds its generator
    from ``(seed, epoch, worker id)``. Call :meth:`set_epoch` before each
    epoch; iterating twice without it repeats the same samples. Do not use
    ``persistent_workers=True``: workers would not see a new epoch.

    Args:
        store_path: the HDF5 feature store of stage 02.
        triplets: (anchor, positive, negative) excerpts, each (track_id, start_frame, stop_frame),
            as :func:`songfeel.embed.triplet_excerpts` gives them.
        crop_frames: (min, max) crop length in frames, inclusive.
        gain_db: random gain range, ± dB (0 for none).
        n_active: anchor streams open at once, per worker.
        stream_rate: mean number of samples drawn from a stream before it is replaced.
        samples_per_epoch: samples per epoch over all workers; None for ``len(triplets)``.
        crop_group: consecutive samples of a worker that share one crop length. A DataLoader
            batches each worker's consecutive samples, so ``crop_group = batch_size`` gives
            each batch one uniformly drawn length (and :func:`collate_triplets` trims only
            excerpts shorter than it); 1 draws a length per sample.
        seed: base seed of every random choice.
        augment: applied to every crop after the gain (see :func:`random_crop`).
        views: also crop the anchor's whole track a second time, independently
            (:attr:`TripletSample.view`), for a contrastive loss on two excerpts of one track.

    Raises:
        ValueError: no triplets, an empty excerpt, or a range or count out of bounds
            (``1 <= min <= max`` frames, ``gain_db >= 0``, ``n_active >= 1``,
            ``stream_rate >= 1``, ``samples_per_epoch >= 1``, ``crop_group >= 1``).
    """

    def __init__(
        self,
        store_path: str | Path,
        triplets: Sequence[Triplet],
        crop_frames: tuple[int, int],
        *,
        gain_db: float,
        n_active: int,
        stream_rate: float,
        samples_per_epoch: int | None,
        crop_group: int,
        seed: int,
        augment: Augment | None = None,
        views: bool = False,
    ) -> None:
        super().__init__()
        if not triplets:
            raise ValueError("TripletStream: the triplet table is empty")
        empty = [e for triplet in triplets for e in triplet if e[2] <= e[1]]
        if empty:
            raise ValueError(f"TripletStream: {len(empty)} empty excerpts, e.g. {empty[0]}")
        low, high = (int(x) for x in crop_frames)
        if not 1 <= low <= high:
            raise ValueError(f"TripletStream: crop_frames must be 1 <= min <= max, got {crop_frames}")
        samples_per_epoch = len(triplets) if samples_per_epoch is None else int(samples_per_epoch)
        for name, value, least in (("gain_db", gain_db, 0), ("n_active", n_active, 1), ("stream_rate", stream_rate, 1),
                                   ("samples_per_epoch", samples_per_epoch, 1), ("crop_group", crop_group, 1)):
            if value < least:
                raise ValueError(f"TripletStream: {name} must be >= {least}, got {value}")
        self.store_path = Path(store_path)
        self.streams = group_by_anchor([tuple((str(e[0]), int(e[1]), int(e[2])) for e in t) for t in triplets])
        self.crop_frames = (low, high)
        self.gain_db = float(gain_db)
        self.n_active = int(n_active)
        self.stream_rate = float(stream_rate)
        self.samples_per_epoch = samples_per_epoch
        self.crop_group = int(crop_group)
        self.seed = int(seed)
        self.augment = augment
        self.views = bool(views)
        self.epoch = 0

    @property
    def anchors(self) -> list[str]:
        """Anchor track ids, sorted: one stream each."""
        return list(self.streams)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: it enters every worker's seed, so each epoch draws differently."""
        self.epoch = int(epoch)

    def shard(self, worker_id: int, num_workers: int) -> list[str]:
        """Anchor tracks of one worker: every ``num_workers``-th of the sorted anchors."""
        return self.anchors[worker_id::num_workers]

    def quotas(self, num_workers: int) -> list[int]:
        """Samples per worker in one epoch (proportional to its triplets), summing to ``samples_per_epoch``."""
        num_workers = max(1, num_workers)
        weights = [sum(len(self.streams[a]) for a in self.shard(w, num_workers)) for w in range(num_workers)]
        return split_quota(self.samples_per_epoch, weights)

    def batches_per_epoch(self, batch_size: int, num_workers: int) -> int:
        """Batches a DataLoader yields per epoch: every worker's last batch may be partial."""
        return sum(-(-quota // batch_size) for quota in self.quotas(num_workers))

    def worker_rng(self, worker_id: int) -> np.random.Generator:
        """The generator of one worker in the current epoch, seeded from (seed, epoch, worker id)."""
        return np.random.default_rng([self.seed, self.epoch, worker_id])

    def __iter__(self) -> Iterator[TripletSample]:
        info = get_worker_info()
        worker_id, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.iter_worker(worker_id, num_workers)

    def iter_worker(self, worker_id: int, num_workers: int) -> Iterator[TripletSample]:
        """The samples of one worker in the current epoch (what ``__iter__`` yields inside that worker)."""
        anchors = self.shard(worker_id, num_workers)
        quota = self.quotas(num_workers)[worker_id]
        log.debug("sampler worker %d/%d, epoch %d: %d anchor streams, %d samples",
                  worker_id, num_workers, self.epoch, len(anchors), quota)
        if quota == 0 or not anchors:
            return
        rng = self.worker_rng(worker_id)
        draws = iter(self.mux(anchors, rng))
        try:
            with FeatureStore(self.store_path) as store:
                length = self.crop_frames[0]
                for i, triplet in enumerate(islice(draws, quota)):
                    if i % self.crop_group == 0:
                        length = int(rng.integers(self.crop_frames[0], self.crop_frames[1] + 1))
                    crops = [random_crop(store, e, length, self.gain_db, rng, self.augment) for e in triplet]
                    if self.views:
                        anchor = triplet[0][0]
                        whole = (anchor, 0, store.n_frames(anchor))
                        crops.append(random_crop(store, whole, length, self.gain_db, rng, self.augment))
                    yield TripletSample(*crops)
        finally:
            draws.close()

    def mux(self, anchors: Sequence[str], rng: np.random.Generator) -> StochasticMux[str, Triplet]:
        """The multiplexer over the streams of ``anchors``, weighted by their triplet counts."""
        return StochasticMux(
            anchors,
            lambda anchor: _anchor_stream(self.streams[anchor], rng),
            [len(self.streams[a]) for a in anchors],
            self.n_active,
            self.stream_rate,
            rng,
        )


def collate_triplets(samples: Sequence[TripletSample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch samples, trimming every crop to the batch's shortest crop (keeping its first frames).

    Returns:
        anchor, positive, negative: each (batch, frames, n_mels) float32 dB, where
        frames is the shortest crop length among all three roles of the batch.

    Raises:
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("collate_triplets: no samples")
    shortest = min(crop.frames.shape[0] for sample in samples for crop in sample.crops)
    return tuple(
        torch.from_numpy(np.stack([sample[k].frames[:shortest] for sample in samples]).astype(np.float32, copy=False))
        for k in range(3)
    )


class TripletBatch(NamedTuple):
    """A training batch with every role stacked into one padded tensor, for one forward pass.

    Rows are role-major: rows ``[r * batch, (r + 1) * batch)`` hold role ``r``
    (anchor, positive, negative, then the view if drawn).

    Attributes:
        frames: (n_roles * batch, max_frames, n_mels) float32 dB; a crop shorter than
            ``max_frames`` is padded by repeating it cyclically (the model masks the
            padded windows; the repeat keeps batch-norm statistics natural in training).
        lengths: (n_roles * batch,) int64, the real frames of each row.
        groups: (n_roles * batch,) int64 label group of each row's track (-1 when unknown).
        tracks: (n_roles * batch,) int64 index of each row's track (same track, same index).
        n_roles: 3, or 4 with views.
        teacher: (n_roles * batch, teacher_dim) float32 teacher targets of each crop
            (:class:`songfeel.teacher.targets.CropTargets`; zeros where a track has none),
            or None without a teacher.
        has_teacher: (n_roles * batch,) bool, whether the row has a teacher target; None without a teacher.
    """

    frames: torch.Tensor
    lengths: torch.Tensor
    groups: torch.Tensor
    tracks: torch.Tensor
    n_roles: int
    teacher: torch.Tensor | None = None
    has_teacher: torch.Tensor | None = None


def pad_cyclic(frames: np.ndarray, length: int) -> np.ndarray:
    """Repeat (n_frames, n_mels) ``frames`` along time to exactly ``length`` frames (length >= n_frames)."""
    return np.resize(frames, (length, frames.shape[1]))  # fills row-major by repeating the frames


class PaddedTripletCollate:
    """Collate :class:`TripletSample` into a :class:`TripletBatch` (a DataLoader ``collate_fn``).

    Args:
        groups: track id -> label group id (e.g. the index of its album or genre);
            tracks not in it get group -1.
        targets: optional teacher targets of crops, ``(track_id, offset_frames, n_frames) ->
            (teacher_dim,) array or None`` (a :class:`songfeel.teacher.targets.CropTargets`),
            for distillation; they fill :attr:`TripletBatch.teacher`.

    Raises:
        ValueError: no samples, or samples with and without views mixed.
    """

    def __init__(self, groups: dict[str, int] | None = None, targets=None) -> None:
        self.groups = dict(groups or {})
        self.targets = targets

    def __call__(self, samples: Sequence[TripletSample]) -> TripletBatch:
        if not samples:
            raise ValueError("PaddedTripletCollate: no samples")
        n_roles = len(samples[0].crops)
        if any(len(sample.crops) != n_roles for sample in samples):
            raise ValueError("PaddedTripletCollate: samples with and without views in one batch")
        crops = [sample.crops[role] for role in range(n_roles) for sample in samples]
        longest = max(crop.frames.shape[0] for crop in crops)
        frames = np.stack([pad_cyclic(crop.frames, longest) for crop in crops]).astype(np.float32, copy=False)
        track_index: dict[str, int] = {}
        tracks = [track_index.setdefault(crop.track_id, len(track_index)) for crop in crops]
        teacher = has_teacher = None
        if self.targets is not None:
            found = [self.targets(crop.track_id, crop.offset, crop.frames.shape[0]) for crop in crops]
            has_teacher = torch.tensor([target is not None for target in found], dtype=torch.bool)
            teacher = torch.zeros(len(crops), self.targets.dim, dtype=torch.float32)
            for row, target in enumerate(found):
                if target is not None:
                    teacher[row] = torch.from_numpy(target)
        return TripletBatch(
            torch.from_numpy(frames),
            torch.tensor([crop.frames.shape[0] for crop in crops], dtype=torch.int64),
            torch.tensor([self.groups.get(crop.track_id, -1) for crop in crops], dtype=torch.int64),
            torch.tensor(tracks, dtype=torch.int64),
            n_roles,
            teacher,
            has_teacher,
        )
