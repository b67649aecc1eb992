"""Phase `st`: self-training on the unlabelled texts, after FT.

The FT classifier (the teacher) labels the pool; the texts it chose join the labelled ones, and a
student trains on both with FT's own options (budget, head, learning rate). A round's student is kept
only if its validation ``metric`` beats the best so far; it then teaches the next round. What is
chosen, how (hard or soft labels, their weight, input noise) and where each student starts are
options (:class:`~phasefit.config.STConfig`); the defaults are those validation kept.

The pool never holds a validation or test text: exact and normalised (case, whitespace,
punctuation) copies of them are dropped before the phase, and counted in its stats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from sentence_transformers import SentenceTransformer
from torch import nn

from ..config import FTConfig, STConfig
from ..distributed import is_main_process, wait_for_everyone
from ..model import EncoderClassifier, PhaseFitModel
from .common import PhaseRun
from .ft import (
    ConsistencyTexts,
    FTData,
    PseudoRows,
    best_validation,
    better,
    fit_classifier,
    label_thresholds,
    new_head,
    state_copy,
    with_concrete_metric,
)


def normalised(text: str) -> str:
    """A text as the pool's duplicate check compares it: lower case, punctuation dropped, whitespace folded."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@dataclass(frozen=True)
class Pool:
    """The unlabelled texts self-training may label, and what was dropped from them on the way."""

    texts: list[str]
    offered: int
    dropped_held_out: int
    dropped_labelled: int

    def stats(self) -> dict[str, int]:
        return {
            "offered": self.offered,
            "dropped_as_validation_or_test_copies": self.dropped_held_out,
            "dropped_as_labelled_copies": self.dropped_labelled,
            "texts": len(self.texts),
        }


def clean_pool(unlabelled: Sequence[str], labelled: Sequence[str], held_out: Sequence[str]) -> Pool:
    """The unlabelled texts, each once, without exact or normalised copies of a validation / test text or a labelled one."""
    held = {normalised(text) for text in held_out}
    known = {normalised(text) for text in labelled}
    texts, dropped_held, dropped_labelled, seen = [], 0, 0, set()
    for text in unlabelled:
        key = normalised(text)
        if key in held:
            dropped_held += 1
        elif key in known:
            dropped_labelled += 1
        elif key not in seen:
            seen.add(key)
            texts.append(text)
    return Pool(texts, len(unlabelled), dropped_held, dropped_labelled)


