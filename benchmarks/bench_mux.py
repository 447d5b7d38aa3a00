"""Benchmark: songfeel's own ``StochasticMux`` against pescador 3.0.0's, on the same inputs and seeds, in one run.

    pip install pescador==3.0.0       # the benchmark only; songfeel does not depend on it
    python benchmarks/bench_mux.py    # writes results/bench_mux.csv and results/bench_mux.md
    python benchmarks/bench_mux.py --seeds 50 --large-seeds 5 --repeats 3   # a quick look

Why songfeel keeps its own multiplexer (``songfeel/sampler.py``): stage 04 draws training triplets
through a mux over one stream per anchor track, opening an anchor with probability proportional to
its triplets, so that every triplet is equally likely in expectation, and never opening an anchor
twice at once. Three ways of doing it are measured:

- ``songfeel``: :class:`songfeel.sampler.StochasticMux` exactly as stage 04 builds it
  (:meth:`songfeel.sampler.TripletStream.mux`: keys = anchors, weights = their triplet counts; a new
  stream is chosen among the inactive anchors by weight, every draw picks an open stream uniformly,
  a stream serves ``1 + Poisson(rate - 1)`` draws).
- ``pescador-anchor-weights``: pescador's ``StochasticMux`` over one ``Streamer`` per anchor with
  ``weights`` = the triplet counts (``mode="single_active"``, ``dist="poisson"``). pescador opens a
  stream uniformly over its pool; the weights only bias the draws among the streams already open.
- ``pescador-triplet-pool``: the adapter of the earlier attempt to switch to pescador (branch
  ``pescador``): a pool of one ``Streamer`` per triplet, each opening its anchor's stream, so that
  uniform opening opens an anchor in proportion to its triplets (no ``weights``,
  ``mode="single_active"``, ``dist="poisson"``); an anchor may then fill several open slots at once.

Every stream is songfeel's own anchor stream (its triplets drawn at random with replacement). For
seed ``s`` each method gets a fresh ``np.random.default_rng(s)``; pescador's ``RandomState`` is
seeded with one integer drawn from it first (as the adapter did), then the streams draw from it.

Inputs are synthetic anchor -> triplet-count tables (the mux's law does not depend on audio):
``small``, the demo's shape (9 anchors of 3-4 triplets), and ``large`` (500 anchors of 5, 20 or 35
triplets, 10 000 in all). ``n_active``, ``stream_rate`` and ``samples_per_epoch`` are stage 04's
(``conf/train/default.yaml``, one DataLoader worker: the epoch's whole quota comes from one mux);
``samples_per_epoch: null`` means one per triplet, as :class:`~songfeel.sampler.TripletStream`
reads it, and the large table always uses one epoch per triplet (``--large-samples``).

Per table and method, over ``--seeds`` epochs (one per seed):

- ``distinct_anchors``: mean number of different anchors drawn in an epoch;
- ``all_anchors_share``: share of the epochs that draw every anchor at least once;
- ``fairness``: draws per triplet of the anchors with the most triplets over those of the anchors
  with the fewest, pooled over the epochs (1.0 = proportional to triplets, the target; below 1
  the heavy anchors' triplets are drawn less often than the light anchors');
- ``max_same_anchor_slots``: the most open slots holding one anchor at the same time, over all
  epochs (checked after every draw; pescador's open slots are read from its active copy, an
  internal), and ``mean_max_same_anchor_slots`` the mean of each epoch's maximum;
- ``us_per_draw``: microseconds per draw, the median of ``--repeats`` runs of ``--timing-draws``
  draws each (after the mux's first draw, whose time is ``setup_ms``: building the mux and opening
  its streams; garbage collection off while timing, as ``timeit`` does; the three methods take turns
  within each repeat), and ``speed_vs_songfeel`` that time over songfeel's, measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from datetime import date
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from songfeel.sampler import StochasticMux, Triplet, TripletStream, _anchor_stream

log = logging.getLogger("bench_mux")

PESCADOR_VERSION = "3.0.0"
METHODS = ("songfeel", "pescador-anchor-weights", "pescador-triplet-pool")


def triplet_table(counts: list[int]) -> list[Triplet]:
    """Synthetic triplets: anchor ``a{i}`` gets ``counts[i]`` of them; the positive's track names the triplet."""
    triplets, j = [], 0
    for i, count in enumerate(counts):
        for _ in range(count):
            triplets.append(((f"a{i:04d}", 0, 100), (f"t{j:06d}", 0, 100), ("negative", 0, 100)))
            j += 1
    return triplets


