"""Text noise: word deletion for the denoising autoencoder, stop-word deletion for upsampled copies."""

from __future__ import annotations

import string

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS


def delete_words(text: str, deletion_ratio: float, rng: np.random.Generator) -> str:
    """Drop each word independently with probability ``deletion_ratio``; at least one word survives."""
    words = text.split()
    if len(words) <= 1:
        return text
    keep = rng.random(len(words)) >= deletion_ratio
    if not keep.any():
        keep[rng.integers(len(words))] = True
    return " ".join(word for word, kept in zip(words, keep) if kept)


def _is_stop_word(word: str) -> bool:
    return word.lower().strip(string.punctuation) in ENGLISH_STOP_WORDS


def delete_stop_words(text: str, rng: np.random.Generator) -> str:
    """A noised variant of ``text``: each stop-word is deleted with probability 1/2.

    At least one stop-word is deleted and never every word, so the variant differs from the
    original; a text without stop-words (or made only of one word) comes back unchanged.
    """
    words = text.split()
    stop_positions = np.array([i for i, word in enumerate(words) if _is_stop_word(word)], dtype=int)
    if stop_positions.size == 0 or len(words) <= 1:
        return text
    drop = rng.random(stop_positions.size) < 0.5
    if not drop.any():
        drop[rng.integers(stop_positions.size)] = True
    if drop.sum() == len(words):  # every word is a stop-word: keep one of them
        drop[rng.integers(stop_positions.size)] = False
    dropped = set(stop_positions[drop].tolist())
    return " ".join(word for i, word in enumerate(words) if i not in dropped)
