"""Runs a recipe: phase after phase on one encoder, each phase's output cached by the hash of its inputs."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback, set_seed

from . import distributed
from ._version import __version__
from .cache import PhaseCache, fingerprint, phase_code_hash, run_ingredients
from .config import PHASE_TITLES, RunConfig
from .data import LabelledData, Split, load_data, with_validation_merged
from .errors import ConfigError, ModelFilesError
from .label_names import label_texts, read_label_descriptions, say_nothing
from .metrics import classification_metrics
from .model import PhaseFitModel
from .phases.cl import train_cl
from .phases.common import PhaseRun
from .phases.dae import train_dae
from .phases.ft import FTData, state_copy, train_ft
from .phases.joint import train_joint
from .phases.st import Pool, clean_pool, train_st
from .recipes import Recipe, parse_recipe, resolve

logger = logging.getLogger(__name__)
# Texts whose token lengths set the default max_length: a seeded sample of train + unlabelled texts.
LENGTH_SAMPLE = 20_000
# Every phase's loss curve (and validation metric where it computes one), one JSON line a point.
CURVES_FILE = "curves.jsonl"


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
    truncation: dict[str, float] = field(default_factory=dict)
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
            "max_length": self.model.info.get("max_length"),
            "truncated_share": self.truncation,
        }

    def save(self, directory: str | Path) -> Path:
        """The model plus metrics.json, config.yaml, confusion_matrix.png and a model card, written atomically (main process only)."""
        import yaml

        if not distributed.is_main_process():
            return Path(directory)

        from .metrics import save_confusion_matrix
        from .reporting.model_card import render_model_card
        from .reporting.plots import curve_records, plot_learning_curves, plot_projections

        pictures = {}
        if "confusion_matrix" in (self.test_metrics or self.validation_metrics):  # a multi-label run has per-label scores instead
            with tempfile.TemporaryDirectory() as folder:
                pictures["confusion_matrix.png"] = save_confusion_matrix(self.test_metrics or self.validation_metrics, Path(folder) / "cm.png").read_bytes()
        files = {
            "metrics.json": (json.dumps(self.summary(), indent=2) + "\n").encode(),
            CURVES_FILE: "".join(json.dumps(record) + "\n" for record in curve_records(self.phase_stats)).encode(),
            "config.yaml": yaml.safe_dump({**self.config.to_dict(), "recipe": self.config.recipe}, sort_keys=False).encode(),
            **pictures,
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


def token_lengths(encoder: SentenceTransformer, texts: Sequence[str]) -> np.ndarray:
    """Each text's length in tokens, special tokens included, untruncated."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(encoder.tokenizer(list(texts), add_special_tokens=True, truncation=False, return_length=True, verbose=False)["length"])


def choose_max_length(encoder: SentenceTransformer, lengths: Sequence[int] | np.ndarray, requested: int | None, percentile: float = 99.9) -> int:
    """The token limit: ``requested``, else the ``percentile`` of ``lengths`` (see :func:`token_lengths`) capped by the encoder's ``max_seq_length``.

    A requested limit may exceed ``max_seq_length`` (the length the model was trained at) but not
    the position embeddings.
    """
    positions = position_limit(encoder)
    if requested:
        if positions is not None and requested > positions:
            raise ConfigError(f"option max_length {requested}: this model has position embeddings for {positions} tokens at most.")
        return requested
    ceiling = min(encoder.max_seq_length or 512, positions or 512)
    longest = float(np.percentile(lengths, percentile)) if len(lengths) else 16.0
    return int(min(ceiling, max(16, math.ceil(longest))))