def tables(large_samples: int | None) -> dict[str, tuple[list[int], int | None]]:
    """Name -> (triplets per anchor, samples per epoch override or None for stage 04's)."""
    small = [3, 4] * 4 + [3]  # 9 anchors, 31 triplets
    large = [5] * 166 + [20] * 168 + [35] * 166  # 500 anchors, 10 000 triplets
    return {"small": (small, None), "large": (large, large_samples or sum(large))}


def _take(draws: Iterator[Triplet], n: int | None) -> Iterator[Triplet]:
    try:
        yield from islice(draws, n)
    finally:
        draws.close()


class Mux:
    """One method's mux over a :class:`TripletStream`'s anchors: draws, and the anchors of its open slots."""

    def __init__(self, method: str, stream: TripletStream, rng: np.random.Generator, pescador) -> None:
        self.method = method
        anchors = stream.anchors
        if method == "songfeel":
            self.mux = stream.mux(anchors, rng)  # exactly what stage 04 iterates
            return
        # Both pescador variants: pescador's RandomState is seeded from rng, the streams draw from rng itself.
        seed = int(rng.integers(2**32))

        def anchor_stream(anchor: str) -> Iterator[Triplet]:
            # A closure over rng: pescador deep-copies a Streamer's arguments at every activation.
            yield from _anchor_stream(stream.streams[anchor], rng)

        if method == "pescador-anchor-weights":
            self.pool_anchors = list(anchors)
            weights = np.array([len(stream.streams[a]) for a in anchors], dtype=np.float64)
        elif method == "pescador-triplet-pool":
            self.pool_anchors = [a for a in anchors for _ in stream.streams[a]]
            weights = None
        else:
            raise ValueError(f"unknown method {method!r}")
        pool = [pescador.Streamer(anchor_stream, anchor) for anchor in self.pool_anchors]
        self.mux = pescador.StochasticMux(pool, n_active=min(stream.n_active, len(anchors)), rate=stream.stream_rate,
                                          weights=weights, mode="single_active", dist="poisson", random_state=seed)

    def draws(self, n: int | None) -> Iterator[Triplet]:
        """A generator of ``n`` draws (endless for None); closing it closes the mux's streams."""
        if self.method == "songfeel":
            return _take(iter(self.mux), n)
        return self.mux.iterate(max_iter=n)

    def open_anchors(self, draws: Iterator[Triplet]) -> Callable[[], list[str]]:
        """A function giving the anchors of the open slots of ``draws`` (call it after a draw)."""
        if isinstance(self.mux, StochasticMux):
            return lambda: self.mux.active_keys
        # pescador iterates an activated deep copy of the mux, held by the generator (an internal).
        active = draws.gi_frame.f_locals["active_mux"]
        return lambda: [self.pool_anchors[i] for i in active.stream_idxs_]


