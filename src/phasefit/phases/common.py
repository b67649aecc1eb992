"""What every phase shares: training arguments, devices and precision, the encoder's modules."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.modules import Normalize
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..noise import delete_words

logger = logging.getLogger(__name__)


def precision_options() -> dict[str, Any]:
    """bf16 (else fp16) and TF32 on CUDA; full precision on CPU."""
    if not torch.cuda.is_available():
        return {}
    options: dict[str, Any] = {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    if torch.cuda.get_device_capability()[0] >= 8:
        options["tf32"] = True
    return options


def common_arguments(config: Any, seed: int, output_dir: Path) -> dict[str, Any]:
    """Training arguments every phase uses; nothing is written, logged or reported unless asked."""
    return {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": max(64, config.batch_size),
        "num_train_epochs": config.epochs,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "seed": seed,
        "data_seed": seed,
        "logging_steps": 5,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
        **precision_options(),
    }


class _SentenceTrainer(SentenceTransformerTrainer):
    """The sentence-transformers trainer without its model-card tracking (phasefit writes its own files)."""

    def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
        return None


def run_sentence_trainer(
    model: SentenceTransformer,
    dataset: Dataset,
    loss: torch.nn.Module,
    config: Any,
    seed: int,
    output_dir: Path,
    callbacks: list[TrainerCallback],
) -> dict[str, float]:
    """Train with the sentence-transformers trainer, no checkpoints; returns the trainer's train metrics."""
    args = SentenceTransformerTrainingArguments(**common_arguments(config, seed, output_dir), save_strategy="no")
    trainer = _SentenceTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=callbacks)
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    result = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"train_loss": float(result.training_loss), "first_logged_loss": losses[0] if losses else float("nan"), "last_logged_loss": losses[-1] if losses else float("nan"), "steps": trainer.state.global_step}


def without_final_normalize(model: SentenceTransformer) -> SentenceTransformer:
    """The same modules (shared weights) minus a trailing Normalize.

    A unit-length bottleneck gives the DAE decoder almost nothing to reconstruct from, and its
    gradients then pull the encoder away from where it started; the Normalize is kept for the
    model that is returned.
    """
    modules = list(model)
    if modules and isinstance(modules[-1], Normalize):
        modules = modules[:-1]
        return SentenceTransformer(modules=modules, device=str(model.device))
    return model


def add_word_deletion(dataset: Dataset, deletion_ratio: float, seed: int) -> Dataset:
    """Fill the ``damaged`` column on the fly from ``original``: fresh noise every time a row is read."""
    rng = np.random.default_rng(seed)

    def transform(batch: dict[str, list]) -> dict[str, list]:
        batch = dict(batch)
        batch["damaged"] = [delete_words(text, deletion_ratio, rng) for text in batch["original"]]
        return batch

    dataset.set_transform(transform)
    return dataset
