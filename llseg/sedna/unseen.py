"""The unseen-sample score of the inference worker (docs/sedna.md, "Unseen samples").

A pixel is *uncertain* when its highest softmax probability over the model's class scores is
below ``confidence`` (default 0.5). An image's score is the fraction of uncertain pixels, computed
at the deploy resolution; the image is handed to Sedna's unseen-sample path when the score exceeds
``threshold`` (default 0.2). The score is 0 for a model sure of every pixel and approaches 1 when
no class wins clearly anywhere; images of classes the model has never learned (the next step's
classes) score high because their pixels split between the known classes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pixel_confidence(scores: np.ndarray) -> np.ndarray:
    """Max softmax probability per pixel: K×H×W (or 1×K×H×W) class scores -> H×W in [1/K, 1]."""
    if scores.ndim == 4:
        if scores.shape[0] != 1:
            raise ValueError(f"expected the scores of one image, got a batch of {scores.shape[0]}")
        scores = scores[0]
    if scores.ndim != 3:
        raise ValueError(f"expected K×H×W class scores, got shape {scores.shape}")
    shifted = scores.astype(np.float64) - scores.max(axis=0, keepdims=True)
    exp = np.exp(shifted)
    return (1.0 / exp.sum(axis=0)).astype(np.float32)  # the winner's exp(0) = 1 over the sum


@dataclass(frozen=True)
class UnseenScore:
    """``uncertain_fraction`` (the score), ``mean_confidence`` and the decision ``unseen``."""

    uncertain_fraction: float
    mean_confidence: float
    unseen: bool


def score_image(scores: np.ndarray, *, confidence: float = 0.5, threshold: float = 0.2) -> UnseenScore:
    """Score one image's class scores (K×H×W or 1×K×H×W); ``unseen`` iff the fraction > ``threshold``."""
    conf = pixel_confidence(scores)
    fraction = float(np.mean(conf < confidence))
    return UnseenScore(fraction, float(conf.mean()), fraction > threshold)