def epoch_law(method: str, stream: TripletStream, counts: dict[str, int], seeds: int, pescador) -> dict:
    """Coverage, fairness and slot sharing of ``seeds`` epochs of one method."""
    drawn_per_anchor: Counter[str] = Counter()
    distinct, complete, max_slots = [], 0, []
    for seed in range(seeds):
        mux = Mux(method, stream, np.random.default_rng(seed), pescador)
        draws = mux.draws(stream.samples_per_epoch)
        first = next(draws)
        open_anchors = mux.open_anchors(draws)
        epoch = Counter([first[0][0]])
        most = max(Counter(open_anchors()).values())
        for triplet in draws:
            epoch[triplet[0][0]] += 1
            most = max(most, max(Counter(open_anchors()).values()))
        assert sum(epoch.values()) == stream.samples_per_epoch
        drawn_per_anchor.update(epoch)
        distinct.append(len(epoch))
        complete += len(epoch) == len(counts)
        max_slots.append(most)
    heavy = [a for a, c in counts.items() if c == max(counts.values())]
    light = [a for a, c in counts.items() if c == min(counts.values())]

    def per_triplet(group: list[str]) -> float:
        return sum(drawn_per_anchor[a] for a in group) / sum(counts[a] for a in group)

    return {"distinct_anchors": float(np.mean(distinct)), "all_anchors_share": complete / seeds,
            "fairness": per_triplet(heavy) / per_triplet(light), "max_same_anchor_slots": int(max(max_slots)),
            "mean_max_same_anchor_slots": float(np.mean(max_slots))}


def draw_times(stream: TripletStream, n: int, repeats: int, pescador) -> dict[str, tuple[float, float]]:
    """Method -> (median µs per draw over ``repeats`` runs of ``n`` draws, median ms to build the mux and make its
    first draw). The methods take turns within each repeat, so a change of load on the machine hits them alike."""
    per_draw: dict[str, list[float]] = {method: [] for method in METHODS}
    setup: dict[str, list[float]] = {method: [] for method in METHODS}
    for repeat in range(repeats):
        for method in METHODS:
            gc_was_on = gc.isenabled()
            gc.disable()
            try:
                began = time.perf_counter()
                draws = Mux(method, stream, np.random.default_rng(10_000 + repeat), pescador).draws(None)
                next(draws)
                opened = time.perf_counter()
                deque(islice(draws, n), maxlen=0)
                ended = time.perf_counter()
                draws.close()
            finally:
                if gc_was_on:
                    gc.enable()
            setup[method].append((opened - began) * 1e3)
            per_draw[method].append((ended - opened) / n * 1e6)
    return {method: (float(np.median(per_draw[method])), float(np.median(setup[method]))) for method in METHODS}


