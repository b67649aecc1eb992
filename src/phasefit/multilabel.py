"""Multi-label data: a text carries a set of labels (possibly none), read from a JSON list or from 0/1 columns.

The building blocks of multi-label training (issue 48): reading and checking the label sets, the seeded
low-resource draw that gives every label at least N rows, the indicator matrix, and the metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class LabelSetSplit:
    """Texts with their label sets: ``label_sets[i]`` holds the labels of text ``i`` (an empty tuple: none applies)."""

    texts: list[str]
    label_sets: list[tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_names(self) -> list[str]:
        """Every label that occurs, sorted."""
        return sorted({label for labels in self.label_sets for label in labels})

    @property
    def labels(self) -> list[tuple[str, ...]]:
        """Each row's labels (as :attr:`Split.labels` holds each row's label path)."""
        return self.label_sets

    @property
    def classes(self) -> list[str]:
        """Each row's label set in one name ("a+b"; "(none)"), for pictures coloured by row."""
        return ["+".join(labels) or "(none)" for labels in self.label_sets]

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
    if column not in frame.columns or not len(frame):
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
        # A row with no label, answered with no label, is right: it scores 1 (with 0 a perfect model scores below 1).
        "samples_f1": float(f1_score(truth, predicted, average="samples", zero_division=1.0)),
        "subset_accuracy": float(accuracy_score(truth, predicted)),
        "hamming_loss": float(hamming_loss(truth, predicted)),
        "per_label": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "n_examples": int(truth.shape[0]),
    }


def split_frames(source: Any) -> tuple[dict[str, tuple[pd.DataFrame, str, int]], str] | None:
    """The tables of a file, a folder of split files or a DataFrame: ``{split: (frame, where, row offset)}`` (None for
    other sources, such as a hub id)."""
    from pathlib import Path

    from .data import _find_split_files, _row_offset, read_table

    if isinstance(source, pd.DataFrame):
        return {"train": (source, "DataFrame", 0)}, "DataFrame"
    if not isinstance(source, (str, Path)):
        return None
    path = Path(source)
    if path.is_dir():
        return {split: (read_table(file), str(file), _row_offset(file)) for split, file in _find_split_files(path).items()}, str(path)
    if path.is_file():
        return {"train": (read_table(path), str(path), _row_offset(path))}, str(path)
    return None


def label_list_column(frames: dict[str, tuple[pd.DataFrame, str, int]], label_columns: Sequence[str]) -> str | None:
    """The column of label lists when the data is multi-label: the one label column given, or ``labels`` when the
    default ``label`` column is absent. A column mixing lists and single labels is an error naming the row."""
    frame, where, offset = frames["train"]
    candidates = list(label_columns) if len(label_columns) == 1 else []
    if list(label_columns) == ["label"] and "label" not in frame.columns:
        candidates.append("labels")
    for column in candidates:
        if is_label_list_column(frame, column, where, offset):
            return column
    return None


def load_label_set_data(
    frames: dict[str, tuple[pd.DataFrame, str, int]],
    where: str,
    text_column: str,
    labels_column: str | None,
    indicator_columns: Sequence[str],
    seed: int,
    samples_per_label: int | None,
    validation_fraction: float,
    max_validation_examples: int | None,
    unseen_test_labels: str,
) -> Any:
    """Multi-label splits as a :class:`~phasefit.data.LabelledData` whose splits are :class:`LabelSetSplit` s.

    Without a validation split a seeded random ``validation_fraction`` of train is held out; with
    ``samples_per_label`` the labelled rows are a seeded draw giving every label at least that many rows (rarest
    label first), the other training texts kept unlabelled. A label of validation or test that train never has is
    an error naming the row (``unseen_test_labels: drop`` removes it from the row's set instead, and says so).
    """
    from .data import LabelledData

    splits = {name: label_set_split(frame, source, text_column, labels_column, indicator_columns, offset) for name, (frame, source, offset) in frames.items()}
    rng = np.random.default_rng(seed)
    notes = [f"multi-label: {'0/1 columns ' + ', '.join(indicator_columns) if indicator_columns else f'label lists in column {labels_column!r}'}"]
    train, validation = splits["train"], splits.get("validation")
    carved_texts: list[str] = []
    if validation is None:
        order = rng.permutation(len(train))
        held = max(1, int(round(validation_fraction * len(train))))
        validation, train = train.subset(np.sort(order[:held])), train.subset(np.sort(order[held:]))
        carved_texts = list(validation.texts)
        notes.append(f"no validation split: held out a random {validation_fraction:.0%} of train ({len(validation)} rows, seed {seed})")
    unlabelled: list[str] = []
    if samples_per_label is not None:
        chosen = sample_per_label(train.label_sets, samples_per_label, rng)
        rest = np.setdiff1d(np.arange(len(train)), chosen)
        unlabelled = [train.texts[i] for i in rest]
        train = train.subset(chosen)
        counts = label_counts(train.label_sets)
        notes.append(
            f"low-resource draw: at least {samples_per_label} rows per label (rarest first), {len(train)} labelled rows; rows per label "
            + ", ".join(f"{label} {count}" for label, count in counts.items())
        )
    test = None
    known = set(train.label_names)
    never = [column for column in indicator_columns if column not in known]
    if never:  # a declared label the model cannot learn: said, not silently dropped
        warning = f"{where}: label column(s) {', '.join(map(repr, never))} have no training row marked 1; the model will not predict them"
        logger.warning(warning)
        notes.append("warning: " + warning)
    if len(known) < 2:
        raise DataError(f"{where}: the training rows carry {len(known)} label(s); a classifier needs at least two.")
    for name in ("validation", "test"):
        split = validation if name == "validation" else splits.get("test")
        if split is not None:
            source = frames.get(name, frames["train"])[1]
            split = _without_unseen(split, known, f"{source} [{name}]", "drop" if name == "validation" else unseen_test_labels, notes)
        if name == "validation":
            validation = split
        else:
            test = split
    if max_validation_examples is not None and len(validation) > max_validation_examples:
        validation = validation.subset(np.sort(rng.permutation(len(validation))[:max_validation_examples]))
        notes.append(f"validation capped at {len(validation)} rows (random)")
    carved = "validation" not in splits and samples_per_label is None  # see LabelledData.validation_carved
    return LabelledData(train, validation, test, unlabelled, (labels_column or "labels",), where, notes, validation_carved=carved, carved_texts=carved_texts)


def _without_unseen(split: LabelSetSplit, known: set[str], where: str, policy: str, notes: list[str]) -> LabelSetSplit:
    rows = [row for row, labels in enumerate(split.label_sets) if set(labels) - known]
    if not rows:
        return split
    unseen = sorted({label for row in rows for label in split.label_sets[row] if label not in known})
    if policy == "error":
        raise DataError(
            f"{where}: row {rows[0] + 1} carries label {unseen[0]!r}, which no training row has ({len(rows)} rows carry such labels: "
            f"{', '.join(map(repr, unseen[:10]))}). Pass --unseen-test-labels drop to score without them."
        )
    notes.append(f"{where}: removed labels unseen in train from {len(rows)} rows ({', '.join(map(repr, unseen[:10]))})")
    return LabelSetSplit(split.texts, [tuple(label for label in labels if label in known) for labels in split.label_sets])
