"""Segmentation and continual-learning metrics (pure numpy/torch functions)."""
