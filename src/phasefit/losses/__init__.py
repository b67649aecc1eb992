"""Losses that sentence-transformers does not ship: a TSDAE loss that keeps the encoder's weights
and falls back to a BERT decoder, and the joint DAE + contrastive loss."""

from .denoising import DenoisingLoss
from .joint import JointLoss

__all__ = ["DenoisingLoss", "JointLoss"]
