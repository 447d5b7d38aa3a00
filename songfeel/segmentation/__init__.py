"""Music structure analysis: SSM-Net and classic baselines, scored with mir_eval.

After G. Peeters, "Self-Similarity-Based and Novelty-based loss for music
structure analysis", ISMIR 2023 (arXiv 2309.02243): a self-similarity matrix
(SSM) from learned features, an SSM loss against the ground-truth SSM and a
novelty loss through learned checkerboard kernels; boundaries are scored with
mir_eval (HR.5F, HR3F) against Foote novelty and Laplacian segmentation
(McFee & Ellis 2014) on the same songs.

The modules, in the order data flows through them:

- :mod:`~songfeel.segmentation.features`: the log-mel patches SSM-Net and Foote read;
- :mod:`~songfeel.segmentation.medleys`, :mod:`~songfeel.segmentation.annotations`, :mod:`~songfeel.segmentation.groundtruth`:
  medleys with known boundaries, annotation files (JAMS, SALAMI, Harmonix) and ground-truth SSMs;
- :mod:`~songfeel.segmentation.config`: the ``structure`` config group as typed objects;
- :mod:`~songfeel.segmentation.dataset`: medleys cut from a manifest's songs, as SSM-Net's inputs and targets;
- :mod:`~songfeel.segmentation.ssmnet`: the model and its losses; :mod:`~songfeel.segmentation.training`: its training
  loop; :mod:`~songfeel.segmentation.checkpoint`: its checkpoints;
- :mod:`~songfeel.segmentation.baselines`, :mod:`~songfeel.segmentation.peaks`: Foote and Laplacian segmentation,
  peak picking; :mod:`~songfeel.segmentation.infer`: segmentation of any audio;
  :mod:`~songfeel.segmentation.tuning`: peak picking tuned on validation songs;
- :mod:`~songfeel.segmentation.evaluation`, :mod:`~songfeel.segmentation.scoring`: mir_eval scores of every method on the
  same songs, with bootstrap CIs; :mod:`~songfeel.segmentation.tables`: Markdown tables;
  :mod:`~songfeel.segmentation.plots`: figures;
- :mod:`~songfeel.stages.segmentation`: the structure stages of dvc.yaml (medleys, SSM-Net training, evaluation);
  :mod:`~songfeel.segmentation.segment`: the ``segment`` command; :mod:`~songfeel.segmentation.annotated`: scores
  on a user's annotated songs.
"""
