"""Phase 1: TSDAE-style denoising autoencoder on unlabelled texts."""

from __future__ import annotations

from typing import Sequence

from datasets import Dataset
from sentence_transformers import SentenceTransformer

from ..config import DAEConfig
from ..losses.denoising import DenoisingLoss
from .common import PhaseRun, add_word_deletion, first_token_bottleneck, run_sentence_trainer, without_final_normalize


def noisy_text_dataset(texts: Sequence[str], deletion_ratio: float, seed: int) -> Dataset:
    """Columns ``damaged`` (word deletion, drawn afresh at each read) and ``original``."""
    dataset = Dataset.from_dict({"damaged": list(texts), "original": list(texts)})
    return add_word_deletion(dataset, deletion_ratio, seed)


def train_dae(
    encoder: SentenceTransformer,
    texts: Sequence[str],
    config: DAEConfig,
    run: PhaseRun,
) -> tuple[SentenceTransformer, dict[str, float]]:
    """Adapt ``encoder`` to the texts by reconstructing each text from its damaged copy's embedding.

    The embedding is the encoder's own (less a final Normalize) or, with ``pooling: cls``, its first token's.
    """
    limited = run.limit_tokens(encoder)
    bottleneck = first_token_bottleneck(limited) if config.pooling == "cls" else without_final_normalize(limited)
    loss = DenoisingLoss(bottleneck)
    dataset = noisy_text_dataset(texts, config.deletion_ratio, run.seed)
    stats = run_sentence_trainer(bottleneck, dataset, loss, config, run, loss.decoder)
    stats["tied_decoder"] = float(loss.tied)
    return encoder, stats
