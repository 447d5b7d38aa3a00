"""Metrics: triplet accuracy and the consistency metrics of 'Structural Derivation'."""