def position_limit(encoder: SentenceTransformer) -> int | None:
    """The most tokens the encoder's position embeddings take (None when its config does not say)."""
    config = getattr(getattr(encoder, "transformers_model", None), "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if not positions:
        return None
    if getattr(config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}:  # positions are offset by padding_idx + 1
        positions -= (getattr(config, "pad_token_id", 1) or 0) + 1
    return int(positions)


def truncation_shares(lengths: Mapping[str, np.ndarray], max_length: int) -> dict[str, float]:
    """The share of each split's texts longer than ``max_length`` tokens (cut at training and prediction), from their token lengths."""
    return {name: round(float((split_lengths > max_length).mean()), 4) for name, split_lengths in lengths.items() if len(split_lengths)}


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
        indicator_columns=config.indicator_columns,
        seed=config.seed,
        samples_per_class=config.samples_per_class,
        validation_fraction=config.validation_fraction,
        max_validation_examples=config.max_validation_examples,
        unseen_test_labels=config.unseen_test_labels,  # type: ignore[arg-type]
    )


def evaluate_split(model: PhaseFitModel, split: Split, batch_size: int = 64) -> dict[str, Any]:
    """Scores of ``model`` on a split; every label the model knows is a row of the confusion matrix.

    Under several processes each predicts its share of the rows and the predictions are gathered,
    so the scores are those of one process predicting them all.
    """
    if model.multi_label:
        from .multilabel import LabelSetSplit, multilabel_metrics

        probabilities = distributed.map_sharded(lambda texts: list(model.predict_proba(texts, batch_size=batch_size)), split.texts)
        truth = LabelSetSplit(split.texts, split.labels).indicator(model.labels)
        return multilabel_metrics(truth, np.asarray(probabilities).reshape(len(split), -1) >= model.thresholds, model.labels)
    predicted = distributed.map_sharded(lambda texts: model.predict(texts, batch_size=batch_size), split.texts)
    return classification_metrics(split.classes, predicted, model.labels)


def train(
    data: Any,
    config: RunConfig | Mapping[str, Any] | None = None,
    progress: Callable[[str], TrainerCallback] | None = None,
    work_dir: str | Path | None = None,
    **keyword_options: Any,
) -> TrainResult:
    """Train a classifier with a recipe.

    ``data`` is a :class:`LabelledData` or anything :func:`phasefit.load_data` reads (a path, a
    DataFrame, a ``datasets`` object). ``config`` is a :class:`RunConfig` (options resolved once, as
    the CLI does) or a nested dict of options, and keywords add to the dict, e.g.
    ``train("data/", recipe="3phase", seed=1, dae={"epochs": 2}, ft={"freeze_encoder": True})``.

    Launched by ``torchrun`` or ``accelerate launch``, every phase trains with DDP (each process
    a shard of every epoch) and only the main process writes (cache, work folder, logs).

    With ``work_dir``, the run can be resumed: finished phases are kept there and the running
    phase checkpoints every ``checkpoint_steps`` steps; calling ``train`` again with the same
    ``work_dir`` and options skips the finished phases and continues from the last checkpoint.
    """
    config, recipe = _resolved(config, keyword_options)
    if not isinstance(data, LabelledData):
        data = load_configured_data(data, config)
        for note in data.notes:
            logger.info(note)
    work = Path(work_dir) if work_dir is not None else None
    result = _train_pass(data, config, recipe, progress, work)
    if not refits_on_all_labels(config, data):
        return result
    budget, round_steps = refit_budget(config, result.phase_stats)
    logger.info("refit on all %d labelled rows with the budget chosen on the %d held out", len(data.train) + len(data.validation), len(data.validation))
    thresholds = result.model.info.get("thresholds") if data.multi_label else None  # chosen on the held-out rows
    refit = _train_pass(with_validation_merged(data), budget, recipe, progress, work / "refit" if work else None, round_steps, thresholds)
    steps = [refit.phase_stats["ft"]["steps"], *[entry["steps"] for entry in refit.phase_stats.get("st", {}).get("rounds", [])]]
    note = (
        f"refit on all {len(data.train) + len(data.validation)} labelled rows: the budget (FT and each kept self-training round: "
        f"{', '.join(map(str, steps))} steps) was chosen on the {len(data.validation)} held out; the validation scores are the chosen-on model's"
    )
    return dataclasses.replace(
        refit,
        validation_metrics=result.validation_metrics,
        phase_seconds={phase: round(result.phase_seconds.get(phase, 0.0) + seconds, 2) for phase, seconds in refit.phase_seconds.items()},
        phase_stats={**refit.phase_stats, "budget_pass": result.phase_stats},
        data_notes=[*result.data_notes, note],
        data_sizes=result.data_sizes,
        snapshots=result.snapshots,
        snapshot_labels=result.snapshot_labels,
    )


