"""Teacher models for distillation: a pretrained music tagger's per-patch outputs, cached once per track.

:mod:`songfeel.teacher.musicnn` runs musicnn (TensorFlow, imported there only);
:mod:`songfeel.teacher.targets` caches its outputs in HDF5 and serves them, pooled over
the student's crops, to training (h5py and numpy only).
"""
