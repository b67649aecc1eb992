"""The joint loss: L_DAE + L_CL on the same encoder at every step."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn


class JointLoss(nn.Module):
    """Sum of a denoising loss and a contrastive loss, logged as two components.

    Inputs: (damaged text, original text, sentence 1, sentence 2) with the pair's similarity as label.
    """

    def __init__(self, denoising: nn.Module, contrastive: nn.Module) -> None:
        super().__init__()
        self.denoising = denoising
        self.contrastive = contrastive

    @property
    def model(self) -> nn.Module:
        """The encoder both parts share; the trainer replaces it in both with the DDP-wrapped one."""
        return self.contrastive.model

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> dict[str, Tensor]:
        damaged, original, first, second = sentence_features
        return {"dae": self.denoising([damaged, original], None), "cl": self.contrastive([first, second], labels)}
