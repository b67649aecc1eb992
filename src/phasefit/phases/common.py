"""What every phase shares: training arguments, devices and precision, the encoder's modules."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_model, save_model
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


class LossStateCheckpoint(TrainerCallback):
    """Saves the weights a loss owns beyond the model (a DAE decoder) into every checkpoint, for resuming."""

    file_name = "loss_state.safetensors"

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            save_model(self.module, str(Path(args.output_dir) / f"checkpoint-{state.global_step}" / self.file_name))

    def restore(self, checkpoint: str) -> None:
        load_model(self.module, str(Path(checkpoint) / self.file_name), strict=False)


def checkpoint_options(checkpoint_steps: int | None) -> dict[str, Any]:
    if not checkpoint_steps:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": checkpoint_steps, "save_total_limit": 1}


def checkpoint_step(checkpoint: str | Path | None) -> int:
    """The optimiser step a ``checkpoint-N`` folder was written at (0 for none)."""
    return int(Path(checkpoint).name.split("-")[-1]) if checkpoint else 0


def latest_checkpoint(output_dir: Path, required_file: str = "trainer_state.json") -> str | None:
    """The newest complete ``checkpoint-N`` folder a killed run left (a half-written one is skipped)."""
    if not output_dir.is_dir():
        return None
    candidates = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    for candidate in sorted(candidates, key=checkpoint_step, reverse=True):
        if (candidate / "trainer_state.json").is_file() and (candidate / required_file).is_file():
            return str(candidate)
    return None


def learning_curve(log_history: list[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """(step, value) series of the trainer's log: training loss, and validation loss / accuracy where evaluated."""
    curve: dict[str, list[list[float]]] = {}
    for entry in log_history:
        for key in ("loss", "eval_loss", "eval_accuracy"):
            if key in entry:
                curve.setdefault("train_loss" if key == "loss" else key, []).append([entry["step"], round(float(entry[key]), 5)])
    return curve


def run_sentence_trainer(
    model: SentenceTransformer,
    dataset: Dataset,
    loss: torch.nn.Module,
    config: Any,
    seed: int,
    output_dir: Path,
    callbacks: list[TrainerCallback],
    checkpoint_steps: int | None = None,
    loss_state: torch.nn.Module | None = None,
) -> dict[str, float]:
    """Train with the sentence-transformers trainer; with ``checkpoint_steps``, checkpoint and resume from ``output_dir``."""
    args = SentenceTransformerTrainingArguments(**common_arguments(config, seed, output_dir), **checkpoint_options(checkpoint_steps))
    extra = [LossStateCheckpoint(loss_state)] if checkpoint_steps and loss_state is not None else []
    trainer = _SentenceTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[*callbacks, *extra])
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    resume_from = latest_checkpoint(output_dir, LossStateCheckpoint.file_name if extra else "trainer_state.json") if checkpoint_steps else None
    if resume_from and extra:
        extra[0].restore(resume_from)
    result = trainer.train(resume_from_checkpoint=resume_from)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "curve": learning_curve(trainer.state.log_history),
        "train_loss": float(result.training_loss),
        "first_logged_loss": losses[0] if losses else float("nan"),
        "last_logged_loss": losses[-1] if losses else float("nan"),
        "steps": trainer.state.global_step,
        "resumed_from_step": checkpoint_step(resume_from),
    }


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
