"""Labelled datasets: reading files, folders, DataFrames and `datasets` objects; splits and sampling.

Everything here is plain Python, numpy and pandas: no torch, no training.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DataError

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".txt": "txt"}
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "dev", "val"), "test": ("test",)}
UnseenLabels = Literal["error", "drop"]


@dataclass
class Split:
    """Texts with their labels: ``labels[i]`` holds one label name per level, coarse to fine."""

    texts: list[str]
    labels: list[tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[str]:
        """The finest label of every example (the class that is predicted)."""
        return [label[-1] for label in self.labels]

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Split":
        return Split([self.texts[i] for i in indices], [self.labels[i] for i in indices])


@dataclass
class LabelledData:
    """A dataset ready for training: train / validation (/ test) splits plus unlabelled texts for phase 1."""

    train: Split
    validation: Split
    test: Split | None = None
    unlabelled_texts: list[str] = field(default_factory=list)
    label_columns: tuple[str, ...] = ("label",)
    source: str = "<in memory>"
    notes: list[str] = field(default_factory=list)
    # The validation rows were held out of the labelled rows the run trains on (not so under a low-resource draw,
    # whose validation comes from the rows left out of the draw: merging them back would change the regime).
    validation_carved: bool = False
    # Texts of the training file that a validation split carved from it took (all of them, before any cap). The DAE
    # reads them too, labels hidden, so that its corpus is the whole training file and the same for every seed.
    carved_texts: list[str] = field(default_factory=list)

    @property
    def multi_label(self) -> bool:
        """Whether each text carries a set of labels (the splits are label-set splits) rather than one label."""
        return hasattr(self.train, "label_sets")

    @property
    def classes(self) -> list[str]:
        return self.train.label_names if self.multi_label else sorted(set(self.train.classes))

    def ft_targets(self, split: Any) -> np.ndarray:
        """What FT learns for each row: the code of its finest label, or (multi-label) its 0/1 row over :attr:`classes`."""
        codes = self.label_codes(split)
        return codes if self.multi_label else codes[:, -1]

    @property
    def n_levels(self) -> int:
        return len(self.label_columns)

    def label_codes(self, split: Split) -> np.ndarray:
        """Integer codes of shape ``(n, n_levels)``, numbered per level over the training labels; multi-label: the
        0/1 matrix over :attr:`classes` (float, which is how the contrastive phase tells label sets apart)."""
        if self.multi_label:
            return split.indicator(self.classes)
        codes = np.empty((len(split), self.n_levels), dtype=np.int64)
        for level in range(self.n_levels):
            names = sorted({label[level] for label in self.train.labels})
            index = {name: i for i, name in enumerate(names)}
            codes[:, level] = [index[label[level]] for label in split.labels]
        return codes

    def training_file_texts(self) -> list[str]:
        """Every text of the training file (the labelled rows, those left unlabelled and those a carved validation
        split took) plus the unlabelled ones, sorted, duplicates kept: the same for every run seed."""
        return sorted([*self.train.texts, *self.unlabelled_texts, *self.carved_texts])

    def dae_corpus(self, max_texts: int | None, seed: int) -> list[str]:
        """:meth:`training_file_texts`, de-duplicated, then a seeded sample of ``max_texts``."""
        texts = sorted(set(self.training_file_texts()))
        if max_texts is not None and len(texts) > max_texts:
            chosen = np.random.default_rng(seed).choice(len(texts), size=max_texts, replace=False)
            texts = [texts[i] for i in sorted(chosen)]
        return texts


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one CSV / TSV / JSON Lines / JSON / Parquet / plain-text file into a DataFrame of strings."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder.")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a data file.")
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(sorted(TABLE_SUFFIXES))}.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty.")
    if kind == "parquet":
        try:
            return pd.read_parquet(path)
        except Exception as error:  # pyarrow raises many types for a corrupt file
            raise DataError(f"{path}: not a readable Parquet file ({error}).") from None
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 (byte {error.start}); save the file as UTF-8.") from None
    if "\x00" in raw:
        raise DataError(f"{path}: contains NUL bytes; it looks like a binary file, not {kind.upper()} text.")
    if not raw.strip():
        raise DataError(f"{path}: the file holds only white space.")
    if kind == "txt":
        return pd.DataFrame({"text": [line for line in raw.splitlines() if line.strip()]})
    if kind == "jsonl" or (kind == "json" and not raw.lstrip().startswith("[")):
        rows = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {number} is not valid JSON ({error.msg}).") from None
            if not isinstance(row, dict):
                raise DataError(f'{path}: line {number} is a JSON {type(row).__name__}, expected an object like {{"text": ..., "label": ...}}.')
            rows.append(row)
        return pd.DataFrame(rows)
    if kind == "json":
        try:
            rows = json.loads(raw)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON at line {error.lineno} ({error.msg}).") from None
        if not all(isinstance(row, dict) for row in rows):
            raise DataError(f"{path}: expected a JSON list of objects.")
        return pd.DataFrame(rows)
    import csv
    import io

    try:
        frame = pd.read_csv(io.StringIO(raw), sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{path}: not a readable {kind.upper()} file ({str(error).strip()}).") from None
    return frame


def _row_list(rows: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _blank(values: pd.Series) -> np.ndarray:
    return (values.isna() | values.astype(str).str.strip().eq("") | values.astype(str).eq("nan")).to_numpy()


def frame_to_split(
    frame: pd.DataFrame,
    where: str,
    text_column: str = "text",
    label_columns: Sequence[str] | None = ("label",),
    row_offset: int = 1,
) -> Split:
    """Check the columns and values of one table and turn it into a :class:`Split`.

    ``where`` names the table in messages; ``row_offset`` turns a 0-based index into the row
    number a person sees (1 for JSON Lines lines, 2 for a CSV with its header line).
    """
    if len(frame) == 0:
        raise DataError(f"{where}: has a header but no rows.")
    label_columns = list(label_columns or [])
    missing = [column for column in [text_column, *label_columns] if column not in frame.columns]
    if missing:
        raise DataError(
            f"{where}: no column {', '.join(repr(m) for m in missing)}; the columns are {', '.join(repr(str(c)) for c in frame.columns)}. "
            "Choose others with --text-column / --label-column."
        )
    texts = frame[text_column]
    blank_texts = np.flatnonzero(_blank(texts))
    if blank_texts.size:
        raise DataError(f"{where}: empty text in column {text_column!r} at rows {_row_list(blank_texts + row_offset)}.")
    labels: list[tuple[str, ...]] = [()] * len(frame)
    if label_columns:
        columns = []
        for column in label_columns:
            values = frame[column]
            blank = np.flatnonzero(_blank(values))
            if blank.size:
                raise DataError(f"{where}: empty or missing label in column {column!r} at rows {_row_list(blank + row_offset)}.")
            columns.append([_label_name(v) for v in values])
        labels = list(zip(*columns))
    return Split([str(t) for t in texts], labels)


def _label_name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def check_hierarchy(split: Split, label_columns: Sequence[str], where: str) -> None:
    """Every finer label must sit under one coarser label path (e.g. a subtopic under one topic)."""
    for level in range(1, len(label_columns)):
        parents: dict[str, tuple[str, ...]] = {}
        for row, label in enumerate(split.labels):
            parent = parents.setdefault(label[level], label[:level])
            if parent != label[:level]:
                raise DataError(
                    f"{where}: label {label[level]!r} in column {label_columns[level]!r} sits under "
                    f"{' / '.join(parent)!r} and, at row {row + 1}, under {' / '.join(label[:level])!r}; "
                    "hierarchical label columns must be consistent (coarse to fine)."
                )


def _find_split_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            matches = [p for p in sorted(folder.iterdir()) if p.stem == name and p.suffix.lower() in TABLE_SUFFIXES and p.suffix != ".txt"]
            if matches:
                found[split] = matches[0]
                break
    if "train" not in found:
        listing = ", ".join(p.name for p in sorted(folder.iterdir())) or "nothing"
        raise DataError(f"{folder}: no train file (train.jsonl, train.csv, train.tsv, train.parquet, ...); the folder holds {listing}.")
    return found


def _row_offset(path: Path) -> int:
    return 2 if path.suffix.lower() in {".csv", ".tsv"} else 1


def read_splits(
    source: Any,
    text_column: str = "text",
    label_columns: Sequence[str] = ("label",),
    tables: tuple[dict[str, tuple[pd.DataFrame, str, int]], str] | None = None,
) -> tuple[dict[str, Split], str]:
    """Read every split a source has: a file, a folder of split files, a DataFrame, a `datasets` object, a hub id.
    ``tables``: the source's tables when already read (:func:`phasefit.multilabel.split_frames`), not read again."""
    from .multilabel import split_frames

    tables = tables if tables is not None else split_frames(source)
    if tables is not None:
        frames, where = tables
        return {split: frame_to_split(frame, file, text_column, label_columns, offset) for split, (frame, file, offset) in frames.items()}, where
    if isinstance(source, Mapping) and not isinstance(source, (str, Path)):
        splits = {}
        for name, value in source.items():
            frame = value if isinstance(value, pd.DataFrame) else value.to_pandas()
            splits[_canonical_split(name)] = frame_to_split(frame, f"split {name!r}", text_column, label_columns, 0)
        if "train" not in splits:
            raise DataError(f"the dataset has splits {', '.join(map(repr, source))} but no 'train'.")
        return splits, "datasets.DatasetDict" if type(source).__name__ == "DatasetDict" else "dict of splits"
    if type(source).__name__ == "Dataset" and hasattr(source, "to_pandas"):
        return {"train": frame_to_split(source.to_pandas(), "Dataset", text_column, label_columns, 0)}, "datasets.Dataset"
    path = Path(source)
    if path.exists() or path.suffix.lower() in TABLE_SUFFIXES or str(source).startswith((".", "/", "~")):
        return {"train": frame_to_split(read_table(path), str(path), text_column, label_columns, _row_offset(path))}, str(path)
    return _read_hub_dataset(str(source), text_column, label_columns), str(source)