# A validation split held out of at most this many labelled rows per class costs labels worth having back.
REFIT_AUTO_PER_CLASS = 100


def refits_on_all_labels(config: RunConfig, data: LabelledData) -> bool:
    """Whether the run trains again on its training and validation rows together (``refit_on_all_labels``): ``always``,
    ``never``, or ``auto``: when the validation rows were held out of few labelled ones (:func:`validation_carved_from_few`)."""
    if config.refit_on_all_labels == "never" or not data.validation_carved or not len(data.validation):
        return False
    return config.refit_on_all_labels == "always" or validation_carved_from_few(data)


def validation_carved_from_few(data: LabelledData) -> bool:
    """Whether the validation rows were held out of few labelled ones (at most ``REFIT_AUTO_PER_CLASS`` per class, all
    told). Then a few rows a class decide and their accuracy saturates at the first evaluations, so single-label FT
    chooses by their loss instead (held-out study, benchmarks/profiles/studies.yaml: +0.67 points on SST-2 and SNIPS at
    8 per class, where accuracy stopped FT at 10-20 steps and kept no self-training round)."""
    return data.validation_carved and len(data.validation) > 0 and len(data.train) + len(data.validation) <= REFIT_AUTO_PER_CLASS * len(data.classes)


def checkpoint_metric(metric: str, data: LabelledData) -> str:
    """What FT chooses its checkpoint (and self-training its rounds) by: ``metric``, with ``auto`` resolved (see
    :class:`~phasefit.config.FTConfig`); multi-label data never by (subset) accuracy, which moves in coarse steps."""
    if data.multi_label and metric in {"auto", "accuracy"}:
        return "micro_f1"
    if metric != "auto":
        return metric
    if validation_carved_from_few(data):
        logger.info("the validation rows were held out of few labelled ones: FT's checkpoint and the self-training rounds are chosen by their loss")
        return "loss"
    return "accuracy"


def refit_budget(config: RunConfig, phase_stats: Mapping[str, Any]) -> tuple[RunConfig, list[int] | None]:
    """The config of the refit (FT for exactly the steps its best checkpoint had, at the learning rate chosen) and
    the steps of each self-training round that was kept (None without an st phase)."""
    ft_stats = phase_stats["ft"]
    ft = dataclasses.replace(
        config.phases["ft"],
        fixed_steps=max(1, int(ft_stats["best_step"])),
        learning_rate=ft_stats.get("chosen_learning_rate", config.phases["ft"].learning_rate),
        learning_rate_grid=[],
    )
    round_steps = [max(1, int(entry["best_step"])) for entry in phase_stats["st"]["rounds"] if entry["kept"]] if "st" in phase_stats else None
    return dataclasses.replace(config, phases={**config.phases, "ft": ft}), round_steps


