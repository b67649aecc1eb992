"""Supervised contrastive loss over one batch (Khosla et al., 2020), added to cross-entropy in FT (Gunel et al., ICLR 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SupervisedContrastiveLoss(nn.Module):
    """For each anchor with at least one same-class partner in the batch: the mean over its partners of
    ``-log softmax_j(cos(anchor, j) / temperature)``, the softmax over every other batch member.

    0 when no example in the batch has a partner (the gradient is then zero, not NaN).
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        normalised = nn.functional.normalize(embeddings.float(), dim=-1)
        logits = normalised @ normalised.T / self.temperature
        self_mask = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_probability = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positives = (labels[:, None] == labels[None, :]) & ~self_mask
        counts = positives.sum(dim=1)
        anchors = counts > 0
        if not anchors.any():
            return embeddings.sum() * 0.0
        per_anchor = -(log_probability.masked_fill(~positives, 0.0).sum(dim=1)[anchors] / counts[anchors])
        return per_anchor.mean()