def _canonical_split(name: str) -> str:
    for split, names in SPLIT_NAMES.items():
        if name in names:
            return split
    return name


def _read_hub_dataset(name: str, text_column: str, label_columns: Sequence[str]) -> dict[str, Split]:
    import datasets

    try:
        loaded = datasets.load_dataset(name)
    except Exception as error:  # the hub client raises many types; all mean "cannot get it"
        raise DataError(f"{name}: not a local file or folder, and not loadable as a Hugging Face dataset ({type(error).__name__}: {error}).") from None
    splits = {}
    for split_name, dataset in loaded.items():
        frame = dataset.to_pandas()
        for column in label_columns:
            feature = dataset.features.get(column)
            if feature is not None and hasattr(feature, "int2str"):
                frame[column] = [feature.int2str(int(v)) for v in frame[column]]
        splits[_canonical_split(split_name)] = frame_to_split(frame, f"{name} [{split_name}]", text_column, label_columns, 0)
    return splits


def _shuffled_ranks(classes: Sequence[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded order of the examples, each one's rank within its class in that order, and the class sizes."""
    classes = np.asarray(classes)
    order = rng.permutation(classes.size)
    _, inverse = np.unique(classes[order], return_inverse=True)
    counts = np.bincount(inverse)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rank = np.empty(classes.size, dtype=int)
    rank[np.argsort(inverse, kind="stable")] = np.arange(classes.size) - np.repeat(starts, counts)
    return order, rank, counts[inverse]


def stratified_split(classes: Sequence[str], fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): ``fraction`` of every class held out; a class of one stays whole."""
    order, rank, class_size = _shuffled_ranks(classes, rng)
    held_count = np.where(class_size > 1, np.maximum(1, np.round(class_size * fraction)), 0)
    held = rank < held_count
    return np.sort(order[~held]), np.sort(order[held])


def sample_per_class(classes: Sequence[str], n_per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Seeded stratified draw of at most ``n_per_class`` examples of every class (sorted indices)."""
    order, rank, _ = _shuffled_ranks(classes, rng)
    return np.sort(order[rank < n_per_class])


def load_data(
    source: Any,
    text_column: str = "text",
    label_columns: str | Sequence[str] = "label",
    seed: int = 42,
    samples_per_class: int | None = None,
    validation_fraction: float = 0.2,
    max_validation_examples: int | None = 2000,
    unseen_test_labels: UnseenLabels = "error",
    unlabelled_texts: Sequence[str] = (),
    indicator_columns: Sequence[str] = (),
) -> LabelledData:
    """Load a labelled dataset and make the training, validation and test splits.

    Without a validation split, a stratified ``validation_fraction`` of train is held out (seeded).
    With ``samples_per_class``, the labelled training set is a seeded stratified draw; every
    other training text stays available, without its label, to the denoising phase.

    Multi-label data (each row a set of labels, or none) is a label column of JSON lists (``labels``
    when the default ``label`` column is absent) or 0/1 ``indicator_columns``, one per label; then
    ``samples_per_class`` draws until every label has that many rows (see :mod:`phasefit.multilabel`).
    """
    label_columns = (label_columns,) if isinstance(label_columns, str) else tuple(label_columns)
    if not label_columns:
        raise DataError("at least one label column is needed.")
    if samples_per_class is not None and samples_per_class < 1:
        raise DataError(f"--samples-per-class must be at least 1 (got {samples_per_class}).")
    if not 0 < validation_fraction < 1:
        raise DataError(f"validation fraction must lie between 0 and 1 (got {validation_fraction}).")
    from .multilabel import label_list_column, load_label_set_data, split_frames

    tables = split_frames(source) if indicator_columns or not isinstance(source, Mapping) else None
    if indicator_columns and tables is None:
        raise DataError("0/1 label columns (--label-columns) are read from a file, a folder of split files or a DataFrame.")
    list_column = label_list_column(tables[0], label_columns) if tables and not indicator_columns else None
    if indicator_columns or list_column:
        frames, where = tables
        return load_label_set_data(
            frames,
            where,
            text_column,
            list_column,
            indicator_columns,
            seed,
            samples_per_class,
            validation_fraction,
            max_validation_examples,
            unseen_test_labels,
        )
    splits, where = read_splits(source, text_column, label_columns, tables)
    for name, split in splits.items():
        check_hierarchy(split, label_columns, f"{where} [{name}]")
    train = splits["train"]
    notes: list[str] = []
    rng = np.random.default_rng(seed)
    if len(set(train.classes)) < 2:
        raise DataError(f"{where}: the training data has a single class ({train.classes[0]!r}); a classifier needs at least two.")

    validation = splits.get("validation")
    carved_texts: list[str] = []
    if validation is None:
        kept, held = stratified_split(train.classes, validation_fraction, rng)
        validation, train = train.subset(held), train.subset(kept)
        carved_texts = list(validation.texts)
        notes.append(f"no validation split: held out a stratified {validation_fraction:.0%} of train ({len(validation)} rows, seed {seed})")
    unlabelled: list[str] = list(unlabelled_texts)
    if samples_per_class is not None:
        chosen = sample_per_class(train.classes, samples_per_class, rng)
        rest = np.setdiff1d(np.arange(len(train)), chosen)
        unlabelled += [train.texts[i] for i in rest]
        train = train.subset(chosen)
        notes.append(
            f"low-resource draw: {samples_per_class} per class, {len(train)} labelled rows; {len(rest)} other training texts kept unlabelled for phase 1"
        )
    duplicates = len(train) - len(set(zip(train.texts, train.labels)))
    if duplicates:
        notes.append(f"{duplicates} duplicate training rows (same text and label) are kept, as the paper kept them")
    known = set(train.classes)
    validation = _drop_unseen(validation, known, f"{where} [validation]", "drop", notes)
    if max_validation_examples is not None and len(validation) > max_validation_examples:
        kept, _ = stratified_split(validation.classes, 1 - max_validation_examples / len(validation), rng)
        validation = validation.subset(kept[:max_validation_examples])
        notes.append(f"validation capped at {len(validation)} rows (stratified)")
    test = splits.get("test")
    if test is not None:
        test = _drop_unseen(test, known, f"{where} [test]", unseen_test_labels, notes)
    carved = "validation" not in splits and samples_per_class is None
    return LabelledData(train, validation, test, unlabelled, label_columns, where, notes, validation_carved=carved, carved_texts=carved_texts)


def without_validation_split(data: LabelledData, fraction: float, seed: int) -> LabelledData:
    """``data`` as a user who holds only its labelled training rows would have it: validation is a stratified,
    seeded ``fraction`` of those rows (its own validation rows are dropped, neither labelled nor unlabelled)."""
    kept, held = stratified_split(data.train.classes, fraction, np.random.default_rng(seed))
    note = f"no validation split: held out a stratified {fraction:.0%} of the {len(data.train)} labelled rows ({len(held)} rows, seed {seed})"
    return dataclasses.replace(data, train=data.train.subset(kept), validation=data.train.subset(held), notes=[*data.notes, note], validation_carved=True)


def with_validation_merged(data: LabelledData) -> LabelledData:
    """``data`` whose training rows are its training and validation rows together, and with no validation rows.

    The carved texts that are now training rows leave ``carved_texts``, so the whole training file (and the token
    limit read off it) is the same multiset of texts as before the merge."""
    merged = type(data.train)([*data.train.texts, *data.validation.texts], [*data.train.labels, *data.validation.labels])
    carved_left = collections.Counter(data.carved_texts)
    carved_left.subtract(data.validation.texts)
    return dataclasses.replace(
        data, train=merged, validation=data.validation.subset([]), validation_carved=False, carved_texts=sorted((+carved_left).elements())
    )


def _drop_unseen(split: Split, known: set[str], where: str, policy: UnseenLabels, notes: list[str]) -> Split:
    unseen = sorted(set(split.classes) - known)
    if not unseen:
        return split
    rows = [i for i, label in enumerate(split.classes) if label not in known]
    if policy == "error":
        raise DataError(
            f"{where}: {len(rows)} rows carry labels that train never has: {', '.join(map(repr, unseen[:10]))}"
            f"{' ...' if len(unseen) > 10 else ''}. Pass --unseen-test-labels drop to score without them."
        )
    notes.append(f"{where}: dropped {len(rows)} rows with labels unseen in train ({', '.join(map(repr, unseen[:10]))})")
    return split.subset([i for i, label in enumerate(split.classes) if label in known])


def read_texts(path: str | Path, text_column: str = "text") -> list[str]:
    """Texts to predict: a .txt file (one per line) or a table with a text column."""
    path = Path(path)
    frame = read_table(path)
    return frame_to_split(frame, str(path), text_column if path.suffix.lower() != ".txt" else "text", [], _row_offset(path)).texts