def _train_pass(
    data: LabelledData,
    config: RunConfig,
    recipe: Recipe,
    progress: Callable[[str], TrainerCallback] | None,
    work: Path | None,
    round_steps: list[int] | None = None,
    thresholds: list[float] | None = None,
) -> TrainResult:
    """One run of the recipe's phases on ``data``; with ``round_steps``, the st phase trains that fixed budget; with
    ``thresholds`` (a multi-label refit, which has no validation rows to choose them on) the model keeps those."""
    encoder = load_encoder(config.model, config.trust_remote_code).to(distributed.state().device)
    max_length, truncated = _token_limit(encoder, data, config)
    notes = list(data.notes)
    if any(truncated.values()):
        notes.append(f"max_length {max_length} tokens truncates " + ", ".join(f"{share:.1%} of {name}" for name, share in truncated.items() if share))
        logger.warning(notes[-1])
    encoder.max_seq_length = max_length
    runner = _RecipeRunner(data, config, recipe, max_length, work, round_steps)
    ft = config.phases["ft"]
    if (ft.names_in_batch or (ft.head == "prototype" and "names" in ft.prototype_init.split("+"))) and say_nothing(runner.class_texts):
        notes.append(
            f"the class names hold no words ({_names_as_read(data.classes, runner.class_texts)}), yet FT starts its prototypes from them: "
            "give the classes words with --label-descriptions FILE (label: description; label_descriptions= in Python)"
        )
        logger.warning(notes[-1])
    progress = progress if distributed.is_main_process() else None
    snapshot_rows = _snapshot_rows(data.validation, config.snapshot_examples, config.seed) if distributed.is_main_process() else []
    snapshot_texts = [data.validation.texts[i] for i in snapshot_rows]
    snapshots = {"before training": encoder.encode(snapshot_texts, batch_size=64)} if snapshot_rows else {}
    with distributed.shared_temporary_directory("phasefit-") as scratch:
        for index, step in enumerate(recipe.steps):
            title = f"{index + 1}/{len(recipe.steps)} {PHASE_TITLES[step.phase]}"
            callbacks = ([progress(title)] if progress else []) + reporting_callbacks(config, f"{index + 1}-{step.phase}")
            encoder = runner.run_step(index, step.phase, encoder, callbacks, scratch)
            if snapshot_rows:
                snapshots[f"after {PHASE_TITLES[step.phase]}"] = encoder.encode(snapshot_texts, batch_size=64)

    info = {
        "phasefit_version": __version__,
        "base_model": config.model,
        "recipe": recipe.name,
        "label_columns": list(data.label_columns) if data.multi_label else list(config.label_columns),
        **({"indicator_columns": list(config.indicator_columns)} if config.indicator_columns else {}),
        "text_column": config.text_column,
        "max_length": max_length,
        "seed": config.seed,
        **(
            {"multi_label": True, "thresholds": thresholds or runner.phase_stats.get("st", {}).get("thresholds", runner.phase_stats["ft"]["thresholds"])}
            if data.multi_label
            else {}
        ),
    }
    model = PhaseFitModel(encoder, runner.head, data.classes, info)
    validation_metrics = evaluate_split(model, data.validation) if len(data.validation) else {}
    test_metrics = evaluate_split(model, data.test) if data.test is not None and len(data.test) else None
    sizes = f"{len(data.train)} labelled training examples, {len(data.validation)} validation, {len(data.test) if data.test else 0} test, {len(data.unlabelled_texts)} unlabelled texts."
    return TrainResult(
        model,
        config,
        recipe,
        validation_metrics,
        test_metrics,
        runner.phase_seconds,
        runner.phase_stats,
        runner.cached,
        notes,
        truncated,
        data.source,
        sizes,
        snapshots,
        [data.validation.classes[i] for i in snapshot_rows],
    )


def _resolved(config: RunConfig | Mapping[str, Any] | None, keyword_options: Mapping[str, Any]) -> tuple[RunConfig, Recipe]:
    """The run's config and recipe: a RunConfig as given (no keywords beside it), else options resolved by :func:`resolve`."""
    if isinstance(config, RunConfig):
        if keyword_options:
            raise ConfigError(f"train(): options {', '.join(sorted(keyword_options))} beside a RunConfig; set them on the RunConfig instead.")
        return config, parse_recipe(config.recipe)
    return resolve({**(config or {}), **keyword_options})


