"""The baselines that songfeel's embeddings must beat: one vector per whole song.

* :mod:`songfeel.baselines.mfcc`: :func:`~songfeel.baselines.mfcc.mfcc_statistics`, the mean
  and standard deviation over time of the stored MFCCs, z-scored by a
  :class:`~songfeel.baselines.mfcc.Standardiser` fitted on training tracks (the classic
  "bag of frames" song descriptor).
* :mod:`songfeel.baselines.bliss`: :func:`~songfeel.baselines.bliss.bliss_features`, the 23
  handcrafted features of bliss-rs (https://github.com/Polochon-street/bliss-rs), which MECOMP
  used before its learned model, through the ``bliss-audio`` Python bindings, crash-isolated
  by :mod:`songfeel.native`. bliss-rs's default distance is the plain Euclidean distance on
  them; :func:`~songfeel.baselines.bliss.bliss_group_weighted_vectors` gives each feature
  group equal weight instead.
* :mod:`songfeel.baselines.mecomp`: :class:`~songfeel.baselines.mecomp.MecompModel` and
  :func:`~songfeel.baselines.mecomp.mecomp_embeddings`, MECOMP's current learned model,
  "AudioEmbeddingTiny" (https://github.com/AnthonyMichaelTDM/mecomp), a 32-d L2-normalised
  embedding of the whole song, run with ONNX Runtime;
  :func:`~songfeel.baselines.mecomp.fetch_mecomp_model` downloads it (SHA-256 verified) where
  it is missing, and :func:`~songfeel.baselines.mecomp.find_mecomp_model` finds it as the
  ``mecomp`` config group places it.

Tables of features are indexed by ``track_id``; the tracks that could not be
analysed come back in a separate table (``track_id, path, error``), as in stage 02.
The modules do not import each other; import them by name (this package re-exports nothing).
"""
