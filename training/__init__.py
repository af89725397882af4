"""Training utilities for idinvert: synthetic data, training loops and helpers."""
