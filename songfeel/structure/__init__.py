"""Music structure analysis: SSM-Net and classic baselines, scored with mir_eval.

After G. Peeters, "Self-Similarity-Based and Novelty-based loss for music
structure analysis", ISMIR 2023 (arXiv 2309.02243): a self-similarity matrix
(SSM) from learned features, an SSM loss against the ground-truth SSM and a
novelty loss through learned checkerboard kernels; boundaries are scored with
mir_eval (HR.5F, HR3F) against Foote novelty and Laplacian segmentation
(McFee & Ellis 2014) on the same songs.
"""
