"""Losses that sentence-transformers does not ship: a TSDAE loss that keeps the encoder's weights
and falls back to a BERT decoder, the joint DAE + contrastive loss, and a batch supervised
contrastive loss for FT."""

from .denoising import DenoisingLoss
from .joint import JointLoss
from .supervised_contrastive import SupervisedContrastiveLoss

__all__ = ["DenoisingLoss", "JointLoss", "SupervisedContrastiveLoss"]
