"""Scores and the confusion-matrix picture (scikit-learn and matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def classification_metrics(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
    """Accuracy, macro precision / recall / F1 over ``labels``, and the confusion matrix (rows: true)."""
    labels = list(labels)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "n_examples": int(len(y_true)),
        "labels": [str(label) for label in labels],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def save_confusion_matrix(metrics: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """A PNG of the confusion matrix in ``metrics`` (as returned by :func:`classification_metrics`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    labels = metrics["labels"]
    size = max(4.0, 0.45 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    display = ConfusionMatrixDisplay(np.asarray(metrics["confusion_matrix"]), display_labels=labels)
    display.plot(ax=axes, xticks_rotation="vertical", colorbar=False, values_format="d", include_values=len(labels) <= 30)
    axes.set_title(title or f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


SINGLE_LABEL_SCORES = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("macro_precision", "macro precision"), ("macro_recall", "macro recall"))
MULTI_LABEL_SCORES = (
    ("micro_f1", "micro-F1"),
    ("macro_f1", "macro-F1"),
    ("samples_f1", "samples-F1"),
    ("subset_accuracy", "subset accuracy"),
    ("hamming_loss", "Hamming loss"),
)


def score_columns(metrics: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The (key, title) pairs a table of these scores shows: a multi-label run's, or a single-label run's."""
    return MULTI_LABEL_SCORES if "hamming_loss" in metrics else SINGLE_LABEL_SCORES
