import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED, toy_rows

from phasefit.data import load_data, read_texts, sample_per_class, stratified_split
from phasefit.errors import DataError


@pytest.fixture()
def frame():
    return pd.DataFrame(toy_rows({"sport": 30, "weather": 20, "food": 10}))


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet", "json"])
def test_every_file_format_loads_the_same_rows(tmp_path, frame, suffix):
    path = tmp_path / f"data.{suffix}"
    {
        "csv": lambda: frame.to_csv(path, index=False),
        "tsv": lambda: frame.to_csv(path, sep="\t", index=False),
        "jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        "parquet": lambda: frame.to_parquet(path),
        "json": lambda: frame.to_json(path, orient="records"),
    }[suffix]()
    data = load_data(path, seed=0)
    assert len(data.train) + len(data.validation) == 60
    assert sorted(data.train.texts + data.validation.texts) == sorted(frame.text)


def test_a_folder_of_split_files_is_read_once_per_file(tmp_path, frame, monkeypatch):
    import phasefit.data

    frame.to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    frame.head(12).to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    reads = []
    original = phasefit.data.read_table
    monkeypatch.setattr(phasefit.data, "read_table", lambda path: reads.append(Path(path).name) or original(path))
    data = load_data(tmp_path, seed=0)
    assert sorted(reads) == ["test.jsonl", "train.jsonl"] and len(data.test) == 12


def test_in_memory_sources(frame):
    import datasets

    assert len(load_data(frame).train) == 48
    assert len(load_data(datasets.Dataset.from_pandas(frame)).train) == 48
    both = datasets.DatasetDict({"train": datasets.Dataset.from_pandas(frame), "test": datasets.Dataset.from_pandas(frame.head(9))})
    assert len(load_data(both).test) == 9


def test_validation_holdout_is_stratified_20_percent_and_seeded(frame):
    data = load_data(frame, seed=3)
    counts = pd.Series(data.validation.classes).value_counts().to_dict()
    assert counts == {"sport": 6, "weather": 4, "food": 2}
    assert load_data(frame, seed=3).validation.texts == data.validation.texts
    assert load_data(frame, seed=4).validation.texts != data.validation.texts


def test_singleton_class_stays_in_train():
    kept, held = stratified_split(["a"] * 10 + ["b"], 0.2, np.random.default_rng(0))
    assert 10 in kept and len(held) == 2


def test_samples_per_class_keeps_other_texts_for_phase_one(frame):
    data = load_data(frame, seed=0, samples_per_class=5)
    assert pd.Series(data.train.classes).value_counts().to_dict() == {"sport": 5, "weather": 5, "food": 5}
    assert len(data.unlabelled_texts) == 48 - 15
    assert not set(data.unlabelled_texts) & set(data.validation.texts)
    # The corpus is the whole training file, whichever rows the seed's validation and draw took.
    assert data.dae_corpus(None, 0) == sorted(set(frame["text"])) == load_data(frame, seed=1, samples_per_class=5).dae_corpus(None, 0)
    assert data.dae_corpus(None, 0) == load_data(frame, seed=2).dae_corpus(None, 0)
    assert sample_per_class(["a"] * 3 + ["b"] * 9, 4, np.random.default_rng(0)).size == 7


def test_columns_are_options_and_integer_labels_become_names(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"sentence": [f"text {i}" for i in range(20)], "y": [0, 1] * 10}).to_csv(path, index=False)
    data = load_data(path, text_column="sentence", label_columns="y")
    assert data.classes == ["0", "1"]


def test_hierarchical_labels_and_their_codes(tmp_path):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(40)], "topic": ["a"] * 20 + ["b"] * 20, "sub": ["a1", "a2"] * 10 + ["b1", "b2"] * 10})
    data = load_data(frame, label_columns=["topic", "sub"])
    codes = data.label_codes(data.train)
    assert codes.shape == (len(data.train), 2)
    assert data.classes == ["a1", "a2", "b1", "b2"]


def _write(tmp_path, name, content: bytes | str):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


BAD_FILES = [
    ("missing.csv", None, "no such file"),
    ("empty.csv", "", "empty"),
    ("header.csv", "text,label\n", "no rows"),
    ("columns.csv", "sentence,y\nhello,a\nbye,b\n", "no column 'text', 'label'; the columns are 'sentence', 'y'"),
    ("blank.csv", "text,label\nhello,a\n ,b\nthere,a\nyou,b\n", "empty text in column 'text' at rows 3"),
    (
        "nolabel.jsonl",
        '{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n{"text": "c", "label": "y"}\n',
        "empty or missing label in column 'label' at rows 2",
    ),
    ("single.csv", "text,label\na,x\nb,x\nc,x\n", "single class"),
    ("latin1.csv", "text,label\ncaf\xe9,a\n".encode("latin-1"), "line 2 is not valid UTF-8"),
    ("binary.csv", b"\x00\x01\x02\x03text", "binary"),
    ("broken.jsonl", '{"text": "a", "label": "x"}\n{"text": \n', "line 2 is not valid JSON"),
    ("data.xlsx", "x", "unknown file type"),
]


@pytest.mark.parametrize("name,content,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_give_a_message_naming_the_file_and_fault(tmp_path, name, content, message):
    path = tmp_path / name if content is None else _write(tmp_path, name, content)
    with pytest.raises(DataError) as error:
        load_data(path)
    assert message in str(error.value)
    assert name in str(error.value)


def test_inconsistent_hierarchy_is_named():
    frame = pd.DataFrame({"text": list("abcdef"), "topic": ["x", "x", "y", "y", "x", "y"], "sub": ["s1", "s2", "s1", "s3", "s1", "s3"]})
    with pytest.raises(DataError, match="'s1' in column 'sub' sits under"):
        load_data(frame, label_columns=["topic", "sub"])


def test_unseen_test_labels_are_named_or_dropped(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    pd.DataFrame(toy_rows({"sport": 10, "weather": 10})).to_json(folder / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(toy_rows({"sport": 3, "food": 2})).to_json(folder / "test.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match="'food'"):
        load_data(folder)
    data = load_data(folder, unseen_test_labels="drop")
    assert len(data.test) == 3 and any("food" in note for note in data.notes)


def test_read_texts_from_txt_and_table(tmp_path):
    assert read_texts(_write(tmp_path, "t.txt", "one\n\ntwo\n")) == ["one", "two"]
    assert read_texts(_write(tmp_path, "t.jsonl", json.dumps({"text": "x"}) + "\n")) == ["x"]


@pytest.mark.skipif(not (SHARED / "datasets").is_dir(), reason="../shared/datasets not present")
def test_shared_folder_layout_loads():
    data = load_data(SHARED / "datasets" / "sst5", samples_per_class=8, seed=1)
    assert len(data.train) == 40 and len(data.test) == 2210 and len(data.validation) == 1101
