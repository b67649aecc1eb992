"""Phase 2: supervised contrastive learning (Siamese, cosine loss) after the imbalance correction."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
from sentence_transformers.sentence_transformer.modules import Dense, Normalize

from ..config import CLConfig, JointConfig
from ..pairs import build_label_set_pairs, build_pairs, correct_imbalance, correct_label_set_imbalance
from .common import PhaseRun, run_sentence_trainer


def is_projection(module: torch.nn.Module) -> bool:
    """The layer :func:`with_projection` adds (a square Dense with no activation), in memory or saved and loaded again."""
    return isinstance(module, Dense) and module.in_features == module.out_features and isinstance(module.activation_function, torch.nn.Identity)


def with_projection(encoder: SentenceTransformer) -> SentenceTransformer:
    """The encoder plus one dense layer of the hidden size ("DAECL"), placed before a trailing Normalize.

    The layer starts as the identity, so the phase starts from the embedding the encoder already
    has; it is added once (a second contrastive phase reuses it).
    """
    modules = list(encoder)
    if any(is_projection(module) for module in modules):
        return encoder
    size = encoder.get_embedding_dimension()
    projection = Dense(size, size, activation_function=torch.nn.Identity(), init_weight=torch.eye(size), init_bias=torch.zeros(size))
    position = len(modules) - 1 if modules and isinstance(modules[-1], Normalize) else len(modules)
    modules.insert(position, projection.to(encoder.device))
    model = SentenceTransformer(modules=modules, device=str(encoder.device))
    model.max_seq_length = encoder.max_seq_length
    return model


def pair_dataset(texts: Sequence[str], labels: np.ndarray, config: CLConfig | JointConfig, seed: int) -> Dataset:
    """Columns ``sentence1``, ``sentence2``, ``score`` after the (optional) imbalance correction; ``labels`` are class
    codes (one column per hierarchy level), or a float 0/1 matrix of label sets (multi-label: the correction is per label)."""
    rng = np.random.default_rng(seed)
    texts, labels = list(texts), np.asarray(labels)
    if np.issubdtype(labels.dtype, np.floating):  # a 0/1 matrix of label sets: targets are the sets' Jaccard similarity
        if config.imbalance_correction:
            texts, labels = correct_label_set_imbalance(texts, labels, config.min_ratio, config.max_ratio, rng)
        pairs = build_label_set_pairs(labels, config.pairs_per_example, rng)
    else:
        if config.imbalance_correction:
            texts, labels = correct_imbalance(texts, labels, config.min_ratio, config.max_ratio, rng)
        pairs = build_pairs(labels, config.pairs_per_example, rng)
    if len(pairs) == 0:
        raise ValueError("no training pairs could be built: the contrastive phase needs at least two classes with examples.")
    return Dataset.from_dict(
        {
            "sentence1": [texts[i] for i in pairs.first],
            "sentence2": [texts[i] for i in pairs.second],
            "score": pairs.score.astype(np.float32),
        }
    )


def train_cl(
    encoder: SentenceTransformer,
    texts: Sequence[str],
    labels: np.ndarray,
    config: CLConfig,
    run: PhaseRun,
) -> tuple[SentenceTransformer, dict[str, float]]:
    """Pull same-class texts together and push different classes apart; returns the encoder with its projection."""
    model = with_projection(run.limit_tokens(encoder))
    dataset = pair_dataset(texts, labels, config, run.seed)
    stats = run_sentence_trainer(model, dataset, CosineSimilarityLoss(model), config, run)
    stats["pairs"] = len(dataset)
    return model, stats
