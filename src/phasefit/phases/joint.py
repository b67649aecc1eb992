"""The joint phase: L_DAE + L_CL on one encoder at every step."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

from ..config import JointConfig
from ..losses.denoising import DenoisingLoss
from ..losses.joint import JointLoss
from .cl import pair_dataset, with_projection
from .common import PhaseRun, add_word_deletion, run_sentence_trainer, without_final_normalize


def train_joint(
    encoder: SentenceTransformer,
    labelled_texts: Sequence[str],
    labels: np.ndarray,
    corpus: Sequence[str],
    config: JointConfig,
    run: PhaseRun,
) -> tuple[SentenceTransformer, dict[str, float]]:
    """Each row holds a pair for the cosine loss and a text for the DAE loss.

    ``corpus`` is the DAE stream (labelled plus unlabelled texts). An epoch has as many rows as the
    longer of the pairs and the corpus; the shorter one is cycled (in a seeded order), so the DAE
    stream reads every text of the pool however few pairs there are.
    """
    model = with_projection(run.limit_tokens(encoder))
    pairs = pair_dataset(labelled_texts, labels, config, run.seed)
    corpus = list(corpus) or list(labelled_texts)
    rng = np.random.default_rng(run.seed)
    n_pairs, rows = len(pairs), max(len(pairs), len(corpus))
    pairs = pairs.select(_cycled(rng.permutation(len(pairs)), rows))
    originals = [corpus[i] for i in _cycled(rng.permutation(len(corpus)), rows)]
    dataset = pairs.add_column("original", originals).add_column("damaged", originals)
    dataset = dataset.select_columns(["damaged", "original", "sentence1", "sentence2", "score"])
    dataset = add_word_deletion(dataset, config.deletion_ratio, run.seed)
    # One model object for both losses, so DDP wraps one module; the cosine loss ignores the final Normalize anyway.
    bottleneck = without_final_normalize(model)
    loss = JointLoss(DenoisingLoss(bottleneck), CosineSimilarityLoss(bottleneck))
    stats = run_sentence_trainer(bottleneck, dataset, loss, config, run, loss.denoising.decoder)
    stats["pairs"] = n_pairs
    stats["rows"] = len(dataset)
    return model, stats


def _cycled(order: np.ndarray, length: int) -> list[int]:
    """``order`` repeated until ``length`` items."""
    return [int(order[i % len(order)]) for i in range(length)]
