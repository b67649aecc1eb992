"""Multi-label data: a text carries a set of labels (possibly none), read from a JSON list or from 0/1 columns.

The building blocks of multi-label training (issue 48): reading and checking the label sets, the seeded
low-resource draw that gives every label at least N rows, the indicator matrix, and the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import DataError


@dataclass
class LabelSetSplit:
    """Texts with their label sets: ``label_sets[i]`` holds the labels of text ``i`` (an empty tuple: none applies)."""

    texts: list[str]
    label_sets: list[tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def labels(self) -> list[str]:
        """Every label that occurs, sorted."""
        return sorted({label for labels in self.label_sets for label in labels})

    def indicator(self, labels: Sequence[str]) -> np.ndarray:
        """A 0/1 matrix, one row per text and one column per label of ``labels`` (a label not in it is an error)."""
        column = {label: index for index, label in enumerate(labels)}
        matrix = np.zeros((len(self), len(labels)), dtype=np.float32)
        for row, label_set in enumerate(self.label_sets):
            unknown = [label for label in label_set if label not in column]
            if unknown:
                raise DataError(f"row {row + 1}: label {unknown[0]!r} is not among the {len(labels)} labels the model knows.")
            matrix[row, [column[label] for label in label_set]] = 1.0
        return matrix

    def subset(self, indices: Sequence[int] | np.ndarray) -> "LabelSetSplit":
        return LabelSetSplit([self.texts[i] for i in indices], [self.label_sets[i] for i in indices])


def is_label_list_column(frame: pd.DataFrame, column: str, where: str, row_offset: int = 1) -> bool:
    """Whether ``column`` holds label lists (multi-label) or single labels; a column mixing both is an error naming a row."""
    if column not in frame.columns:
        return False
    kinds = np.array([isinstance(value, (list, tuple, np.ndarray)) for value in frame[column]])
    if kinds.all():
        return True
    if not kinds.any():
        return False
    minority = np.flatnonzero(kinds != (kinds.mean() >= 0.5))[0]
    raise DataError(
        f"{where}: column {column!r} mixes label lists and single labels (row {minority + row_offset} differs from most rows); "
        'write every row\'s labels as a list, e.g. "labels": ["a", "b"], or every row as one label.'
    )


def label_set_split(
    frame: pd.DataFrame,
    where: str,
    text_column: str = "text",
    labels_column: str | None = "labels",
    indicator_columns: Sequence[str] = (),
    row_offset: int = 1,
) -> LabelSetSplit:
    """One table as texts with label sets: from a column of lists (``labels_column``), or from 0/1 columns, one per
    label (``indicator_columns``, named after their labels). Every problem names the table, the row and the column."""
    columns = [text_column, *([labels_column] if labels_column and not indicator_columns else []), *indicator_columns]
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(f"{where}: no column {', '.join(map(repr, missing))}; the columns are {', '.join(repr(str(c)) for c in frame.columns)}.")
    texts = frame[text_column].tolist()
    empty = [row + row_offset for row, text in enumerate(texts) if not isinstance(text, str) or not text.strip()]
    if empty:
        raise DataError(f"{where}: empty text in column {text_column!r} at rows {', '.join(map(str, empty[:10]))}.")
    if indicator_columns:
        label_sets = []
        for row, values in enumerate(frame[list(indicator_columns)].itertuples(index=False)):
            chosen = []
            for column, value in zip(indicator_columns, values):
                flag = _zero_or_one(value)
                if flag is None:
                    raise DataError(f"{where}: row {row + row_offset}, column {column!r}: {value!r} is not 0 or 1.")
                if flag:
                    chosen.append(str(column))
            label_sets.append(tuple(chosen))
        return LabelSetSplit([str(text) for text in texts], label_sets)
    is_label_list_column(frame, labels_column, where, row_offset)
    label_sets = []
    for row, value in enumerate(frame[labels_column]):
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise DataError(f'{where}: row {row + row_offset}, column {labels_column!r}: {value!r} is not a list of labels (write "labels": ["a", "b"]).')
        labels = [str(label).strip() for label in value]
        if any(not label for label in labels):
            raise DataError(f"{where}: row {row + row_offset}, column {labels_column!r}: an empty label in {list(value)!r}.")
        label_sets.append(tuple(dict.fromkeys(labels)))
    return LabelSetSplit([str(text) for text in texts], label_sets)


def _zero_or_one(value: Any) -> bool | None:
    text = str(value).strip().lower()
    if text in {"1", "1.0", "true"}:
        return True
    if text in {"0", "0.0", "false", ""}:
        return False
    return None


def sample_per_label(label_sets: Sequence[tuple[str, ...]], n_per_label: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices, seeded, such that every label has at least ``n_per_label`` rows (or all its rows, when it has fewer).

    Labels are served rarest first: each takes random rows that carry it until it has its N, counting the rows
    that earlier labels already took. Rows with no label are never drawn (they teach nothing the draw is about).
    """
    members: dict[str, list[int]] = {}
    for row, labels in enumerate(label_sets):
        for label in labels:
            members.setdefault(label, []).append(row)
    chosen: set[int] = set()
    for label in sorted(members, key=lambda name: (len(members[name]), name)):
        rows = members[label]
        have = sum(row in chosen for row in rows)
        for row in rng.permutation(rows):
            if have >= n_per_label:
                break
            if int(row) not in chosen:
                chosen.add(int(row))
                have += 1
    return np.array(sorted(chosen), dtype=np.int64)


def label_counts(label_sets: Sequence[tuple[str, ...]]) -> dict[str, int]:
    """Rows carrying each label, for the log."""
    counts: dict[str, int] = {}
    for labels in label_sets:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def multilabel_metrics(truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Micro, macro and samples F1, subset accuracy, Hamming loss and per-label precision / recall / F1 (scikit-learn),
    from 0/1 matrices of rows x labels."""
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

    truth, predicted = np.asarray(truth, dtype=int), np.asarray(predicted, dtype=int)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    return {
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "samples_f1": float(f1_score(truth, predicted, average="samples", zero_division=0)),
        "subset_accuracy": float(accuracy_score(truth, predicted)),
        "hamming_loss": float(hamming_loss(truth, predicted)),
        "per_label": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "n_examples": int(truth.shape[0]),
    }
