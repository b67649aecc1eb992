"""Phase 3: fine-tuning with a head (transformers Trainer, early stopping, best checkpoint restored).

Beyond the paper, as options: a prototype head initialised from the class names, LP-FT's head
warm-up, a supervised contrastive term beside cross-entropy (optionally with the class names as batch
members), WiSE-FT's interpolation between the starting and the fine-tuned weights, and SetFit's
logistic-regression head fit on the fine-tuned encoder. Rows pseudo-labelled by the `st` phase train
beside the labelled ones, with their own targets, weight and input noise.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_model, save_model
from sentence_transformers import SentenceTransformer
from torch import nn
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..config import FTConfig
from ..distributed import is_main_process, wait_for_everyone
from ..errors import ConfigError
from ..losses import SupervisedContrastiveLoss
from ..metrics import classification_metrics
from ..model import ClassificationHead, EncoderClassifier, LinearHead, PrototypeHead
from ..multilabel import multilabel_metrics
from ..noise import delete_words
from .common import (
    FrozenForSteps,
    MainProcessWritesOnly,
    PhaseRun,
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
    labels = np.asarray(labels)
    return Dataset.from_dict({**encoded, "labels": labels.astype(np.float32 if labels.ndim == 2 else np.int64)})


def training_dataset(encoder: SentenceTransformer, data: FTData, seed: int) -> Dataset:
    """The labelled rows, plus the pseudo-labelled ones with columns ``targets`` (a distribution over the classes)
    and ``weights``. With input noise the pseudo rows' words are deleted afresh at every read; with a consistency
    term every row also reads a random unlabelled text and its noised copy (columns ``consistency_*``, ``noised_*``)."""
    pseudo, consistency = data.pseudo, data.consistency
    if (pseudo is None or not len(pseudo.texts)) and consistency is None:
        return tokenized_dataset(encoder, data.train_texts, data.train_labels)
    pseudo = pseudo if pseudo is not None else PseudoRows([], np.zeros((0, data.n_classes), dtype=np.float32))
    n_gold = len(data.train_texts)
    pseudo_targets = np.asarray(pseudo.targets, dtype=np.float32).reshape(len(pseudo.texts), data.n_classes)
    columns = {
        "text": [*data.train_texts, *pseudo.texts],
        "weights": np.array([1.0] * n_gold + [pseudo.weight] * len(pseudo.texts), dtype=np.float32),
        "noisy": [False] * n_gold + [pseudo.noise > 0] * len(pseudo.texts),
    }
    if data.multi_label:  # a pseudo-labelled row's labels are its 0/1 row, or the teacher's probabilities (soft)
        columns["labels"] = np.concatenate([np.asarray(data.train_labels, dtype=np.float32), pseudo_targets])
    else:
        gold_targets = np.eye(data.n_classes, dtype=np.float32)[np.asarray(data.train_labels, dtype=np.int64)]
        columns["labels"] = np.concatenate([np.asarray(data.train_labels, dtype=np.int64), pseudo_targets.argmax(axis=1).astype(np.int64)])
        columns["targets"] = np.concatenate([gold_targets, pseudo_targets])
    kept = tuple(key for key in ("labels", "targets", "weights") if key in columns) if len(pseudo.texts) else ("labels",)
    tokenizer, max_length = encoder.tokenizer, encoder.max_seq_length
    if not pseudo.noise and consistency is None:
        encoded = tokenizer(columns["text"], truncation=True, max_length=max_length)
        return Dataset.from_dict({**encoded, **{key: columns[key] for key in kept}})
    rng = np.random.default_rng(seed)

    def noised_and_tokenised(batch: dict[str, list]) -> dict[str, list]:
        texts = [delete_words(text, pseudo.noise, rng) if noisy else text for text, noisy in zip(batch["text"], batch["noisy"])]
        encoded = {**tokenizer(texts, truncation=True, max_length=max_length), **{key: batch[key] for key in kept}}
        if consistency is not None:
            unlabelled = [consistency.texts[i] for i in rng.integers(len(consistency.texts), size=len(texts))]
            noised = [delete_words(text, consistency.noise, rng) for text in unlabelled]
            encoded.update({f"consistency_{key}": value for key, value in tokenizer(unlabelled, truncation=True, max_length=max_length).items()})
            encoded.update({f"noised_{key}": value for key, value in tokenizer(noised, truncation=True, max_length=max_length).items()})
        return encoded

    dataset = Dataset.from_dict(columns)
    dataset.set_transform(noised_and_tokenised)
    return dataset


class PaddingByGroup:
    """Pads the row's own tokens and, apart, each group of extra tokens (``consistency_*``, ``noised_*``) to its batch's longest."""

    groups = ("consistency_", "noised_")

    def __init__(self, tokenizer: Any) -> None:
        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        own = [{key: value for key, value in row.items() if not key.startswith(self.groups)} for row in features]
        batch = dict(self.pad(own))
        for group in self.groups:
            extra = [{key[len(group) :]: value for key, value in row.items() if key.startswith(group)} for row in features]
            if extra and extra[0]:
                batch.update({f"{group}{key}": value for key, value in self.pad(extra).items()})
        return batch


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


@dataclass(frozen=True)
class PseudoRows:
    """Pool texts a teacher labelled: their targets (one-hot or the teacher's distribution), their weight
    against a labelled row's 1, and the word-deletion ratio applied to them afresh at every read (0: none)."""

    texts: Sequence[str]
    targets: np.ndarray
    weight: float = 1.0
    noise: float = 0.0


@dataclass(frozen=True)
class ConsistencyTexts:
    """Unlabelled texts for UDA's consistency term (Xie et al., 2020): every training row reads one of them at random
    and the loss adds ``weight`` x KL(p(text) || p(its noised copy)), p(text) held fixed; ``noise`` is the share of
    words the copy loses."""

    texts: Sequence[str]
    weight: float
    noise: float


@dataclass(frozen=True)
class FTData:
    """What FT trains on: labelled train and validation texts, the class names, and pseudo-labelled rows (the st phase)."""

    train_texts: Sequence[str]
    train_labels: np.ndarray
    validation_texts: Sequence[str]
    validation_labels: np.ndarray
    n_classes: int
    class_texts: Sequence[str] | None = None  # the label names (or descriptions) in code order, for prototype heads
    pseudo: PseudoRows | None = None
    consistency: ConsistencyTexts | None = None

    @property
    def multi_label(self) -> bool:
        """Whether the labels are a 0/1 matrix (rows x labels, several or none per row) rather than one class code per row."""
        return np.asarray(self.train_labels).ndim == 2

    def with_pseudo_rows(self, rows: PseudoRows, consistency: ConsistencyTexts | None = None) -> "FTData":
        return dataclasses.replace(self, pseudo=rows, consistency=consistency)


def train_ft(encoder: SentenceTransformer, data: FTData, config: FTConfig, run: PhaseRun) -> tuple[nn.Module, dict[str, Any]]:
    """Train encoder + head on cross-entropy; stop when validation ``config.metric`` stops improving.

    With ``config.learning_rate_grid``, the phase trains once per encoder learning rate of the grid,
    each from the same starting encoder, and keeps the run with the best validation ``metric``
    (ties go to the smaller rate). Finished trials are kept in ``run.workdir`` (weights and scores),
    so a resumed phase skips them.

    With ``config.head_refit == "logistic"`` the head is then replaced by a logistic regression fit
    on the fine-tuned encoder's embeddings of the labelled texts.
    """
    if data.multi_label and config.head_refit != "none":
        raise ConfigError(f"option ft.head_refit {config.head_refit!r} refits a single-label head; a multi-label run takes 'none'.")
    head, stats = fit_classifier(run.limit_tokens(encoder), data, config, run)
    if data.multi_label:
        return head, {**stats, **label_thresholds(encoder, head, data, config, compare_schemes=True)}
    if config.head_refit == "logistic":
        return refit_logistic_head(encoder, data, config, run.seed, stats)
    return head, stats


# 0.05 to 0.95 in steps of 0.05, below it eight log-spaced cuts down to 0.001: with few rows per label a sigmoid output
# seldom rises far above a label's base rate (GoEmotions at 8 per label: 3 of 4 runs' thresholds sat at a 0.05 floor).
THRESHOLD_GRID = np.concatenate([np.round(np.geomspace(0.001, 0.05, 9)[:-1], 4), np.round(np.arange(0.05, 0.951, 0.05), 2)])
MIN_ROWS_TO_COMPARE_SCHEMES = 20


def choose_thresholds(probabilities: np.ndarray, truth: np.ndarray, per_label: bool) -> list[float]:
    """The decision threshold(s) of a multi-label classifier, from THRESHOLD_GRID (0.001 to 0.95): one for every label that
    maximises the micro-F1 of all labels, or (``per_label``) each label's own best F1; ties go to the lower threshold."""
    from sklearn.metrics import f1_score

    truth = np.asarray(truth) > 0
    if not per_label:
        scores = [f1_score(truth, probabilities >= t, average="micro", zero_division=0) for t in THRESHOLD_GRID]
        return [float(THRESHOLD_GRID[int(np.argmax(scores))])] * truth.shape[1]
    return [
        float(THRESHOLD_GRID[int(np.argmax([f1_score(truth[:, k], probabilities[:, k] >= t, zero_division=0) for t in THRESHOLD_GRID]))])
        for k in range(truth.shape[1])
    ]


def threshold_schemes_two_fold(probabilities: np.ndarray, truth: np.ndarray, seed: int = 0) -> dict[str, dict[str, float]]:
    """Global against per-label thresholds on rows they were not chosen on: each scheme chooses on one seeded half of
    the validation rows and is scored on the other, both ways round; the micro- and macro-F1 of the two halves, averaged."""
    truth = np.asarray(truth)
    rows = np.random.default_rng(seed).permutation(len(truth))
    halves = (rows[: len(rows) // 2], rows[len(rows) // 2 :])
    labels = list(range(truth.shape[1]))
    comparison = {}
    for scheme in ("global", "per_label"):
        scores = []
        for chosen_on, scored_on in (halves, halves[::-1]):
            thresholds = np.asarray(choose_thresholds(probabilities[chosen_on], truth[chosen_on], per_label=scheme == "per_label"))
            scores.append(multilabel_metrics(truth[scored_on], probabilities[scored_on] >= thresholds, labels))
        comparison[scheme] = {key: float(np.mean([score[key] for score in scores])) for key in ("micro_f1", "macro_f1")}
    return comparison


def label_thresholds(encoder: SentenceTransformer, head: nn.Module, data: FTData, config: FTConfig, compare_schemes: bool = False) -> dict[str, Any]:
    """The thresholds chosen on validation (0.5 without validation rows) and the validation scores at them; with
    ``compare_schemes``, also :func:`threshold_schemes_two_fold` (how the other scheme would have done)."""
    if not len(data.validation_texts):
        return {"thresholds": [0.5] * data.n_classes}
    with torch.no_grad():
        logits = head(encoder.encode(list(data.validation_texts), convert_to_tensor=True, show_progress_bar=False))
    probabilities, truth = torch.sigmoid(logits.float()).cpu().numpy(), np.asarray(data.validation_labels)
    thresholds = choose_thresholds(probabilities, truth, config.threshold == "per_label")
    scores = multilabel_metrics(truth, probabilities >= np.asarray(thresholds), list(range(data.n_classes)))
    stats: dict[str, Any] = {
        "thresholds": thresholds,
        "validation_at_thresholds": {key: scores[key] for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy")},
    }
    if compare_schemes and len(data.validation_texts) >= MIN_ROWS_TO_COMPARE_SCHEMES:
        stats["threshold_schemes_two_fold"] = threshold_schemes_two_fold(probabilities, truth)
    return stats


def with_concrete_metric(config: FTConfig, data: FTData) -> FTConfig:
    """``config`` with ``metric: auto`` as a direct call of FT or self-training resolves it: micro-F1 for multi-label
    data, else accuracy (a run resolves it from its data first, see :func:`phasefit.pipeline.checkpoint_metric`)."""
    if config.metric != "auto":
        return config
    return dataclasses.replace(config, metric="micro_f1" if data.multi_label else "accuracy")


def best_validation(stats: dict[str, Any], config: FTConfig) -> float:
    """The validation ``config.metric`` a trained FT reached (its best checkpoint's)."""
    return float(stats["best_validation_" + config.metric])


def better(score: float, than: float, config: FTConfig) -> bool:
    """Whether ``score`` improves on ``than`` in ``config.metric`` (lower is better for the loss)."""
    return score < than if config.metric == "loss" else score > than


def refit_logistic_head(encoder: SentenceTransformer, data: FTData, config: FTConfig, seed: int, stats: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """SetFit's head on phasefit's encoder: a scikit-learn logistic regression on the labelled texts' embeddings, as a LinearHead.

    The validation score in ``stats`` becomes the new head's (the FT head's is kept as ``validation_before_refit``).
    """
    from sklearn.linear_model import LogisticRegression

    config = with_concrete_metric(config, data)
    labels = np.asarray(data.train_labels)
    if len(np.unique(labels)) < 2:
        raise ConfigError("option ft.head_refit 'logistic' needs labelled texts of at least two classes.")
    regression = LogisticRegression(max_iter=1000, random_state=seed).fit(encoder.encode(list(data.train_texts), show_progress_bar=False), labels)
    dimension = encoder.get_embedding_dimension()
    weight, bias = np.zeros((data.n_classes, dimension)), np.full(data.n_classes, -1e4)  # a class without labelled texts is never predicted
    if len(regression.classes_) == 2:  # one score for the second class; softmax over (0, score) is the regression's sigmoid
        weight[regression.classes_] = [np.zeros(dimension), regression.coef_[0]]
        bias[regression.classes_] = [0.0, regression.intercept_[0]]
    else:
        weight[regression.classes_], bias[regression.classes_] = regression.coef_, regression.intercept_
    head = LinearHead(dimension, data.n_classes).initialise(weight, bias).to(encoder.device).eval()
    key = "best_validation_" + config.metric
    refit = dict(stats, validation_before_refit=stats[key])
    if len(data.validation_texts):
        with torch.no_grad():
            logits = head(encoder.encode(list(data.validation_texts), convert_to_tensor=True, show_progress_bar=False))
        truth = np.asarray(data.validation_labels)
        if config.metric == "loss":
            refit[key] = float(nn.functional.cross_entropy(logits, torch.as_tensor(truth, device=logits.device)))
        else:
            refit[key] = classification_metrics(truth, logits.argmax(dim=-1).cpu().numpy(), list(range(data.n_classes)))[config.metric]
    return head, refit


def fit_classifier(
    encoder: SentenceTransformer, data: FTData, config: FTConfig, run: PhaseRun, initial_head: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """FT's training: once, or once per rate of ``config.learning_rate_grid`` keeping the best; the head starts as
    a copy of ``initial_head`` (a self-training student that starts from its teacher) or as :func:`new_head` makes it.
    ``metric: auto`` is resolved by :func:`with_concrete_metric`."""
    config = with_concrete_metric(config, data)
    if not config.learning_rate_grid:
        return _train_once(encoder, data, config, run, initial_head)
    start = state_copy(encoder)
    trials = []
    for rate in sorted(set(config.learning_rate_grid)):
        trial_dir = run.workdir / f"lr-{rate:g}"
        summary = trial_dir / "trial.json"
        if not (run.resumable and summary.is_file()):
            encoder.load_state_dict(start)
            trial_config = dataclasses.replace(config, learning_rate=rate, learning_rate_grid=[])
            head, stats = _train_once(encoder, data, trial_config, run.within(f"lr-{rate:g}/run"), initial_head)
            if is_main_process():
                trial_dir.mkdir(parents=True, exist_ok=True)
                save_model(EncoderClassifier(encoder, head), str(trial_dir / "weights.safetensors"))
                summary.write_text(json.dumps({"learning_rate": rate, "stats": stats}), encoding="utf-8")
            wait_for_everyone()
        trials.append(json.loads(summary.read_text(encoding="utf-8")))
    key = "best_validation_" + config.metric
    sign = -1.0 if config.metric == "loss" else 1.0
    best = max(trials, key=lambda trial: (sign * trial["stats"][key], -trial["learning_rate"]))
    head = new_head(encoder, data, config, run.seed)
    load_model(EncoderClassifier(encoder, head), str(run.workdir / f"lr-{best['learning_rate']:g}" / "weights.safetensors"), device=str(encoder.device))
    wait_for_everyone()
    if is_main_process():
        shutil.rmtree(run.workdir, ignore_errors=True)
    stats = dict(best["stats"])
    stats["chosen_learning_rate"] = best["learning_rate"]
    stats["learning_rate_trials"] = [
        {"learning_rate": t["learning_rate"], key: t["stats"][key], "best_step": t["stats"]["best_step"], "steps": t["stats"]["steps"]} for t in trials
    ]
    return head.eval(), stats


def required_class_texts(data: FTData, option: str) -> list[str]:
    """The class names (or descriptions) in code order, or a ConfigError naming the option that needs them."""
    if data.class_texts is None or len(data.class_texts) != data.n_classes:
        raise ConfigError(f"option {option} needs the class names (train_ft(..., class_texts=[...])).")
    return list(data.class_texts)


def new_head(encoder: SentenceTransformer, data: FTData, config: FTConfig, seed: int) -> nn.Module:
    """The FT head before its first step: a seeded random MLP (its output bias at the labels' base rates with
    ``head_bias: prior``), or prototypes from the class names and / or the classes'
    mean embeddings (multi-label: a label's mean over the rows that carry it, and an offset per label, see
    :func:`label_offsets`)."""
    torch.manual_seed(seed)
    dimension = encoder.get_embedding_dimension()
    if config.head == "mlp":
        head = ClassificationHead(dimension, config.head_size, data.n_classes, config.dropout)
        if config.head_bias == "prior":
            head.set_output_bias(prior_logits(data))
        return head.to(encoder.device)
    head = PrototypeHead(dimension, data.n_classes, config.prototype_scale, offsets=data.multi_label).to(encoder.device)
    members = _label_members(data)
    parts = []
    if "names" in config.prototype_init.split("+"):
        names = required_class_texts(data, "ft.prototype_init 'names'")
        parts.append(encoder.encode(names, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False))
    if "means" in config.prototype_init.split("+") or data.multi_label:
        embeddings = encoder.encode(list(data.train_texts), convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    if "means" in config.prototype_init.split("+"):
        means = torch.stack([embeddings[rows].mean(dim=0) if rows.any() else torch.zeros_like(embeddings[0]) for rows in members])
        parts.append(nn.functional.normalize(means, dim=-1))
    head.initialise(sum(parts))
    if data.multi_label:
        with torch.no_grad():
            head.initialise(head.prototypes.detach().clone(), label_offsets(head.similarity(embeddings), members))
    return head


def prior_logits(data: FTData) -> torch.Tensor:
    """The logits of the labelled rows' label frequencies (add-one smoothed): each label's log-odds (multi-label), or
    each class's log share (single-label), so that an untrained head already predicts the base rates."""
    members = torch.stack(_label_members(data)).double()
    rates = (members.sum(dim=1) + 1) / (members.shape[1] + 2)
    return (torch.log(rates) - torch.log1p(-rates)) if data.multi_label else torch.log(rates / rates.sum())


def _label_members(data: FTData) -> list[torch.Tensor]:
    """For each class code, a boolean mask of the training rows that carry it."""
    labels = torch.as_tensor(np.asarray(data.train_labels))
    if data.multi_label:
        return [labels[:, code] > 0 for code in range(data.n_classes)]
    return [labels == code for code in range(data.n_classes)]


def label_offsets(similarity: torch.Tensor, members: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each label's starting cut: half-way between the mean similarity of the rows that carry it and of the rows that
    do not (the mean of all rows when either side is empty), so the untrained head already says yes to about its own rows."""
    offsets = []
    for code, rows in enumerate(members):
        rows = rows.to(similarity.device)
        column = similarity[:, code]
        if rows.any() and (~rows).any():
            offsets.append((column[rows].mean() + column[~rows].mean()) / 2)
        else:
            offsets.append(column.mean())
    return torch.stack(offsets)


def class_features(encoder: SentenceTransformer, data: FTData, config: FTConfig) -> dict[str, torch.Tensor] | None:
    """The class names tokenised for ``ft.names_in_batch`` (None when it is off or there is no contrastive term to join)."""
    if not (config.names_in_batch and config.contrastive_weight):
        return None
    names = required_class_texts(data, "ft.names_in_batch")
    encoded = encoder.tokenizer(names, padding=True, truncation=True, max_length=encoder.max_seq_length, return_tensors="pt")
    return {name: tensor.to(encoder.device) for name, tensor in encoded.items()}


def _train_once(
    encoder: SentenceTransformer, data: FTData, config: FTConfig, run: PhaseRun, initial_head: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    n_classes = data.n_classes
    n_rows = len(data.train_texts) + (len(data.pseudo.texts) if data.pseudo else 0)
    head = copy.deepcopy(initial_head).train() if initial_head is not None else new_head(encoder, data, config, run.seed)
    contrastive = SupervisedContrastiveLoss(config.contrastive_temperature) if config.contrastive_weight else None
    consistency_weight = data.consistency.weight if data.consistency is not None else 0.0
    classifier = EncoderClassifier(encoder, head, contrastive, config.contrastive_weight, class_features(encoder, data, config), consistency_weight)
    encoder.requires_grad_(not config.freeze_encoder)

    batch = effective_batch_size(config)
    steps_per_epoch = math.ceil(n_rows / batch)
    max_steps = config.fixed_steps or max(math.ceil(config.epochs * steps_per_epoch), config.min_steps)
    interval = min(evaluation_interval(n_rows, batch), max_steps)
    metric = "eval_loss" if config.metric == "loss" else f"eval_{config.metric}"
    # With fixed_steps the budget was chosen elsewhere (on validation rows that now train too): no evaluation, no stopping.
    choosing = {
        "eval_strategy": "steps",
        "eval_steps": interval,
        "save_strategy": "steps",
        "save_steps": interval,
        "save_total_limit": 1,
        "load_best_model_at_end": True,
        "restore_callback_states_from_checkpoint": True,  # else a resumed run restarts its early-stopping count from zero
        "metric_for_best_model": metric,
        "greater_is_better": config.metric != "loss",
    }
    fixed = {"eval_strategy": "no", **({"save_strategy": "steps", "save_steps": interval, "save_total_limit": 1} if run.resumable else {"save_strategy": "no"})}
    args = TrainingArguments(
        **{**common_arguments(config, run.seed, run.workdir, run.precision), "logging_steps": logging_interval(max_steps)},
        max_steps=max_steps,
        **(fixed if config.fixed_steps else choosing),
        save_only_model=not run.resumable,
        remove_unused_columns=False,
        label_names=["labels"],
        warmup_steps=min(max_steps // 10, 100),
    )
    parameter_groups = [{"params": list(head.parameters()), "lr": config.head_learning_rate}]
    if not config.freeze_encoder:
        parameter_groups.append({"params": [p for p in encoder.parameters() if p.requires_grad], "lr": config.learning_rate})
    optimizer = torch.optim.AdamW(parameter_groups, weight_decay=config.weight_decay)

    head_warmup = [FrozenForSteps(encoder, config.head_warmup_steps)] if config.head_warmup_steps and not config.freeze_encoder else []

    def compute_metrics(prediction) -> dict[str, float]:
        if data.multi_label:  # at the threshold(s) that checkpoint would get (chosen after training the same way)
            truth, probabilities = np.asarray(prediction.label_ids), 1 / (1 + np.exp(-np.asarray(prediction.predictions, dtype=np.float64)))
            cuts = np.asarray(choose_thresholds(probabilities, truth, per_label=config.threshold == "per_label"))
            scores = multilabel_metrics(truth, probabilities >= cuts, list(range(n_classes)))
            return {"accuracy": scores["subset_accuracy"], "macro_f1": scores["macro_f1"], "micro_f1": scores["micro_f1"]}
        predicted = np.asarray(prediction.predictions).argmax(axis=-1)
        scores = classification_metrics(np.asarray(prediction.label_ids), predicted, list(range(n_classes)))
        return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "micro_f1": scores["accuracy"]}

    trainer = _ClassifierTrainer(
        model=classifier,
        args=args,
        train_dataset=training_dataset(encoder, data, run.seed),
        eval_dataset=None if config.fixed_steps else tokenized_dataset(encoder, data.validation_texts, data.validation_labels),
        data_collator=PaddingByGroup(encoder.tokenizer),
        compute_metrics=compute_metrics,
        optimizers=(optimizer, None),
        callbacks=[*([] if config.fixed_steps else [EarlyStoppingAfter(config.patience, min_steps=config.min_steps)]), *run.callbacks, *head_warmup],
    )
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    start_weights = starting_weights(classifier) if config.weight_interpolation < 1 else None
    resume_from = latest_checkpoint(run.workdir) if run.resumable else None
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        encoder.requires_grad_(True)
    wait_for_everyone()  # every process has loaded the best checkpoint before it goes
    best = float(trainer.state.best_metric) if trainer.state.best_metric is not None else float("nan")
    history = list(trainer.state.log_history)
    interpolation = {}
    if start_weights is not None:
        interpolate_weights(classifier, start_weights, config.weight_interpolation)
        interpolation = {"validation_before_interpolation": best, "weight_interpolation": config.weight_interpolation}
        if not config.fixed_steps:  # what a learning-rate grid or self-training compares is the model this phase returns
            best = float(trainer.evaluate()[metric])
    if is_main_process():
        shutil.rmtree(run.workdir, ignore_errors=True)
    evaluations = [entry for entry in history if "eval_loss" in entry]
    return head.eval(), {
        "curve": learning_curve(history),
        "steps": trainer.state.global_step,
        "effective_batch_size": batch,
        "best_validation_" + config.metric: best,
        "best_step": trainer.state.global_step if config.fixed_steps else int(trainer.state.best_global_step or 0),
        "evaluations": len(evaluations),
        "resumed_from_step": checkpoint_step(resume_from),
        **interpolation,
    }


def state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's whole state, to restore with ``load_state_dict`` after training moves it."""
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def starting_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's floating-point weights and buffers, before training moves them."""
    return {name: tensor for name, tensor in state_copy(module).items() if tensor.is_floating_point()}


@torch.no_grad()
def interpolate_weights(module: nn.Module, start: dict[str, torch.Tensor], share: float) -> None:
    """WiSE-FT (Wortsman et al., CVPR 2022): each weight becomes ``share * fine-tuned + (1 - share) * start``, in place.

    With a prototype head initialised from the class names and means, the starting model is already a
    classifier, so the mix keeps part of what the encoder knew before the few labelled texts pulled it.
    """
    done: set[int] = set()
    for name, tensor in module.state_dict().items():
        if name in start and tensor.data_ptr() not in done:  # a tied weight appears under two names: mix it once
            done.add(tensor.data_ptr())
            tensor.mul_(share).add_(start[name].to(tensor.device), alpha=1 - share)
