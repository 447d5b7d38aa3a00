"""Benchmark: songfeel's plain bootstrap (scipy.stats.bootstrap, percentile) against the index-draw
bootstrap it replaced, in one run, on the sizes stage 05 meets (issue 25).

    python benchmarks/bench_bootstrap.py

The index-draw bootstrap is still songfeel's cluster bootstrap; with one cluster per value
(``clusters=np.arange(n)``) it is exactly the plain bootstrap that songfeel computed before, so the
two columns time the old and the new plain case on the same values, 1000 resamples each. Prints
the seconds per interval of each and their ratio, and the two intervals (they differ only by the
random draws).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from songfeel.metrics.bootstrap import bootstrap_ci  # noqa: E402

log = logging.getLogger("bench_bootstrap")


def seconds_per_call(call, repeats: int) -> float:
    call()  # warm-up
    began = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - began) / repeats


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(0)
    for n in (40, 680, 5000):  # segmentation medleys, first-split test triplets, a large run
        values = (rng.uniform(size=n) < 0.7).astype(np.float64)
        singletons = np.arange(n)
        new = seconds_per_call(lambda: bootstrap_ci(values, 1000, seed=0), 20)
        old = seconds_per_call(lambda: bootstrap_ci(values, 1000, seed=0, clusters=singletons), 20)
        log.info("n=%5d: scipy.stats.bootstrap %.2f ms, index draws %.2f ms, ratio %.2f; intervals %s vs %s", n,
                 new * 1e3, old * 1e3, new / old, np.round(bootstrap_ci(values, 1000, seed=0)[1:], 3),
                 np.round(bootstrap_ci(values, 1000, seed=0, clusters=singletons)[1:], 3))


if __name__ == "__main__":
    main()
