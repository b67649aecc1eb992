"""Phase 3: fine-tuning with a two-layer MLP head (transformers Trainer, early stopping, best checkpoint restored)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_model, save_model
from sentence_transformers import SentenceTransformer
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..config import ClassifyConfig
from ..distributed import is_main_process, wait_for_everyone
from ..metrics import classification_metrics
from ..model import ClassificationHead, EncoderClassifier
from .common import (
    MainProcessWritesOnly,
    checkpoint_step,
    common_arguments,
    effective_batch_size,
    latest_checkpoint,
    learning_curve,
    logging_interval,
)


def tokenized_dataset(encoder: SentenceTransformer, texts: Sequence[str], labels: np.ndarray) -> Dataset:
    """Tokenise once (truncated to the encoder's max length, unpadded); batches are padded per batch."""
    tokenizer = encoder.tokenizer
    encoded = tokenizer(list(texts), truncation=True, max_length=encoder.max_seq_length)
    return Dataset.from_dict({**encoded, "labels": np.asarray(labels, dtype=np.int64)})


class _ClassifierTrainer(MainProcessWritesOnly, Trainer):
    pass


class EarlyStoppingAfter(EarlyStoppingCallback):
    """Early stopping that lets no run end before ``min_steps`` optimiser steps (the patience count goes on meanwhile)."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0, min_steps: int = 0) -> None:
        super().__init__(early_stopping_patience, early_stopping_threshold)
        self.min_steps = min_steps

    def state(self) -> dict:
        exported = super().state()
        exported["args"]["min_steps"] = self.min_steps
        return exported

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if state.global_step < self.min_steps:
            control.should_training_stop = False


def evaluation_interval(n_examples: int, batch_size: int) -> int:
    """Evaluate (and maybe stop) once per epoch, but not more often than every 10 optimiser steps."""
    return max(10, math.ceil(n_examples / batch_size))


def train_classifier(
    encoder: SentenceTransformer,
    train_texts: Sequence[str],
    train_labels: np.ndarray,
    validation_texts: Sequence[str],
    validation_labels: np.ndarray,
    n_classes: int,
    config: ClassifyConfig,
    seed: int,
    workdir: Path,
    callbacks: Sequence[TrainerCallback] = (),
    resumable: bool = False,
    precision: str = "auto",
) -> tuple[ClassificationHead, dict[str, float]]:
    """Train encoder + head on cross-entropy; stop when validation ``config.metric`` stops improving.

    With ``config.learning_rate_grid``, the phase trains once per encoder learning rate of the grid,
    each from the same starting encoder, and keeps the run with the best validation ``metric``
    (ties go to the smaller rate). Finished trials are kept in ``workdir`` (weights and scores), so
    a resumed phase skips them.
    """
    arguments = (train_texts, train_labels, validation_texts, validation_labels, n_classes)
    if not config.learning_rate_grid:
        return _train_once(encoder, *arguments, config, seed, workdir, callbacks, resumable, precision)
    start = {name: tensor.detach().clone() for name, tensor in encoder.state_dict().items()}
    trials = []
    for rate in sorted(set(config.learning_rate_grid)):
        trial_dir = workdir / f"lr-{rate:g}"
        summary = trial_dir / "trial.json"
        if not (resumable and summary.is_file()):
            encoder.load_state_dict(start)
            trial_config = dataclasses.replace(config, learning_rate=rate, learning_rate_grid=[])
            head, stats = _train_once(encoder, *arguments, trial_config, seed, trial_dir / "run", callbacks, resumable, precision)
            if is_main_process():
                trial_dir.mkdir(parents=True, exist_ok=True)
                save_model(EncoderClassifier(encoder, head), str(trial_dir / "weights.safetensors"))
                summary.write_text(json.dumps({"learning_rate": rate, "stats": stats}), encoding="utf-8")
            wait_for_everyone()
        trials.append(json.loads(summary.read_text(encoding="utf-8")))
    key = "best_validation_" + config.metric
    sign = -1.0 if config.metric == "loss" else 1.0
    best = max(trials, key=lambda trial: (sign * trial["stats"][key], -trial["learning_rate"]))
    torch.manual_seed(seed)
    head = ClassificationHead(encoder.get_embedding_dimension(), config.head_size, n_classes, config.dropout).to(encoder.device)
    load_model(EncoderClassifier(encoder, head), str(workdir / f"lr-{best['learning_rate']:g}" / "weights.safetensors"), device=str(encoder.device))
    wait_for_everyone()
    if is_main_process():
        shutil.rmtree(workdir, ignore_errors=True)
    stats = dict(best["stats"])
    stats["chosen_learning_rate"] = best["learning_rate"]
    stats["learning_rate_trials"] = [
        {"learning_rate": t["learning_rate"], key: t["stats"][key], "best_step": t["stats"]["best_step"], "steps": t["stats"]["steps"]} for t in trials
    ]
    return head.eval(), stats


def _train_once(
    encoder: SentenceTransformer,
    train_texts: Sequence[str],
    train_labels: np.ndarray,
    validation_texts: Sequence[str],
    validation_labels: np.ndarray,
    n_classes: int,
    config: ClassifyConfig,
    seed: int,
    workdir: Path,
    callbacks: Sequence[TrainerCallback],
    resumable: bool,
    precision: str,
) -> tuple[ClassificationHead, dict[str, float]]:
    torch.manual_seed(seed)
    head = ClassificationHead(encoder.get_embedding_dimension(), config.head_size, n_classes, config.dropout).to(encoder.device)
    classifier = EncoderClassifier(encoder, head)
    encoder.requires_grad_(not config.freeze_encoder)

    batch = effective_batch_size(config)
    steps_per_epoch = math.ceil(len(train_texts) / batch)
    max_steps = max(math.ceil(config.epochs * steps_per_epoch), config.min_steps)
    interval = min(evaluation_interval(len(train_texts), batch), max_steps)
    metric = "eval_loss" if config.metric == "loss" else f"eval_{config.metric}"
    args = TrainingArguments(
        **{**common_arguments(config, seed, workdir, precision), "logging_steps": logging_interval(max_steps)},
        max_steps=max_steps,
        eval_strategy="steps",
        eval_steps=interval,
        save_strategy="steps",
        save_steps=interval,
        save_total_limit=1,
        save_only_model=not resumable,
        load_best_model_at_end=True,
        restore_callback_states_from_checkpoint=True,  # else a resumed run restarts its early-stopping count from zero
        metric_for_best_model=metric,
        greater_is_better=config.metric != "loss",
        remove_unused_columns=False,
        label_names=["labels"],
        warmup_steps=min(max_steps // 10, 100),
    )
    parameter_groups = [{"params": list(head.parameters()), "lr": config.head_learning_rate}]
    if not config.freeze_encoder:
        parameter_groups.append({"params": [p for p in encoder.parameters() if p.requires_grad], "lr": config.learning_rate})
    optimizer = torch.optim.AdamW(parameter_groups, weight_decay=config.weight_decay)

    def compute_metrics(prediction) -> dict[str, float]:
        predicted = np.asarray(prediction.predictions).argmax(axis=-1)
        scores = classification_metrics(np.asarray(prediction.label_ids), predicted, list(range(n_classes)))
        return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}

    trainer = _ClassifierTrainer(
        model=classifier,
        args=args,
        train_dataset=tokenized_dataset(encoder, train_texts, train_labels),
        eval_dataset=tokenized_dataset(encoder, validation_texts, validation_labels),
        data_collator=DataCollatorWithPadding(encoder.tokenizer),
        compute_metrics=compute_metrics,
        optimizers=(optimizer, None),
        callbacks=[EarlyStoppingAfter(config.patience, min_steps=config.min_steps), *callbacks],
    )
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    resume_from = latest_checkpoint(workdir) if resumable else None
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        encoder.requires_grad_(True)
    wait_for_everyone()  # every process has loaded the best checkpoint before it goes
    if is_main_process():
        shutil.rmtree(workdir, ignore_errors=True)
    best = trainer.state.best_metric
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    return head.eval(), {
        "curve": learning_curve(trainer.state.log_history),
        "steps": trainer.state.global_step,
        "effective_batch_size": batch,
        "best_validation_" + config.metric: float(best) if best is not None else float("nan"),
        "best_step": int(trainer.state.best_global_step or 0),
        "evaluations": len(evaluations),
        "resumed_from_step": checkpoint_step(resume_from),
    }