def _token_limit(encoder: SentenceTransformer, data: LabelledData, config: RunConfig) -> tuple[int, dict[str, float]]:
    """The run's max_length (see :func:`choose_max_length`) and the share of each split's texts it truncates.

    The length is read off the whole training file (labelled rows, rows left out of a draw, rows a carved validation
    split took, plus unlabelled texts), in a fixed order and sample, so it depends on no run seed: it keys every cached
    phase, and a DAE meant to serve every seed of a dataset must get the same one."""
    splits = {"train": data.train.texts, "validation": data.validation.texts, "test": data.test.texts if data.test else [], "unlabelled": data.unlabelled_texts}
    lengths = {name: token_lengths(encoder, _length_sample(texts, config.seed)) for name, texts in splits.items()}
    whole_file = _length_sample(data.training_file_texts(), 0)
    max_length = choose_max_length(encoder, token_lengths(encoder, whole_file), config.max_length, config.max_length_percentile)
    return max_length, truncation_shares(lengths, max_length)


def _names_as_read(labels: Sequence[str], texts: Sequence[str], shown: int = 3) -> str:
    """The first labels as the encoder reads them: ``'0', '1'``, or ``'intent_0' as '0'`` where a shared prefix was dropped."""
    pairs = [repr(text) if text == label else f"{label!r} as {text!r}" for label, text in zip(labels[:shown], texts[:shown])]
    return ", ".join(pairs) + (", ..." if len(labels) > shown else "")


class _RecipeRunner:
    """Runs a recipe's steps on one encoder: each encoder phase's output cached by the hash of its inputs, FT last."""

    def __init__(self, data: LabelledData, config: RunConfig, recipe: Recipe, max_length: int, work: Path | None, round_steps: list[int] | None = None) -> None:
        self.data, self.config, self.max_length, self.work, self.round_steps = data, config, max_length, work, round_steps
        self.caches = [PhaseCache(config.cache_dir), PhaseCache(work / "phases" if work else None)]
        self.train_codes = data.label_codes(data.train)
        descriptions = read_label_descriptions(config.label_descriptions, data.classes) if config.label_descriptions else None
        self.class_texts = label_texts(data.classes, descriptions)
        self.key = fingerprint(run_ingredients(config.model, max_length, config.precision))
        self.phase_seconds: dict[str, float] = {}
        self.phase_stats: dict[str, dict[str, Any]] = {}
        self.cached: list[str] = []
        self.head = None
        config.phases["ft"] = dataclasses.replace(config.phases["ft"], metric=checkpoint_metric(config.phases["ft"].metric, data))
        self.ft_data = FTData(
            data.train.texts, data.ft_targets(data.train), data.validation.texts, data.ft_targets(data.validation), len(data.classes), self.class_texts
        )
        self.ft_key = ""
        # A self-training student that starts from the encoder as FT found it needs that encoder kept.
        self.keeps_ft_start = "st" in recipe.phases and config.phases["st"].student_start == "base"
        self.ft_start: dict[str, Any] | None = None

    def pool(self, st_config: Any) -> Pool:
        """The unlabelled texts without copies of validation, test or labelled texts, then a seeded sample of ``st.pool``."""
        data = self.data
        held_out = [*data.validation.texts, *(data.test.texts if data.test is not None else [])]
        cleaned = clean_pool(data.unlabelled_texts, data.train.texts, held_out)
        return dataclasses.replace(cleaned, texts=_pool_sample(cleaned.texts, st_config.pool, self.config.seed))

    def run_step(self, index: int, phase: str, encoder: SentenceTransformer, callbacks: list[TrainerCallback], scratch: Path) -> SentenceTransformer:
        config, data = self.config, self.data
        phase_config = config.phases[phase]
        checkpoints = self.work / "checkpoints" if self.work else scratch
        started = time.perf_counter()
        # A DAE with its own seed sees no label and no run seed: one output serves every seed of a dataset (from the cache).
        shared_dae = phase == "dae" and phase_config.seed is not None
        seed = phase_config.seed if shared_dae else config.seed + index
        set_seed(seed)

        def phase_run(folder_key: str) -> PhaseRun:
            checkpoint_steps = config.checkpoint_steps if self.work else None
            return PhaseRun(seed, checkpoints / f"{index}-{phase}-{folder_key}", callbacks, checkpoint_steps, config.precision, self.max_length)

        if phase == "ft":
            if self.keeps_ft_start:
                self.ft_start = state_copy(encoder)
            self.ft_key = fingerprint(
                self.key, phase_code_hash(phase), asdict(phase_config), config.seed + index, data.train.texts, data.train.labels, self.class_texts
            )
            self.head, stats = train_ft(encoder, self.ft_data, phase_config, phase_run(self.ft_key))
        elif phase == "st":
            pool = self.pool(phase_config)
            logger.info(
                "st: pool of %d unlabelled texts (%d offered; dropped %d copies of validation / test texts, %d of labelled ones)",
                len(pool.texts),
                pool.offered,
                pool.dropped_held_out,
                pool.dropped_labelled,
            )
            self.ft_key = fingerprint(self.ft_key, phase, phase_code_hash(phase), asdict(phase_config), config.seed + index)
            teacher = self.phase_stats["ft"]
            encoder, self.head, stats = train_st(
                encoder, self.head, self.ft_data, pool, config.phases["ft"], phase_config, phase_run(self.ft_key), teacher, self.ft_start, self.round_steps
            )
        else:
            inputs = _phase_inputs(phase, data, phase_config, phase_config.seed if shared_dae else config.seed)
            self.key = fingerprint(self.key, phase, phase_code_hash(phase), asdict(phase_config), seed, inputs["fingerprint"])
            reused = next((found for cache in self.caches if (found := cache.load(self.key)) is not None), None)
            if distributed.all_ranks_agree(reused is not None):
                encoder, stats = reused.to(encoder.device), {"cached": True}
                encoder.max_seq_length = self.max_length
                self.cached.append(phase)
            else:
                run = phase_run(self.key)
                encoder, stats = _run_encoder_phase(phase, encoder, data, self.train_codes, inputs, phase_config, run)
                for cache in self.caches:
                    cache.store(self.key, encoder)
                distributed.wait_for_everyone()
                if distributed.is_main_process():
                    shutil.rmtree(run.workdir, ignore_errors=True)
        self.phase_seconds[phase] = round(time.perf_counter() - started, 2)
        self.phase_stats[phase] = stats
        return encoder


