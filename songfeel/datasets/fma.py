"""The Free Music Archive (mdeff/fma, https://github.com/mdeff/fma).

Download, checksum verification and ``tracks.csv`` parsing are the subject of a
later issue; until then this source refuses clearly instead of half-working.
"""

from __future__ import annotations


def build_manifest(dataset_cfg):
    """Not implemented yet.

    Raises:
        NotImplementedError: always, naming the requested subset.
    """
    raise NotImplementedError(
        f"dataset={dataset_cfg.name}: the FMA source is not implemented yet; use dataset=demo"
    )
