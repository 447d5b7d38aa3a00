"""Music structure analysis: SSM-Net and classic baselines, scored with mir_eval.

After G. Peeters, "Self-Similarity-Based and Novelty-based loss for music
structure analysis", ISMIR 2023 (arXiv 2309.02243): a self-similarity matrix
(SSM) from learned features, an SSM loss against the ground-truth SSM and a
novelty loss through learned checkerboard kernels; boundaries are scored with
mir_eval (HR.5F, HR3F) against Foote novelty and Laplacian segmentation
(McFee & Ellis 2014) on the same songs.

The modules, in the order data flows through them:

- :mod:`~songfeel.structure.features`: the log-mel patches SSM-Net and Foote read;
- :mod:`~songfeel.structure.medleys`, :mod:`~songfeel.structure.annotations`, :mod:`~songfeel.structure.groundtruth`:
  medleys with known boundaries, annotation files (JAMS, SALAMI, Harmonix) and ground-truth SSMs;
- :mod:`~songfeel.structure.config`: the ``structure`` config group as typed objects;
- :mod:`~songfeel.structure.dataset`: medleys cut from a manifest's songs, as SSM-Net's inputs and targets;
- :mod:`~songfeel.structure.ssmnet`: the model and its losses; :mod:`~songfeel.structure.training`: its training
  loop; :mod:`~songfeel.structure.checkpoint`: its checkpoints;
- :mod:`~songfeel.structure.baselines`, :mod:`~songfeel.structure.peaks`: Foote and Laplacian segmentation,
  peak picking; :mod:`~songfeel.structure.infer`: segmentation of any audio;
  :mod:`~songfeel.structure.tuning`: peak picking tuned on validation songs;
- :mod:`~songfeel.structure.evaluation`, :mod:`~songfeel.structure.scoring`: mir_eval scores of every method on the
  same songs, with bootstrap CIs; :mod:`~songfeel.structure.tables`: Markdown tables;
  :mod:`~songfeel.structure.plots`: figures;
- :mod:`~songfeel.structure.stages`: the structure stages of dvc.yaml (medleys, SSM-Net training, evaluation);
  :mod:`~songfeel.structure.segment`: the ``segment`` command; :mod:`~songfeel.structure.annotated`: scores
  on a user's annotated songs.
"""