def _length_sample(texts: Sequence[str], seed: int) -> list[str]:
    """At most ``LENGTH_SAMPLE`` of the texts (seeded): enough for a percentile, cheap to tokenise."""
    return _pool_sample(texts, LENGTH_SAMPLE, seed)


def _pool_sample(texts: Sequence[str], count: int | None, seed: int) -> list[str]:
    """A seeded sample of at most ``count`` texts in their original order (all of them when ``count`` is None)."""
    if count is None or len(texts) <= count:
        return list(texts)
    chosen = np.random.default_rng(seed).choice(len(texts), size=count, replace=False)
    return [texts[i] for i in sorted(chosen)]


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
    texts = data.dae_corpus(phase_config.max_texts, seed) if phase in {"dae", "joint"} else None
    labelled = fingerprint(data.train.texts, data.train.labels) if phase in {"cl", "joint"} else None
    return {"dae_texts": texts, "fingerprint": fingerprint(texts, labelled)}


def _run_encoder_phase(
    phase: str, encoder: SentenceTransformer, data: LabelledData, train_codes: np.ndarray, inputs: dict[str, Any], phase_config: Any, run: PhaseRun
) -> tuple[SentenceTransformer, dict[str, Any]]:
    if phase == "dae":
        return train_dae(encoder, inputs["dae_texts"], phase_config, run)
    if phase == "cl":
        return train_cl(encoder, data.train.texts, train_codes, phase_config, run)
    if phase == "joint":
        return train_joint(encoder, data.train.texts, train_codes, inputs["dae_texts"], phase_config, run)
    raise ValueError(f"unknown phase {phase!r}")
