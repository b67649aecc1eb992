"""Rich progress bars fed by the trainers' callbacks: phase, step, loss and time left."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback


class PhaseProgress:
    """One progress bar per phase; ``callback(title)`` gives the trainer callback that drives it."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )

    def __enter__(self) -> "PhaseProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def callback(self, title: str) -> TrainerCallback:
        return _ProgressCallback(self.progress, title)


class _ProgressCallback(TrainerCallback):
    def __init__(self, progress: Progress, title: str) -> None:
        self.progress = progress
        self.title = title
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.task = self.progress.add_task(self.title, total=state.max_steps, loss="-")

    def on_step_end(self, args, state, control, **kwargs):
        if self.task is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.task is not None and logs:
            if "loss" in logs:
                self.progress.update(self.task, loss=f"{logs['loss']:.4f}")
            elif "eval_loss" in logs:
                self.progress.update(self.task, loss=f"val {logs['eval_loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.task is not None:
            self.progress.update(self.task, total=state.global_step, completed=state.global_step)
