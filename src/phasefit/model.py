"""PhaseFitModel: a sentence-transformers encoder with a classification head (an MLP, or class prototypes).

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
from typing import Any, Mapping, Sequence

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

    def set_output_bias(self, bias: torch.Tensor | np.ndarray) -> "ClassificationHead":
        with torch.no_grad():
            self.layers[-1].bias.copy_(torch.as_tensor(bias, dtype=self.layers[-1].bias.dtype))
        return self

    def config(self) -> dict[str, Any]:
        return {"kind": "mlp", "input_size": self.input_size, "hidden_size": self.hidden_size, "n_classes": self.n_classes, "dropout": self.dropout_rate}


class PrototypeHead(nn.Module):
    """Scaled cosine similarity to one learnt vector per class: ``logits = scale * cos(embedding, prototype_k)``.

    Initialised from the embeddings of the class names (or of the classes' training texts), it
    classifies sensibly before the first step, so fine-tuning starts from what the encoder already
    knows instead of from a random head whose early gradients disturb the encoder.

    With ``offsets`` (multi-label: one sigmoid per label) each label also has a learnt similarity at which its
    probability is one half, ``logits = scale * (cos(embedding, prototype_k) - offset_k)``: a softmax compares
    the classes with each other, a sigmoid compares each label with its own cut.
    """

    def __init__(self, input_size: int, n_classes: int, scale: float = 20.0, offsets: bool = False) -> None:
        super().__init__()
        self.input_size, self.n_classes, self.initial_scale = input_size, n_classes, scale
        self.prototypes = nn.Parameter(torch.randn(n_classes, input_size) / input_size**0.5)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(scale))))
        self.offsets = nn.Parameter(torch.zeros(n_classes)) if offsets else None

    @torch.no_grad()
    def initialise(self, vectors: torch.Tensor | np.ndarray, offsets: torch.Tensor | np.ndarray | None = None) -> "PrototypeHead":
        vectors = torch.as_tensor(vectors, dtype=self.prototypes.dtype, device=self.prototypes.device)
        if vectors.shape != self.prototypes.shape:
            raise ValueError(f"{tuple(vectors.shape)} prototype vectors given for a head of shape {tuple(self.prototypes.shape)}.")
        self.prototypes.copy_(nn.functional.normalize(vectors, dim=-1))
        if offsets is not None and self.offsets is not None:
            self.offsets.copy_(torch.as_tensor(offsets, dtype=self.offsets.dtype, device=self.offsets.device))
        return self

    def similarity(self, embeddings: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(embeddings, dim=-1) @ nn.functional.normalize(self.prototypes, dim=-1).T

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        similarity = self.similarity(embeddings)
        if self.offsets is not None:
            similarity = similarity - self.offsets
        return self.log_scale.exp() * similarity

    def config(self) -> dict[str, Any]:
        offsets = {"offsets": True} if self.offsets is not None else {}
        return {"kind": "prototype", "input_size": self.input_size, "n_classes": self.n_classes, "scale": self.initial_scale, **offsets}


class LinearHead(nn.Module):
    """One linear layer, ``logits = W · embedding + b``: the form of SetFit's logistic-regression head."""

    def __init__(self, input_size: int, n_classes: int) -> None:
        super().__init__()
        self.input_size, self.n_classes = input_size, n_classes
        self.linear = nn.Linear(input_size, n_classes)

    @torch.no_grad()
    def initialise(self, weight: torch.Tensor | np.ndarray, bias: torch.Tensor | np.ndarray) -> "LinearHead":
        self.linear.weight.copy_(torch.as_tensor(weight, dtype=self.linear.weight.dtype))
        self.linear.bias.copy_(torch.as_tensor(bias, dtype=self.linear.bias.dtype))
        return self

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.linear(embeddings)

    def config(self) -> dict[str, Any]:
        return {"kind": "linear", "input_size": self.input_size, "n_classes": self.n_classes}


def head_from_config(config: dict[str, Any]) -> nn.Module:
    """An untrained head of the kind and shape a saved ``phasefit.json`` describes (an MLP when it names none)."""
    kind = config.get("kind", "mlp")
    if kind == "prototype":
        return PrototypeHead(config["input_size"], config["n_classes"], config.get("scale", 20.0), bool(config.get("offsets")))
    if kind == "linear":
        return LinearHead(config["input_size"], config["n_classes"])
    if kind == "mlp":
        return ClassificationHead(config["input_size"], config["hidden_size"], config["n_classes"], config["dropout"])
    raise ModelFilesError(f"head kind {kind!r} is not one this phasefit knows (mlp, prototype, linear); a newer phasefit wrote it.")


class EncoderClassifier(nn.Module):
    """Encoder + head as one module with the ``forward(input_ids, ..., labels)`` the transformers Trainer expects.

    With ``class_features`` (the tokenised class names, in code order) the names are encoded with the
    texts at every training step and join the contrastive term's batch as members of their class
    (FastFit, Yehudai & Bendel 2024): each text is pulled towards its label's name as well as towards
    its classmates, and the names' own embeddings move with the encoder.
    """

    # The loss is a per-batch mean: the Trainer must scale it for gradient accumulation itself and
    # must not multiply it by the number of processes (it would, seeing ``**features``).
    accepts_loss_kwargs = False

    def __init__(
        self,
        encoder: SentenceTransformer,
        head: nn.Module,
        contrastive: nn.Module | None = None,
        contrastive_weight: float = 0.0,
        class_features: Mapping[str, torch.Tensor] | None = None,
        consistency_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.consistency_weight = consistency_weight
        self.contrastive = contrastive if contrastive_weight else None
        self.contrastive_weight = contrastive_weight
        self.class_feature_names = sorted(name for name, value in (class_features or {}).items() if isinstance(value, torch.Tensor))
        for name in self.class_feature_names:  # buffers, so that they follow the module to its device; not saved
            self.register_buffer(f"class_{name}", class_features[name], persistent=False)

    def forward(
        self, labels: torch.Tensor | None = None, targets: torch.Tensor | None = None, weights: torch.Tensor | None = None, **features: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Logits, and with ``labels`` the loss: cross-entropy, or against ``targets`` (one distribution per row, for
        pseudo-labelled rows), or (``labels`` a matrix: multi-label) binary cross-entropy per label; weighted per row
        by ``weights``. Plus the contrastive term when it is on (single-label), and, with ``consistency_*`` and
        ``noised_*`` features (an unlabelled text and its noised copy per row), the consistency term (see
        :meth:`_consistency`)."""
        groups = {group: {key[len(group) :]: features.pop(key) for key in list(features) if key.startswith(group)} for group in ("consistency_", "noised_")}
        embeddings = self.encoder(features)["sentence_embedding"]
        logits = self.head(embeddings)
        output = {"logits": logits}
        if labels is None:
            return output
        multi_label = labels.dim() == 2  # a 0/1 (or, pseudo-labelled, a probability) row of labels per text
        if multi_label:
            per_row = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none").mean(dim=-1)
        elif targets is None:
            per_row = nn.functional.cross_entropy(logits, labels, reduction="none")
        else:
            per_row = -(targets * nn.functional.log_softmax(logits, dim=-1)).sum(dim=-1)
        weights = torch.ones_like(per_row) if weights is None else weights
        output["loss"] = (per_row * weights).sum() / weights.sum().clamp_min(1e-8)
        if self.contrastive is not None and self.training and not multi_label:
            members, member_labels = embeddings, labels
            if self.class_feature_names:
                names = self.encoder({name: getattr(self, f"class_{name}") for name in self.class_feature_names})["sentence_embedding"]
                members = torch.cat([embeddings, names])
                member_labels = torch.cat([labels, torch.arange(len(names), device=labels.device)])
            output["loss"] = output["loss"] + self.contrastive_weight * self.contrastive(members, member_labels)
        if self.consistency_weight and self.training and groups["consistency_"]:
            output["loss"] = output["loss"] + self.consistency_weight * self._consistency(groups["consistency_"], groups["noised_"], multi_label)
        return output

    def _consistency(self, texts: dict[str, torch.Tensor], noised: dict[str, torch.Tensor], multi_label: bool) -> torch.Tensor:
        """How far the predictions for the noised copies are from those for the texts (held fixed): KL between the
        class distributions, or (multi-label) the binary cross-entropy of each label's probability."""
        with torch.no_grad():
            fixed_logits = self.head(self.encoder(texts)["sentence_embedding"])
        noised_logits = self.head(self.encoder(noised)["sentence_embedding"])
        if multi_label:
            return nn.functional.binary_cross_entropy_with_logits(noised_logits, torch.sigmoid(fixed_logits))
        return nn.functional.kl_div(nn.functional.log_softmax(noised_logits, dim=-1), nn.functional.softmax(fixed_logits, dim=-1), reduction="batchmean")


class PhaseFitModel:
    """A trained text classifier: ``predict``, ``predict_proba``, ``encode``, ``save_pretrained``, ``from_pretrained``."""

    def __init__(self, encoder: SentenceTransformer, head: nn.Module, labels: Sequence[str], info: dict[str, Any] | None = None) -> None:
        if head.n_classes != len(labels):
            raise ValueError(f"the head has {head.n_classes} outputs but {len(labels)} labels were given.")
        self.encoder = encoder
        self.head = head
        self.labels = list(labels)
        self.info = dict(info or {})

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def multi_label(self) -> bool:
        """Whether each text gets a set of labels (sigmoid outputs and thresholds) rather than one."""
        return bool(self.info.get("multi_label"))

    @property
    def thresholds(self) -> np.ndarray:
        """A multi-label model's decision threshold per label (chosen on validation when it trained)."""
        return np.asarray(self.info.get("thresholds") or [0.5] * len(self.labels), dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False) -> np.ndarray:
        """Sentence embeddings from the trained encoder (the head's input)."""
        return self.encoder.encode(list(texts), batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_numpy=True)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False) -> np.ndarray:
        """Class probabilities, one row per text, columns in the order of ``self.labels`` (a multi-label model: each
        label's own probability, independent of the others)."""
        if isinstance(texts, str):
            raise TypeError("predict_proba expects a list of texts, not a single string.")
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        self.encoder.eval()
        self.head.eval()
        embeddings = self.encoder.encode(list(texts), batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_tensor=True)
        with torch.inference_mode():
            logits = self.head(embeddings.to(next(self.head.parameters()).device))
            if self.multi_label:
                return torch.sigmoid(logits.float()).cpu().numpy()
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def predict(self, texts: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False) -> list[str] | list[list[str]]:
        """The most probable label of each text; a multi-label model: the list of labels at or above their thresholds."""
        probabilities = self.predict_proba(texts, batch_size, show_progress_bar)
        if self.multi_label:
            chosen = probabilities >= self.thresholds
            return [[label for label, on in zip(self.labels, row) if on] for row in chosen]
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
        head = head_from_config(config["head"])
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