def markdown(table: pd.DataFrame, settings: dict) -> str:
    lines = ["# StochasticMux: songfeel's own against pescador 3.0.0", "",
             (f"`python benchmarks/bench_mux.py` ({settings['date']}; Python {settings['python']}, numpy "
             f"{settings['numpy']}, pescador {settings['pescador']}; {settings['machine']}). Stage 04's settings from "
             f"`conf/train/default.yaml`: n_active {settings['n_active']}, stream_rate {settings['stream_rate']}; "
             f"samples per epoch: {settings['samples_small']} (small), {settings['samples_large']} (large). Every "
             "method gets the same seeds; `fairness` is draws per triplet of the anchors with the most triplets over "
             "those with the fewest (target 1.00); `max slots` is the most open slots that held one anchor at once; "
             "`speed` is µs per draw over songfeel's, in this run." + (f" {settings['note']}" if settings["note"] else "")),
             "",
             ("| table | method | anchors | triplets | epochs | distinct anchors / epoch | epochs with every anchor "
              "| fairness | max slots (epoch mean) | µs / draw | speed vs songfeel |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        lines.append(f"| {row['table']} | {row['method']} | {row['anchors']} | {row['triplets']} | {row['epochs']} "
                     f"| {row['distinct_anchors']:.2f} | {row['all_anchors_share']:.1%} "
                     f"({round(row['all_anchors_share'] * row['epochs'])}/{row['epochs']}) | {row['fairness']:.2f} "
                     f"| {row['max_same_anchor_slots']} ({row['mean_max_same_anchor_slots']:.2f}) "
                     f"| {row['us_per_draw']:.1f} | {row['speed_vs_songfeel']:.1f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-config", type=Path, default=REPO / "conf/train/default.yaml")
    parser.add_argument("--seeds", type=int, default=200, help="epochs (one per seed) of the small table")
    parser.add_argument("--large-seeds", type=int, default=40, help="epochs (one per seed) of the large table")
    parser.add_argument("--large-samples", type=int, default=None,
                        help="samples per epoch of the large table (default: one per triplet)")
    parser.add_argument("--timing-draws", type=int, default=10_000, help="draws per timing run")
    parser.add_argument("--repeats", type=int, default=7, help="timing runs per method and table (median)")
    parser.add_argument("--note", default="", help="a line about the machine's load, written into the Markdown")
    parser.add_argument("--out", type=Path, default=REPO / "results", help="folder of bench_mux.csv and .md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        import pescador
    except ImportError:
        raise SystemExit(f"bench_mux: pescador is not installed: pip install pescador=={PESCADOR_VERSION}") from None
    if pescador.__version__ != PESCADOR_VERSION:
        log.warning("pescador %s, not %s: the figures may differ", pescador.__version__, PESCADOR_VERSION)
    train = OmegaConf.load(args.train_config)
    rows = []
    samples = {}
    for name, (counts, epoch_samples) in tables(args.large_samples).items():
        triplets = triplet_table(counts)
        stream = TripletStream(REPO / "unused.h5", triplets, (1, 1), gain_db=0.0, n_active=train.n_active,
                               stream_rate=train.stream_rate,
                               samples_per_epoch=epoch_samples or train.samples_per_epoch, crop_group=1,
                               seed=train.seed)  # the store is never opened: only the mux is used
        samples[name] = stream.samples_per_epoch
        per_anchor = {a: len(stream.streams[a]) for a in stream.anchors}
        seeds = args.seeds if name == "small" else args.large_seeds
        for method in METHODS:
            began = time.perf_counter()
            law = epoch_law(method, stream, per_anchor, seeds, pescador)
            rows.append({"table": name, "method": method, "anchors": len(per_anchor), "triplets": len(triplets),
                         "n_active": stream.n_active, "stream_rate": stream.stream_rate,
                         "samples_per_epoch": stream.samples_per_epoch, "epochs": seeds, **law})
            log.info("%s %s: %.2f distinct anchors per epoch, every anchor in %.1f %%, fairness %.2f, at most %d "
                     "slots per anchor (%.0f s)", name, method, law["distinct_anchors"], 100 * law["all_anchors_share"],
                     law["fairness"], law["max_same_anchor_slots"], time.perf_counter() - began)
        timings = draw_times(stream, args.timing_draws, args.repeats, pescador)
        for row in rows[-len(METHODS):]:
            row["us_per_draw"], row["setup_ms"] = timings[row["method"]]
            log.info("%s %s: %.1f µs per draw, %.1f ms to open", name, row["method"], *timings[row["method"]])
    table = pd.DataFrame(rows)
    ours = table[table["method"] == "songfeel"].set_index("table")["us_per_draw"]
    table["speed_vs_songfeel"] = table["us_per_draw"] / table["table"].map(ours)
    args.out.mkdir(parents=True, exist_ok=True)
    table.round(4).to_csv(args.out / "bench_mux.csv", index=False)
    settings = {"date": date.today().isoformat(), "python": platform.python_version(), "numpy": np.__version__,
                "pescador": pescador.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, one process",
                "n_active": train.n_active, "stream_rate": train.stream_rate,
                "samples_small": samples["small"], "samples_large": samples["large"], "note": args.note}
    (args.out / "bench_mux.md").write_text(markdown(table, settings))
    log.info("wrote %s and %s", args.out / "bench_mux.csv", args.out / "bench_mux.md")


if __name__ == "__main__":
    main()
