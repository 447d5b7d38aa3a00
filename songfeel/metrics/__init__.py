"""Metrics: triplet accuracy and the structure metrics of 'Structural Derivation'."""