def choose_pseudo_labels(probabilities: np.ndarray, config: STConfig, thresholds: np.ndarray | None = None) -> np.ndarray:
    """Rows of the pool to pseudo-label, in pool order, by ``config.selection``:

    - ``top_k``: per predicted class, its ``per_class`` surest rows at confidence >= ``confidence``;
    - ``balanced``: the same, every class cut to the count of the class with the fewest, so the added rows stay balanced;
    - ``threshold``: every row at confidence >= ``confidence``;
    - ``broad``: per predicted class, ``per_class`` rows spread evenly over its confidence ranking (STraTA's broad
      distribution: not only the rows the teacher is surest of), no threshold.

    Multi-label (``thresholds``: the teacher's per-label cuts, ``probabilities`` one sigmoid per label): confidences are
    per label. A row is predicted to carry each label at or above its cut, and its confidence for that label is the
    label's probability; the per-class quotas are per label (``threshold``: a row with any label at ``confidence``),
    and a row chosen for several labels is taken once.
    """
    if thresholds is None:
        predicted = probabilities.argmax(axis=1)[:, None] == np.arange(probabilities.shape[1])
        confidence = np.repeat(probabilities.max(axis=1)[:, None], probabilities.shape[1], axis=1)
    else:
        predicted = probabilities >= thresholds
        confidence = probabilities
    n_classes = probabilities.shape[1]
    limit = config.per_class if config.per_class is not None else len(probabilities)
    if config.selection == "threshold":
        return np.flatnonzero((predicted & (confidence >= config.confidence)).any(axis=1))
    chosen: list[np.ndarray] = []
    for code in range(n_classes):
        eligible = predicted[:, code] & (confidence[:, code] >= (0.0 if config.selection == "broad" else config.confidence))
        members = np.flatnonzero(eligible)
        ranked = members[np.argsort(-confidence[members, code], kind="stable")]
        if config.selection == "broad" and len(ranked) > limit:
            ranked = ranked[np.unique(np.round(np.linspace(0, len(ranked) - 1, limit)).astype(int))]
        chosen.append(ranked[:limit])
    if config.selection == "balanced":
        smallest = min(len(rows) for rows in chosen)
        chosen = [rows[:smallest] for rows in chosen]
    return np.unique(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def weights_fingerprint(module: nn.Module) -> str:
    """A hash of a module's weights: the teacher's part of the pseudo-label cache key."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


def teacher_probabilities(model: PhaseFitModel, texts: Sequence[str], run: PhaseRun, batch_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The teacher's class probabilities for the pool: batched, no gradients, texts of similar length together
    (sentence-transformers sorts by length). Cached in the run's work folder per (teacher, pool), so a resumed
    phase does not label the pool again."""
    key = hashlib.sha256(json.dumps([weights_fingerprint(EncoderClassifier(model.encoder, model.head)), list(texts)]).encode()).hexdigest()[:20]
    cache = run.workdir / f"pseudo-{key}.npy"
    if run.resumable and cache.is_file():
        return np.load(cache), {"cached": True, "texts": len(texts)}
    started = time.perf_counter()
    probabilities = model.predict_proba(list(texts), batch_size=batch_size) if len(texts) else np.zeros((0, len(model.labels)))
    seconds = time.perf_counter() - started
    if run.resumable and is_main_process():
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, probabilities)
    wait_for_everyone()
    return probabilities, {
        "cached": False,
        "texts": len(texts),
        "seconds": round(seconds, 2),
        "texts_per_second": round(len(texts) / seconds, 1) if seconds else None,
    }


def pseudo_rows(probabilities: np.ndarray, texts: Sequence[str], config: STConfig, thresholds: np.ndarray | None = None) -> PseudoRows:
    """The chosen pool rows as training rows: hard targets (one-hot; multi-label: the labels at or above ``thresholds``)
    or soft ones (the teacher's probabilities)."""
    rows = choose_pseudo_labels(probabilities, config, thresholds)
    chosen = probabilities[rows]
    if config.labels == "soft":
        targets = chosen
    elif thresholds is not None:
        targets = (chosen >= thresholds).astype(np.float32)
    else:
        targets = np.eye(probabilities.shape[1])[chosen.argmax(axis=1)]
    return PseudoRows([texts[i] for i in rows], targets.astype(np.float32), config.pseudo_weight, config.noise)


