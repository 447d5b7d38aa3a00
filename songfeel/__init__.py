"""songfeel: tiny, fast song embeddings that capture how a song feels.

The package is organised by the field's concepts, one module per idea:
``audio`` (decode, downmix, resample), ``features`` (log-mel, MFCC),
``store`` (HDF5 feature store), ``datasets`` (manifest sources), ``triplets``,
``models`` (front end, window encoder, sequence heads), ``losses``, ``train``,
``metrics`` (triplet, consistency, retrieval), ``evaluate``, ``report`` and ``export``.
The numbered scripts at the top of the repository are thin Hydra entry points
into these modules.
"""

__version__ = "0.1.0"
