"""Runs a recipe: phase after phase on one encoder, each phase's output cached by the hash of its inputs."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback, set_seed

from . import __version__, distributed
from .config import PHASE_TITLES, RunConfig
from .data import LabelledData, Split, load_data
from .errors import ConfigError, ModelFilesError
from .metrics import classification_metrics
from .model import PhaseFitModel
from .phases.classify import train_classifier
from .phases.contrastive import train_contrastive
from .phases.dae import train_dae
from .phases.joint import train_joint
from .recipes import Recipe, resolve

logger = logging.getLogger(__name__)

# Raise when a phase's computation changes, so that cached outputs of the old code are not reused.
PHASE_IMPLEMENTATION_VERSION = 1


@dataclass
class TrainResult:
    """What :func:`train` returns: the model, its scores and how long each phase took."""

    model: PhaseFitModel
    config: RunConfig
    recipe: Recipe
    validation_metrics: dict[str, Any]
    test_metrics: dict[str, Any] | None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    phase_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached_phases: list[str] = field(default_factory=list)
    data_notes: list[str] = field(default_factory=list)
    data_source: str = ""
    data_sizes: str = ""
    snapshots: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    snapshot_labels: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.name,
            "phases": self.recipe.phases,
            "validation": self.validation_metrics,
            "test": self.test_metrics,
            "phase_seconds": self.phase_seconds,
            "phase_stats": self.phase_stats,
            "cached_phases": self.cached_phases,
            "data_notes": self.data_notes,
        }

    def save(self, directory: str | Path) -> Path:
        """The model plus metrics.json, config.yaml, confusion_matrix.png and a model card, written atomically (main process only)."""
        import yaml

        if not distributed.is_main_process():
            return Path(directory)

        from .metrics import save_confusion_matrix
        from .model_card import render_model_card
        from .plots import plot_learning_curves, plot_projections

        with tempfile.TemporaryDirectory() as folder:
            picture = save_confusion_matrix(self.test_metrics or self.validation_metrics, Path(folder) / "cm.png").read_bytes()
        files = {
            "metrics.json": (json.dumps(self.summary(), indent=2) + "\n").encode(),
            "config.yaml": yaml.safe_dump({**self.config.to_dict(), "recipe": self.config.recipe}, sort_keys=False).encode(),
            "confusion_matrix.png": picture,
            "README.md": render_model_card(self).encode(),
        }
        with tempfile.TemporaryDirectory() as folder:
            curves = plot_learning_curves(self.phase_stats, Path(folder) / "curves.png")
            projections = plot_projections(self.snapshots, self.snapshot_labels, Path(folder) / "projections.png", self.config.seed)
            for name, picture_path in (("learning_curves.png", curves), ("embeddings.png", projections)):
                if picture_path is not None:
                    files[name] = picture_path.read_bytes()
        return self.model.save_pretrained(directory, extra_files=files)


def load_encoder(name_or_path: str, trust_remote_code: bool = False) -> SentenceTransformer:
    """A sentence-transformers folder, a plain transformers checkpoint (mean pooling is added) or a hub id."""
    path = Path(name_or_path).expanduser()
    looks_local = path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local and not path.exists():
        raise ModelFilesError(f"model {name_or_path}: no such folder.")
    if path.is_dir() and not any((path / name).is_file() for name in ("modules.json", "config.json")):
        raise ModelFilesError(f"model {name_or_path}: neither a sentence-transformers folder (modules.json) nor a transformers checkpoint (config.json).")
    try:
        return SentenceTransformer(str(path) if path.exists() else name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as error:
        raise ModelFilesError(f"model {name_or_path}: cannot be loaded ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}).") from None


def choose_max_length(encoder: SentenceTransformer, texts: list[str], requested: int | None) -> tuple[int, int]:
    """(token limit, texts longer than it). By default 1.2 x the longest training text, capped by the encoder."""
    lengths = np.asarray(encoder.tokenizer(texts, add_special_tokens=True, truncation=False, return_length=True, verbose=False)["length"])
    limit = requested or int(min(encoder.max_seq_length or 512, max(16, math.ceil(1.2 * lengths.max()))))
    return limit, int((lengths > limit).sum())


def reporting_callbacks(config: RunConfig, run_name: str) -> list[TrainerCallback]:
    """The trainers' own TensorBoard / MLflow callbacks for one phase (``report_to``), logging under ``logging_dir``."""
    callbacks: list[TrainerCallback] = []
    targets = [target for target in config.report_to if target != "none"]
    if not targets or not distributed.is_main_process():
        return callbacks
    if "tensorboard" in targets:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("report_to tensorboard needs the tensorboard package (pip install tensorboard).") from None
        from transformers.integrations import TensorBoardCallback

        folder = Path(config.logging_dir or "phasefit-logs") / run_name
        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(folder))))
    if "mlflow" in targets:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise ConfigError("report_to mlflow needs the mlflow package (pip install mlflow); MLFLOW_TRACKING_URI picks the store.") from None
        from transformers.integrations import MLflowCallback

        callbacks.append(MLflowCallback())
    return callbacks