def train_st(
    encoder: SentenceTransformer,
    head: nn.Module,
    data: FTData,
    pool: Pool,
    ft_config: FTConfig,
    config: STConfig,
    run: PhaseRun,
    teacher_stats: dict[str, Any],
    start: dict[str, torch.Tensor] | None = None,
    round_steps: Sequence[int] | None = None,
) -> tuple[SentenceTransformer, nn.Module, dict[str, Any]]:
    """Self-train the FT classifier (``encoder`` + ``head``, scored ``teacher_stats`` on validation) on ``pool``.

    Each student trains with ``ft_config`` on the labelled rows plus the teacher's chosen pool rows,
    starting from ``start`` (the encoder's weights before FT; ``student_start: base``) or from the
    teacher (``student_start: teacher``, or no ``start`` given). Returns the best model on validation and the phase's stats:
    the teacher's score and, per round, the pseudo-labels taken, the student's score and steps and
    whether it was kept.

    With ``round_steps`` (a budget chosen before, on validation rows that now train too) there is one
    round per entry, its student trains exactly that many steps, and every student is kept.
    """
    ft_config = with_concrete_metric(ft_config, data)
    fixed = round_steps is not None
    rounds = len(round_steps) if fixed else config.rounds
    run.limit_tokens(encoder)
    labels = [str(code) for code in range(data.n_classes)]
    best_score = best_validation(teacher_stats, ft_config)
    stats: dict[str, Any] = {
        "pool": pool.stats(),
        "teacher": {key: teacher_stats[key] for key in (f"best_validation_{ft_config.metric}", "steps", "best_step") if key in teacher_stats},
        "rounds": [],
    }
    if not pool.texts:
        stats["why"] = "no unlabelled texts left in the pool"
        return encoder, head, stats
    kept = state_copy(EncoderClassifier(encoder, head))
    consistency = ConsistencyTexts(pool.texts, config.consistency_weight, config.consistency_noise) if config.consistency_weight else None
    for number in range(1, rounds + 1):
        round_dir = run.workdir / f"round-{number}"
        summary_file = round_dir / "round.json"
        if run.resumable and summary_file.is_file():
            outcome = json.loads(summary_file.read_text(encoding="utf-8"))
            student_head = new_head(encoder, data, ft_config, run.seed + number)
            load_model(EncoderClassifier(encoder, student_head), str(round_dir / "weights.safetensors"), device=str(encoder.device))
        else:
            thresholds = np.asarray(label_thresholds(encoder, head, data, ft_config)["thresholds"]) if data.multi_label else None
            teacher = PhaseFitModel(encoder, head, labels, {"multi_label": True, "thresholds": thresholds.tolist()} if data.multi_label else {})
            probabilities, labelling = teacher_probabilities(teacher, pool.texts, run, config.batch_size)
            rows = pseudo_rows(probabilities, pool.texts, config, thresholds)
            outcome = {
                "round": number,
                "pseudo_labels": len(rows.texts),
                "per_class": per_class_counts(rows, data) if len(rows.texts) else [],
                "labelling": labelling,
            }
            if not len(rows.texts):
                stats["rounds"].append({**outcome, "kept": False, "why": "the teacher chose no text"})
                break
            if config.student_start == "base" and start is not None:
                encoder.load_state_dict(start)
                initial_head = None
            else:
                initial_head = head
            student_config = dataclasses.replace(ft_config, fixed_steps=round_steps[number - 1]) if fixed else ft_config
            student_head, student_stats = fit_classifier(
                encoder, data.with_pseudo_rows(rows, consistency), student_config, run.within(f"round-{number}/train", number), initial_head
            )
            outcome.update(
                {
                    key: student_stats[key]
                    for key in (f"best_validation_{ft_config.metric}", "steps", "best_step", "chosen_learning_rate")
                    if key in student_stats
                }
            )
            if run.resumable and is_main_process():
                round_dir.mkdir(parents=True, exist_ok=True)
                save_model(EncoderClassifier(encoder, student_head), str(round_dir / "weights.safetensors"))
                summary_file.write_text(json.dumps(outcome), encoding="utf-8")
            wait_for_everyone()
        score = outcome[f"best_validation_{ft_config.metric}"]
        improved = fixed or better(score, best_score, ft_config)
        stats["rounds"].append({**outcome, "kept": bool(improved)})
        if improved:
            best_score, head = score, student_head
            kept = state_copy(EncoderClassifier(encoder, head))
        elif config.until_no_gain:
            break
        else:
            head = student_head  # Noisy Student: the next round learns from this student even if it did not beat the best
    EncoderClassifier(encoder, head).load_state_dict(kept)
    stats[f"best_validation_{ft_config.metric}"] = best_score
    stats["kept_rounds"] = sum(entry["kept"] for entry in stats["rounds"])
    if data.multi_label:  # the kept model's own cuts (the teacher's when no student was kept)
        stats.update(label_thresholds(encoder, head.eval(), data, ft_config, compare_schemes=True))
    return encoder, head.eval(), stats


def per_class_counts(rows: PseudoRows, data: FTData) -> list[int]:
    """How many pseudo-labelled rows each class (multi-label: each label, at a probability of one half) received."""
    targets = np.asarray(rows.targets)
    if data.multi_label:
        return (targets >= 0.5).sum(axis=0).astype(int).tolist()
    return np.bincount(targets.argmax(axis=1), minlength=data.n_classes).tolist()
