"""PhaseFitModel: a sentence-transformers encoder with an MLP classification head.

A saved model directory is a sentence-transformers folder (``SentenceTransformer(dir)`` loads the
encoder) plus ``head.safetensors`` and ``phasefit.json``. Safetensors and JSON only: nothing is
ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer
from torch import nn

from .distributed import is_main_process
from .errors import ModelFilesError

FORMAT_NAME = "phasefit"
FORMAT_VERSION = 1
HEAD_FILE = "head.safetensors"
CONFIG_FILE = "phasefit.json"


class ClassificationHead(nn.Module):
    """dropout → Linear(d, h) → GELU → dropout → Linear(h, K)."""

    def __init__(self, input_size: int, hidden_size: int, n_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.n_classes, self.dropout_rate = input_size, hidden_size, n_classes, dropout
        self.layers = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(input_size, hidden_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, n_classes),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)

    def config(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "n_classes": self.n_classes, "dropout": self.dropout_rate}


class EncoderClassifier(nn.Module):
    """Encoder + head as one module with the ``forward(input_ids, ..., labels)`` the transformers Trainer expects."""

    # The loss is a per-batch mean: the Trainer must scale it for gradient accumulation itself and
    # must not multiply it by the number of processes (it would, seeing ``**features``).
    accepts_loss_kwargs = False

    def __init__(self, encoder: SentenceTransformer, head: ClassificationHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, labels: torch.Tensor | None = None, **features: torch.Tensor) -> dict[str, torch.Tensor]:
        embeddings = self.encoder(features)["sentence_embedding"]
        logits = self.head(embeddings)
        output = {"logits": logits}
        if labels is not None:
            output["loss"] = nn.functional.cross_entropy(logits, labels)
        return output


class PhaseFitModel:
    """A trained text classifier: ``predict``, ``predict_proba``, ``encode``, ``save_pretrained``, ``from_pretrained``."""

    def __init__(self, encoder: SentenceTransformer, head: ClassificationHead, labels: Sequence[str], info: dict[str, Any] | None = None) -> None:
        if head.n_classes != len(labels):
            raise ValueError(f"the head has {head.n_classes} outputs but {len(labels)} labels were given.")
        self.encoder = encoder
        self.head = head
        self.labels = list(labels)
        self.info = dict(info or {})

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def encode(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False) -> np.ndarray:
        """Sentence embeddings from the trained encoder (the head's input)."""
        return self.encoder.encode(list(texts), batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_numpy=True)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False) -> np.ndarray:
        """Class probabilities, one row per text, columns in the order of ``self.labels``."""
        if isinstance(texts, str):
            raise TypeError("predict_proba expects a list of texts, not a single string.")
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        self.encoder.eval()
        self.head.eval()
        embeddings = self.encoder.encode(list(texts), batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_tensor=True)
        with torch.inference_mode():
            logits = self.head(embeddings.to(next(self.head.parameters()).device))
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def predict(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False) -> list[str]:
        """The most probable label of each text."""
        probabilities = self.predict_proba(texts, batch_size, show_progress_bar)
        return [self.labels[i] for i in probabilities.argmax(axis=1)]

    def to(self, device: str | torch.device) -> "PhaseFitModel":
        self.encoder.to(device)
        self.head.to(device)
        return self

    def save_pretrained(self, directory: str | Path, extra_files: dict[str, bytes] | None = None) -> Path:
        """Write the model atomically: a staging folder beside ``directory`` is renamed into place when complete.

        Under several processes only the main one writes; the others return at once.
        """
        directory = Path(directory)
        if not is_main_process():
            return directory
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.staging-", dir=directory.parent))
        try:
            self.encoder.save(str(staging), create_model_card=False, safe_serialization=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(staging / HEAD_FILE))
            config = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "labels": self.labels, "head": self.head.config(), **self.info}
            (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            for name, content in (extra_files or {}).items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_bytes(content)
            replace_directory(staging, directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | None = None, trust_remote_code: bool = False) -> "PhaseFitModel":
        """Load a directory written by :meth:`save_pretrained`; says which file is missing when it is not one."""
        directory = Path(directory)
        if not directory.exists():
            raise ModelFilesError(f"{directory}: no such model directory.")
        if not directory.is_dir():
            raise ModelFilesError(f"{directory}: is a file, not a model directory.")
        missing = [name for name in (CONFIG_FILE, HEAD_FILE, "modules.json") if not (directory / name).is_file()]
        if missing:
            raise ModelFilesError(
                f"{directory}: not a phasefit model directory (missing {', '.join(missing)}). "
                "It is written by `phasefit train` or PhaseFitModel.save_pretrained."
            )
        try:
            config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ModelFilesError(f"{directory / CONFIG_FILE}: not valid JSON ({error}).") from None
        if config.get("format") != FORMAT_NAME or "labels" not in config or "head" not in config:
            raise ModelFilesError(f"{directory / CONFIG_FILE}: not a phasefit model config (no 'format: phasefit', 'labels' and 'head').")
        encoder = SentenceTransformer(str(directory), device=device, trust_remote_code=trust_remote_code, local_files_only=True)
        head_config = config["head"]
        head = ClassificationHead(head_config["input_size"], head_config["hidden_size"], head_config["n_classes"], head_config["dropout"])
        head.load_state_dict(load_file(str(directory / HEAD_FILE)))
        head.to(encoder.device)
        info = {k: v for k, v in config.items() if k not in {"format", "format_version", "labels", "head"}}
        return cls(encoder, head.eval(), config["labels"], info)


def replace_directory(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is swapped out and removed only after the move."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