def load_configured_data(source: Any, config: RunConfig) -> LabelledData:
    """:func:`load_data` with the data options of a run."""
    return load_data(
        source,
        text_column=config.text_column,
        label_columns=config.label_columns,
        seed=config.seed,
        samples_per_class=config.samples_per_class,
        validation_fraction=config.validation_fraction,
        max_validation_examples=config.max_validation_examples,
        unseen_test_labels=config.unseen_test_labels,  # type: ignore[arg-type]
    )


def _fingerprint(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:20]


def _model_fingerprint(name_or_path: str) -> str:
    path = Path(name_or_path)
    if not path.is_dir():
        return name_or_path
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return _fingerprint([(str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime)) for p in files])


class PhaseCache:
    """Phase outputs on disk, keyed by everything they depend on; a no-op without a folder."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder).expanduser() if folder else None

    def path(self, key: str) -> Path | None:
        return self.folder / key if self.folder else None

    def load(self, key: str) -> SentenceTransformer | None:
        path = self.path(key)
        if path is None or not (path / "modules.json").is_file():
            return None
        return SentenceTransformer(str(path), local_files_only=True)

    def store(self, key: str, encoder: SentenceTransformer) -> None:
        path = self.path(key)
        if path is None or not distributed.is_main_process():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=path.parent))
        encoder.save(str(staging), create_model_card=False)
        try:
            staging.rename(path)
        except OSError:  # another run stored it first
            shutil.rmtree(staging, ignore_errors=True)


def evaluate_split(model: PhaseFitModel, split: Split, batch_size: int = 64) -> dict[str, Any]:
    """Scores of ``model`` on a split; every label the model knows is a row of the confusion matrix.

    Under several processes each predicts its share of the rows and the predictions are gathered,
    so the scores are those of one process predicting them all.
    """
    predicted = distributed.map_sharded(lambda texts: model.predict(texts, batch_size=batch_size), split.texts)
    return classification_metrics(split.classes, predicted, model.labels)


def train(
    data: Any,
    options: Mapping[str, Any] | None = None,
    progress: Callable[[str], TrainerCallback] | None = None,
    work_dir: str | Path | None = None,
    **keyword_options: Any,
) -> TrainResult:
    """Train a classifier with a recipe.

    ``data`` is a :class:`LabelledData` or anything :func:`phasefit.load_data` reads (a path, a
    DataFrame, a ``datasets`` object). Options are a nested dict and/or keywords, e.g.
    ``train("data/", recipe="3phase", seed=1, dae={"epochs": 2}, ft={"freeze_encoder": True})``.

    Launched by ``torchrun`` or ``accelerate launch``, every phase trains with DDP (each process
    a shard of every epoch) and only the main process writes (cache, work folder, logs).

    With ``work_dir``, the run can be resumed: finished phases are kept there and the running
    phase checkpoints every ``checkpoint_steps`` steps; calling ``train`` again with the same
    ``work_dir`` and options skips the finished phases and continues from the last checkpoint.
    """
    config, recipe = resolve({**(options or {}), **keyword_options})
    if not isinstance(data, LabelledData):
        data = load_configured_data(data, config)
        for note in data.notes:
            logger.info(note)
    encoder = load_encoder(config.model, config.trust_remote_code).to(distributed.state().device)
    max_length, too_long = choose_max_length(encoder, data.train.texts, config.max_length)
    encoder.max_seq_length = max_length
    notes = list(data.notes)
    if too_long:
        notes.append(f"{too_long} training texts are longer than {max_length} tokens and are truncated")
        logger.warning(notes[-1])
    work = Path(work_dir) if work_dir is not None else None
    caches = [PhaseCache(config.cache_dir), PhaseCache(work / "phases" if work else None)]
    checkpoint_steps = config.checkpoint_steps if work else None

    train_codes = data.label_codes(data.train)
    classes = data.classes
    key = _fingerprint(_model_fingerprint(config.model), max_length, PHASE_IMPLEMENTATION_VERSION)
    phase_seconds: dict[str, float] = {}
    phase_stats: dict[str, dict[str, Any]] = {}
    cached: list[str] = []
    head = None
    snapshot_rows = _snapshot_rows(data.validation, config.snapshot_examples, config.seed) if distributed.is_main_process() else []
    snapshot_texts = [data.validation.texts[i] for i in snapshot_rows]
    snapshots = {"before training": encoder.encode(snapshot_texts, batch_size=64)} if snapshot_rows else {}
    if not distributed.is_main_process():
        progress = None
    with distributed.shared_temporary_directory("phasefit-") as scratch:
        checkpoints = work / "checkpoints" if work else scratch
        for index, step in enumerate(recipe.steps):
            phase_config = config.phases[step.phase]
            title = f"{index + 1}/{len(recipe.steps)} {PHASE_TITLES[step.phase]}"
            callbacks = ([progress(title)] if progress else []) + reporting_callbacks(config, f"{index + 1}-{step.phase}")
            setup = {"precision": config.precision, "processes": distributed.world_size()}
            started = time.perf_counter()
            set_seed(config.seed + index)
            if step.phase == "ft":
                workdir = checkpoints / f"{index}-ft-{_fingerprint(key, asdict(phase_config), setup, config.seed + index, data.train.texts, data.train.labels)}"
                validation_codes = data.label_codes(data.validation)[:, -1]
                head, stats = train_classifier(
                    encoder, data.train.texts, train_codes[:, -1], data.validation.texts, validation_codes,
                    len(classes), phase_config, config.seed + index, workdir, callbacks, resumable=work is not None, precision=config.precision,
                )
            else:
                inputs = _phase_inputs(step.phase, data, phase_config, config.seed)
                key = _fingerprint(key, step.phase, asdict(phase_config), setup, config.seed + index, inputs["fingerprint"])
                reused = next((found for cache in caches if (found := cache.load(key)) is not None), None)
                if distributed.all_ranks_agree(reused is not None):
                    reused = reused.to(encoder.device)
                    reused.max_seq_length = max_length
                    encoder, stats = reused, {"cached": True}
                    cached.append(step.phase)
                else:
                    workdir = checkpoints / f"{index}-{step.phase}-{key}"
                    encoder, stats = _run_encoder_phase(
                        step.phase, encoder, data, train_codes, inputs, phase_config, config.seed + index, workdir, callbacks, checkpoint_steps,
                        config.precision,
                    )
                    for cache in caches:
                        cache.store(key, encoder)
                    distributed.wait_for_everyone()
                    if distributed.is_main_process():
                        shutil.rmtree(workdir, ignore_errors=True)
            phase_seconds[step.phase] = round(time.perf_counter() - started, 2)
            phase_stats[step.phase] = stats
            if snapshot_rows:
                snapshots[f"after {PHASE_TITLES[step.phase]}"] = encoder.encode(snapshot_texts, batch_size=64)

    info = {
        "phasefit_version": __version__,
        "base_model": config.model,
        "recipe": recipe.name,
        "label_columns": list(config.label_columns),
        "text_column": config.text_column,
        "max_length": max_length,
        "seed": config.seed,
    }
    model = PhaseFitModel(encoder, head, classes, info)
    validation_metrics = evaluate_split(model, data.validation)
    test_metrics = evaluate_split(model, data.test) if data.test is not None and len(data.test) else None
    sizes = f"{len(data.train)} labelled training examples, {len(data.validation)} validation, {len(data.test) if data.test else 0} test, {len(data.unlabelled_texts)} unlabelled texts."
    return TrainResult(
        model, config, recipe, validation_metrics, test_metrics, phase_seconds, phase_stats, cached, notes, data.source, sizes,
        snapshots, [data.validation.classes[i] for i in snapshot_rows],
    )


def _snapshot_rows(split: Split, count: int, seed: int) -> list[int]:
    """A seeded stratified sample of validation rows whose embeddings are pictured at every stage."""
    if count <= 0 or len(split) < 5:
        return []
    if len(split) <= count:
        return list(range(len(split)))
    from .data import stratified_split

    _, held = stratified_split(split.classes, count / len(split), np.random.default_rng(seed))
    return held.tolist()[:count]


def _phase_inputs(phase: str, data: LabelledData, phase_config: Any, seed: int) -> dict[str, Any]:
    texts = data.dae_corpus(getattr(phase_config, "max_texts", None), seed) if phase == "dae" else None
    labelled = _fingerprint(data.train.texts, data.train.labels) if phase in {"cl", "joint"} else None
    unlabelled = _fingerprint(sorted(set(data.unlabelled_texts))) if phase == "joint" else None
    return {"dae_texts": texts, "fingerprint": _fingerprint(texts, labelled, unlabelled)}


def _run_encoder_phase(
    phase: str,
    encoder: SentenceTransformer,
    data: LabelledData,
    train_codes: np.ndarray,
    inputs: dict[str, Any],
    phase_config: Any,
    seed: int,
    workdir: Path,
    callbacks: list[TrainerCallback],
    checkpoint_steps: int | None,
    precision: str,
) -> tuple[SentenceTransformer, dict[str, Any]]:
    if phase == "dae":
        return train_dae(encoder, inputs["dae_texts"], phase_config, seed, workdir, callbacks, checkpoint_steps, precision)
    if phase == "cl":
        return train_contrastive(encoder, data.train.texts, train_codes, phase_config, seed, workdir, callbacks, checkpoint_steps, precision)
    if phase == "joint":
        corpus = data.dae_corpus(None, seed)
        return train_joint(encoder, data.train.texts, train_codes, corpus, phase_config, seed, workdir, callbacks, checkpoint_steps, precision)
    raise ValueError(f"unknown phase {phase!r}")
