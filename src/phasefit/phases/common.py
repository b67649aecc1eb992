"""What every phase shares: training arguments, devices and precision, the encoder's modules."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_model, save_model
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..distributed import average_gradients, world_size
from ..errors import ConfigError
from ..noise import delete_words

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseRun:
    """Where and how one phase trains; every ``train_*`` takes one.

    ``checkpoint_steps`` None: nothing is checkpointed and a stopped phase starts again. Otherwise the
    phase resumes from its newest checkpoint in ``workdir``: the encoder phases write one every
    ``checkpoint_steps`` optimiser steps, FT at every evaluation (it keeps its best one anyway).
    ``max_length`` is the token limit every text is cut to (None: the encoder's own ``max_seq_length``).
    """

    seed: int
    workdir: Path
    callbacks: Sequence[TrainerCallback] = ()
    checkpoint_steps: int | None = None
    precision: str = "auto"
    max_length: int | None = None

    @property
    def resumable(self) -> bool:
        return self.checkpoint_steps is not None

    def within(self, folder: str, seed_offset: int = 0) -> "PhaseRun":
        """The same run in a sub-folder of ``workdir`` (a trial, a self-training round), its seed moved by ``seed_offset``."""
        return dataclasses.replace(self, workdir=self.workdir / folder, seed=self.seed + seed_offset)

    def limit_tokens(self, encoder: SentenceTransformer) -> SentenceTransformer:
        """``encoder`` set to cut texts at this run's ``max_length`` (unchanged when the run names none)."""
        if self.max_length is not None:
            encoder.max_seq_length = self.max_length
        return encoder


def precision_options(precision: str = "auto") -> dict[str, Any]:
    """Trainer arguments for ``precision``: ``auto`` is bf16 (else fp16) and TF32 on CUDA, full precision on CPU."""
    cuda = torch.cuda.is_available()
    if precision == "fp16" and not cuda:
        raise ConfigError("precision fp16 needs a CUDA GPU; use bf16 or fp32 on a CPU.")
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision bf16: this GPU does not support bfloat16; use fp16 or fp32.")
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    options: dict[str, Any] = {"bf16": precision == "bf16", "fp16": precision == "fp16"}
    if cuda and torch.cuda.get_device_capability()[0] >= 8:
        options["tf32"] = True
    return options


def effective_batch_size(config: Any) -> int:
    """Examples per optimiser step: per-device batch x gradient accumulation x processes."""
    return config.batch_size * config.gradient_accumulation * world_size()


def common_arguments(config: Any, seed: int, output_dir: Path, precision: str = "auto") -> dict[str, Any]:
    """Training arguments every phase uses; nothing is written, logged or reported unless asked."""
    logger.info(
        "%s: batch %d per device x %d accumulation x %d processes = effective batch %d",
        type(config).__name__,
        config.batch_size,
        config.gradient_accumulation,
        world_size(),
        effective_batch_size(config),
    )
    return {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation,
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
        "use_cpu": not torch.cuda.is_available(),  # so that torchrun on CPUs gives DDP over gloo
        **schedule_options(config),
        **precision_options(precision),
    }


def schedule_options(config: Any) -> dict[str, Any]:
    """Warm-up (a fraction of the phase's steps) and LR schedule, for the phases whose config has them."""
    if not hasattr(config, "lr_scheduler"):
        return {}
    return {"warmup_steps": float(config.warmup), "lr_scheduler_type": config.lr_scheduler}


def at_least_one_round(dataset: Dataset, config: Any) -> Dataset:
    """Rows repeated until every process gets a whole batch.

    The distributed batch samplers leave out a last incomplete round (fewer than processes x batch
    rows); a phase smaller than one round would then train on nothing.
    """
    round_size = config.batch_size * world_size()
    if len(dataset) >= round_size or len(dataset) == 0:
        return dataset
    return dataset.select([i % len(dataset) for i in range(round_size)])


def logging_interval(steps: int) -> int:
    """Log the loss every 5 steps, or often enough that even a short phase shows a curve of about 10 points."""
    return max(1, min(5, steps // 10))


def phase_steps(n_rows: int, config: Any) -> int:
    """Optimiser steps of a phase: ``epochs`` over ``n_rows``, but never fewer than ``min_steps`` (small data cycles its epochs)."""
    per_epoch = max(1, math.ceil(n_rows / effective_batch_size(config)))
    return max(math.ceil(config.epochs * per_epoch), getattr(config, "min_steps", 0))


class FrozenForSteps(TrainerCallback):
    """For the first ``steps`` optimiser steps ``module`` does not learn; the rest of the model does.

    Used where a freshly initialised part must learn first: the DAE decoder (its cross-attention
    starts from random weights, so until it reads the sentence vector the gradients that reach the
    encoder through it carry no signal) and the FT head (LP-FT: a random head's first gradients
    distort the encoder). Dropping the module's gradients before the optimiser step leaves it
    untouched meanwhile (AdamW skips a parameter without a gradient, so no moment estimate or decay
    moves it either).
    """

    def __init__(self, module: torch.nn.Module, steps: int) -> None:
        self.module = module  # the module, not its parameters: the trainer may swap those when it sets up
        self.steps = steps

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if state.global_step < self.steps:
            for parameter in self.module.parameters():
                parameter.grad = None


class StopOnLossPlateau(TrainerCallback):
    """Stops training once the training loss, averaged over windows of ``window`` steps, has not fallen below its best
    window by ``tolerance`` (relative) for ``patience`` steps; never before ``min_steps``. The DAE's loss is noisy from
    step to step (fresh deletions every read), so single logs are not compared. A resumed run starts counting afresh."""

    def __init__(self, patience: int, min_steps: int = 0, window: int = 50, tolerance: float = 0.01) -> None:
        self.patience, self.min_steps, self.window, self.tolerance = patience, min_steps, window, tolerance
        self.losses: list[tuple[int, float]] = []
        self.best, self.best_step, self.stopped_at = math.inf, 0, None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        self.losses.append((state.global_step, float(logs["loss"])))
        if self.losses[-1][0] - self.losses[0][0] + 1 < self.window:
            return
        mean = sum(loss for _, loss in self.losses) / len(self.losses)
        self.losses = []
        if mean < self.best * (1 - self.tolerance):
            self.best, self.best_step = mean, state.global_step
        elif state.global_step - self.best_step >= self.patience and state.global_step >= self.min_steps:
            self.stopped_at = state.global_step
            control.should_training_stop = True


class MainProcessWritesOnly:
    """Trainer mixin: checkpoints hold the main process's random-number state only.

    transformers has every process save ``rng_state_<rank>.pth`` into the checkpoint; here no
    process but the main one writes a file, and a resumed run re-seeds the other processes' dropout
    draws instead of restoring them (transformers warns and goes on).
    """

    def _save_rng_state(self, output_dir: str) -> None:
        if self.args.should_save:
            super()._save_rng_state(output_dir)


class _SentenceTrainer(MainProcessWritesOnly, SentenceTransformerTrainer):
    """The sentence-transformers trainer without its model-card tracking (phasefit writes its own files).

    Under DDP, weights that a loss owns beyond the model (the DAE decoder's cross-attention and
    head) are outside the wrapped module, so their gradients are averaged here, once per
    optimiser step, before clipping and the step.
    """

    def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
        return None

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        # transformers 5 calls _save on every process and lets it decide; the sentence-transformers
        # override assumes it runs on the main process only and would write from every rank.
        if self.args.should_save:
            super()._save(output_dir, state_dict)

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:
            average_gradients(self._loss_only_parameters())
        return loss

    def _loss_only_parameters(self) -> list[torch.nn.Parameter]:
        if not hasattr(self, "_loss_parameters"):
            owned = {id(p) for p in self.model.parameters()}
            self._loss_parameters = [p for p in self.loss.parameters() if p.requires_grad and id(p) not in owned]
        return self._loss_parameters


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
    run: PhaseRun,
    loss_state: torch.nn.Module | None = None,
) -> dict[str, float]:
    """Train with the sentence-transformers trainer; a resumable ``run`` checkpoints and resumes from its ``workdir``.

    The phase trains ``epochs`` over ``dataset`` or ``min_steps`` optimiser steps, whichever is more.
    ``loss_state`` holds the weights the loss owns beyond the model (a DAE decoder): they learn at
    ``decoder_learning_rate`` where the config sets one, alone for ``decoder_warmup_steps`` steps.
    """
    dataset = at_least_one_round(dataset, config)
    steps = phase_steps(len(dataset), config)
    decoder_rate = getattr(config, "decoder_learning_rate", None)
    checkpoint_steps, output_dir = run.checkpoint_steps, run.workdir
    args = SentenceTransformerTrainingArguments(
        **{**common_arguments(config, run.seed, output_dir, run.precision), "logging_steps": logging_interval(steps)},
        **checkpoint_options(checkpoint_steps),
        max_steps=steps,
        learning_rate_mapping={r"(^|\.)decoder\.": decoder_rate} if decoder_rate and loss_state is not None else {},
    )
    extra: list[TrainerCallback] = [LossStateCheckpoint(loss_state)] if checkpoint_steps and loss_state is not None else []
    if loss_state is not None and getattr(config, "decoder_warmup_steps", 0):
        extra.append(FrozenForSteps(model, config.decoder_warmup_steps))
    plateau = StopOnLossPlateau(config.plateau_steps, getattr(config, "min_steps", 0)) if getattr(config, "plateau_steps", None) else None
    if plateau is not None:
        extra.append(plateau)
    trainer = _SentenceTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[*run.callbacks, *extra])
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    saves_loss_state = bool(checkpoint_steps and loss_state is not None)
    resume_from = latest_checkpoint(output_dir, LossStateCheckpoint.file_name if saves_loss_state else "trainer_state.json") if checkpoint_steps else None
    if resume_from and saves_loss_state:
        extra[0].restore(resume_from)
    result = trainer.train(resume_from_checkpoint=resume_from)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "curve": learning_curve(trainer.state.log_history),
        "train_loss": float(result.training_loss),
        "first_logged_loss": losses[0] if losses else float("nan"),
        "last_logged_loss": losses[-1] if losses else float("nan"),
        "steps": trainer.state.global_step,
        "effective_batch_size": effective_batch_size(config),
        "resumed_from_step": checkpoint_step(resume_from),
        **({"stopped_on_plateau_at": plateau.stopped_at} if plateau is not None else {}),
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


def first_token_bottleneck(model: SentenceTransformer) -> SentenceTransformer:
    """The encoder's token embeddings (shared weights) pooled at the first token, with nothing after it (TSDAE's CLS)."""
    transformer = model[0]
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="cls")
    return SentenceTransformer(modules=[transformer, pooling], device=str(model.device))


def add_word_deletion(dataset: Dataset, deletion_ratio: float, seed: int) -> Dataset:
    """Fill the ``damaged`` column on the fly from ``original``: fresh noise every time a row is read."""
    rng = np.random.default_rng(seed)

    def transform(batch: dict[str, list]) -> dict[str, list]:
        batch = dict(batch)
        batch["damaged"] = [delete_words(text, deletion_ratio, rng) for text in batch["original"]]
        return batch

    dataset.set_transform(transform)
    return dataset
